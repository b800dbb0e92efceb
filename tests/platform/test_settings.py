"""Settings from the environment, and the refusals that keep production safe."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

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
