"""Idempotency-Key records: kept for 24 hours, and freed by an answer of 5xx."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from support import DATABASE_BACKENDS, Account, Shop, WsgiTransport

from app.kit.database import utcnow
from app.kit.service import parts_of
from payment_service.idempotency import ABANDONED_AFTER, _fingerprint
from payment_service.models import IdempotencyRecord

pytestmark = pytest.mark.backends(*DATABASE_BACKENDS)


@pytest.fixture
def alice(shop: Shop) -> Account:
    return shop.users.signed_up()


def age_keys(shop: Shop, by: timedelta) -> None:
    if not isinstance(shop.payments.transport, WsgiTransport):
        pytest.skip("ages records in the database: in-process only")
    application = shop.payments.transport.client.application
    database = parts_of(application.services["payment"]).database
    with database.unit_of_work() as session:
        session.execute(update(IdempotencyRecord).values(created_at=utcnow() - by))


def pay(shop: Shop, account: Account, order_id: int, key: str, method: str = "tok_visa"):
    return shop.payments.post(
        "/",
        json={"order_id": order_id, "payment_method": method},
        headers={**account.headers, "Idempotency-Key": key},
    )


def test_a_key_is_kept_for_24_hours_then_forgotten(shop: Shop, alice: Account):
    first, second = shop.order(alice), shop.order(alice)
    age_keys(shop, timedelta(0))
    assert pay(shop, alice, first["id"], "k").status_code == 201
    age_keys(shop, timedelta(hours=23, minutes=59))
    assert pay(shop, alice, second["id"], "k").json["data"]["error"] == "idempotency_key_mismatch"
    age_keys(shop, timedelta(hours=24, minutes=1))
    fresh = pay(shop, alice, second["id"], "k")
    assert fresh.status_code == 201
    assert "Idempotent-Replayed" not in fresh.headers


def test_a_server_side_failure_frees_the_key_for_a_retry(shop: Shop, alice: Account):
    order = shop.order(alice)
    failed = pay(shop, alice, order["id"], "retry-me", method="tok_processingError")
    assert failed.status_code == 502
    again = pay(shop, alice, order["id"], "retry-me", method="tok_processingError")
    assert again.status_code == 502
    assert "Idempotent-Replayed" not in again.headers
    assert pay(shop, alice, order["id"], "retry-me").status_code == 201


def test_a_key_whose_first_use_died_is_taken_over(shop: Shop, alice: Account):
    order = shop.order(alice)
    age_keys(shop, timedelta(0))  # in-process only (skips over HTTP)
    payment_app = shop.payments.transport.client.application.services["payment"]
    body = {"order_id": order["id"], "payment_method": "tok_visa"}
    with payment_app.test_request_context(json=body):
        fingerprint = _fingerprint("pay", {})
    with parts_of(payment_app).database.unit_of_work() as session:  # its process died
        session.add(IdempotencyRecord(userid=alice.id, key="died", fingerprint=fingerprint))
    running = pay(shop, alice, order["id"], "died")
    assert running.json["data"]["error"] == "request_in_progress"
    age_keys(shop, ABANDONED_AFTER + timedelta(seconds=1))
    assert pay(shop, alice, order["id"], "died").status_code == 201


def test_a_key_whose_first_use_charged_then_died_answers_with_its_payment(
    shop: Shop, alice: Account
):
    """The first request charged, and its process died before it could store the answer:
    the retry that takes the key over answers with that payment, not 409."""
    order = shop.order(alice)
    age_keys(shop, timedelta(0))  # in-process only (skips over HTTP)
    first = pay(shop, alice, order["id"], "charged-then-died")
    assert first.status_code == 201
    payment_app = shop.payments.transport.client.application.services["payment"]
    with parts_of(payment_app).database.unit_of_work() as session:  # as if never answered
        session.execute(update(IdempotencyRecord).values(response_status=None, response_body=None))
    age_keys(shop, ABANDONED_AFTER + timedelta(seconds=1))
    retried = pay(shop, alice, order["id"], "charged-then-died")
    assert retried.status_code == 201, retried.json
    assert retried.json["data"] == first.json["data"]
    replayed = pay(shop, alice, order["id"], "charged-then-died")
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json["data"] == first.json["data"]


def test_a_body_that_repeats_a_key_is_not_the_body_that_gives_it_once(shop: Shop, alice: Account):
    order = shop.order(alice)
    headers = {**alice.headers, "Idempotency-Key": "twice", "Content-Type": "application/json"}
    repeated = f'{{"order_id": 22, "order_id": {order["id"]}}}'
    refused = shop.payments.post("/", data=repeated, headers=headers)
    assert refused.status_code == 400
    assert refused.json["data"]["error"] == "invalid_json"
    once = shop.payments.post("/", json={"order_id": order["id"]}, headers=headers)
    assert once.status_code == 422
    assert once.json["data"]["error"] == "idempotency_key_mismatch"


def test_keys_that_differ_only_in_case_are_different_keys(shop: Shop, alice: Account):
    """As on PostgreSQL, also where the database's default collation ignores case (MariaDB)."""
    first, second = shop.order(alice), shop.order(alice)
    assert pay(shop, alice, first["id"], "Order-Key").status_code == 201
    again = pay(shop, alice, second["id"], "order-key")
    assert again.status_code == 201, again.text
    assert "Idempotent-Replayed" not in again.headers
    assert again.json["data"]["order_id"] == second["id"]
