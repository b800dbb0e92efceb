"""OpenAPI 3.1 documents built from the code: routes from Flask, shapes from pydantic.

    document = build_document(app, service="order", server="/order", version=__version__)
    add_document_route(order_app, "order", __version__)   # GET /order/openapi.json

Every route a service registers must carry an ``@operation`` (``app.kit.openapi``; the
builder refuses an undocumented one), and request and response schemas come from the
same pydantic models that validate, so the document cannot drift from the code.
Internal routes (``/internal/...``) are left out: they are not part of the public API.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, request
from pydantic import BaseModel
from werkzeug.routing import Rule

from app.kit.database import MAX_ID
from app.kit.openapi import ATTRIBUTE, Operation

OPENAPI_VERSION = "3.1.0"
_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")


class UndocumentedRoute(Exception):
    """A route without ``@operation``: the document would lie by omission."""


class _Schemas:
    """The components of one document: each model once, under its own name."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: str) -> dict[str, str]:
        schema = model.model_json_schema(
            mode=mode,
            ref_template="#/components/schemas/{model}",  # type: ignore[arg-type]
        )
        self.components.update(schema.pop("$defs", {}))
        self.components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def query_parameters(self, model: type[BaseModel]) -> list[dict[str, Any]]:
        schema = model.model_json_schema(
            mode="validation", ref_template="#/components/schemas/{model}"
        )
        self.components.update(schema.pop("$defs", {}))
        required = set(schema.get("required", ()))
        return [
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": _without_null(prop),
            }
            for name, prop in schema["properties"].items()
        ]


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter is absent, never ``null``: drop the null branch."""
    branches = [branch for branch in schema.get("anyOf", ()) if branch != {"type": "null"}]
    rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    if len(branches) == 1:
        return {**rest, **branches[0]}
    return {**rest, "anyOf": branches} if branches else rest


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", "msg", "data"],
        "properties": {"code": {"const": 0}, "msg": {"type": "string"}, "data": data},
    }


def _error(status: int, slugs: tuple[str, ...]) -> dict[str, Any]:
    """A status no slug is known for (a team's own) is still documented: any slug."""
    slug = {"enum": list(slugs)} if slugs else {"type": "string"}
    try:
        phrase = HTTPStatus(status).phrase.lower()
    except ValueError:
        phrase = f"status {status}"
    return {
        "description": ", ".join(slugs) or phrase,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["code", "msg", "data"],
                    "properties": {
                        "code": {"const": status},
                        "msg": {"type": "string"},
                        "data": {
                            "type": "object",
                            "required": ["error"],
                            "properties": {
                                "error": slug,
                                "fields": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            }
        },
    }


def _path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    parameters = []
    for match in _ARGUMENT.finditer(rule.rule):
        schema: dict[str, Any] = {"type": "string"}
        if match["converter"] == "id":
            schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
        elif match["converter"] == "int":
            schema = {"type": "integer", "minimum": 0}
        parameters.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return _ARGUMENT.sub(lambda match: "{" + match["name"] + "}", rule.rule), parameters


def _operation_object(
    spec: Operation,
    operation_id: str,
    path_parameters: list[dict[str, Any]],
    schemas: _Schemas,
) -> dict[str, Any]:
    parameters = list(path_parameters)
    if spec.query is not None:
        parameters += schemas.query_parameters(spec.query)
    if spec.idempotency_key:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "done at most once per caller and key (kept 24 hours)",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    responses: dict[str, Any] = {}
    for status, model in spec.responses.items():
        data = schemas.ref(model, "serialization") if model else {"type": "object"}
        responses[str(status)] = {
            "description": spec.summary,
            "content": {"application/json": {"schema": _envelope(data)}},
        }
    for status, slugs in sorted(spec.errors.items()):
        responses[str(status)] = _error(status, slugs)
    document: dict[str, Any] = {
        "operationId": operation_id,
        "summary": spec.summary,
        "responses": responses,
    }
    if parameters:
        document["parameters"] = parameters
    if spec.body is not None:
        document["requestBody"] = {
            "required": spec.body_required,
            "content": {"application/json": {"schema": schemas.ref(spec.body, "validation")}},
        }
    document["security"] = [{"bearer": []}] if spec.auth else []
    return document


def _link_created_resources(
    paths: dict[str, dict[str, Any]], created: list[tuple[dict[str, Any], str]]
) -> None:
    """OpenAPI links from each 201 to the operations on what it created (create → read)."""
    for creator, parameter in created:
        links = {
            operation["operationId"]: {
                "operationId": operation["operationId"],
                "parameters": {parameter: "$response.body#/data/id"},
            }
            for item in paths.values()
            for operation in item.values()
            if any(
                p["in"] == "path" and p["name"] == parameter
                for p in operation.get("parameters", ())
            )
        }
        if not links or "201" not in creator["responses"]:
            raise ValueError(f"{creator['operationId']} creates {parameter}: no 201, or no route")
        creator["responses"]["201"]["links"] = links


def build_document(app: Flask, *, service: str, server: str, version: str) -> dict[str, Any]:
    """The service's public API as an OpenAPI 3.1 document; ``server`` is its mount path."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    created: list[tuple[dict[str, Any], str]] = []  # (operation, the path parameter it fills)
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if rule.endpoint == "static" or rule.rule.startswith("/internal/"):
            continue
        if rule.rule == "/openapi.json":  # the document itself
            continue
        view = app.view_functions[rule.endpoint]
        owner = getattr(view, "view_class", None)  # flask-restful: one method per verb
        path, parameters = _path(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            handler = getattr(owner, method.lower()) if owner is not None else view
            spec: Operation | None = getattr(handler, ATTRIBUTE, None)
            if spec is None:
                raise UndocumentedRoute(f"{service}: {method} {rule.rule} has no @operation")
            slug = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
            operation_id = f"{service}_{method.lower()}_{slug}"
            paths.setdefault(path, {})[method.lower()] = _operation_object(
                spec, operation_id, parameters, schemas
            )
            if spec.creates is not None:
                created.append((paths[path][method.lower()], spec.creates))
    _link_created_resources(paths, created)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": f"microshop {service} service", "version": version},
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def add_document_route(app: Flask, service: str, version: str) -> None:
    """``GET /openapi.json`` on a service's app: its document, built from its routes."""

    @app.get("/openapi.json")
    def openapi_document() -> Response:
        """This service's OpenAPI 3.1 document, built from its routes and models."""
        document = build_document(app, service=service, server=request.script_root, version=version)
        return current_app.response_class(
            current_app.json.dumps(document), mimetype="application/json"
        )
