"""The ASGI entry point: ``uvicorn asgi:application``.

The same composed WSGI application as ``wsgi.py``, behind a2wsgi's ``WSGIMiddleware``:
each request runs in one of ``MICROSHOP_THREADS`` worker threads (8 by default, as
``microshop serve`` has), and the request body is read as the application asks for it,
so its 64 KiB limit answers 413 before a large upload is taken in. docs/client.md says
why a2wsgi rather than asgiref's ``WsgiToAsgi``. Mounted under a prefix (Starlette's
``Mount("/shop", app=application)``), the ASGI ``root_path`` becomes ``SCRIPT_NAME``.
"""

import atexit
import os

from a2wsgi import WSGIMiddleware

from app import create_application
from app.settings import ConfigError, ServingLimits

try:
    shop = create_application()
except ConfigError as error:  # a clear line for the operator, not a traceback
    raise SystemExit(f"microshop: {error}") from None
atexit.register(shop.dispose)  # the ASGI server owns the signals; its clean exit ends here

application = WSGIMiddleware(shop, workers=ServingLimits.from_env(os.environ).threads)
