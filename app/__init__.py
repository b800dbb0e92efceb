"""The microshop platform: the kit services are written with, and the runtime that runs them.

    from app import create_application
    application = create_application()      # a WSGI app: /user, /order, /payment

``app.kit`` is what a service imports (errors, responses, validation, money, pagination,
auth, events, the service's parts); ``app.runtime`` is what runs a process (composition,
serving, the CLI, observability, migrations, the service client, event delivery).
Importing a kit module loads nothing of the runtime: ``create_application`` is imported
on first use. Nothing here imports a service: the composition mounts the ones the
settings name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "create_application"]

if TYPE_CHECKING:
    from app.runtime.composition import create_application


def __getattr__(name: str) -> Any:
    if name == "create_application":
        from app.runtime.composition import create_application

        return create_application
    raise AttributeError(f"module 'app' has no attribute {name!r}")
