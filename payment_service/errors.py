"""The payment service's own error slugs; the platform's are in ``app.kit.errors``."""

from __future__ import annotations

from app.kit.errors import ApiError, Conflict


class OrderNotPayable(Conflict):
    slug, message = "order_not_payable", "order cannot be paid"


class OrderAlreadyPaid(Conflict):
    slug, message = "order_already_paid", "order is already paid"


class RefundExceedsPayment(Conflict):
    slug, message = "refund_exceeds_payment", "refund is more than what is left"


class PaymentNotRefundable(Conflict):
    slug, message = "payment_not_refundable", "payment cannot be refunded"


class RequestInProgress(Conflict):
    slug, message = "request_in_progress", "a request with this Idempotency-Key is running"


class KeyMismatch(ApiError):
    status, slug = 422, "idempotency_key_mismatch"
    message = "this Idempotency-Key was used with a different request"


class CardDeclined(ApiError):
    status, slug, message = 402, "card_declined", "the card was declined"


class ProviderFailed(ApiError):
    status, slug, message = 502, "payment_provider_error", "the payment provider failed"
