"""The ``microshop`` console script: platform commands and the ones services offer.

The commands that make tables and accounts run on each backend; the others (help, argument
and setting errors, ``openapi``) reach no database and run once."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from openapi_spec_validator import validate
from sqlalchemy import MetaData, inspect, select
from support import BIN, ROOT, SECRET, database_env, database_urls, server_environment

from app.kit.database import Database
from app.runtime.cli import main
from user_service.models import Base, User


def runner(tmp_path: Path, urls: dict[str, str]):
    """``microshop`` in-process, in production, on the databases ``urls`` names (the SQLite
    files of ``tmp_path`` for the others)."""
    environment = {
        "MICROSHOP_ENV": "production",
        "MICROSHOP_JWT_SECRET": SECRET,
        "MICROSHOP_INSTANCE_DIR": str(tmp_path),
        "MICROSHOP_ADMIN_PASSWORD": None,
        **database_env(urls),
    }

    def run(*args: str, input: str | None = None, **env: str):
        return CliRunner().invoke(main, list(args), env={**environment, **env}, input=input)

    return run


@pytest.fixture
def run(tmp_path: Path):
    """For the commands that reach no database: on SQLite only."""
    return runner(tmp_path, {})


@pytest.fixture
def urls(backend: str, tmp_path: Path) -> dict[str, str]:
    return database_urls(backend, tmp_path)


@pytest.fixture
def run_on_database(tmp_path: Path, urls: dict[str, str]):
    """For the commands that make tables and accounts: on each backend."""
    return runner(tmp_path, urls)


def users_in(urls: dict[str, str]) -> list[User]:
    database = Database.connect(urls["user"], Base.metadata)
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


def test_init_db_creates_every_service_schema_and_is_repeatable(run_on_database, urls):
    for _ in range(2):
        result = run_on_database("init-db")
        assert result.exit_code == 0, result.output
    assert "user: schema ready" in result.output
    database = Database.connect(urls["user"], MetaData())
    try:
        assert {"users", "denied_tokens"} <= set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()


def test_create_admin_takes_the_password_from_the_environment(run_on_database, urls):
    run_on_database("init-db")
    result = run_on_database(
        "create-admin",
        "root",
        "--email",
        "root@example.com",
        MICROSHOP_ADMIN_PASSWORD="admin-password-1",
    )
    assert result.exit_code == 0, result.output
    assert "created admin root" in result.output
    [user] = users_in(urls)
    assert (user.username, user.role) == ("root", "admin")
    assert "admin-password-1" not in user.password_hash


def test_create_admin_prompts_for_a_password(run_on_database, urls):
    run_on_database("init-db")
    result = run_on_database(
        "create-admin",
        "root",
        "--email",
        "root@example.com",
        input="admin-password-1\nadmin-password-1\n",
    )
    assert result.exit_code == 0, result.output
    assert "admin-password-1" not in result.output
    assert [user.role for user in users_in(urls)] == ["admin"]


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["root", "--email", "not-an-email"], "admin-password-1", "email"),
        (["r", "--email", "r@example.com"], "admin-password-1", "username"),
        (["root", "--email", "root@example.com"], "short", "password"),
    ],
)
def test_create_admin_refuses_bad_input(run_on_database, urls, args, password, message):
    run_on_database("init-db")
    result = run_on_database("create-admin", *args, MICROSHOP_ADMIN_PASSWORD=password)
    assert result.exit_code == 1
    assert message in result.output
    assert users_in(urls) == []


def test_create_admin_refuses_a_taken_username(run_on_database):
    """A name taken in another case too: each engine must compare them the same way."""
    run_on_database("init-db")
    run_on_database(
        "create-admin", "root", "--email", "a@example.com", MICROSHOP_ADMIN_PASSWORD="pw-1234567"
    )
    result = run_on_database(
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


def microshop(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real ``microshop`` entry point, in a process of its own, as an operator runs it."""
    return subprocess.run(
        [BIN / "microshop", *args],
        env=server_environment(folder, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit status 1 and one line on stderr, naming what is wrong: never a traceback."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MICROSHOP_LOGIN_RATE_LIMIT", "garbage"),
        ("MICROSHOP_PASSWORD_RATE_LIMIT", "garbage"),
        ("MICROSHOP_ACCESS_TOKEN_TTL", "99999999999999999999"),
        ("MICROSHOP_USER_DATABASE_URL", "nonsense"),
        ("MICROSHOP_REDIS_URL", "notaurl"),
        ("MICROSHOP_INSTANCE_DIR", "/proc/nope"),
        ("MICROSHOP_TRUSTED_PROXY", "notanip"),
        ("MICROSHOP_THREADS", "many"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_bad_setting_stops_the_command_in_one_line(
    tmp_path: Path, command: str, name: str, value: str
):
    assert_one_line_error(microshop(tmp_path, command, **{name: value}), name)


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--port", "99999"], {}, "--port"),
        (["--port", "-1"], {}, "--port"),
        (["--port", "0"], {}, "--port"),
        (["--port", "http"], {}, "--port"),
        ([], {"PORT": "abc"}, "PORT"),
        ([], {"PORT": "65536"}, "PORT"),
    ],
)
def test_serve_refuses_a_port_out_of_range(tmp_path: Path, args, env, named):
    line = assert_one_line_error(microshop(tmp_path, "serve", *args, **env), named)
    assert "from 1 to 65535" in line


def test_serve_says_in_one_line_that_its_port_is_taken(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = microshop(tmp_path, "serve", "--port", str(port))
    assert_one_line_error(result, f"127.0.0.1:{port}", "in use")


def test_serve_says_in_one_line_that_its_host_is_not_an_address(tmp_path: Path):
    assert_one_line_error(microshop(tmp_path, "serve", "--host", "no such host!"), "no such host!")


@pytest.mark.parametrize("out", ["/proc/nope/x", "{tmp}/a-file"])
def test_openapi_says_in_one_line_that_it_cannot_write(tmp_path: Path, out: str):
    (tmp_path / "a-file").write_text("")
    out = out.format(tmp=tmp_path)
    assert_one_line_error(microshop(tmp_path, "openapi", "--out", out), out)


def help_commands(output: str) -> list[str]:
    section = output.split("Commands:\n", 1)[1]
    return re.findall(r"^  ([a-z][a-z-]*)\b", section, re.MULTILINE)


def test_the_commands_listed_with_only_the_order_service_are_the_ones_the_docs_name(
    tmp_path: Path,
):
    result = microshop(tmp_path, "--help", MICROSHOP_SERVICES="order")
    assert result.returncode == 0, result.stderr
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    [named] = re.findall(
        r"with `MICROSHOP_SERVICES=order`, `microshop --help` lists\s+(.*?):",
        architecture,
        re.DOTALL,
    )
    assert help_commands(result.stdout) == re.findall(r"`([a-z-]+)`", named)


def test_the_options_the_docs_give_the_commands_exist():
    """docs/architecture.md once gave ``serve`` a ``--threads`` it never had."""
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    section = architecture.split("## The CLI", 1)[1].split("\n## ", 1)[0]
    with click.Context(main) as ctx:
        commands = [main.get_command(ctx, name) for name in main.list_commands(ctx)]
    options = {option for command in commands for param in command.params for option in param.opts}
    options.add("--app")  # flask's own CLI, which the section mentions too
    assert set(re.findall(r"(--[a-z][a-z-]*)", section)) - {"--help"} <= options


def test_a_command_of_a_service_not_mounted_here_says_so(tmp_path: Path):
    result = microshop(tmp_path, "create-admin", "root", MICROSHOP_SERVICES="order")
    assert_one_line_error(result, "create-admin", "user service", "MICROSHOP_SERVICES")


def test_help_says_why_service_commands_are_missing(tmp_path: Path):
    result = microshop(tmp_path, "--help", MICROSHOP_SERVICES="user,reviews=acme.nowhere:app")
    assert result.returncode == 0, result.stderr
    assert "create-admin" not in help_commands(result.stdout)
    assert "acme.nowhere" in result.stdout  # the reason, not silence
    asked = microshop(
        tmp_path, "create-admin", "root", MICROSHOP_SERVICES="user,reviews=acme.nowhere:app"
    )
    assert_one_line_error(asked, "acme.nowhere")


def test_help_in_production_without_a_secret_lists_every_command_and_using_one_says_why(
    tmp_path: Path,
):
    listed = microshop(tmp_path, "--help", MICROSHOP_JWT_SECRET="")
    assert listed.returncode == 0, listed.stderr
    assert help_commands(listed.stdout) == [
        "create-admin",
        "events",
        "init-db",
        "migrate",
        "openapi",
        "serve",
        "worker",
    ]
    used = microshop(
        tmp_path, "create-admin", "root", "--email", "r@example.com", MICROSHOP_JWT_SECRET=""
    )
    assert_one_line_error(used, "MICROSHOP_JWT_SECRET")
