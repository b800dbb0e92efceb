"""The microshop platform: what every service shares, and the composition of services.

    from app import create_application
    application = create_application()      # a WSGI app: /user, /order, /payment

Nothing here imports a service: the composition mounts the ones the settings name.
"""

__version__ = "0.1.0"

from app.composition import create_application

__all__ = ["__version__", "create_application"]
