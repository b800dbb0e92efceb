"""``GET /docs``: Swagger UI for the mounted services' OpenAPI documents.

    register_docs(root, ["user", "order", "payment"])   # /docs and /docs/<asset>

The page is the one HTML page of the API. Its scripts and styles are Swagger UI 5's
(the first to read OpenAPI 3.1), from the ``dist`` folder of the installed
``flask-swagger-ui`` package, served by the root app under ``/docs/<asset>``, so the
page works with no internet (no CDN). ``swagger-ui-bundle`` would not do: its newest
release carries Swagger UI 4.15, which refuses a 3.1 document. A selector in the top
bar switches between the services' documents, each at ``<prefix>/<name>/openapi.json``
(``request.script_root`` is the prefix, so the page also works embedded under ``/api``).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

from flask import Flask, Response, render_template_string, request, send_from_directory, url_for

from app.kit.errors import NotFound

ASSET_DIRECTORY = Path(str(files("flask_swagger_ui") / "dist"))
PAGE_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")
ASSETS = frozenset([*PAGE_ASSETS, "favicon-16x16.png", "favicon-32x32.png"])
"""What ``/docs/<asset>`` serves; the package's other files are not part of microshop."""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>microshop API</title>
<link rel="stylesheet" href="{{ asset('swagger-ui.css') }}">
<link rel="icon" type="image/png" href="{{ asset('favicon-32x32.png') }}" sizes="32x32">
<link rel="icon" type="image/png" href="{{ asset('favicon-16x16.png') }}" sizes="16x16">
<style>html { box-sizing: border-box; overflow-y: scroll; } body { margin: 0; }</style>
</head>
<body>
<div id="swagger-ui"></div>
<script src="{{ asset('swagger-ui-bundle.js') }}"></script>
<script src="{{ asset('swagger-ui-standalone-preset.js') }}"></script>
<script>
window.ui = SwaggerUIBundle({
  urls: {{ urls|tojson }},
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout",
  validatorUrl: null
});
</script>
</body>
</html>
"""


def register_docs(root: Flask, services: Iterable[str]) -> None:
    """``/docs`` on ``root`` for these services, each of which serves ``/openapi.json``."""
    names = tuple(services)

    @root.get("/docs")
    def docs() -> str:
        """Swagger UI: the one HTML page; every other response is JSON."""
        prefix = request.script_root
        urls = [{"name": name, "url": f"{prefix}/{name}/openapi.json"} for name in names]
        return render_template_string(PAGE, urls=urls, asset=_asset_url)

    @root.get("/docs/<path:filename>")
    def docs_asset(filename: str) -> Response:
        if filename not in ASSETS:
            raise NotFound("asset")
        return send_from_directory(ASSET_DIRECTORY, filename)


def _asset_url(filename: str) -> str:
    return url_for("docs_asset", filename=filename)
