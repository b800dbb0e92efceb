"""Settings from the environment, and the refusals that keep production safe."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from support import ROOT

from app.settings import ConfigError, ServiceSpec, Settings

STRONG = "s" * 32


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"MICROSHOP_INSTANCE_DIR": str(tmp_path), **values}


def test_defaults(tmp_path: Path):
    settings = Settings.from_env(env(tmp_path))
    assert settings.env == "development"
    assert [spec.name for spec in settings.services] == ["user", "order", "payment"]
    assert settings.services[0].target == "user_service:create_app"
    assert settings.database_url("order") == f"sqlite:///{tmp_path / 'order.db'}"
    assert settings.redis_url is None
    assert (settings.access_token_ttl, settings.refresh_token_ttl) == (900, 30 * 86400)
    assert settings.login_rate_limit == "10 per minute"


def test_production_refuses_to_start_without_a_secret(tmp_path: Path):
    with pytest.raises(ConfigError, match="MICROSHOP_JWT_SECRET"):
        Settings.from_env(env(tmp_path, MICROSHOP_ENV="production"))
    assert not (tmp_path / "jwt-secret").exists()


@pytest.mark.parametrize("environment", ["production", "development"])
def test_a_short_secret_is_refused_everywhere(tmp_path: Path, environment: str):
    with pytest.raises(ConfigError, match=r"MICROSHOP_JWT_SECRET.*32"):
        Settings.from_env(env(tmp_path, MICROSHOP_ENV=environment, MICROSHOP_JWT_SECRET="x" * 31))


def test_production_takes_a_strong_secret(tmp_path: Path):
    settings = Settings.from_env(
        env(tmp_path, MICROSHOP_ENV="production", MICROSHOP_JWT_SECRET=STRONG)
    )
    assert settings.is_production
    assert settings.jwt_secret == STRONG


def test_development_makes_one_secret_and_keeps_it(tmp_path: Path):
    first = Settings.from_env(env(tmp_path)).jwt_secret
    second = Settings.from_env(env(tmp_path)).jwt_secret
    assert first == second
    assert len(first) >= 32
    path = tmp_path / "jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_unknown_environment_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="MICROSHOP_ENV"):
        Settings.from_env(env(tmp_path, MICROSHOP_ENV="prod"))


def test_each_service_has_its_own_database_url(tmp_path: Path):
    settings = Settings.from_env(
        env(tmp_path, MICROSHOP_ORDER_DATABASE_URL="postgresql://db/orders")
    )
    assert settings.database_url("order") == "postgresql://db/orders"
    assert settings.database_url("user").startswith("sqlite:///")


def test_services_may_be_chosen_and_a_team_may_add_its_own(tmp_path: Path):
    settings = Settings.from_env(
        env(tmp_path, MICROSHOP_SERVICES="order, reviews=acme.reviews:make_app")
    )
    assert settings.services == (
        ServiceSpec("order", "order_service:create_app"),
        ServiceSpec("reviews", "acme.reviews:make_app"),
    )


@pytest.mark.parametrize(
    "value", ["Order", "user,user", "x=nocolon", "x=a:b:c", "../etc", "9lives"]
)
def test_bad_service_lists_are_refused(tmp_path: Path, value: str):
    with pytest.raises(ConfigError, match="MICROSHOP_SERVICES"):
        Settings.from_env(env(tmp_path, MICROSHOP_SERVICES=value))


@pytest.mark.parametrize("value", ["soon", "0", "-5", "1.5"])
def test_token_lifetimes_must_be_positive_seconds(tmp_path: Path, value: str):
    with pytest.raises(ConfigError, match="MICROSHOP_ACCESS_TOKEN_TTL"):
        Settings.from_env(env(tmp_path, MICROSHOP_ACCESS_TOKEN_TTL=value))


def test_a_rate_limit_that_cannot_be_parsed_stops_start_up(tmp_path: Path):
    """flask-limiter logs an unparsable limit and lets every request through: a limit
    must never fail open, so such a value never becomes a setting."""
    for name in ("MICROSHOP_LOGIN_RATE_LIMIT", "MICROSHOP_PASSWORD_RATE_LIMIT"):
        with pytest.raises(ConfigError, match=rf"^{name} must be a limit such as '10 per minute'"):
            Settings.from_env(env(tmp_path, **{name: "garbage"}))


@pytest.mark.parametrize("field_name", ["login_rate_limit", "password_rate_limit"])
@pytest.mark.parametrize("value", ["garbage", "0 per minute", "10 per minute; soon"])
def test_no_settings_are_made_with_a_limit_that_would_fail_open(
    tmp_path: Path, field_name: str, value: str
):
    values = {"env": "testing", "jwt_secret": STRONG, "instance_dir": tmp_path, "services": ()}
    with pytest.raises(ConfigError, match="RATE_LIMIT"):
        Settings(**values, **{field_name: value})


def test_rate_limits_take_flask_limiters_notation(tmp_path: Path):
    settings = Settings.from_env(
        env(
            tmp_path,
            MICROSHOP_LOGIN_RATE_LIMIT="5/minute;100/day",
            MICROSHOP_PASSWORD_RATE_LIMIT="3 per hour",
        )
    )
    assert settings.login_rate_limit == "5/minute;100/day"
    assert settings.password_rate_limit == "3 per hour"
    assert Settings.from_env(env(tmp_path)).password_rate_limit == "10 per minute"


BAD_VALUES = [
    ("MICROSHOP_ENV", "prod", "one of development, testing, production"),
    ("MICROSHOP_JWT_SECRET", "short", "at least 32 characters"),
    ("MICROSHOP_INSTANCE_DIR", "/proc/nope", "a folder microshop can write in"),
    ("MICROSHOP_SERVICES", "user,user", "names a service twice"),
    ("MICROSHOP_USER_DATABASE_URL", "nonsense", "a database URL such as sqlite:///"),
    ("MICROSHOP_ORDER_DATABASE_URL", "foo://host/db", "a database URL such as sqlite:///"),
    ("MICROSHOP_ORDER_DATABASE_URL", "postgresql://h:99999/db", "a port from 1 to 65535"),
    ("MICROSHOP_ORDER_DATABASE_URL", "sqlite:////proc/nope/order.db", "can write in"),
    ("MICROSHOP_PAYMENT_URL", "ftp://payments", "an http:// or https:// base URL"),
    ("MICROSHOP_PAYMENT_URL", "http://", "an http:// or https:// base URL"),
    ("MICROSHOP_PAYMENT_URL", "http://host:99999", "an http:// or https:// base URL"),
    ("MICROSHOP_REDIS_URL", "notaurl", "a Redis URL: redis://"),
    ("MICROSHOP_REDIS_URL", "redis://", "a Redis URL: redis://"),
    ("MICROSHOP_LOGIN_RATE_LIMIT", "garbage", "a limit such as '10 per minute'"),
    ("MICROSHOP_PASSWORD_RATE_LIMIT", "ten a minute", "a limit such as '10 per minute'"),
    ("MICROSHOP_ACCESS_TOKEN_TTL", "99999999999999999999", "a whole number from 1 to 31622400"),
    ("MICROSHOP_REFRESH_TOKEN_TTL", "-1", "a whole number from 1 to 31622400"),
    ("MICROSHOP_OUTBOX_SWEEP_SECONDS", "nan", "from 0.1 to 3600, or 0 (off)"),
    ("MICROSHOP_OUTBOX_SWEEP_SECONDS", "0.001", "from 0.1 to 3600, or 0 (off)"),
    ("MICROSHOP_THREADS", "99999999999999999999", "a whole number from 1 to 1024"),
    ("MICROSHOP_CONNECTION_LIMIT", "0", "a whole number from 1 to 100000"),
    ("MICROSHOP_CHANNEL_TIMEOUT", "1e3", "a whole number from 1 to 3600"),
    ("MICROSHOP_MAX_HEADER_BYTES", "10", "a whole number from 1024 to 1048576"),
    ("MICROSHOP_MAX_REQUEST_BYTES", "2000000000", "a whole number from 65536 to 1073741824"),
    ("MICROSHOP_TRUSTED_PROXY", "notanip", "the proxy's IP address"),
    ("MICROSHOP_BROKER_URL", "http://rabbit", "a RabbitMQ URL: amqp://"),
    ("MICROSHOP_BROKER_URL", "amqp://", "a RabbitMQ URL: amqp://"),
    ("MICROSHOP_EVENT_MAX_ATTEMPTS", "0", "a whole number from 1 to 1000"),
    ("MICROSHOP_EVENT_RETENTION_DAYS", "a week", "a whole number from 1 to 3650"),
]


@pytest.mark.parametrize(("name", "value", "accepts"), BAD_VALUES)
def test_every_bad_value_is_one_line_naming_the_variable_and_what_it_accepts(
    tmp_path: Path, name: str, value: str, accepts: str
):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env(tmp_path, **{name: value}))
    message = str(refused.value)
    assert message.startswith(name), message
    assert accepts in message
    assert "\n" not in message


def test_a_database_url_is_never_quoted_back(tmp_path: Path):
    """It may hold a password, and the message goes to logs."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env(tmp_path, MICROSHOP_USER_DATABASE_URL="pg:/u:hunter2@host"))
    assert "hunter2" not in str(refused.value)


def test_good_values_are_taken(tmp_path: Path):
    settings = Settings.from_env(
        env(
            tmp_path,
            MICROSHOP_ENV="production",
            MICROSHOP_JWT_SECRET=STRONG,
            MICROSHOP_USER_DATABASE_URL="postgresql://shop@db.internal:5432/users",
            MICROSHOP_ORDER_DATABASE_URL=f"sqlite:///{tmp_path / 'elsewhere' / 'order.db'}",
            MICROSHOP_PAYMENT_URL="https://payments.internal:8443/",
            MICROSHOP_REDIS_URL="rediss://:secret@cache.internal:6380/2",
            MICROSHOP_TRUSTED_PROXY="::1",
            MICROSHOP_ACCESS_TOKEN_TTL="31622400",
            MICROSHOP_OUTBOX_SWEEP_SECONDS="0",
            MICROSHOP_THREADS="16",
        )
    )
    assert settings.database_url("user") == "postgresql://shop@db.internal:5432/users"
    assert settings.service_urls == {"payment": "https://payments.internal:8443"}
    assert settings.redis_url == "rediss://:secret@cache.internal:6380/2"
    assert settings.serving.trusted_proxy == "::1"
    assert settings.serving.threads == 16
    assert (settings.access_token_ttl, settings.outbox_sweep_seconds) == (31622400, 0)


def test_production_on_its_own_databases_needs_no_instance_folder(tmp_path: Path):
    """A read-only container whose every database is a server's: nothing to write locally."""
    urls = {
        f"MICROSHOP_{name}_DATABASE_URL": f"postgresql://db/{name.lower()}"
        for name in ("USER", "ORDER", "PAYMENT")
    }
    settings = Settings.from_env(
        env(
            tmp_path,
            MICROSHOP_ENV="production",
            MICROSHOP_JWT_SECRET=STRONG,
            MICROSHOP_INSTANCE_DIR="/proc/nope",
            **urls,
        )
    )
    assert settings.database_url("order") == "postgresql://db/order"


def test_operations_md_lists_every_variable_the_settings_read():
    source = (ROOT / "app" / "settings.py").read_text()
    operations = (ROOT / "docs" / "operations.md").read_text()
    table = operations.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    read = set(re.findall(r'"(MICROSHOP_[A-Z_]+)"', source))
    assert read - set(re.findall(r"^\| `(MICROSHOP_[A-Z_]+)`", table, re.MULTILINE)) == set()
