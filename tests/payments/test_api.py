"""The payment routes of API.md, status by status and slug by slug.

Each test runs on the composed application in-process (SQLite, PostgreSQL) and through a
real waitress server in production mode (the ``shop`` fixture)."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from support import Account, Reply, Shop, assert_error, assert_fields

PAYMENT_FIELDS = {
    "id",
    "order_id",
    "userid",
    "amount",
    "currency",
    "status",
    "refunded_amount",
    "created_at",
}
REFUND_FIELDS = {"id", "payment_id", "amount", "created_at"}
REFUND_PATHS = ["/{id}/refund", "/refund/{id}"]
REPLAYED = "Idempotent-Replayed"


def money(value: Any) -> Decimal:
    """A JSON amount as the exact decimal it shows."""
    return Decimal(str(value))


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def place(shop: Shop, account: Account, price: Any = "19.99", quantity: int = 1) -> dict:
    return shop.order(account, price, quantity)


def pay(shop: Shop, account: Account, order: dict, **extra: Any) -> dict:
    reply = shop.pay(account, order["id"], **extra)
    assert reply.status_code == 201, reply.text
    return reply.json["data"]


def paid_order(
    shop: Shop, account: Account, price: Any = "19.99", quantity: int = 1
) -> tuple[dict, dict]:
    order = place(shop, account, price, quantity)
    return order, pay(shop, account, order)


def refund(shop: Shop, account: Account, payment: dict, path: str = REFUND_PATHS[0], **kw):
    kw.setdefault("headers", account.headers)
    return shop.payments.post(path.format(id=payment["id"]), **kw)


def payment_now(shop: Shop, account: Account, payment_id: int) -> dict:
    reply = shop.payments.get(f"/{payment_id}", headers=account.headers)
    assert reply.status_code == 200, reply.text
    return reply.json["data"]


def payments_of(shop: Shop, account: Account, **query: Any) -> list[dict]:
    reply = shop.payments.get(
        "/", headers=account.headers, query_string={k: str(v) for k, v in query.items()}
    )
    assert reply.status_code == 200, reply.text
    return reply.json["data"]["items"]


def order_status(shop: Shop, account: Account, order_id: int, expect: str | None = None) -> str:
    """The order's status; waits a moment for ``expect`` (events reach the order service
    right after the payment commits)."""
    deadline = time.monotonic() + 5
    while True:
        reply = shop.orders.get(f"/{order_id}", headers=account.headers)
        assert reply.status_code == 200, reply.text
        status = reply.json["data"]["status"]
        if expect is None or status == expect or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def assert_replay(first: Reply, again: Reply) -> None:
    assert first.headers.get(REPLAYED) != "true"
    assert again.headers.get(REPLAYED) == "true"
    assert again.status_code == first.status_code
    assert again.headers["Content-Type"].startswith("application/json")
    assert again.text == first.text
    assert again.json == first.json


@pytest.fixture
def alice(shop: Shop) -> Account:
    return shop.users.signed_up()


@pytest.fixture
def bob(shop: Shop) -> Account:
    return shop.users.signed_up()


# --- pay ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/pay"])
@pytest.mark.parametrize("method", [None, "tok_visa", "tok_mastercard"])
def test_pay_answers_201_with_a_succeeded_payment(
    shop: Shop, alice: Account, path: str, method: str | None
):
    order = place(shop, alice, "19.99", 3)
    body = {"order_id": order["id"], **({"payment_method": method} if method else {})}
    reply = shop.payments.post(path, json=body, headers=alice.headers)
    assert reply.status_code == 201, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json["code"] == 0
    payment = reply.json["data"]
    assert set(payment) == PAYMENT_FIELDS
    assert isinstance(payment["id"], int)
    assert (payment["order_id"], payment["userid"]) == (order["id"], alice.id)
    assert money(payment["amount"]) == Decimal("59.97") == money(order["amount"])
    assert (payment["currency"], payment["status"]) == ("USD", "succeeded")
    assert money(payment["refunded_amount"]) == 0
    datetime.fromisoformat(payment["created_at"])
    assert payment_now(shop, alice, payment["id"]) == payment


@pytest.mark.parametrize(
    ("price", "quantity", "amount"),
    [("0.1", 3, "0.3"), ("0.29", 100, "29"), ("0.01", 1, "0.01"), ("1000000.00", 1000, "1e9")],
)
def test_the_amount_charged_is_the_orders_amount_exactly(
    shop: Shop, alice: Account, price: str, quantity: int, amount: str
):
    order, payment = paid_order(shop, alice, price, quantity)
    assert money(payment["amount"]) == Decimal(amount) == money(order["amount"])


def test_paying_makes_the_order_paid(shop: Shop, alice: Account):
    order, _ = paid_order(shop, alice)
    assert order_status(shop, alice, order["id"], "paid") == "paid"
    after = shop.orders.get(f"/{order['id']}", headers=alice.headers).json["data"]
    assert money(after["amount"]) == money(order["amount"])


def test_a_declined_card_is_402_recorded_and_the_order_may_be_paid_again(
    shop: Shop, alice: Account
):
    order = place(shop, alice)
    declined = shop.pay(alice, order["id"], payment_method="tok_chargeDeclined")
    assert_error(declined, 402, "card_declined")
    [failed] = payments_of(shop, alice, order_id=order["id"])
    assert set(failed) == PAYMENT_FIELDS
    assert (failed["status"], failed["order_id"], failed["userid"]) == (
        "failed",
        order["id"],
        alice.id,
    )
    assert money(failed["amount"]) == Decimal("19.99")
    assert money(failed["refunded_amount"]) == 0
    assert payment_now(shop, alice, failed["id"]) == failed
    assert order_status(shop, alice, order["id"]) == "pending"

    payment = pay(shop, alice, order, payment_method="tok_visa")
    assert payment["status"] == "succeeded"
    listed = payments_of(shop, alice, order_id=order["id"])
    assert [(p["id"], p["status"]) for p in listed] == [
        (payment["id"], "succeeded"),
        (failed["id"], "failed"),
    ]
    assert order_status(shop, alice, order["id"], "paid") == "paid"


def test_a_provider_error_is_502_and_the_order_stays_payable(shop: Shop, alice: Account):
    order = place(shop, alice)
    reply = shop.pay(alice, order["id"], payment_method="tok_processingError")
    assert_error(reply, 502, "payment_provider_error")
    assert "Traceback" not in reply.text
    assert all(p["status"] != "succeeded" for p in payments_of(shop, alice, order_id=order["id"]))
    assert order_status(shop, alice, order["id"]) == "pending"
    assert pay(shop, alice, order)["status"] == "succeeded"


@pytest.mark.parametrize(
    "method",
    ["tok_nope", "tok_", "visa", "", "tok_visa ", "TOK_VISA", "x" * 65, 123, None, ["tok_visa"]],
)
def test_a_payment_method_we_do_not_take_is_422(shop: Shop, alice: Account, method):
    order = place(shop, alice)
    assert_fields(shop.pay(alice, order["id"], payment_method=method), "payment_method")
    assert payments_of(shop, alice) == []
    assert order_status(shop, alice, order["id"]) == "pending"


@pytest.mark.parametrize("path", ["/", "/pay"])
@pytest.mark.parametrize("order_id", [987654, 2**31 - 1])
def test_paying_a_missing_order_is_404(shop: Shop, alice: Account, path: str, order_id: int):
    reply = shop.payments.post(path, json={"order_id": order_id}, headers=alice.headers)
    assert_error(reply, 404, "not_found")
    assert payments_of(shop, alice) == []


@pytest.mark.parametrize("path", ["/", "/pay"])
def test_paying_another_users_order_is_403(shop: Shop, alice: Account, bob: Account, path: str):
    order = place(shop, alice)
    reply = shop.payments.post(path, json={"order_id": order["id"]}, headers=bob.headers)
    assert_error(reply, 403, "forbidden")
    assert alice.username not in reply.text
    assert payments_of(shop, bob) == payments_of(shop, alice) == []
    assert order_status(shop, alice, order["id"]) == "pending"


@pytest.mark.parametrize("method", ["tok_visa", "tok_mastercard", "tok_chargeDeclined"])
def test_paying_a_paid_order_is_409_order_already_paid(shop: Shop, alice: Account, method: str):
    order, payment = paid_order(shop, alice)
    again = shop.payments.post(
        "/pay", json={"order_id": order["id"], "payment_method": method}, headers=alice.headers
    )
    assert_error(again, 409, "order_already_paid")
    assert [p["id"] for p in payments_of(shop, alice, order_id=order["id"])] == [payment["id"]]
    assert payment_now(shop, alice, payment["id"]) == payment


def test_paying_a_cancelled_order_is_409_order_not_payable(shop: Shop, alice: Account):
    order = place(shop, alice)
    cancelled = shop.orders.delete(f"/{order['id']}", headers=alice.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert_error(shop.pay(alice, order["id"]), 409, "order_not_payable")
    assert payments_of(shop, alice) == []
    assert order_status(shop, alice, order["id"]) == "cancelled"


@pytest.mark.parametrize("how", ["refund", "cancel"])
def test_paying_a_refunded_order_is_409_order_already_paid(shop: Shop, alice: Account, how: str):
    order, payment = paid_order(shop, alice)
    if how == "refund":
        assert refund(shop, alice, payment).status_code == 201
    else:
        assert order_status(shop, alice, order["id"], "paid") == "paid"
        assert shop.orders.delete(f"/{order['id']}", headers=alice.headers).status_code == 200
    assert order_status(shop, alice, order["id"], "refunded") == "refunded"
    assert_error(shop.pay(alice, order["id"]), 409, "order_already_paid")
    assert [p["id"] for p in payments_of(shop, alice)] == [payment["id"]]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 0.01),
        ("amount", "19.99"),
        ("status", "succeeded"),
        ("userid", "self"),
        ("currency", "EUR"),
        ("refunded_amount", 0),
        ("id", 1),
        ("created_at", "2020-01-01"),
        ("paymentmethod", "tok_visa"),
    ],
)
def test_pay_refuses_fields_it_does_not_take(shop: Shop, alice: Account, field: str, value):
    order = place(shop, alice, "19.99")
    value = alice.id if value == "self" else value
    assert_fields(shop.pay(alice, order["id"], **{field: value}), field)
    assert payments_of(shop, alice) == []
    assert order_status(shop, alice, order["id"]) == "pending"


def test_an_order_id_may_be_written_with_a_zero_fraction(shop: Shop, alice: Account):
    """JSON Schema, and so the OpenAPI document, counts 4.0 as the integer 4."""
    order = place(shop, alice)
    body = f'{{"order_id": {order["id"]}.0}}'.encode()
    reply = shop.payments.post(
        "/", data=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert reply.status_code == 201, reply.text
    assert reply.json["data"]["order_id"] == order["id"]


@pytest.mark.parametrize(
    "order_id",
    ["own-as-string", "1", 1.5, True, False, None, 0, -1, 2**31, 10**20, 10**400, [], {}, "abc"],
)
def test_pay_rejects_a_bad_order_id(shop: Shop, alice: Account, order_id):
    order = place(shop, alice)
    value = str(order["id"]) if order_id == "own-as-string" else order_id
    assert_fields(shop.pay(alice, value), "order_id")
    assert payments_of(shop, alice) == []


@pytest.mark.parametrize("path", ["/", "/pay"])
def test_pay_names_every_missing_field(shop: Shop, alice: Account, path: str):
    assert_fields(shop.payments.post(path, json={}, headers=alice.headers), "order_id")


@pytest.mark.parametrize("path", ["/", "/pay"])
@pytest.mark.parametrize(
    "raw", [b"", b"nope", b"[]", b"null", b'"x"', b'{"order_id": NaN}', b'{"order_id": 1,']
)
def test_pay_body_must_be_a_json_object(shop: Shop, alice: Account, path: str, raw: bytes):
    reply = shop.payments.post(
        path, data=raw, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert_error(reply, 400, "invalid_json")


@pytest.mark.parametrize("path", ["/", "/pay"])
def test_pay_refuses_a_repeated_key_naming_it(shop: Shop, alice: Account, path: str):
    """``{"order_id": 22, "order_id": 99999}`` would pay the second order: neither is paid."""
    mine, other = place(shop, alice), place(shop, alice)
    raw = f'{{"order_id": {mine["id"]}, "order_id": {other["id"]}}}'.encode()
    reply = shop.payments.post(
        path, data=raw, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert_error(reply, 400, "invalid_json")
    assert '"order_id"' in reply.json["msg"]
    assert payments_of(shop, alice) == []


@pytest.mark.parametrize("path", ["/?x=1", "/pay?order_id=1"])
def test_pay_refuses_a_query_parameter_naming_it(shop: Shop, alice: Account, path: str):
    order = place(shop, alice)
    reply = shop.payments.post(path, json={"order_id": order["id"]}, headers=alice.headers)
    assert_fields(reply, path.split("?")[1].split("=")[0])
    assert payments_of(shop, alice) == []


@pytest.mark.parametrize("path", ["/", "/pay", "/1/refund", "/refund/1"])
def test_bodies_over_64_kib_get_413(shop: Shop, alice: Account, path: str):
    body = b'{"order_id": 1, "payment_method": "tok_' + b"v" * (65 * 1024) + b'"}'
    reply = shop.payments.post(
        path, data=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert_error(reply, 413, "payload_too_large")


# --- auth and methods --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/", {}),
        ("POST", "/", {}),
        ("POST", "/pay", {}),
        ("POST", "/", key("k-no-token")),
        ("GET", "/1", {}),
        ("GET", "/query/1", {}),
        ("POST", "/1/refund", {}),
        ("POST", "/refund/1", {}),
        ("POST", "/refund/1", key("k-no-token")),
    ],
)
def test_every_route_needs_a_token(shop: Shop, method: str, path: str, headers: dict):
    kwargs = {"json": {"order_id": 1}} if method == "POST" else {}
    reply = shop.payments.transport.request(method, path, headers=headers, **kwargs)
    assert_error(reply, 401, "missing_token")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/pay"),
        ("PUT", "/pay"),
        ("PUT", "/{id}"),
        ("PATCH", "/{id}"),
        ("DELETE", "/{id}"),
        ("POST", "/{id}"),
        ("POST", "/query/{id}"),
        ("GET", "/{id}/refund"),
        ("DELETE", "/{id}/refund"),
        ("GET", "/refund/{id}"),
        ("DELETE", "/"),
        ("PUT", "/"),
    ],
)
def test_wrong_methods_get_405(shop: Shop, alice: Account, method: str, path: str):
    _, payment = paid_order(shop, alice)
    reply = shop.payments.transport.request(
        method, path.format(id=payment["id"]), headers=alice.headers
    )
    assert_error(reply, 405, "method_not_allowed")
    assert payment_now(shop, alice, payment["id"]) == payment


# --- read --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/{id}", "/query/{id}"])
def test_the_payer_reads_a_payment(shop: Shop, alice: Account, path: str):
    _, payment = paid_order(shop, alice)
    reply = shop.payments.get(path.format(id=payment["id"]), headers=alice.headers)
    assert reply.status_code == 200, reply.text
    assert reply.json["code"] == 0
    assert reply.json["data"] == payment


@pytest.mark.parametrize("path", ["/{id}", "/query/{id}"])
def test_no_user_reads_another_users_payment(shop: Shop, alice: Account, bob: Account, path: str):
    for owner, other in ((alice, bob), (bob, alice)):
        _, payment = paid_order(shop, owner)
        reply = shop.payments.get(path.format(id=payment["id"]), headers=other.headers)
        assert_error(reply, 403, "forbidden")
        assert owner.username not in reply.text


@pytest.mark.parametrize("path", ["/{id}", "/query/{id}"])
def test_an_admin_reads_any_payment(shop: Shop, alice: Account, path: str):
    admin = shop.users.admin()
    _, payment = paid_order(shop, alice)
    reply = shop.payments.get(path.format(id=payment["id"]), headers=admin.headers)
    assert reply.status_code == 200, reply.text
    assert reply.json["data"] == payment


@pytest.mark.parametrize(
    "payment_id", ["987654", "2147483647", "2147483648", "99999999999999999999", "0"]
)
@pytest.mark.parametrize("path", ["/{id}", "/query/{id}"])
def test_a_missing_payment_is_404(shop: Shop, alice: Account, path: str, payment_id: str):
    reply = shop.payments.get(path.format(id=payment_id), headers=alice.headers)
    assert_error(reply, 404, "not_found")


@pytest.mark.parametrize("path", ["/abc", "/1.5", "/-1", "/query/abc", "/1/extra"])
def test_paths_that_name_no_payment_are_404(shop: Shop, alice: Account, path: str):
    assert_error(shop.payments.get(path, headers=alice.headers), 404, "not_found")


@pytest.mark.parametrize("path", ["/{id}?x=1", "/query/{id}?x=1"])
def test_reading_a_payment_refuses_a_query_parameter_naming_it(
    shop: Shop, alice: Account, path: str
):
    _, payment = paid_order(shop, alice)
    assert_fields(shop.payments.get(path.format(id=payment["id"]), headers=alice.headers), "x")


def test_reading_a_payment_refuses_a_body(shop: Shop, alice: Account):
    _, payment = paid_order(shop, alice)
    reply = shop.payments.get(f"/{payment['id']}", headers=alice.headers, json={})
    assert assert_fields(reply, "body") == {"body": "this request takes no body"}


# --- list --------------------------------------------------------------------------------


def test_users_list_only_their_own_payments_and_admins_all(
    shop: Shop, alice: Account, bob: Account
):
    mine = [paid_order(shop, alice)[1] for _ in range(2)]
    _, theirs = paid_order(shop, bob)
    reply = shop.payments.get("/", headers=alice.headers)
    assert reply.status_code == 200, reply.text
    assert reply.json["code"] == 0
    assert reply.json["data"] == {"items": mine[::-1], "next_cursor": None}
    assert payments_of(shop, bob) == [theirs]
    admin = shop.users.admin()
    listed = {p["id"]: p for p in payments_of(shop, admin, limit=100)}
    assert all(listed[p["id"]] == p for p in [*mine, theirs])


def test_the_list_filters_by_order(shop: Shop, alice: Account, bob: Account):
    first = place(shop, alice)
    assert shop.pay(alice, first["id"], payment_method="tok_chargeDeclined").status_code == 402
    settled = pay(shop, alice, first)
    _, other = paid_order(shop, alice)
    listed = payments_of(shop, alice, order_id=first["id"])
    assert [(p["id"], p["status"]) for p in listed] == [
        (settled["id"], "succeeded"),
        (listed[1]["id"], "failed"),
    ]
    assert {p["order_id"] for p in listed} == {first["id"]}
    assert payments_of(shop, alice, order_id=other["order_id"]) == [other]
    admin = shop.users.admin()
    assert payments_of(shop, admin, order_id=first["id"]) == listed
    assert payments_of(shop, bob, order_id=first["id"]) == []
    assert payments_of(shop, alice, order_id=987654) == []


def test_pages_visit_12_payments_once_each_newest_first(shop: Shop, alice: Account):
    made = [paid_order(shop, alice)[1]["id"] for _ in range(12)]
    seen, sizes, cursor = [], [], None
    while True:
        query = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        reply = shop.payments.get("/", headers=alice.headers, query_string=query)
        assert reply.status_code == 200, reply.text
        data = reply.json["data"]
        assert set(data) == {"items", "next_cursor"}
        sizes.append(len(data["items"]))
        seen += [item["id"] for item in data["items"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert sizes == [5, 5, 2]
    assert seen == sorted(made, reverse=True)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"cursor": "zzz"}, "cursor"),
        ({"cursor": "djE6YWJj"}, "cursor"),
        ({"cursor": "!!"}, "cursor"),
        ({"cursor": "x" * 500}, "cursor"),
        ({"order_id": "abc"}, "order_id"),
        ({"order_id": "0"}, "order_id"),
        ({"order_id": "-1"}, "order_id"),
        ({"order_id": "1.5"}, "order_id"),
        ({"order_id": ""}, "order_id"),
        ({"order_id": "99999999999999999999"}, "order_id"),
        ({"status": "failed"}, "status"),
        ({"userid": "1"}, "userid"),
        ({"page": "2"}, "page"),
    ],
)
def test_bad_list_queries_get_422(shop: Shop, alice: Account, query: dict, field: str):
    assert_fields(shop.payments.get("/", headers=alice.headers, query_string=query), field)


def test_a_query_parameter_given_twice_is_refused(shop: Shop, alice: Account):
    assert_fields(shop.payments.get("/?limit=1&limit=50", headers=alice.headers), "limit")


# --- refunds -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", REFUND_PATHS)
def test_a_partial_refund_answers_201(shop: Shop, alice: Account, path: str):
    _, payment = paid_order(shop, alice, "19.99")
    reply = refund(shop, alice, payment, path, json={"amount": "0.01"})
    assert reply.status_code == 201, reply.text
    assert reply.json["code"] == 0
    made = reply.json["data"]
    assert set(made) == REFUND_FIELDS
    assert isinstance(made["id"], int)
    assert made["payment_id"] == payment["id"]
    assert money(made["amount"]) == Decimal("0.01")
    datetime.fromisoformat(made["created_at"])
    now = payment_now(shop, alice, payment["id"])
    assert now["status"] == "partially_refunded"
    assert money(now["refunded_amount"]) == Decimal("0.01")
    assert money(now["amount"]) == Decimal("19.99")


@pytest.mark.parametrize(
    ("price", "quantity", "first", "rest"),
    [
        ("19.99", 1, "0.01", "19.98"),
        ("19.99", 1, 0.01, 19.98),
        ("0.30", 1, 0.1, 0.2),
        ("19.99", 3, "19.99", "39.98"),
        ("0.03", 1, "0.01", "0.02"),
        ("1000000.00", 1000, "999999999.99", "0.01"),
    ],
)
def test_refunds_add_up_exactly(shop: Shop, alice: Account, price: str, quantity: int, first, rest):
    order, payment = paid_order(shop, alice, price, quantity)
    total = money(payment["amount"])
    assert money(refund(shop, alice, payment, json={"amount": first}).json["data"]["amount"]) == (
        money(first)
    )
    now = payment_now(shop, alice, payment["id"])
    assert (now["status"], money(now["refunded_amount"])) == ("partially_refunded", money(first))
    second = refund(shop, alice, payment, REFUND_PATHS[1], json={"amount": rest})
    assert second.status_code == 201, second.text
    assert money(second.json["data"]["amount"]) == money(rest)
    now = payment_now(shop, alice, payment["id"])
    assert now["status"] == "refunded"
    assert money(now["refunded_amount"]) == total == money(first) + money(rest)
    assert order_status(shop, alice, order["id"], "refunded") == "refunded"


@pytest.mark.parametrize("path", REFUND_PATHS)
@pytest.mark.parametrize("body", ["none", "empty", "{}"])
def test_a_refund_without_amount_refunds_all_and_the_order_becomes_refunded(
    shop: Shop, alice: Account, path: str, body: str
):
    order, payment = paid_order(shop, alice, "19.99", 3)
    kwargs = {
        "none": {},
        "empty": {"data": b"", "headers": {**alice.headers, "Content-Type": "application/json"}},
        "{}": {"json": {}},
    }[body]
    reply = shop.payments.post(
        path.format(id=payment["id"]), **{"headers": alice.headers, **kwargs}
    )
    assert reply.status_code == 201, reply.text
    assert money(reply.json["data"]["amount"]) == Decimal("59.97")
    now = payment_now(shop, alice, payment["id"])
    assert now["status"] == "refunded"
    assert money(now["refunded_amount"]) == Decimal("59.97")
    assert order_status(shop, alice, order["id"], "refunded") == "refunded"


def test_what_is_left_is_refunded_by_default(shop: Shop, alice: Account):
    _, payment = paid_order(shop, alice, "19.99")
    assert refund(shop, alice, payment, json={"amount": "5.01"}).status_code == 201
    rest = refund(shop, alice, payment)
    assert rest.status_code == 201, rest.text
    assert money(rest.json["data"]["amount"]) == Decimal("14.98")
    assert payment_now(shop, alice, payment["id"])["status"] == "refunded"


def test_a_partial_refund_leaves_the_order_paid(shop: Shop, alice: Account):
    order, payment = paid_order(shop, alice, "19.99")
    assert order_status(shop, alice, order["id"], "paid") == "paid"
    assert refund(shop, alice, payment, json={"amount": "19.98"}).status_code == 201
    time.sleep(0.2)  # an event, were one wrongly sent, has had time to arrive
    assert order_status(shop, alice, order["id"]) == "paid"


@pytest.mark.parametrize(
    ("before", "amount"),
    [(None, "20.00"), (None, 20), ("10", "10"), ("19.98", "0.02"), ("0.01", "19.99"), (None, 1000)],
)
def test_refunding_more_than_is_left_is_409(shop: Shop, alice: Account, before, amount):
    _, payment = paid_order(shop, alice, "19.99")
    if before is not None:
        assert refund(shop, alice, payment, json={"amount": before}).status_code == 201
    expected = payment_now(shop, alice, payment["id"])
    reply = refund(shop, alice, payment, REFUND_PATHS[1], json={"amount": amount})
    assert_error(reply, 409, "refund_exceeds_payment")
    assert payment_now(shop, alice, payment["id"]) == expected


def test_a_fully_refunded_payment_refunds_nothing_more(shop: Shop, alice: Account):
    _, payment = paid_order(shop, alice, "19.99")
    assert refund(shop, alice, payment).status_code == 201
    refunded = payment_now(shop, alice, payment["id"])
    for path in REFUND_PATHS:
        with_amount = refund(shop, alice, payment, path, json={"amount": "0.01"})
        assert_error(with_amount, 409, "refund_exceeds_payment")
        assert_error(refund(shop, alice, payment, path), 409, "payment_not_refundable")
        assert_error(refund(shop, alice, payment, path, json={}), 409, "payment_not_refundable")
    assert payment_now(shop, alice, payment["id"]) == refunded


@pytest.mark.parametrize("body", [None, {}, {"amount": "1.00"}])
def test_a_failed_payment_is_not_refundable(shop: Shop, alice: Account, body):
    order = place(shop, alice)
    assert shop.pay(alice, order["id"], payment_method="tok_chargeDeclined").status_code == 402
    [failed] = payments_of(shop, alice, order_id=order["id"])
    for path in REFUND_PATHS:
        kwargs = {} if body is None else {"json": body}
        assert_error(refund(shop, alice, failed, path, **kwargs), 409, "payment_not_refundable")
    assert payment_now(shop, alice, failed["id"]) == failed


@pytest.mark.parametrize("path", REFUND_PATHS)
@pytest.mark.parametrize("body", [None, {"amount": "1.00"}])
def test_no_user_refunds_another_users_payment(
    shop: Shop, alice: Account, bob: Account, path: str, body
):
    order, payment = paid_order(shop, alice)
    kwargs = {} if body is None else {"json": body}
    reply = refund(shop, bob, payment, path, **kwargs)
    assert_error(reply, 403, "forbidden")
    assert alice.username not in reply.text
    assert payment_now(shop, alice, payment["id"]) == payment
    assert order_status(shop, alice, order["id"]) == "paid"


@pytest.mark.parametrize("path", REFUND_PATHS)
def test_an_admin_may_refund_any_payment(shop: Shop, alice: Account, path: str):
    admin = shop.users.admin()
    _, payment = paid_order(shop, alice, "19.99")
    reply = refund(shop, admin, payment, path, json={"amount": "4.99"})
    assert reply.status_code == 201, reply.text
    assert reply.json["data"]["payment_id"] == payment["id"]
    assert money(reply.json["data"]["amount"]) == Decimal("4.99")
    now = payment_now(shop, alice, payment["id"])
    assert (now["status"], money(now["refunded_amount"])) == ("partially_refunded", Decimal("4.99"))


@pytest.mark.parametrize("path", REFUND_PATHS)
@pytest.mark.parametrize(
    "payment_id", ["987654", "2147483647", "2147483648", "99999999999999999999", "0"]
)
def test_refunding_a_missing_payment_is_404(shop: Shop, alice: Account, path: str, payment_id: str):
    reply = shop.payments.post(path.format(id=payment_id), headers=alice.headers)
    assert_error(reply, 404, "not_found")


@pytest.mark.parametrize(
    "amount",
    [0, -1, 0.001, "abc", True, False, 1e12, "0.00", "-5", "1e3", "", " 1", "1,5", "NaN", [1], {}],
)
def test_refund_rejects_a_bad_amount(shop: Shop, alice: Account, amount):
    _, payment = paid_order(shop, alice)
    for path in REFUND_PATHS:
        assert_fields(refund(shop, alice, payment, path, json={"amount": amount}), "amount")
    assert payment_now(shop, alice, payment["id"]) == payment


@pytest.mark.parametrize(("field", "value"), [("reason", "x"), ("payment_id", 1), ("amt", 1)])
def test_refund_refuses_fields_it_does_not_take(shop: Shop, alice: Account, field: str, value):
    _, payment = paid_order(shop, alice)
    reply = refund(shop, alice, payment, json={"amount": "1.00", field: value})
    assert_fields(reply, field)
    assert payment_now(shop, alice, payment["id"]) == payment


@pytest.mark.parametrize("raw", [b"nope", b"[]", b"null", b"1", b'{"amount": NaN}', b'{"a":'])
def test_refund_body_must_be_a_json_object(shop: Shop, alice: Account, raw: bytes):
    _, payment = paid_order(shop, alice)
    for path in REFUND_PATHS:
        reply = refund(
            shop,
            alice,
            payment,
            path,
            data=raw,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert_error(reply, 400, "invalid_json")
    assert payment_now(shop, alice, payment["id"]) == payment


@pytest.mark.parametrize("raw", [b" ", b"\n", b"\r\n\t ", b'" "', b'""'])
def test_a_refund_body_of_whitespace_refunds_nothing(shop: Shop, alice: Account, raw: bytes):
    """Only a request without a body means "all that is left"; anything else must be an
    object."""
    _, payment = paid_order(shop, alice)
    for path in REFUND_PATHS:
        reply = refund(
            shop,
            alice,
            payment,
            path,
            data=raw,
            headers={**alice.headers, "Content-Type": "application/json"},
        )
        assert_error(reply, 400, "invalid_json")
    assert payment_now(shop, alice, payment["id"]) == payment


def test_a_refund_refuses_a_query_parameter_naming_it(shop: Shop, alice: Account):
    _, payment = paid_order(shop, alice)
    for path in REFUND_PATHS:
        reply = refund(shop, alice, payment, path + "?amount=1.00")
        assert_fields(reply, "amount")
    assert payment_now(shop, alice, payment["id"]) == payment


# --- idempotency -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/pay"])
def test_the_same_key_and_body_pays_once_and_replays(shop: Shop, alice: Account, path: str):
    order = place(shop, alice)
    headers = {**alice.headers, **key("pay-once")}
    first = shop.payments.post(path, json={"order_id": order["id"]}, headers=headers)
    assert first.status_code == 201, first.text
    again = shop.payments.post(path, json={"order_id": order["id"]}, headers=headers)
    assert_replay(first, again)
    assert payments_of(shop, alice, order_id=order["id"]) == [first.json["data"]]
    assert payments_of(shop, alice) == [first.json["data"]]


@pytest.mark.parametrize("change", ["order", "method"])
def test_the_same_key_with_another_body_is_422(shop: Shop, alice: Account, change: str):
    order, other = place(shop, alice), place(shop, alice)
    headers = {**alice.headers, **key("pay-mismatch")}
    first = shop.payments.post("/", json={"order_id": order["id"]}, headers=headers)
    assert first.status_code == 201, first.text
    body = (
        {"order_id": other["id"]}
        if change == "order"
        else {"order_id": order["id"], "payment_method": "tok_mastercard"}
    )
    reply = shop.payments.post("/", json=body, headers=headers)
    assert_error(reply, 422, "idempotency_key_mismatch")
    assert reply.headers.get(REPLAYED) != "true"
    assert payments_of(shop, alice) == [first.json["data"]]
    assert order_status(shop, alice, other["id"]) == "pending"


def test_keys_are_scoped_to_the_caller(shop: Shop, alice: Account, bob: Account):
    hers, his = place(shop, alice), place(shop, bob)
    first = shop.payments.post(
        "/", json={"order_id": hers["id"]}, headers={**alice.headers, **key("shared-key")}
    )
    assert first.status_code == 201, first.text
    # Bob repeats Alice's very request with her key: not her answer, but his own 403.
    copied = shop.payments.post(
        "/", json={"order_id": hers["id"]}, headers={**bob.headers, **key("shared-key")}
    )
    assert_error(copied, 403, "forbidden")
    assert copied.headers.get(REPLAYED) != "true"
    own = shop.payments.post(
        "/", json={"order_id": his["id"]}, headers={**bob.headers, **key("shared-key-2")}
    )
    assert own.status_code == 201, own.text
    again = shop.payments.post(
        "/", json={"order_id": his["id"]}, headers={**alice.headers, **key("shared-key-2")}
    )
    assert_error(again, 403, "forbidden")
    assert payments_of(shop, alice) == [first.json["data"]]
    assert payments_of(shop, bob) == [own.json["data"]]


def test_the_same_key_is_free_for_another_user(shop: Shop, alice: Account, bob: Account):
    hers, his = place(shop, alice), place(shop, bob)
    mine = shop.payments.post(
        "/", json={"order_id": hers["id"]}, headers={**alice.headers, **key("k-1")}
    )
    theirs = shop.payments.post(
        "/", json={"order_id": his["id"]}, headers={**bob.headers, **key("k-1")}
    )
    assert (mine.status_code, theirs.status_code) == (201, 201), theirs.text
    assert theirs.headers.get(REPLAYED) != "true"
    assert (theirs.json["data"]["userid"], theirs.json["data"]["order_id"]) == (bob.id, his["id"])
    assert payments_of(shop, bob) == [theirs.json["data"]]


def test_a_declined_first_use_replays_the_402(shop: Shop, alice: Account):
    order = place(shop, alice)
    headers = {**alice.headers, **key("declined-once")}
    body = {"order_id": order["id"], "payment_method": "tok_chargeDeclined"}
    first = shop.payments.post("/", json=body, headers=headers)
    assert_error(first, 402, "card_declined")
    again = shop.payments.post("/", json=body, headers=headers)
    assert_replay(first, again)
    assert [p["status"] for p in payments_of(shop, alice, order_id=order["id"])] == ["failed"]
    assert order_status(shop, alice, order["id"]) == "pending"


@pytest.mark.parametrize("length", [0, 256, 1000])
def test_a_key_outside_1_to_255_characters_is_422(shop: Shop, alice: Account, length: int):
    order = place(shop, alice)
    headers = {**alice.headers, **key("k" * length)}
    reply = shop.payments.post("/", json={"order_id": order["id"]}, headers=headers)
    assert_error(reply, 422, "validation_error")
    assert payments_of(shop, alice) == []
    assert order_status(shop, alice, order["id"]) == "pending"


def test_a_key_of_255_characters_is_taken(shop: Shop, alice: Account):
    order = place(shop, alice)
    headers = {**alice.headers, **key("k" * 255)}
    first = shop.payments.post("/", json={"order_id": order["id"]}, headers=headers)
    assert first.status_code == 201, first.text
    assert_replay(first, shop.payments.post("/", json={"order_id": order["id"]}, headers=headers))


@pytest.mark.parametrize("path", REFUND_PATHS)
@pytest.mark.parametrize("body", [None, {"amount": "5.00"}])
def test_a_key_on_a_refund_replays_the_refund(shop: Shop, alice: Account, path: str, body):
    _, payment = paid_order(shop, alice, "19.99")
    kwargs = {} if body is None else {"json": body}
    headers = {**alice.headers, **key("refund-once")}
    first = refund(shop, alice, payment, path, headers=headers, **kwargs)
    assert first.status_code == 201, first.text
    again = refund(shop, alice, payment, path, headers=headers, **kwargs)
    assert_replay(first, again)
    expected = Decimal("19.99") if body is None else Decimal("5.00")
    now = payment_now(shop, alice, payment["id"])
    assert money(now["refunded_amount"]) == expected == money(first.json["data"]["amount"])
    assert now["status"] == ("refunded" if body is None else "partially_refunded")


@pytest.mark.parametrize("change", ["amount", "payment"])
def test_a_refund_key_with_another_request_is_422(shop: Shop, alice: Account, change: str):
    _, payment = paid_order(shop, alice, "19.99")
    _, other = paid_order(shop, alice, "19.99")
    headers = {**alice.headers, **key("refund-mismatch")}
    first = refund(shop, alice, payment, headers=headers, json={"amount": "1.00"})
    assert first.status_code == 201, first.text
    target, amount = (payment, "2.00") if change == "amount" else (other, "1.00")
    reply = refund(shop, alice, target, headers=headers, json={"amount": amount})
    assert_error(reply, 422, "idempotency_key_mismatch")
    assert money(payment_now(shop, alice, payment["id"])["refunded_amount"]) == Decimal("1.00")
    assert payment_now(shop, alice, other["id"]) == other


def test_every_bad_field_of_a_pay_is_named_at_once(shop: Shop, alice: Account):
    body = {"order_id": "4", "payment_method": "tok_amex", "amount": 1}
    assert_fields(
        shop.payments.post("/", json=body, headers=alice.headers),
        "order_id",
        "payment_method",
        "amount",
    )
