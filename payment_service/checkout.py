"""Paying and refunding, step by step: each step one short unit of work (``service.py``),
and the provider called between them, never inside one.

    checkout = Checkout(peers, SandboxProvider())
    checkout.pay(caller, form)              # POST /payment/
    checkout.refund(caller, 7, 500)         # POST /payment/7/refund
    checkout.refund_cancelled_order(3, handling)    # order.cancelled (events.py)
    checkout.reconcile()                    # in the background: what a dead process left

A process can die between any two steps. What it leaves is always one consistent fact:
a payment ``processing`` (reserved, maybe charged) or a refund ``pending`` (counted, maybe
made). ``reconcile`` finishes each once it is older than ``service.STRANDED_AFTER``, by
asking the provider under the key the step used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from app.kit.auth import Caller
from app.kit.database import DatabaseBusy
from app.kit.events import Handling, RetryLater
from app.kit.peers import Peers
from app.kit.service import unit_of_work
from payment_service import idempotency, service
from payment_service.errors import (
    CardDeclined,
    OrderAlreadyPaid,
    ProviderFailed,
    RequestInProgress,
)
from payment_service.models import Payment, PaymentStatus, Refund, RefundStatus
from payment_service.orders import read_order
from payment_service.providers import PaymentProvider
from payment_service.schemas import NewPayment

log = logging.getLogger("microshop.payments")
RECORD_ATTEMPTS = 3
RETRY_PAUSE_SECONDS = 0.05


@dataclass
class Checkout:
    peers: Peers
    provider: PaymentProvider

    def pay(self, caller: Caller, form: NewPayment) -> Payment:
        """Charge the order's amount once; a failed attempt is recorded and raised."""
        made = self._made_by_key(Payment)
        if made is not None and made.status in service.SETTLED:
            return made  # the key's first request charged, then died before answering
        order = service.check_payable(read_order(self.peers, form.order_id), caller)
        try:
            with unit_of_work() as session:
                reserved = service.reserve_payment(session, caller, order, form.payment_method)
                idempotency.remember_made(session, reserved.id)
                payment_id, method = reserved.id, reserved.method  # a resumed one keeps its own
        except OrderAlreadyPaid:
            settled = self._settled_elsewhere(made)
            if settled is None:
                raise
            return settled
        try:
            reference = self.provider.charge(
                amount_minor=order.amount_minor,
                currency=order.currency,
                method=method,
                reference=service.charge_key(payment_id),
            )
        except (CardDeclined, ProviderFailed) as refusal:  # the provider says: not charged
            with unit_of_work() as session:
                service.fail_payment(session, payment_id, refusal.message)
                idempotency.remember_made(session, None)
            raise
        # Any other failure (a timeout, say) leaves it unknown whether money moved: the
        # reservation stays, for the reconciler or the next attempt to settle.
        return self._record_charge(payment_id, reference)

    def refund(self, caller: Caller, payment_id: int, amount_minor: int | None) -> Refund:
        """Refund part or all of what is left; never more, whatever runs at the same time."""
        made = self._made_by_key(Refund)
        if made is not None and made.status is RefundStatus.SUCCEEDED:
            return made  # the key's first request refunded, then died before answering
        if made is not None and made.status is RefundStatus.PENDING:
            return self._refund_again(made.id)
        with unit_of_work() as session:
            payment = service.visible_payment(session, caller, payment_id)
            refund = service.reserve_refund(session, payment, amount_minor)
            idempotency.remember_made(session, refund.id)
        return self._make_refund(refund.id)

    def refund_cancelled_order(self, order_id: int, handling: Handling) -> None:
        """``order.cancelled``: refund all that is left of the order's payment, if it has
        one; the refund is recorded in the handler's transaction, with its inbox row.

        A payment fully refunded already is done; one whose refunds are still under way is
        waited for (``RetryLater``), as is one still being charged."""
        with unit_of_work() as session:
            payment = service.settled_payment_of_order(session, order_id)
            if payment is None or payment.status is PaymentStatus.REFUNDED:
                return
            if payment.status is PaymentStatus.PROCESSING:
                raise RetryLater(f"payment {payment.id} is still being charged")
            if payment.remaining_minor == 0:
                if service.refunds_under_way(session, payment.id):
                    raise RetryLater(f"a refund of payment {payment.id} is under way")
                return
            refund = service.reserve_refund(session, payment, None)
        try:
            reference = self._refund_at_provider(refund.id)
        except Exception as error:
            log.warning(
                "refund %s of payment %s for cancelled order %s failed at the provider (%s: %s)",
                refund.id,
                refund.payment_id,
                order_id,
                type(error).__name__,
                error,
            )
            raise RetryLater(f"the provider did not refund payment {refund.payment_id}") from error
        with handling() as session:
            service.record_refund(session, refund.id, reference)

    def reconcile(self) -> None:
        """Finish what dead processes left: settle each payment stuck ``processing`` by
        asking the provider whether it charged (a cancelled order's is then refunded by the
        saga), and make each refund stuck ``pending`` again under its own key."""
        with unit_of_work(readonly=True) as session:
            payments = service.stranded(session, Payment)
            refunds = service.stranded(session, Refund)
        for payment_id in payments:
            if self._take_over(Payment, payment_id):
                self._settle_stranded(payment_id)
        for refund_id in refunds:
            if not self._take_over(Refund, refund_id):
                continue
            try:
                self._make_refund(refund_id)
            except Exception as error:  # still pending: the next round tries again
                log.warning(
                    "a stranded refund %s is still not made (%s: %s)",
                    refund_id,
                    type(error).__name__,
                    error,
                )

    def _take_over(self, model: type[Payment] | type[Refund], row_id: int) -> bool:
        with unit_of_work() as session:
            return service.take_over(session, model, row_id)

    def _settle_stranded(self, payment_id: int) -> None:
        try:
            charge = self.provider.find_charge(reference=service.charge_key(payment_id))
        except Exception as error:  # still processing: the next round asks again
            log.warning(
                "the provider could not say whether payment %s was charged (%s: %s)",
                payment_id,
                type(error).__name__,
                error,
            )
            return
        with unit_of_work() as session:
            if charge is None:
                service.fail_payment(session, payment_id, "the charge was never made")
            else:
                service.settle_payment(session, payment_id, charge)
        log.info("settled stranded payment %s: %s", payment_id, "charged" if charge else "failed")

    def _record_charge(self, payment_id: int, reference: str) -> Payment:
        """Settle a payment the provider charged. The money moved, so a lost lock conflict
        is tried again (settling twice changes nothing) before the client is told 503 and
        the payment waits, ``processing``, for the reconciler."""
        attempt = 1
        while True:
            try:
                with unit_of_work() as session:
                    return service.settle_payment(session, payment_id, reference)
            except DatabaseBusy:
                if attempt == RECORD_ATTEMPTS:
                    raise
                time.sleep(RETRY_PAUSE_SECONDS * attempt)
                attempt += 1

    def _settled_elsewhere(self, made: Payment | None) -> Payment | None:
        """The order's charge is taken: by the payment this request's key made, if that is
        settled now, or None. If another process (the reconciler) is still settling it,
        the key's request is in progress, and a retry answers with it once settled."""
        if made is None:
            return None
        made = self._made_by_key(Payment)
        if made is not None and made.status is PaymentStatus.PROCESSING:
            raise RequestInProgress()
        return made if made is not None and made.status in service.SETTLED else None

    def _made_by_key(self, model: type[Payment] | type[Refund]) -> Payment | Refund | None:
        """What this request's ``Idempotency-Key`` made before its first request died."""
        claim = idempotency.current_claim()
        if claim is None or claim.made_id is None:
            return None
        with unit_of_work(readonly=True) as session:
            return session.get(model, claim.made_id)

    def _refund_again(self, refund_id: int) -> Refund:
        """A pending refund the key made: made now if its process died, else in progress."""
        if not self._take_over(Refund, refund_id):
            raise RequestInProgress()
        return self._make_refund(refund_id)

    def _make_refund(self, refund_id: int) -> Refund:
        """Make a pending refund at the provider and record it."""
        reference = self._refund_at_provider(refund_id)
        with unit_of_work() as session:
            return service.record_refund(session, refund_id, reference)

    def _refund_at_provider(self, refund_id: int) -> str:
        """The provider's refund of a pending refund, under its key. If the provider refuses
        it, it fails and no longer counts; on any other error it stays pending."""
        with unit_of_work(readonly=True) as session:
            refund = session.get_one(Refund, refund_id)
            payment = session.get_one(Payment, refund.payment_id)
        try:
            return self.provider.refund(
                charge_reference=payment.provider_reference,
                amount_minor=refund.amount_minor,
                currency=payment.currency,
                reference=refund.reference,
            )
        except ProviderFailed:
            with unit_of_work() as session:
                service.release_refund(session, refund_id)
                idempotency.remember_made(session, None)
            raise
