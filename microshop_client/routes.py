"""Which HTTP operation each client method calls: one row per method, in one place.

``tests/client/test_operations.py`` holds this table to the services' OpenAPI documents:
every row is a documented operation (its legacy paths too), and every documented
operation has a row. Platform routes outside the services (``/``, ``/healthz``,
``/readyz``, ``/metrics``) are in API.md but in no document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Auth = Literal["none", "access", "refresh"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    """With the service's prefix, as API.md writes it: ``/order/{order_id}``. A
    ``{service}`` placeholder stands for each service (``/user/healthz``, …)."""
    auth: Auth = "access"
    legacy: tuple[str, ...] = ()
    """The same operation's older paths, which the client never calls."""
    idempotency_key: bool = False
    """A POST that takes ``Idempotency-Key``: the client sends one, so a retry is safe."""
    envelope: bool = True
    """False for an answer that is not the JSON envelope (``/metrics``, an OpenAPI document)."""
    retry: bool = True
    """False where a 503 is the answer itself (``/readyz``), not a reason to ask again."""

    @property
    def safe(self) -> bool:
        """Asking twice does no harm: a read, or a write made at most once by its key."""
        return self.method == "GET" or self.idempotency_key


ROUTES: dict[str, Route] = {
    # the user service
    "register": Route("POST", "/user/register", auth="none"),
    "login": Route("POST", "/user/login", auth="none"),
    "refresh": Route("POST", "/user/refresh", auth="refresh"),
    "logout": Route("POST", "/user/logout"),
    "me": Route("GET", "/user/me", legacy=("/user/info",)),
    "user": Route("GET", "/user/{user_id}"),
    "change_password": Route("POST", "/user/password"),
    # the order service
    "place_order": Route("POST", "/order/", legacy=("/order/create",)),
    "order": Route("GET", "/order/{order_id}", legacy=("/order/query/{order_id}",)),
    "cancel_order": Route("DELETE", "/order/{order_id}", legacy=("/order/cancel/{order_id}",)),
    "orders": Route("GET", "/order/"),
    # the payment service
    "pay": Route("POST", "/payment/", legacy=("/payment/pay",), idempotency_key=True),
    "payment": Route("GET", "/payment/{payment_id}", legacy=("/payment/query/{payment_id}",)),
    "payments": Route("GET", "/payment/"),
    "refund": Route(
        "POST",
        "/payment/{payment_id}/refund",
        legacy=("/payment/refund/{payment_id}",),
        idempotency_key=True,
    ),
    # the platform
    "index": Route("GET", "/", auth="none"),
    "health": Route("GET", "/{service}/healthz", auth="none"),
    "readiness": Route("GET", "/{service}/readyz", auth="none", retry=False),
    "metrics": Route("GET", "/metrics", auth="none", envelope=False),
    "openapi": Route("GET", "/{service}/openapi.json", auth="none", envelope=False),
}
