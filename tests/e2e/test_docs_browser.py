"""GET /docs: Swagger UI for the three services, from the installed package (no CDN),
checked in-process and then in a real headless Chromium against a real server, on SQLite
only: the page and ``/healthz`` reach no database."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect, sync_playwright
from support import SERVICES, Server
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from app.runtime.composition import Application

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, which `make test` installs
CHROMIUM_FLAGS = [
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # else it calls Google's hosts, and this network refuses
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000  # two shared cores: rendering a document can take a few seconds
_LINKS = re.compile(r"""(?:src|href)="([^"]*)\"""")
_URLS = re.compile(r"urls: (\[.*?\]),\n")


def fetch(client: Client, path: str) -> tuple[int, str, bytes]:
    """Status, media type and body; the response is closed (a static file is streamed)."""
    response = client.get(path)
    try:
        return response.status_code, response.mimetype, response.get_data()
    finally:
        response.close()


def page_of(client: Client, path: str = "/docs") -> str:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def configured_urls(page: str) -> list[dict[str, str]]:
    match = _URLS.search(page)
    assert match, page
    return json.loads(match[1])


def test_docs_is_swagger_ui_served_by_the_app_itself(client: Client):
    page = page_of(client)
    assert "SwaggerUIBundle(" in page
    assert '"StandaloneLayout"' in page  # the top bar, whose selector switches documents
    assert not re.search(r"https?:|//[\w.-]+\.\w", page), "nothing from outside the app"
    links = _LINKS.findall(page)
    assert "/docs/swagger-ui-bundle.js" in links
    assert "/docs/swagger-ui-standalone-preset.js" in links
    assert "/docs/swagger-ui.css" in links
    for link in links:
        assert link.startswith("/docs/"), link
        status, _, body = fetch(client, link)
        assert status == 200, link
        assert body, link
    assert fetch(client, "/docs/swagger-ui-bundle.js")[1] == "text/javascript"
    assert fetch(client, "/docs/swagger-ui.css")[1] == "text/css"


def test_docs_lists_every_service_document(client: Client):
    urls = configured_urls(page_of(client))
    assert urls == [{"name": name, "url": f"/{name}/openapi.json"} for name in SERVICES]
    for entry in urls:
        document = client.get(entry["url"])
        assert document.status_code == 200
        assert document.json["openapi"].startswith("3.1")


def test_docs_works_embedded_under_a_prefix(application: Application):
    host = DispatcherMiddleware(Flask("host"), {"/api": application})
    client = Client(host)
    page = page_of(client, "/api/docs")
    assert configured_urls(page) == [
        {"name": name, "url": f"/api/{name}/openapi.json"} for name in SERVICES
    ]
    links = _LINKS.findall(page)
    assert "/api/docs/swagger-ui-bundle.js" in links
    for link in links:
        assert fetch(client, link)[0] == 200, link
    assert client.get("/api/user/openapi.json").json["servers"] == [{"url": "/api/user"}]


def test_an_unknown_asset_is_the_json_404(client: Client):
    for path in [
        "/docs/nothing.js",
        "/docs/index.html",  # the package's own page
        "/docs/oauth2-redirect.html",
        "/docs/../setup.cfg",
        "/docs/%2e%2e/%2e%2e/setup.cfg",
        "/docs/dist/swagger-ui.css",
        "/docs/swagger-ui.css/",
    ]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "application/json", path
        assert response.json["data"]["error"] == "not_found", path


@pytest.fixture
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def show(page: Page, service: str) -> None:
    """Pick a service's document in the top-bar selector and wait for it to render."""
    page.get_by_label("Select a definition").select_option(label=service)
    expect(page.locator(".info .title")).to_contain_text(f"microshop {service} service")


def operation(page: Page, method: str, path: str):
    return page.locator(f".opblock-{method.lower()}").filter(
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]')
    )


@pytest.mark.e2e
def test_swagger_ui_in_a_real_browser(chromium_path: Path, tmp_path: Path):
    """Open /docs in headless Chromium: each service's operations are listed, and
    'Try it out' on GET /healthz gets a 200 from the server."""
    server = Server.start(tmp_path)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS
            )
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                expect.set_options(timeout=TIMEOUT_MS)
                requested: list[str] = []
                errors: list[str] = []
                page.on("request", lambda request: requested.append(request.url))
                page.on("pageerror", lambda error: errors.append(str(error)))

                page.goto(f"{server.url}/docs")
                for service, method, path in [
                    ("order", "POST", "/create"),
                    ("payment", "POST", "/pay"),
                    ("user", "POST", "/register"),
                ]:
                    show(page, service)
                    expect(operation(page, method, path)).to_be_visible()
                    expect(operation(page, "GET", "/healthz")).to_be_visible()
                expect(operation(page, "POST", "/login")).to_be_visible()

                healthz = operation(page, "GET", "/healthz")
                healthz.locator(".opblock-summary").click()
                healthz.get_by_role("button", name="Try it out").click()
                healthz.get_by_role("button", name="Execute").click()
                status = healthz.locator(".live-responses-table .response .response-col_status")
                expect(status).to_have_text("200")
                body = healthz.locator(".live-responses-table .response .response-col_description")
                expect(body).to_contain_text('"status": "alive"')

                assert f"{server.url}/user/healthz" in requested
                outside = [url for url in requested if not url.startswith(f"{server.url}/")]
                assert not outside, f"the page reached outside the app: {outside}"
                assert not errors, errors
            finally:
                browser.close()
    finally:
        server.stop()
