"""What the product imports is what `pip install microshop` installs.

A module imported by app/, a service or wsgi.py but installed only by the test extras
works in CI and fails in `make run`: this test finds such a module without a second
virtual environment."""

from __future__ import annotations

import ast
import configparser
import sys
from importlib.metadata import packages_distributions
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
