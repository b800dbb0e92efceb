"""What the product imports is what `pip install microshop` installs.

A module imported by app/, a service or wsgi.py but installed only by the test extras
works in CI and fails in `make run`: this test finds such a module without a second
virtual environment."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
from importlib.metadata import packages_distributions, version
from pathlib import Path

from packaging.requirements import Requirement
from support import ROOT

PRODUCT = ["app", "user_service", "order_service", "payment_service", "wsgi.py"]
OWN = {"app", "user_service", "order_service", "payment_service", "wsgi"}
TYPING_ONLY = {"_typeshed"}  # type checkers' stubs, imported under TYPE_CHECKING


def imported_modules() -> set[str]:
    modules: set[str] = set()
    for entry in PRODUCT:
        for path in [ROOT / entry] if entry.endswith(".py") else (ROOT / entry).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    return modules - OWN - TYPING_ONLY - set(sys.stdlib_module_names)


def required_distributions() -> set[str]:
    config = configparser.ConfigParser()
    config.read(Path(ROOT) / "setup.cfg")
    lines = config["options"]["install_requires"].strip().splitlines()
    return {Requirement(line).name.lower().replace("_", "-") for line in lines}


def test_every_module_the_product_imports_is_a_runtime_dependency():
    required = required_distributions()
    providers = packages_distributions()
    missing = {
        module: providers.get(module)
        for module in imported_modules()
        if not {name.lower().replace("_", "-") for name in providers.get(module, [])} & required
    }
    assert missing == {}, f"imported by the product but not in install_requires: {missing}"


def requirement(name: str) -> Requirement:
    config = configparser.ConfigParser()
    config.read(Path(ROOT) / "setup.cfg")
    lines = config["options"]["install_requires"].strip().splitlines()
    [found] = [Requirement(line) for line in lines if Requirement(line).name == name]
    return found


def test_waitress_is_bounded_to_the_releases_whose_internals_serving_uses():
    """app/runtime/serving.py drains through waitress's channels and task dispatcher,
    which are not public API: a new minor release must be tried before it is allowed."""
    waitress = requirement("waitress")
    assert any(spec.operator == "<" for spec in waitress.specifier)
    assert waitress.specifier.contains(version("waitress"))


def test_a_kit_module_loads_nothing_of_the_runtime():
    probe = (
        "import sys, app.kit.money, app.kit.errors, app.kit.validation\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    runtime_only = {"alembic", "httpx", "prometheus_client", "flask_swagger_ui", "waitress"}
    assert loaded & runtime_only == set()
    assert not any(module.startswith("app.runtime") for module in loaded)
