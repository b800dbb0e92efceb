"""The ``microshop`` console script: platform commands and the ones services offer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from openapi_spec_validator import validate
from sqlalchemy import create_engine, inspect, select
from support import SECRET

from app.kit.database import Database
from app.runtime.cli import main
from user_service.models import Base, User


@pytest.fixture
def run(tmp_path: Path):
    environment = {
        "MICROSHOP_ENV": "production",
        "MICROSHOP_JWT_SECRET": SECRET,
        "MICROSHOP_INSTANCE_DIR": str(tmp_path),
        "MICROSHOP_ADMIN_PASSWORD": None,
    }

    def run(*args: str, input: str | None = None, **env: str):
        return CliRunner().invoke(main, list(args), env={**environment, **env}, input=input)

    return run


def users_in(tmp_path: Path) -> list[User]:
    database = Database.connect(f"sqlite:///{tmp_path / 'user.db'}", Base.metadata)
    try:
        with database.unit_of_work() as session:
            return list(session.scalars(select(User)))
    finally:
        database.dispose()


def test_help_lists_platform_and_service_commands(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("serve", "init-db", "create-admin"):
        assert command in result.output


def test_init_db_creates_every_service_schema_and_is_repeatable(run, tmp_path: Path):
    for _ in range(2):
        result = run("init-db")
        assert result.exit_code == 0, result.output
    assert "user: schema ready" in result.output
    engine = create_engine(f"sqlite:///{tmp_path / 'user.db'}")
    assert {"users", "denied_tokens"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_create_admin_takes_the_password_from_the_environment(run, tmp_path: Path):
    run("init-db")
    result = run(
        "create-admin",
        "root",
        "--email",
        "root@example.com",
        MICROSHOP_ADMIN_PASSWORD="admin-password-1",
    )
    assert result.exit_code == 0, result.output
    assert "created admin root" in result.output
    [user] = users_in(tmp_path)
    assert (user.username, user.role) == ("root", "admin")
    assert "admin-password-1" not in user.password_hash


def test_create_admin_prompts_for_a_password(run, tmp_path: Path):
    run("init-db")
    result = run(
        "create-admin",
        "root",
        "--email",
        "root@example.com",
        input="admin-password-1\nadmin-password-1\n",
    )
    assert result.exit_code == 0, result.output
    assert "admin-password-1" not in result.output
    assert [user.role for user in users_in(tmp_path)] == ["admin"]


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["root", "--email", "not-an-email"], "admin-password-1", "email"),
        (["r", "--email", "r@example.com"], "admin-password-1", "username"),
        (["root", "--email", "root@example.com"], "short", "password"),
    ],
)
def test_create_admin_refuses_bad_input(run, tmp_path: Path, args, password, message):
    run("init-db")
    result = run("create-admin", *args, MICROSHOP_ADMIN_PASSWORD=password)
    assert result.exit_code == 1
    assert message in result.output
    assert users_in(tmp_path) == []


def test_create_admin_refuses_a_taken_username(run):
    run("init-db")
    run("create-admin", "root", "--email", "a@example.com", MICROSHOP_ADMIN_PASSWORD="pw-1234567")
    result = run(
        "create-admin", "ROOT", "--email", "b@example.com", MICROSHOP_ADMIN_PASSWORD="pw-1234567"
    )
    assert result.exit_code == 1
    assert "username already taken" in result.output


def test_help_works_without_a_valid_configuration(run):
    result = run("--help", MICROSHOP_JWT_SECRET="")
    assert result.exit_code == 0
    assert "init-db" in result.output


def test_a_configuration_error_is_a_message_not_a_traceback(run):
    result = run("init-db", MICROSHOP_JWT_SECRET="")
    assert result.exit_code == 1
    assert "MICROSHOP_JWT_SECRET" in result.output
    assert "Traceback" not in result.output


def test_an_unknown_command_is_refused(run):
    result = run("drop-everything")
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_openapi_writes_every_service_document(run, tmp_path: Path):
    out = tmp_path / "docs"
    result = run("openapi", "--out", str(out))
    assert result.exit_code == 0, result.output
    written = sorted(path.name for path in out.iterdir())
    assert written == ["order.openapi.json", "payment.openapi.json", "user.openapi.json"]
    for path in out.iterdir():
        document = json.loads(path.read_text())
        validate(document)
        assert document["servers"] == [{"url": f"/{path.name.split('.')[0]}"}]


def test_help_builds_nothing(run, tmp_path: Path):
    """Listing the commands makes no secret, no database and no migration, even in
    development, where building the application would make all three."""
    instance = tmp_path / "instance"
    result = run(
        "--help",
        MICROSHOP_ENV="development",
        MICROSHOP_JWT_SECRET="",
        MICROSHOP_INSTANCE_DIR=str(instance),
    )
    assert result.exit_code == 0, result.output
    assert "create-admin" in result.output
    assert not instance.exists()
