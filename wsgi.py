"""The WSGI entry point: ``waitress-serve --listen=127.0.0.1:8080 wsgi:application``.

``microshop serve`` runs the same application with microshop's hardened waitress limits.
"""

from app import create_application
from app.runtime.serving import exit_cleanly_on_sigterm
from app.settings import ConfigError

try:
    application = create_application()
except ConfigError as error:  # a clear line for the operator, not a traceback
    raise SystemExit(f"microshop: {error}") from None
exit_cleanly_on_sigterm(application)
