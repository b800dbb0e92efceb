"""flask-restful's ``Api`` with errors routed to Flask's handlers (``app.kit.errors``), and
one way to give a resource its legacy paths.

    api = JsonApi(app)
    api.route(OrderItem, "/<id:order_id>",
              legacy={"/query/<id:order_id>": "GET", "/cancel/<id:order_id>": "DELETE"})

A legacy path answers only the one method clients already use it for; any other method
on it is a 405. Stock flask-restful answers every non-HTTP exception with its own 500
once ``TESTING`` and ``DEBUG`` are off, which turns flask-jwt-extended's 401s into 500s in
production: ``JsonApi`` hands them to Flask's handlers instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask_restful import Api, Resource


class JsonApi(Api):
    def error_router(self, original_handler: Callable[[Exception], Any], e: Exception) -> Any:
        return original_handler(e)

    def route(
        self,
        resource: type[Resource],
        path: str,
        *,
        legacy: Mapping[str, str] | None = None,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``resource`` at ``path``, and at each legacy path for its one method."""
        endpoint = endpoint or resource.__name__.lower()
        self.add_resource(resource, path, endpoint=endpoint, **kwargs)
        for number, (alias, method) in enumerate((legacy or {}).items(), start=1):
            self.add_resource(
                resource, alias, endpoint=f"{endpoint}_legacy{number}", methods=[method], **kwargs
            )
