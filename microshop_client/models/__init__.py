"""The request and response models of the three services, generated from their OpenAPI
documents (``tests/client/generate_models.py``; a test fails when they drift)."""

from microshop_client.models.order import NewOrder, OrderOut, OrderPage
from microshop_client.models.payment import (
    NewPayment,
    PaymentOut,
    PaymentPage,
    RefundOut,
    RefundRequest,
)
from microshop_client.models.user import (
    AccessToken,
    Credentials,
    Logout,
    PasswordChange,
    Registration,
    TokenPair,
    UserOut,
)

__all__ = [
    "AccessToken",
    "Credentials",
    "Logout",
    "NewOrder",
    "NewPayment",
    "OrderOut",
    "OrderPage",
    "PasswordChange",
    "PaymentOut",
    "PaymentPage",
    "RefundOut",
    "RefundRequest",
    "Registration",
    "TokenPair",
    "UserOut",
]
