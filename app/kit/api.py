"""flask-restful's ``Api`` with errors routed to Flask's handlers (``app.kit.errors``), one
way to give a resource its legacy paths, and a ``Resource`` that takes only what its
methods declare.

    class OrderItem(Resource):              # app.kit.api.Resource, not flask-restful's
        @operation(responses={200: OrderOut}, errors=(403, 404, 422))
        def get(self, order_id): ...        # GET /order/1?x=1 or with a body: 422

    api = JsonApi(app)
    api.route(OrderItem, "/<id:order_id>",
              legacy={"/query/<id:order_id>": "GET", "/cancel/<id:order_id>": "DELETE"})

A legacy path answers only the one method clients already use it for; any other method
on it is a 405. Stock flask-restful answers every non-HTTP exception with its own 500
once ``TESTING`` and ``DEBUG`` are off, which turns the token checks' 401s into 500s in
production: ``JsonApi`` hands them to Flask's handlers instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import flask_restful
from flask_restful import Api

from app.kit.openapi import ATTRIBUTE, Operation
from app.kit.validation import refuse_undeclared_input

_VERBS = ("get", "post", "put", "patch", "delete")


def _taking_only_what_it_declares(view: Callable[..., Any], spec: Operation) -> Any:
    @functools.wraps(view)  # keeps the @operation, which the OpenAPI document reads
    def checked(*args: Any, **kwargs: Any) -> Any:
        refuse_undeclared_input(
            takes_body=spec.body is not None, takes_query=spec.query is not None
        )
        return view(*args, **kwargs)

    return checked


class Resource(flask_restful.Resource):
    """A resource whose documented methods take only the body and the query string their
    ``@operation`` declares: a body or a query parameter sent to a method that declares
    none is a 422 naming it (``body``, or the parameter). The check runs inside the
    ``method_decorators``, so a missing token is still a 401 first."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for verb in _VERBS:
            view = cls.__dict__.get(verb)
            spec = getattr(view, ATTRIBUTE, None)
            if spec is not None:
                setattr(cls, verb, _taking_only_what_it_declares(view, spec))


class JsonApi(Api):
    def error_router(self, original_handler: Callable[[Exception], Any], e: Exception) -> Any:
        return original_handler(e)

    def route(
        self,
        resource: type[flask_restful.Resource],
        path: str,
        *,
        legacy: Mapping[str, str] | None = None,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``resource`` at ``path``, and at each legacy path for its one method."""
        if not issubclass(resource, Resource):
            raise TypeError(
                f"{resource.__name__} is not an app.kit.api.Resource, which refuses the input"
                " its methods do not declare"
            )
        endpoint = endpoint or resource.__name__.lower()
        self.add_resource(resource, path, endpoint=endpoint, **kwargs)
        for number, (alias, method) in enumerate((legacy or {}).items(), start=1):
            self.add_resource(
                resource, alias, endpoint=f"{endpoint}_legacy{number}", methods=[method], **kwargs
            )
