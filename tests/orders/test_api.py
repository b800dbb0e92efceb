"""The order routes of API.md, status by status and slug by slug.

Each test runs on the composed application in-process (SQLite, PostgreSQL) and through a
real waitress server in production mode (the ``shop`` fixture)."""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal

import pytest
from support import SECRET, Account, Shop, assert_error, assert_fields, bearer, forge

from app.kit.auth import SERVICE_AUDIENCE, issue_service_token

ORDER_FIELDS = {
    "id",
    "userid",
    "product",
    "price",
    "quantity",
    "amount",
    "currency",
    "status",
    "created_at",
    "updated_at",
}


def place(shop: Shop, account: Account, **body) -> dict:
    reply = shop.orders.post(
        "/", json={"product": "pen", "price": 2.5, **body}, headers=account.headers
    )
    assert reply.status_code == 201, reply.text
    return reply.json["data"]


@pytest.fixture
def alice(shop: Shop) -> Account:
    return shop.users.signed_up()


@pytest.fixture
def bob(shop: Shop) -> Account:
    return shop.users.signed_up()


# --- create ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/create"])
def test_create_answers_201_with_a_pending_order(shop: Shop, alice: Account, path: str):
    reply = shop.orders.post(
        path, json={"product": "Fountain pen", "price": 19.99, "quantity": 3}, headers=alice.headers
    )
    assert reply.status_code == 201
    assert reply.json["code"] == 0
    order = reply.json["data"]
    assert set(order) == ORDER_FIELDS
    assert order["userid"] == alice.id
    assert order["product"] == "Fountain pen"
    assert (order["price"], order["quantity"], order["amount"]) == (19.99, 3, 59.97)
    assert (order["currency"], order["status"]) == ("USD", "pending")
    assert datetime.fromisoformat(order["created_at"]) == datetime.fromisoformat(
        order["updated_at"]
    )


def test_a_quantity_may_be_written_with_a_zero_fraction(shop: Shop, alice: Account):
    """JSON Schema, and so the OpenAPI document, counts 3.0 as the integer 3."""
    body = b'{"product": "pen", "price": "1.50", "quantity": 3.0}'
    reply = shop.orders.post(
        "/", data=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert reply.status_code == 201, reply.text
    assert (reply.json["data"]["quantity"], reply.json["data"]["amount"]) == (3, 4.5)


def test_defaults_are_quantity_1_and_usd(shop: Shop, alice: Account):
    order = place(shop, alice)
    assert (order["quantity"], order["currency"], order["amount"]) == (1, "USD", 2.5)


@pytest.mark.parametrize(
    ("price", "quantity", "amount"),
    [
        (0.1, 3, "0.3"),  # 0.30000000000000004 in float arithmetic
        ("0.10", 3, "0.3"),
        (19.99, 7, "139.93"),
        ("1000000.00", 1000, "1000000000"),
        (1000000, 1000, "1000000000"),
        (0.01, 1, "0.01"),
        (1.005e2, 1, "100.5"),
        ("33.33", 3, "99.99"),
    ],
)
def test_amount_is_price_times_quantity_exactly(
    shop: Shop, alice: Account, price, quantity, amount
):
    order = place(shop, alice, price=price, quantity=quantity)
    assert Decimal(str(order["amount"])) == Decimal(amount)
    assert Decimal(str(order["price"])) * quantity == Decimal(amount)


def test_a_raw_json_number_is_read_exactly(shop: Shop, alice: Account):
    """0.29 * 100 is 28.999999999999996 in floats; the body must never become one."""
    body = b'{"product": "pen", "price": 0.29, "quantity": 100}'
    reply = shop.orders.post(
        "/", data=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert reply.status_code == 201
    assert reply.json["data"]["amount"] == 29


@pytest.mark.parametrize("userid", ["self-int", "self-str"])
def test_userid_may_name_the_caller(shop: Shop, alice: Account, userid: str):
    value = alice.id if userid == "self-int" else str(alice.id)
    assert place(shop, alice, userid=value)["userid"] == alice.id


@pytest.mark.parametrize("userid", ["other-int", "other-str", 0, -1, 10**20])
def test_userid_of_someone_else_is_403(shop: Shop, alice: Account, bob: Account, userid):
    value = {"other-int": bob.id, "other-str": str(bob.id)}.get(userid, userid)
    reply = shop.orders.post(
        "/", json={"product": "pen", "price": 1, "userid": value}, headers=alice.headers
    )
    assert_error(reply, 403, "forbidden")
    listing = shop.orders.get("/", headers=bob.headers)
    assert listing.json["data"]["items"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", -1),
        ("price", 0),
        ("price", "abc"),
        ("price", 0.001),
        ("price", 1e12),
        ("price", 1000000.01),
        ("price", True),
        ("price", None),
        ("price", "1e3"),
        ("price", " 1"),
        ("price", "NaN"),
        ("price", "Infinity"),
        ("price", [1]),
        ("price", {"amount": 1}),
        ("price", "-5"),
        ("price", "1,5"),
        ("price", "19.990"),
        ("price", "007"),
        ("price", 10**400),
        ("quantity", 0),
        ("quantity", 1001),
        ("quantity", 1.5),
        ("quantity", 2.5),
        ("quantity", "2"),
        ("quantity", True),
        ("quantity", None),
        ("quantity", -3),
        ("product", ""),
        ("product", "x" * 201),
        ("product", 123),
        ("product", None),
        ("product", "   "),
        ("product", "nul\x00"),
        ("product", {"name": "pen"}),
        ("currency", "usd"),
        ("currency", "US"),
        ("currency", "USDD"),
        ("currency", 1),
        ("currency", "€UR"),
        ("userid", "abc"),
        ("userid", True),
        ("userid", 1.5),
        ("userid", []),
        ("userid", "1.0"),
        ("userid", ""),
    ],
)
def test_create_rejects_bad_field(shop: Shop, alice: Account, field: str, value):
    body = {"product": "pen", "price": 2, field: value}
    assert_fields(shop.orders.post("/create", json=body, headers=alice.headers), field)


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", "paid"), ("amount", 0.01), ("id", 1), ("created_at", "2020-01-01"), ("prce", 1)],
)
def test_create_refuses_fields_it_does_not_take(shop: Shop, alice: Account, field: str, value):
    body = {"product": "pen", "price": 2, field: value}
    assert_fields(shop.orders.post("/", json=body, headers=alice.headers), field)
    assert shop.orders.get("/", headers=alice.headers).json["data"]["items"] == []


def test_create_names_every_missing_field(shop: Shop, alice: Account):
    assert_fields(shop.orders.post("/", json={}, headers=alice.headers), "product", "price")


@pytest.mark.parametrize("raw", [b"", b"nope", b"[]", b'{"price": NaN}', b'{"product": "a",'])
def test_create_body_must_be_a_json_object(shop: Shop, alice: Account, raw: bytes):
    reply = shop.orders.post(
        "/", data=raw, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert_error(reply, 400, "invalid_json")


def test_create_refuses_a_repeated_key_naming_it(shop: Shop, alice: Account):
    """``{"price": 1, "price": 2}`` would make an order at 2: neither value is taken."""
    raw = b'{"product": "pen", "price": 1, "price": 2}'
    reply = shop.orders.post(
        "/", data=raw, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert_error(reply, 400, "invalid_json")
    assert '"price"' in reply.json["msg"]
    assert shop.orders.get("/", headers=alice.headers).json["data"]["items"] == []


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"product": "pen", "price": NaN}', "NaN is not a JSON number"),
        (b'{"product": "pen", "price": Infinity}', "Infinity is not a JSON number"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "nests objects or arrays more than 100 deep"),
    ],
)
def test_invalid_json_says_what_is_wrong(shop: Shop, alice: Account, raw: bytes, words: str):
    reply = shop.orders.post(
        "/", data=raw, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert_error(reply, 400, "invalid_json")
    assert words in reply.json["msg"]
    assert "must be a JSON object" not in reply.json["msg"]


@pytest.mark.parametrize("product", ["   ", "\t\n", "\u3000"])
def test_a_blank_product_is_told_so_in_words(shop: Shop, alice: Account, product: str):
    reply = shop.orders.post("/", json={"product": product, "price": 1}, headers=alice.headers)
    message = assert_fields(reply, "product")["product"]
    assert message == "must be 1 to 200 characters, not all whitespace"


@pytest.mark.parametrize("path", ["/?x=1", "/create?x=1"])
def test_create_refuses_a_query_parameter_naming_it(shop: Shop, alice: Account, path: str):
    reply = shop.orders.post(path, json={"product": "pen", "price": 1}, headers=alice.headers)
    assert_fields(reply, "x")
    assert shop.orders.get("/", headers=alice.headers).json["data"]["items"] == []


def test_create_bodies_over_64_kib_get_413(shop: Shop, alice: Account):
    body = b'{"product": "' + b"p" * (65 * 1024) + b'"}'
    reply = shop.orders.post(
        "/", data=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert_error(reply, 413, "payload_too_large")


# --- auth and methods --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("POST", "/"),
        ("POST", "/create"),
        ("GET", "/1"),
        ("GET", "/query/1"),
        ("DELETE", "/1"),
        ("DELETE", "/cancel/1"),
    ],
)
def test_every_route_needs_a_token(shop: Shop, method: str, path: str):
    assert_error(shop.orders.transport.request(method, path), 401, "missing_token")


def test_a_token_with_a_bad_signature_is_401(shop: Shop, alice: Account):
    reply = shop.orders.get("/", headers=bearer(forge({"sub": str(alice.id)}, key="k" * 40)))
    assert_error(reply, 401, "invalid_token")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/create"),
        ("PUT", "/1"),
        ("POST", "/1"),
        ("PATCH", "/1"),
        ("GET", "/cancel/1"),
        ("POST", "/cancel/1"),
        ("DELETE", "/query/1"),
        ("DELETE", "/"),
        ("PUT", "/"),
    ],
)
def test_wrong_methods_get_405(shop: Shop, alice: Account, method: str, path: str):
    place(shop, alice)
    reply = shop.orders.transport.request(method, path, headers=alice.headers)
    assert_error(reply, 405, "method_not_allowed")


# --- read --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/{id}", "/query/{id}"])
def test_the_owner_reads_an_order(shop: Shop, alice: Account, path: str):
    order = place(shop, alice)
    reply = shop.orders.get(path.format(id=order["id"]), headers=alice.headers)
    assert reply.status_code == 200
    assert reply.json["data"] == order


@pytest.mark.parametrize(
    "order_id", ["987654", "2147483647", "2147483648", "99999999999999999999", "0"]
)
def test_a_missing_order_is_404(shop: Shop, alice: Account, order_id: str):
    assert_error(shop.orders.get(f"/{order_id}", headers=alice.headers), 404, "not_found")
    assert_error(shop.orders.delete(f"/cancel/{order_id}", headers=alice.headers), 404, "not_found")


@pytest.mark.parametrize("path", ["/abc", "/1.5", "/-1", "/query/abc", "/1/extra", "/internal"])
def test_paths_that_name_no_order_are_404(shop: Shop, alice: Account, path: str):
    assert_error(shop.orders.get(path, headers=alice.headers), 404, "not_found")


# --- object-level authorization (BOLA) ---------------------------------------------------

BY_ID_ROUTES = [
    ("GET", "/{id}"),
    ("GET", "/query/{id}"),
    ("DELETE", "/{id}"),
    ("DELETE", "/cancel/{id}"),
]


@pytest.mark.parametrize(("method", "path"), BY_ID_ROUTES)
def test_no_user_reaches_another_users_order(
    shop: Shop, alice: Account, bob: Account, method, path
):
    for owner, other in ((alice, bob), (bob, alice)):
        order = place(shop, owner)
        reply = shop.orders.transport.request(
            method, path.format(id=order["id"]), headers=other.headers
        )
        assert_error(reply, 403, "forbidden")
        assert owner.username not in reply.text
        still = shop.orders.get(f"/{order['id']}", headers=owner.headers).json["data"]
        assert still == order  # nothing changed


@pytest.mark.parametrize(("method", "path"), BY_ID_ROUTES)
def test_an_admin_reaches_every_order(shop: Shop, alice: Account, method, path):
    admin = shop.users.admin()
    order = place(shop, alice)
    reply = shop.orders.transport.request(
        method, path.format(id=order["id"]), headers=admin.headers
    )
    assert reply.status_code == 200
    assert reply.json["data"]["userid"] == alice.id


# --- cancel ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/{id}", "/cancel/{id}"])
def test_cancel_marks_the_order_and_keeps_it(shop: Shop, alice: Account, path: str):
    order = place(shop, alice)
    reply = shop.orders.delete(path.format(id=order["id"]), headers=alice.headers)
    assert reply.status_code == 200
    cancelled = reply.json["data"]
    assert cancelled["status"] == "cancelled"
    assert {k: v for k, v in cancelled.items() if k not in ("status", "updated_at")} == {
        k: v for k, v in order.items() if k not in ("status", "updated_at")
    }
    assert cancelled["updated_at"] >= order["updated_at"]
    kept = shop.orders.get(f"/{order['id']}", headers=alice.headers)
    assert kept.json["data"] == cancelled
    listed = shop.orders.get("/", headers=alice.headers).json["data"]["items"]
    assert [item["id"] for item in listed] == [order["id"]]


def test_cancel_is_idempotent(shop: Shop, alice: Account):
    order = place(shop, alice)
    first = shop.orders.delete(f"/{order['id']}", headers=alice.headers)
    again = shop.orders.delete(f"/cancel/{order['id']}", headers=alice.headers)
    assert again.status_code == 200
    assert again.json["data"] == first.json["data"]


# --- list --------------------------------------------------------------------------------


def test_pages_visit_25_orders_once_each_newest_first(shop: Shop, alice: Account):
    placed = [place(shop, alice, product=f"item {n}")["id"] for n in range(25)]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        reply = shop.orders.get("/", headers=alice.headers, query_string=query)
        assert reply.status_code == 200
        data = reply.json["data"]
        assert set(data) == {"items", "next_cursor"}
        pages += 1
        seen += [item["id"] for item in data["items"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(placed, reverse=True)


def test_the_default_page_is_20(shop: Shop, alice: Account):
    for _ in range(21):
        place(shop, alice)
    data = shop.orders.get("/", headers=alice.headers).json["data"]
    assert len(data["items"]) == 20
    assert data["next_cursor"] is not None


def test_pages_stay_exact_while_orders_arrive(shop: Shop, alice: Account):
    placed = [place(shop, alice)["id"] for _ in range(25)]
    first = shop.orders.get("/", headers=alice.headers, query_string={"limit": "10"}).json["data"]
    newer = [place(shop, alice)["id"] for _ in range(5)]
    rest, cursor = [], first["next_cursor"]
    while cursor:
        page = shop.orders.get(
            "/", headers=alice.headers, query_string={"limit": "10", "cursor": cursor}
        ).json["data"]
        rest += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert [item["id"] for item in first["items"]] + rest == sorted(placed, reverse=True)
    assert not set(newer) & set(rest)


def test_the_list_filters_by_status(shop: Shop, alice: Account):
    kept, cancelled = place(shop, alice), place(shop, alice)
    shop.orders.delete(f"/{cancelled['id']}", headers=alice.headers)
    for status, expected in (
        ("pending", [kept["id"]]),
        ("cancelled", [cancelled["id"]]),
        ("paid", []),
    ):
        data = shop.orders.get("/", headers=alice.headers, query_string={"status": status}).json[
            "data"
        ]
        assert [item["id"] for item in data["items"]] == expected
        assert data["next_cursor"] is None


def test_users_list_only_their_own_orders_and_admins_all(shop: Shop, alice: Account, bob: Account):
    mine, theirs = place(shop, alice), place(shop, bob)
    assert [o["id"] for o in shop.orders.get("/", headers=alice.headers).json["data"]["items"]] == [
        mine["id"]
    ]
    assert [o["id"] for o in shop.orders.get("/", headers=bob.headers).json["data"]["items"]] == [
        theirs["id"]
    ]
    admin = shop.users.admin()
    listed = shop.orders.get("/", headers=admin.headers, query_string={"limit": "100"}).json["data"]
    assert {mine["id"], theirs["id"]} <= {o["id"] for o in listed["items"]}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"status": "shipped"}, "status"),
        ({"status": "PENDING"}, "status"),
        ({"cursor": "zzz"}, "cursor"),
        ({"cursor": "djE6YWJj"}, "cursor"),
        ({"cursor": "!!"}, "cursor"),
        ({"cursor": "x" * 500}, "cursor"),
        ({"userid": "1"}, "userid"),
        ({"page": "2"}, "page"),
    ],
)
def test_bad_list_queries_get_422(shop: Shop, alice: Account, query: dict, field: str):
    assert_fields(shop.orders.get("/", headers=alice.headers, query_string=query), field)


def test_a_query_parameter_given_twice_is_refused(shop: Shop, alice: Account):
    reply = shop.orders.get("/?limit=1&limit=50", headers=alice.headers)
    assert_fields(reply, "limit")


def test_the_list_refuses_a_body(shop: Shop, alice: Account):
    reply = shop.orders.get("/", headers=alice.headers, json={"status": "paid"})
    assert assert_fields(reply, "body") == {"body": "this request takes no body"}


@pytest.mark.parametrize("path", ["/{id}?x=1", "/query/{id}?x=1", "/{id}?status=paid&limit=1"])
def test_reading_an_order_refuses_a_query_parameter_naming_it(
    shop: Shop, alice: Account, path: str
):
    order = place(shop, alice)
    reply = shop.orders.get(path.format(id=order["id"]), headers=alice.headers)
    fields = assert_fields(reply, *(p.split("=")[0] for p in path.split("?")[1].split("&")))
    assert set(fields.values()) == {"is not a field of this request"}


@pytest.mark.parametrize("path", ["/{id}", "/cancel/{id}"])
@pytest.mark.parametrize("body", [{}, {"reason": "changed my mind"}, b"x", b" "])
def test_cancelling_refuses_a_body_and_changes_nothing(shop: Shop, alice: Account, path: str, body):
    """DELETE takes no body: one sent is named, never ignored."""
    order = place(shop, alice)
    kwargs = {"json": body} if isinstance(body, dict) else {"data": body}
    reply = shop.orders.delete(path.format(id=order["id"]), headers=alice.headers, **kwargs)
    assert assert_fields(reply, "body") == {"body": "this request takes no body"}
    again = shop.orders.get(f"/{order['id']}", headers=alice.headers)
    assert again.json["data"]["status"] == "pending"


def test_cancelling_refuses_a_query_parameter(shop: Shop, alice: Account):
    order = place(shop, alice)
    reply = shop.orders.delete(f"/{order['id']}?refund=no", headers=alice.headers)
    assert_fields(reply, "refund")
    again = shop.orders.get(f"/{order['id']}", headers=alice.headers)
    assert again.json["data"]["status"] == "pending"


# --- internal route ----------------------------------------------------------------------


def test_a_service_reads_an_orders_facts(shop: Shop, alice: Account):
    order = place(shop, alice, price="19.99", quantity=2)
    token = issue_service_token(SECRET, "payment")
    reply = shop.orders.get(f"/internal/orders/{order['id']}", headers=bearer(token))
    assert reply.status_code == 200
    assert reply.json["data"] == {
        "id": order["id"],
        "userid": alice.id,
        "amount_minor": 3998,
        "currency": "USD",
        "status": "pending",
    }


@pytest.mark.parametrize("who", ["none", "user", "expired", "wrong key", "wrong audience"])
def test_internal_routes_refuse_all_but_service_tokens(shop: Shop, alice: Account, who: str):
    order = place(shop, alice)
    now = int(time.time())
    service = {
        "sub": "payment",
        "aud": SERVICE_AUDIENCE,
        "type": "service",
        "iat": now,
        "exp": now + 60,
    }
    headers = {
        "none": {},
        "user": alice.headers,
        "expired": bearer(forge({**service, "exp": now - 1})),
        "wrong key": bearer(forge(service, key="k" * 40)),
        "wrong audience": bearer(forge({**service, "aud": "elsewhere"})),
    }[who]
    reply = shop.orders.get(f"/internal/orders/{order['id']}", headers=headers)
    assert reply.status_code == 401
    assert reply.json["data"]["error"] in {"missing_token", "invalid_token", "token_expired"}


def test_a_service_token_opens_no_public_route(shop: Shop):
    token = bearer(issue_service_token(SECRET, "payment"))
    assert_error(shop.orders.get("/", headers=token), 401, "invalid_token")
    assert_error(shop.users.get("/me", headers=token), 401, "invalid_token")


def test_the_internal_route_says_404_for_a_missing_order(shop: Shop):
    token = bearer(issue_service_token(SECRET, "payment"))
    assert_error(shop.orders.get("/internal/orders/424242", headers=token), 404, "not_found")
