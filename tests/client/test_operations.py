"""Every client method calls an operation of the OpenAPI documents, and every public
operation of the documents has a client method: the client cannot fall behind the API."""

from __future__ import annotations

import inspect

import pytest
from client.scenarios import walk
from support import PASSWORD, SERVICES, documents

from app.runtime.composition import Application
from microshop_client import AsyncClient, Client
from microshop_client.routes import ROUTES, Route

LIFECYCLE = {"close", "aclose"}
PLATFORM = {"/", "/healthz", "/readyz", "/metrics"}
"""API.md's platform routes outside the services: in no service's document."""


def public_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name not in LIFECYCLE
    }


def documented(route: Route, path: str) -> set[tuple[str, str, str]]:
    """(service, method, path in its document) of a route's path, for each service that
    ``{service}`` stands for; nothing for a platform route."""
    services = SERVICES if path.startswith("/{service}") else (path.split("/")[1],)
    found = set()
    for service in services:
        full = path.replace("{service}", service)
        local = full.removeprefix(f"/{service}") or "/"
        if full in PLATFORM or local == "/openapi.json":  # the document is not in itself
            continue
        found.add((service, route.method.lower(), local))
    return found


@pytest.fixture
def operations(application: Application) -> set[tuple[str, str, str]]:
    return {
        (service, method, path)
        for service, document in documents(application).items()
        for path, item in document["paths"].items()
        for method in item
    }


@pytest.mark.parametrize("client", [Client, AsyncClient])
def test_every_method_is_an_operation_and_every_operation_a_method(client, operations):
    assert public_methods(client) == set(ROUTES)
    covered = set()
    for name, route in ROUTES.items():
        paths = documented(route, route.path)
        assert paths <= operations, name
        covered |= paths
        for legacy in route.legacy:
            assert documented(route, legacy) <= operations, (name, legacy)
            covered |= documented(route, legacy)
    assert covered == operations


def test_sync_and_async_methods_take_the_same_arguments():
    for name in ROUTES:
        sync, coroutine = getattr(Client, name), getattr(AsyncClient, name)
        assert inspect.iscoroutinefunction(coroutine), name
        assert inspect.signature(sync) == inspect.signature(coroutine), name


def test_the_methods_call_the_paths_of_their_routes(application: Application):
    """Recorded on the wire, not only declared: every route called, and nothing else."""
    seen: set[tuple[str, str]] = set()
    with Client(app=application) as shop, Client(app=application) as other:
        shop.http.event_hooks["request"].append(lambda r: seen.add((r.method, r.url.path)))
        walk(shop, other)
        for service in (None, *SERVICES):
            shop.health(service)
            shop.readiness(service)
        shop.index(), shop.metrics(), shop.openapi("user")
        shop.login(other.me().username, PASSWORD)
        shop.change_password(PASSWORD, PASSWORD + "!")
    called = {
        name
        for name, route in ROUTES.items()
        for method, path in seen
        if method == route.method and matches(path, route.path)
    }
    assert called == set(ROUTES)
    for method, path in seen:
        assert any(
            route.method == method and matches(path, route.path) for route in ROUTES.values()
        ), (method, path)


def matches(path: str, template: str) -> bool:
    parts, wanted = path.strip("/").split("/"), template.strip("/").split("/")
    if template.startswith("/{service}") and len(parts) == len(wanted) - 1:
        wanted = wanted[1:]  # the process's own /healthz
    return len(parts) == len(wanted) and all(
        w.startswith("{") or p == w for p, w in zip(parts, wanted, strict=True)
    )
