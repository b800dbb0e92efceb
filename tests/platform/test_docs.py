"""docs/architecture.md names every module of the platform and the services, and only
modules that exist."""

from __future__ import annotations

import re

from support import ROOT

ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
PACKAGES = ("app", "user_service", "order_service", "payment_service")
NAMED = re.compile(r"`((?:app|user_service|order_service|payment_service)/[\w/]*\w\.py)`")


def shape_files() -> set[str]:
    """The files every service has: the first column of "The shape of a service"."""
    section = ARCHITECTURE.split("## The shape of a service", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([\w.]+\.py)` \|", section, re.MULTILINE))


def modules() -> set[str]:
    """The platform's modules, and each service's own (its migrations are data)."""
    found = {str(path.relative_to(ROOT)) for path in (ROOT / "app").rglob("*.py")}
    for service in PACKAGES[1:]:
        found |= {f"{service}/{path.name}" for path in (ROOT / service).glob("*.py")}
    return found


def test_every_module_named_exists():
    missing = {name for name in NAMED.findall(ARCHITECTURE) if not (ROOT / name).is_file()}
    assert missing == set()


def test_every_module_is_named():
    named = set(NAMED.findall(ARCHITECTURE))
    shape = shape_files()
    assert {"__init__.py", "models.py", "service.py", "events.py", "errors.py"} <= shape

    def documented(module: str) -> bool:
        package, name = module.split("/", 1)
        return module in named or (package != "app" and name in shape)

    assert {module for module in modules() if not documented(module)} == set()


def test_every_service_has_every_file_of_the_shape():
    for service in PACKAGES[1:]:
        assert {path.name for path in (ROOT / service).glob("*.py")} >= shape_files(), service
