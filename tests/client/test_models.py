"""The client's models are what ``generate_models.py`` makes of the documents the
application serves today: a change to a service's schemas fails here until the models
are generated again."""

from __future__ import annotations

import pytest
from client.generate_models import MODELS, generate
from support import SERVICES, documents

from app.runtime.composition import Application


@pytest.mark.parametrize("service", SERVICES)
def test_the_models_are_generated_from_the_served_document(
    application: Application, backend: str, service: str
):
    if backend != "sqlite":
        pytest.skip("the documents do not depend on the database")
    committed = (MODELS / f"{service}.py").read_text()
    assert generate(service, documents(application)[service]) == committed, (
        "the models drifted: run .venv/bin/python tests/client/generate_models.py"
    )
