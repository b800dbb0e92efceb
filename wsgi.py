"""The WSGI entry point: ``waitress-serve --listen=127.0.0.1:8080 wsgi:application``."""

from app import create_application

application = create_application()
