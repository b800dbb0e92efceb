"""microshop's Python client: ``Client`` and ``AsyncClient`` on httpx, typed with models
generated from the services' OpenAPI documents (``microshop_client.models``).

    from microshop_client import Client

    with Client("http://127.0.0.1:8080") as shop:
        shop.login("alice", "correct horse")
        order = shop.place_order("desk lamp", price="42.50")

See docs/client.md. Importing this package imports httpx and pydantic, nothing of the
server: no Flask, no database.
"""

from microshop_client._protocol import Tokens
from microshop_client.async_client import AsyncClient
from microshop_client.client import Client
from microshop_client.errors import (
    ApiError,
    BadRequest,
    CardDeclined,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    MicroshopError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    UnexpectedResponse,
    Unreachable,
    ValidationFailed,
)

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "CardDeclined",
    "Client",
    "Conflict",
    "Forbidden",
    "MethodNotAllowed",
    "MicroshopError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "Tokens",
    "Unauthorized",
    "UnexpectedResponse",
    "Unreachable",
    "ValidationFailed",
]
