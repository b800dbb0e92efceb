"""``@operation``: what a view answers, said next to the view, for its OpenAPI document.

    class OrderItem(Resource):
        @operation(responses={200: OrderOut}, errors=(403, 404))
        def get(self, order_id): ...

    class PaymentList(Resource):
        @operation(body=NewPayment, responses={201: PaymentOut}, creates="payment_id",
                   errors=(403, 404, OrderNotPayable, OrderAlreadyPaid))
        def post(self): ...                 # its 201 links to every route on {payment_id}

Errors are named by status (the platform's own slugs of that status) or by the service's
own error classes (``order_service/errors.py``), so every slug a document shows comes
from the code that raises it. ``app.runtime.documents`` builds the document from these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from app.kit.errors import ApiError

View = TypeVar("View", bound=Callable[..., Any])
ATTRIBUTE = "__openapi__"
PLATFORM_SLUGS: dict[int, tuple[str, ...]] = {
    400: ("invalid_json",),
    401: ("missing_token", "invalid_token", "token_expired", "token_revoked"),
    403: ("forbidden",),
    404: ("not_found",),
    405: ("method_not_allowed",),
    413: ("payload_too_large",),
    422: ("validation_error",),
    429: ("rate_limited",),
    500: ("internal_error",),
    503: ("service_unavailable",),
}
"""The slugs the platform itself answers, by status; a service adds its own as classes."""


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: Mapping[int, type[BaseModel] | None]
    errors: Mapping[int, tuple[str, ...]]
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    auth: bool = True
    idempotency_key: bool = False
    creates: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


def error_slugs(
    errors: Iterable[int | type[ApiError]], implied: Iterable[int] = ()
) -> dict[int, tuple[str, ...]]:
    """Slugs by status: the platform's for each status named (or implied), then the
    service's error classes. A status nobody has slugs for is kept, with none."""
    slugs: dict[int, list[str]] = {}
    for status in implied:
        slugs.setdefault(status, []).extend(PLATFORM_SLUGS.get(status, ()))
    for error in errors:
        if isinstance(error, int):
            named = slugs.setdefault(error, [])
            named.extend(slug for slug in PLATFORM_SLUGS.get(error, ()) if slug not in named)
        else:
            slugs.setdefault(error.status, []).append(error.slug)
    return {status: tuple(dict.fromkeys(names)) for status, names in slugs.items()}


def operation(
    *,
    responses: Mapping[int, type[BaseModel] | None],
    errors: Iterable[int | type[ApiError]] = (),
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: type[BaseModel] | None = None,
    auth: bool = True,
    idempotency_key: bool = False,
    creates: str | None = None,
) -> Callable[[View], View]:
    """Document a view: success bodies by status, and the errors it may answer.

    The errors every such view can answer are added: 400 and 413 with a body, 401 with
    ``auth``, 422 with a body or query. ``creates`` names the path parameter that the new
    resource's ``data.id`` fills: its 201 then links to each operation taking it."""

    def document(view: View) -> View:
        implied = [400, 413] if body else []
        implied += [401] if auth else []
        implied += [422] if body or query else []
        summary = (view.__doc__ or view.__name__).strip().splitlines()[0]
        setattr(
            view,
            ATTRIBUTE,
            Operation(
                summary,
                dict(responses),
                error_slugs(errors, implied),
                body,
                body_required,
                query,
                auth,
                idempotency_key,
                creates,
            ),
        )
        return view

    return document
