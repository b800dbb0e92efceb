"""flask-restful's ``Api`` with errors routed to Flask's handlers (``app.errors``).

    api = JsonApi(app)
    api.add_resource(OrderItem, "/<id:order_id>", "/query/<id:order_id>")

Stock flask-restful answers every non-HTTP exception with its own 500 once ``TESTING``
and ``DEBUG`` are off, which turns flask-jwt-extended's 401s into 500s in production.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_restful import Api


class JsonApi(Api):
    def error_router(self, original_handler: Callable[[Exception], Any], e: Exception) -> Any:
        return original_handler(e)
