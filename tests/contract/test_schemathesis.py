"""schemathesis against the three OpenAPI documents: every operation, zero failures.

Each operation gets positive and negative generated cases checked by every check
schemathesis runs by default (no server error, status code, content type and response
schema conformance, valid data accepted and invalid data refused, auth enforced, and the
rest), on SQLite and PostgreSQL. A stateful run over the three documents as one then
follows their links: place an order, then read, cancel or pay it; then read or refund the
payment.

A schema says which requests are well formed, not which credentials are real, so the
test supplies what only a real client holds: a bearer token, the refresh token and the
password of the account, an order of the caller to pay, and a card token the sandbox
issues. A fresh ``Idempotency-Key`` goes with each positive case (a key reused with a
different body is refused, by design), and generated money is rounded to cents (JSON
Schema cannot say "two decimals" of a binary float). Everything else is as generated.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from copy import deepcopy
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode
from support import (
    BACKENDS,
    PASSWORD,
    SERVICES,
    bearer,
    database_urls,
    documents,
    make_settings,
    ready_application,
    unique,
)
from werkzeug.test import Client

from app.kit.service import parts_of
from app.runtime.composition import Application, create_application

EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
SCENARIOS = settings(
    max_examples=60, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck)
)
CARD = "tok_visa"
"""A card the sandbox charges; its other tokens decline or fail on purpose (402, 502)."""


def _documents() -> dict[str, dict[str, Any]]:
    """The documents come from the code alone: no database is opened to serve them."""
    folder = Path(tempfile.gettempdir())
    application = create_application(
        make_settings(folder, dict.fromkeys(SERVICES, "sqlite://")), deliver_events=False
    )
    try:
        return documents(application)
    finally:
        application.dispose()


def _as_one(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The three documents as one, as the composed application serves them on one host,
    with the one link that separate documents cannot hold: a placed order → pay it."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for document in documents.values():
        mount = document["servers"][0]["url"]
        paths |= {mount + path: item for path, item in deepcopy(document["paths"]).items()}
        assert not set(schemas) & set(document["components"]["schemas"])
        schemas |= document["components"]["schemas"]
    for place in (paths["/order/"]["post"], paths["/order/create"]["post"]):
        place["responses"]["201"]["links"]["PayTheOrder"] = {
            "operationId": "payment_post_root",
            "requestBody": {"order_id": "$response.body#/data/id"},
        }
    components = {**documents["user"]["components"], "schemas": schemas}
    return {
        **documents["user"],
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": components,
    }


class ShopUnderTest:
    """The WSGI application the schemas send to (cases and the checks' own probes alike):
    the shop of the backend under test, put in place by the ``customer`` fixture."""

    application: Application | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.application is not None, "only the customer fixture's shop serves"
        return self.application(environ, start_response)


def _schema(document: dict[str, Any]) -> schemathesis.schemas.BaseSchema:
    schema = schemathesis.openapi.from_dict(document)
    schema.app = SHOP_UNDER_TEST
    return schema


SHOP_UNDER_TEST = ShopUnderTest()
DOCUMENTS = _documents()
SCHEMAS = {name: _schema(DOCUMENTS[name]) for name in SERVICES}
SHOP = _schema(_as_one(DOCUMENTS))


class Customer:
    """The account the generated requests act as, and what it knows that no schema can."""

    def __init__(self, application: Application):
        self.application = application
        self.client = Client(application)
        self.sign_up()

    def sign_up(self) -> None:
        self.username = unique()
        self.password = PASSWORD
        reply = self.client.post(
            "/user/register",
            json={
                "username": self.username,
                "password": self.password,
                "email": f"{self.username}@example.com",
            },
        )
        assert reply.status_code == 201, reply.text
        self.access, self.refresh = self.login()

    def start_over(self) -> None:
        """Empty every table, so that a scenario replays the same way while it is shrunk."""
        for service in self.application.services.values():
            database = parts_of(service).database
            with database.engine.begin() as connection:
                for table in reversed(database.metadata.sorted_tables):
                    connection.execute(table.delete())
        self.sign_up()

    def login(self) -> tuple[str, str]:
        reply = self.client.post(
            "/user/login", json={"username": self.username, "password": self.password}
        )
        assert reply.status_code == 200, reply.text
        return reply.json["data"]["access_token"], reply.json["data"]["refresh_token"]

    def new_order(self) -> int:
        reply = self.client.post(
            "/order/", json={"product": "pen", "price": "1.00"}, headers=bearer(self.access)
        )
        assert reply.status_code == 201, reply.text
        return reply.json["data"]["id"]

    def prepare(self, case: Case, *, orders_to_pay: bool = True) -> dict[str, Any]:
        """Real credentials and data for the case; the keyword arguments of its call.

        ``orders_to_pay``: a positive payment pays a fresh order of the caller (in a
        stateful run, the order comes from the link that created it instead)."""
        token = self.access
        operation = case.operation.definition.raw["operationId"]
        if operation == "user_post_refresh":
            token = self.refresh
        elif operation == "user_post_logout":  # revokes the token it is sent with
            token, refresh = self.login()
            if _positive(case) and "refresh_token" in _body(case):
                case.body["refresh_token"] = refresh
        if _positive(case):
            body = _body(case)
            if operation == "user_post_password":
                body["old_password"] = self.password
            for name in ("price", "amount"):
                if isinstance(body.get(name), float):
                    body[name] = float(round(Decimal(body[name]), 2))
            if "order_id" in body and orders_to_pay:
                body["order_id"] = self.new_order()
            if "payment_method" in body:
                body["payment_method"] = CARD
            if "Idempotency-Key" in (case.headers or {}):
                case.headers["Idempotency-Key"] = uuid.uuid4().hex
        if case.operation.schema.is_security_param_negated(case):
            return {"headers": {}}  # as generated: no token
        return {"headers": bearer(token)}

    def after_call(self, case: Case, status: int) -> None:
        operation = case.operation.definition.raw["operationId"]
        if (case.method.upper(), operation, status) == ("POST", "user_post_password", 200):
            self.password = case.body["new_password"]
            self.access, self.refresh = self.login()  # the change retired every older token


def _positive(case: Case) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE


def _body(case: Case) -> dict[str, Any]:
    return case.body if isinstance(case.body, dict) else {}


@pytest.fixture(scope="module", params=BACKENDS)
def customer(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Customer]:
    """One shop per backend for the module; logins and password changes are not rate
    limited here (tested apart)."""
    folder = tmp_path_factory.mktemp("contract")
    settings_ = make_settings(
        folder,
        database_urls(request.param, folder),
        login_rate_limit="1000000 per minute",
        password_rate_limit="1000000 per minute",
    )
    application = ready_application(settings_)
    SHOP_UNDER_TEST.application = application
    yield Customer(application)
    SHOP_UNDER_TEST.application = None
    application.dispose()


def run(case: Case, customer: Customer) -> None:
    kwargs = customer.prepare(case)
    response = case.call(**kwargs)
    customer.after_call(case, response.status_code)
    case.validate_response(response, headers=kwargs["headers"], transport_kwargs=kwargs)


@SCHEMAS["user"].parametrize()
@EXAMPLES
def test_user_service_keeps_its_document(case: Case, customer: Customer):
    run(case, customer)


@SCHEMAS["order"].parametrize()
@EXAMPLES
def test_order_service_keeps_its_document(case: Case, customer: Customer):
    run(case, customer)


@SCHEMAS["payment"].parametrize()
@EXAMPLES
def test_payment_service_keeps_its_document(case: Case, customer: Customer):
    run(case, customer)


def test_following_the_links_keeps_the_documents(customer: Customer):
    """Register → read the user; place an order → read, cancel or pay it; pay → read or
    refund the payment. DELETE /order/{id} cancels and API.md keeps a cancelled order
    readable, so schemathesis's use-after-free check (a deleted resource answers 404)
    does not apply to it."""

    class Scenario(SHOP.as_state_machine()):
        def setup(self) -> None:
            customer.start_over()

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return customer.prepare(case, orders_to_pay=False)

        def after_call(self, response: Any, case: Case) -> None:
            super().after_call(response, case)
            customer.after_call(case, response.status_code)

        def validate_response(self, response: Any, case: Case, **kwargs: Any) -> None:
            """The bearer token is the caller's own, as in ``run``, not a generated one."""
            case.validate_response(
                response,
                headers=kwargs["headers"],
                transport_kwargs=kwargs,
                recorder=self.recorder,
                excluded_checks=[schemathesis.checks.use_after_free],
            )

    Scenario.run(settings=SCENARIOS)
