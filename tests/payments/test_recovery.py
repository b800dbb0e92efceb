"""A payment whose process died mid-charge is resumed, never charged a second time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import flaky_provider
from sqlalchemy import update
from support import PASSWORD, bearer, database_urls, make_settings
from werkzeug.test import Client

from app.kit.database import utcnow
from app.kit.service import parts_of
from app.runtime.composition import Application, create_application
from app.settings import ServiceSpec
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
    database = parts_of(application.services["payment"]).database
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


def test_a_charge_of_unknown_outcome_is_resumed_never_repeated(tmp_path: Path, backend: str):
    services = tuple(
        ServiceSpec.parse(item) for item in ("user", "order", "payment=flaky_provider:create_app")
    )
    application = create_application(
        make_settings(tmp_path, database_urls(backend, tmp_path), services=services)
    )
    for service in application.services.values():
        parts_of(service).database.create_schema()
    provider = flaky_provider.made[-1]
    try:
        client = Client(application)
        body = {"username": "lee", "password": PASSWORD, "email": "lee@example.com"}
        client.post("/user/register", json=body)
        login = client.post("/user/login", json={"username": "lee", "password": PASSWORD})
        headers = bearer(login.get_json()["data"]["token"])
        order = client.post("/order/", json={"product": "pen", "price": 8}, headers=headers)
        order_id = order.get_json()["data"]["id"]
        provider.timing_out = True
        lost = client.post("/payment/", json={"order_id": order_id}, headers=headers)
        assert lost.status_code == 500  # charged or not: nobody knows yet
        provider.timing_out = False
        blocked = client.post("/payment/", json={"order_id": order_id}, headers=headers)
        assert (
            blocked.get_json()["data"]["error"] == "order_already_paid"
        )  # not freed: no 2nd charge
        database = parts_of(application.services["payment"]).database
        with database.unit_of_work() as session:
            session.execute(
                update(Payment).values(updated_at=utcnow() - STRANDED_AFTER - timedelta(seconds=1))
            )
        resumed = client.post("/payment/", json={"order_id": order_id}, headers=headers)
        assert resumed.status_code == 201
        assert list(provider.charges) == [f"payment-{resumed.get_json()['data']['id']}"]
        paid = client.get(f"/order/{order_id}", headers=headers).get_json()["data"]["status"]
        assert paid == "paid"
    finally:
        application.dispose()
