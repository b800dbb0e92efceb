"""What a failed call raises: one class per kind of answer, each carrying the envelope.

    try:
        shop.pay(order.id)
    except CardDeclined as error:            # 402
        print(error.slug, error.request_id)  # "card_declined", the server's X-Request-ID
    except Conflict as error:                # 409: order_already_paid, order_not_payable, …
        ...
    except ValidationFailed as error:        # 422
        print(error.fields)                  # {"order_id": "must be greater than 0"}

Branch on the class for the status and on ``slug`` (API.md's stable list) for the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MicroshopError(Exception):
    """Anything the client raises on purpose."""


class Unreachable(MicroshopError):
    """No answer at all: the connection failed or timed out (after the retries it allows)."""


class UnexpectedResponse(MicroshopError):
    """An answer that is not microshop's JSON envelope (a proxy's HTML page, say)."""

    def __init__(self, status: int, text: str, request_id: str | None) -> None:
        super().__init__(f"{status}: not a microshop answer: {text[:200]!r}")
        self.status = status
        self.text = text
        self.request_id = request_id


class ApiError(MicroshopError):
    """An error envelope: ``{"code": status, "msg": message, "data": {"error": slug, …}}``."""

    status = 0

    def __init__(
        self,
        status: int,
        slug: str,
        message: str,
        *,
        fields: Mapping[str, str] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {slug}: {message}")
        self.status = status
        self.slug = slug
        self.message = message
        self.fields = dict(fields or {})
        """Each offending field and what is wrong with it (validation errors only)."""
        self.request_id = request_id
        """The ``X-Request-ID`` the server answered with: quote it when reporting a problem."""
        self.retry_after = retry_after
        """Seconds to wait before trying again, when the server said so (429)."""


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class CardDeclined(ApiError):
    status = 402


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class ValidationFailed(ApiError):
    status = 422


class RateLimited(ApiError):
    status = 429


class ServerError(ApiError):
    """500 ``internal_error``: the server logged it under ``request_id``."""

    status = 500


class ServiceUnavailable(ApiError):
    """502 ``payment_provider_error`` or 503 ``service_unavailable``: try again later."""

    status = 503


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        CardDeclined,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        ValidationFailed,
        RateLimited,
        ServerError,
        ServiceUnavailable,
    )
}
_BY_STATUS[502] = ServiceUnavailable


def error_for(
    status: int, envelope: Mapping[str, Any], request_id: str | None, retry_after: str | None
) -> ApiError:
    """The exception an error envelope of this status stands for."""
    data = envelope.get("data") or {}
    if status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif status >= 500:
        cls = ServerError
    else:
        cls = ApiError
    return cls(
        status,
        str(data.get("error", "")),
        str(envelope.get("msg", "")),
        fields=data.get("fields"),
        request_id=request_id,
        retry_after=_seconds(retry_after),
    )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
