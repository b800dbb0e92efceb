"""The payment service's HTTP resources: parse, apply the rule, answer."""

from __future__ import annotations

from flask import Response

from app.kit.api import Resource
from app.kit.auth import access_required, current_caller
from app.kit.openapi import operation
from app.kit.responses import created, ok
from app.kit.service import unit_of_work
from app.kit.validation import parse, parse_query
from payment_service import service
from payment_service.checkout import Checkout
from payment_service.errors import (
    CardDeclined,
    KeyMismatch,
    OrderAlreadyPaid,
    OrderNotPayable,
    PaymentNotRefundable,
    ProviderFailed,
    RefundExceedsPayment,
    RequestInProgress,
)
from payment_service.idempotency import idempotent
from payment_service.schemas import (
    NewPayment,
    PaymentOut,
    PaymentPage,
    PaymentQuery,
    RefundOut,
    RefundRequest,
)


class PaymentList(Resource):
    method_decorators = {"get": [access_required], "post": [idempotent("pay"), access_required]}

    def __init__(self, checkout: Checkout):
        self.checkout = checkout

    @operation(query=PaymentQuery, responses={200: PaymentPage})
    def get(self) -> Response:
        """The caller's payments, newest first, a page at a time."""
        query = parse_query(PaymentQuery)
        with unit_of_work(readonly=True) as session:
            return ok(PaymentPage.of(service.list_payments(session, current_caller(), query)))

    @operation(
        body=NewPayment,
        responses={201: PaymentOut},
        idempotency_key=True,
        creates="payment_id",
        errors=(
            CardDeclined,
            403,
            404,
            OrderNotPayable,
            OrderAlreadyPaid,
            RequestInProgress,
            KeyMismatch,
            ProviderFailed,
            503,
        ),
    )
    def post(self) -> Response:
        """Pay an order in full; the order becomes paid."""
        form = parse(NewPayment, context={"accepts": self.checkout.provider.accepts})
        payment = self.checkout.pay(current_caller(), form)
        return created(PaymentOut.of(payment), "payment succeeded")


class PaymentItem(Resource):
    method_decorators = [access_required]

    @operation(responses={200: PaymentOut}, errors=(403, 404, 422))
    def get(self, payment_id: int) -> Response:
        """One payment, for its payer or an admin."""
        with unit_of_work(readonly=True) as session:
            return ok(PaymentOut.of(service.view_payment(session, current_caller(), payment_id)))


class PaymentRefunds(Resource):
    method_decorators = [idempotent("refund"), access_required]

    def __init__(self, checkout: Checkout):
        self.checkout = checkout

    @operation(
        body=RefundRequest,
        body_required=False,
        responses={201: RefundOut},
        idempotency_key=True,
        errors=(
            403,
            404,
            RefundExceedsPayment,
            PaymentNotRefundable,
            RequestInProgress,
            KeyMismatch,
            ProviderFailed,
        ),
    )
    def post(self, payment_id: int) -> Response:
        """Refund part or all of what is left of a payment."""
        form = parse(RefundRequest, optional=True)
        refund = self.checkout.refund(current_caller(), payment_id, form.amount)
        return created(RefundOut.of(refund), "refunded")
