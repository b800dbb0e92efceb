"""Each service's OpenAPI document: valid 3.1, and exactly the routes Flask serves."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from openapi_spec_validator import validate
from sqlalchemy.orm import DeclarativeBase
from support import SERVICES, documents
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from app.kit.errors import Conflict
from app.kit.openapi import PLATFORM_SLUGS, operation
from app.kit.service import init_service
from app.runtime.composition import Application
from app.runtime.documents import UndocumentedRoute, build_document
from app.settings import Settings


@pytest.mark.parametrize("service", SERVICES)
def test_every_document_is_valid_openapi_3_1(application: Application, service: str):
    document = documents(application)[service]
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": f"/{service}"}]


@pytest.mark.parametrize("service", SERVICES)
def test_the_document_has_every_public_route_and_no_other(application: Application, service):
    app = application.services[service]
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith("/internal/"):
            continue
        if rule.rule == "/openapi.json":
            continue
        path = re.sub(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>", r"{\1}", rule.rule)
        served |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {
        (path, method)
        for path, item in documents(application)[service]["paths"].items()
        for method in item
    }
    assert documented == served
    assert not any("internal" in path for path, _ in documented)


def test_both_paths_of_a_route_are_documented(application: Application):
    order, payment = documents(application)["order"], documents(application)["payment"]
    assert {"get", "post"} <= set(order["paths"]["/"])
    assert "post" in order["paths"]["/create"]
    assert "get" in order["paths"]["/query/{order_id}"]
    assert "delete" in order["paths"]["/cancel/{order_id}"]
    assert "post" in payment["paths"]["/pay"]
    assert "post" in payment["paths"]["/refund/{payment_id}"]


def test_errors_carry_the_envelope_and_the_slugs_of_api_md(application: Application):
    pay = documents(application)["payment"]["paths"]["/"]["post"]
    assert set(pay["responses"]) >= {
        "201",
        "400",
        "401",
        "402",
        "403",
        "404",
        "409",
        "413",
        "422",
        "502",
        "503",
    }
    conflict = pay["responses"]["409"]["content"]["application/json"]["schema"]
    assert conflict["properties"]["code"] == {"const": 409}
    assert set(conflict["properties"]["data"]["properties"]["error"]["enum"]) == {
        "order_not_payable",
        "order_already_paid",
        "request_in_progress",
    }
    password = documents(application)["user"]["paths"]["/password"]["post"]
    unauthorized = password["responses"]["401"]["content"]["application/json"]["schema"]
    assert set(unauthorized["properties"]["data"]["properties"]["error"]["enum"]) == {
        "missing_token",
        "invalid_token",
        "token_expired",
        "token_revoked",
        "invalid_credentials",
    }
    assert "invalid_credentials" not in PLATFORM_SLUGS[401]  # the user service's own
    assert pay["security"] == [{"bearer": []}]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in pay["parameters"])
    register = documents(application)["user"]["paths"]["/register"]["post"]
    assert register["security"] == []


def test_request_bodies_come_from_the_validating_models(application: Application):
    order = documents(application)["order"]
    schema = order["components"]["schemas"]["NewOrder"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"product", "price"}
    price_types = {branch["type"] for branch in schema["properties"]["price"]["anyOf"]}
    assert price_types == {"number", "string"}
    listing = order["paths"]["/"]["get"]["parameters"]
    assert {p["name"] for p in listing} == {"status", "limit", "cursor"}


@pytest.mark.parametrize(
    ("service", "path", "parameter", "targets"),
    [
        ("user", "/register", "user_id", {("get", "/{user_id}")}),
        (
            "order",
            "/",
            "order_id",
            {
                ("get", "/{order_id}"),
                ("delete", "/{order_id}"),
                ("get", "/query/{order_id}"),
                ("delete", "/cancel/{order_id}"),
            },
        ),
        (
            "payment",
            "/pay",
            "payment_id",
            {
                ("get", "/{payment_id}"),
                ("get", "/query/{payment_id}"),
                ("post", "/{payment_id}/refund"),
                ("post", "/refund/{payment_id}"),
            },
        ),
    ],
)
def test_what_an_operation_creates_links_to_every_operation_on_it(
    application: Application, service: str, path: str, parameter: str, targets: set
):
    document = documents(application)[service]
    links = document["paths"][path]["post"]["responses"]["201"]["links"]
    ids = {
        operation["operationId"]: (method, item_path)
        for item_path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert {ids[link["operationId"]] for link in links.values()} == targets
    for link in links.values():
        assert link["parameters"] == {parameter: "$response.body#/data/id"}


def test_an_embedded_application_documents_its_real_prefix(application: Application):
    host = DispatcherMiddleware(Flask("host"), {"/api": application})
    client = Client(host)
    assert client.get("/api/order/openapi.json").get_json()["servers"] == [{"url": "/api/order"}]


def test_an_undocumented_route_is_refused(tmp_path, settings: Settings):
    class Base(DeclarativeBase):
        pass

    app = Flask("undocumented")
    init_service(app, settings, name="extra", metadata=Base.metadata)

    @app.get("/secret")
    def secret() -> str:
        return "nobody documented me"

    with pytest.raises(UndocumentedRoute, match="/secret"):
        build_document(app, service="extra", server="/extra", version="0")
    app.extensions["microshop"].database.dispose()


def test_a_link_to_no_route_is_refused(settings: Settings):
    class Base(DeclarativeBase):
        pass

    app = Flask("dangling")
    init_service(app, settings, name="extra", metadata=Base.metadata)

    @app.post("/things")
    @operation(responses={201: None}, auth=False, creates="thing_id")
    def make() -> str:
        return "made"

    with pytest.raises(ValueError, match="thing_id"):
        build_document(app, service="extra", server="/extra", version="0")
    app.extensions["microshop"].database.dispose()


def test_a_teams_own_errors_are_documented_with_their_slugs(settings: Settings):
    """A service of a team's own names its own slugs, and statuses the platform never
    answers: the document says them, and building it does not fail."""

    class ReviewLocked(Conflict):
        slug, message = "review_locked", "the review is locked"

    class Base(DeclarativeBase):
        pass

    app = Flask("reviews")
    init_service(app, settings, name="reviews", metadata=Base.metadata)

    @app.post("/reviews/<id:review_id>/lock")
    @operation(responses={200: None}, errors=(404, ReviewLocked, 418))
    def lock(review_id: int) -> str:
        """Lock a review."""
        return "locked"

    document = build_document(app, service="reviews", server="/reviews", version="0")
    responses = document["paths"]["/reviews/{review_id}/lock"]["post"]["responses"]
    error = "content", "application/json", "schema", "properties", "data", "properties", "error"

    def slug_schema(status: str) -> dict:
        schema = responses[status]
        for key in error:
            schema = schema[key]
        return schema

    assert slug_schema("409") == {"enum": ["review_locked"]}
    assert slug_schema("404") == {"enum": ["not_found"]}
    assert slug_schema("418") == {"type": "string"}
    assert responses["418"]["description"] == "i'm a teapot"
    validate(document)
    app.extensions["microshop"].database.dispose()
