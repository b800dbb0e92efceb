"""A payment whose process died mid-charge is resumed, never charged a second time."""

from __future__ import annotations

from datetime import timedelta

from support import PASSWORD, bearer
from werkzeug.test import Client

from app.composition import Application
from app.database import utcnow
from app.platform import platform_of
from payment_service.models import Payment, PaymentStatus
from payment_service.service import STRANDED_AFTER


def test_a_stranded_reservation_is_resumed_under_its_own_payment(application: Application):
    client = Client(application)
    body = {"username": "kim", "password": PASSWORD, "email": "kim@example.com"}
    client.post("/user/register", json=body)
    login = client.post("/user/login", json={"username": "kim", "password": PASSWORD})
    headers = bearer(login.get_json()["data"]["token"])
    order = client.post("/order/", json={"product": "pen", "price": 8}, headers=headers)
    order_id, user_id = order.get_json()["data"]["id"], order.get_json()["data"]["userid"]
    database = platform_of(application.services["payment"]).database
    with database.unit_of_work() as session:  # as a process that died after reserving
        stranded = Payment(
            order_id=order_id,
            userid=user_id,
            amount_minor=800,
            currency="USD",
            status=PaymentStatus.PROCESSING,
            refunded_minor=0,
            method="tok_mastercard",
            charged_order_id=order_id,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        session.add(stranded)
    recent = client.post("/payment/", json={"order_id": order_id}, headers=headers)
    assert recent.status_code == 409  # it may still be charging: not ours to take

    with database.unit_of_work() as session:
        session.get_one(Payment, stranded.id).updated_at = (
            utcnow() - STRANDED_AFTER - timedelta(seconds=1)
        )
    resumed = client.post("/payment/", json={"order_id": order_id}, headers=headers)
    assert resumed.status_code == 201
    assert resumed.get_json()["data"]["id"] == stranded.id
    with database.unit_of_work() as session:
        payments = session.query(Payment).filter_by(order_id=order_id).all()
        assert [(p.status, p.method) for p in payments] == [
            (PaymentStatus.SUCCEEDED, "tok_mastercard")
        ]
        assert payments[0].provider_reference is not None
    paid = client.get(f"/order/{order_id}", headers=headers).get_json()["data"]["status"]
    assert paid == "paid"
