"""``Client`` in-process (httpx's WSGI transport, no socket) on each database: the
scenarios, the typed errors, the tokens, the retries and an embedded shop's prefix."""

from __future__ import annotations

import httpx
import pydantic
import pytest
from client.scenarios import sign_up, walk
from flask import Flask
from support import SECRET, access_claims, database_urls, forge, make_settings, ready_application
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from app.runtime.composition import Application
from microshop_client import (
    Client,
    Conflict,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UnexpectedResponse,
    Unreachable,
    ValidationFailed,
)


def test_the_scenarios_run_in_process(application: Application):
    with Client(app=application) as shop, Client(app=application) as other:
        walk(shop, other)


def test_an_embedded_shop_is_reached_under_its_prefix(application: Application):
    host = DispatcherMiddleware(Flask("host"), {"/shop": application})
    with Client(app=host, prefix="/shop") as shop, Client(app=host, prefix="/shop") as other:
        walk(shop, other)
        assert shop.index()["services"]["order"] == "/shop/order"
        assert shop.openapi("order")["servers"] == [{"url": "/shop/order"}]


def test_an_error_carries_its_status_slug_fields_and_request_id(application: Application):
    with Client(app=application, headers={"X-Request-ID": "trace-me-42"}) as shop:
        name = sign_up(shop)
        with pytest.raises(Conflict) as taken:
            shop.register(name.upper(), "long enough", "another@example.com")
        assert (taken.value.status, taken.value.slug) == (409, "username_taken")
        assert taken.value.fields == {}
        order = shop.place_order("pen", "1.00")
        with pytest.raises(ValidationFailed) as refused:
            shop.pay(order.id, "tok_unknown")
        error = refused.value
        assert (error.status, error.slug) == (422, "validation_error")
        assert set(error.fields) == {"payment_method"}
        assert error.request_id == "trace-me-42"
        with pytest.raises(NotFound) as missing:
            shop.order(2_000_000)
        assert missing.value.slug == "not_found"
        assert missing.value.message


def test_a_bad_argument_is_refused_before_anything_is_sent(application: Application):
    """The generated models say what the server takes, so the client checks first."""
    sent: list[httpx.Request] = []
    with Client(app=application) as shop:
        shop.http.event_hooks["request"].append(sent.append)
        with pytest.raises(pydantic.ValidationError, match="price"):
            shop.place_order("pen", price="0.001")
        with pytest.raises(pydantic.ValidationError, match="username"):
            shop.register("x", "long enough", "nobody@example.com")
    assert sent == []


def test_pay_and_refund_send_an_idempotency_key_and_a_given_one_replays(
    application: Application,
):
    sent: list[httpx.Request] = []
    with Client(app=application) as shop:
        shop.http.event_hooks["request"].append(sent.append)
        sign_up(shop)
        first, second = shop.place_order("pen", "2.00"), shop.place_order("pen", "3.00")
        payment = shop.pay(first.id)
        shop.refund(payment.id, "1.00")
        keys = [r.headers.get("Idempotency-Key") for r in sent if r.method == "POST"]
        assert None not in keys[-2:]  # pay, then refund: a key each
        assert keys[-2] != keys[-1]
        once = shop.pay(second.id, idempotency_key="pay-second-order")
        replayed = shop.pay(second.id, idempotency_key="pay-second-order")
        assert replayed == once
        assert len(shop.payments(order_id=second.id).items) == 1


def test_an_expired_access_token_is_renewed_and_the_call_made_again(application: Application):
    with Client(app=application) as shop:
        sign_up(shop)
        me = shop.me()
        assert shop.tokens is not None
        stale = forge(access_claims(me.id, exp=1, iat=0, nbf=0), key=SECRET)
        shop.tokens = type(shop.tokens)(stale, shop.tokens.refresh_token)
        assert shop.me().id == me.id  # 401 token_expired → refresh → asked again
        assert shop.tokens.access_token != stale


def test_a_token_about_to_expire_is_renewed_before_the_call(backend: str, tmp_path):
    settings = make_settings(tmp_path, database_urls(backend, tmp_path), access_token_ttl=2)
    application = ready_application(settings)
    sent: list[str] = []
    try:
        with Client(app=application) as shop:
            shop.http.event_hooks["request"].append(lambda r: sent.append(r.url.path))
            sign_up(shop)
            assert shop.tokens is not None
            first = shop.tokens.access_token
            shop.tokens = type(shop.tokens)(first, shop.tokens.refresh_token, expires_at=0)
            shop.me()
            assert sent[-2:] == ["/user/refresh", "/user/me"]  # renewed first, no 401
            assert shop.tokens.access_token != first
    finally:
        application.dispose()


def test_without_a_refresh_token_an_expired_one_is_an_error(application: Application):
    with Client(app=application) as shop:
        sign_up(shop)
        me = shop.me()
        shop.tokens = type(shop.tokens)(forge(access_claims(me.id, exp=1, iat=0, nbf=0)))
        with pytest.raises(Unauthorized) as expired:
            shop.me()
        assert expired.value.slug == "token_expired"


class Flaky:
    """A WSGI app that answers 503 to the first ``failures`` calls, then the real one."""

    def __init__(self, app, failures: int) -> None:
        self.app, self.failures, self.calls = app, failures, []

    def __call__(self, environ, start_response):
        self.calls.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        if len(self.calls) <= self.failures:
            start_response("503 SERVICE UNAVAILABLE", [("Content-Type", "application/json")])
            return [b'{"code": 503, "msg": "down", "data": {"error": "service_unavailable"}}']
        return self.app(environ, start_response)


def test_a_read_is_asked_again_after_a_503_and_a_place_order_is_not(application: Application):
    flaky = Flaky(application, failures=2)
    with Client(app=flaky) as shop:
        assert shop.health("order")["status"] == "alive"
        assert len(flaky.calls) == 3
        flaky.calls.clear()
        flaky.failures = 1
        with pytest.raises(ServiceUnavailable):
            shop.register("nobody", "long enough", "nobody@example.com")
        assert len(flaky.calls) == 1


def test_a_pay_is_asked_again_with_the_same_key(application: Application):
    with Client(app=application) as setup:
        sign_up(setup)
        order = setup.place_order("pen", "4.00")
        tokens = setup.tokens
    flaky = Flaky(application, failures=1)
    keys: list[str] = []
    with Client(app=flaky) as shop:
        shop.tokens = tokens
        shop.http.event_hooks["request"].append(lambda r: keys.append(r.headers["Idempotency-Key"]))
        assert shop.pay(order.id).status == "succeeded"
    assert len(keys) == 2
    assert keys[0] == keys[1]


def test_no_server_is_unreachable_after_the_retries():
    with Client("http://127.0.0.1:9", timeout=1) as shop, pytest.raises(Unreachable):
        shop.health()


def test_an_answer_that_is_not_the_envelope_is_unexpected():
    def html(environ, start_response):
        start_response("502 BAD GATEWAY", [("Content-Type", "text/html")])
        return [b"<html>bad gateway</html>"]

    with Client(app=html) as shop, pytest.raises(UnexpectedResponse) as error:
        shop.me()
    assert error.value.status == 502
