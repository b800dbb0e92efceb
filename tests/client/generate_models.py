"""The client's models, generated from the services' OpenAPI documents.

    .venv/bin/python tests/client/generate_models.py      # rewrite microshop_client/models/

The documents come from the code (``app.runtime.documents``), so the models the client
validates with are the schemas the services validate with, never copied by hand.
``test_models.py`` regenerates them and fails when the committed files differ.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "microshop_client" / "models"
BIN = Path(sys.executable).parent
HEADER = (
    '"""The {service} service\'s models, generated from its OpenAPI document by\n'
    'tests/client/generate_models.py: do not edit."""\n'
    "# ruff: noqa\n"
)
OPTIONS = (
    "--input-file-type=openapi",
    "--output-model-type=pydantic_v2.BaseModel",
    "--target-python-version=3.11",
    "--disable-timestamp",
    "--use-annotated",
    "--field-constraints",
    "--use-double-quotes",
    "--use-standard-collections",
    "--use-union-operator",
    "--enum-field-as-literal=all",
    "--use-field-description",
    "--collapse-root-models",
    "--formatters",
    "ruff-format",
    "ruff-check",
)


def generate(service: str, document: dict[str, Any]) -> str:
    """The model module of one service's document, as ``datamodel-codegen`` writes it."""
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder, f"{service}.openapi.json"), Path(folder, f"{service}.py")
        source.write_text(json.dumps(document, indent=2, sort_keys=True))
        subprocess.run(
            [BIN / "datamodel-codegen", f"--input={source}", f"--output={target}", *OPTIONS],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        header = HEADER.format(service=service)
        body = target.read_text().split("\n", 2)[2]  # without the tool's own two-line header
    formatted = subprocess.run(  # as the project formats: its line length, its rules
        [BIN / "ruff", "format", f"--stdin-filename={MODELS / f'{service}.py'}", "-"],
        input=header + body,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return formatted.stdout


def documents() -> dict[str, dict[str, Any]]:
    """Each service's document, built from its routes as ``microshop openapi`` does."""
    from support import make_settings

    from app import __version__
    from app.runtime.documents import build_document
    from order_service import create_app as order_app
    from payment_service import create_app as payment_app
    from user_service import create_app as user_app

    factories = {"user": user_app, "order": order_app, "payment": payment_app}
    with tempfile.TemporaryDirectory() as folder:
        settings = make_settings(Path(folder), {})
        built = {}
        for name, factory in factories.items():
            app = factory(settings)
            built[name] = build_document(app, service=name, server=f"/{name}", version=__version__)
            app.extensions["microshop"].database.dispose()
        return built


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    for name, document in documents().items():
        (MODELS / f"{name}.py").write_text(generate(name, document))
        print(f"{name}: {MODELS / f'{name}.py'}")
