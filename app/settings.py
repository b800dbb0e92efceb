"""Settings read from the environment (12-factor), once, at start-up.

    settings = Settings.from_env()          # MICROSHOP_* variables
    settings.database_url("order")          # each service's own database

Production refuses to start without a strong ``MICROSHOP_JWT_SECRET``; development
makes one secret once and keeps it in the instance folder, so tokens survive restarts.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENVIRONMENTS = ("development", "testing", "production")
DEFAULT_SERVICES = "user,order,payment"
MIN_SECRET_LENGTH = 32
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SERVICE_URL = re.compile(r"^MICROSHOP_([A-Z][A-Z0-9_]*)_URL$")
_NOT_SERVICES = {"REDIS"}


class ConfigError(Exception):
    """The environment describes a configuration microshop cannot start with."""


@dataclass(frozen=True)
class ServiceSpec:
    """A service to mount under ``/<name>``, made by ``module:factory``."""

    name: str
    target: str

    @classmethod
    def parse(cls, item: str) -> ServiceSpec:
        name, _, target = item.partition("=")
        name = name.strip()
        if not _SERVICE_NAME.match(name):
            raise ConfigError(f"MICROSHOP_SERVICES: {name!r} is not a service name (a-z, 0-9, _)")
        target = target.strip() or f"{name}_service:create_app"
        if target.count(":") != 1:
            raise ConfigError(f"MICROSHOP_SERVICES: {target!r} is not of the form module:factory")
        return cls(name, target)


@dataclass(frozen=True)
class ServingLimits:
    """waitress's limits, fit for the internet rather than waitress's own defaults
    (1 GiB bodies, 100 connections: see RELIABILITY.md)."""

    threads: int = 8
    connection_limit: int = 1000
    channel_timeout: int = 30
    max_header_bytes: int = 8 * 1024
    max_body_bytes: int = 1024 * 1024
    """waitress's own cap; the services answer 413 in JSON above 64 KiB long before it."""
    trusted_proxy: str | None = None
    """The address of the proxy (nginx) whose X-Forwarded-* headers are believed."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServingLimits:
        return cls(
            threads=_positive_int(environ, "MICROSHOP_THREADS", cls.threads),
            connection_limit=_positive_int(
                environ, "MICROSHOP_CONNECTION_LIMIT", cls.connection_limit
            ),
            channel_timeout=_positive_int(
                environ, "MICROSHOP_CHANNEL_TIMEOUT", cls.channel_timeout
            ),
            max_header_bytes=_positive_int(
                environ, "MICROSHOP_MAX_HEADER_BYTES", cls.max_header_bytes
            ),
            max_body_bytes=_positive_int(
                environ, "MICROSHOP_MAX_REQUEST_BYTES", cls.max_body_bytes
            ),
            trusted_proxy=environ.get("MICROSHOP_TRUSTED_PROXY") or None,
        )


@dataclass(frozen=True)
class Settings:
    env: str
    jwt_secret: str
    instance_dir: Path
    services: tuple[ServiceSpec, ...]
    database_urls: Mapping[str, str] = field(default_factory=dict)
    service_urls: Mapping[str, str] = field(default_factory=dict)
    redis_url: str | None = None
    outbox_sweep_seconds: float = 2.0
    access_token_ttl: int = 15 * 60
    refresh_token_ttl: int = 30 * 24 * 60 * 60
    login_rate_limit: str = "10 per minute"
    serving: ServingLimits = field(default_factory=ServingLimits)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def database_url(self, service: str) -> str:
        """The service's own database: its variable, else a SQLite file in the instance folder."""
        url = self.database_urls.get(service)
        if url:
            return url
        return f"sqlite:///{self.instance_dir / f'{service}.db'}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        env = environ.get("MICROSHOP_ENV", "development").strip().lower()
        if env not in ENVIRONMENTS:
            raise ConfigError(
                f"MICROSHOP_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}"
            )
        instance_dir = Path(environ.get("MICROSHOP_INSTANCE_DIR") or "instance").resolve()
        services = services_from_env(environ)
        return cls(
            env=env,
            jwt_secret=_jwt_secret(environ.get("MICROSHOP_JWT_SECRET", ""), env, instance_dir),
            instance_dir=instance_dir,
            services=services,
            database_urls={
                spec.name: environ[f"MICROSHOP_{spec.name.upper()}_DATABASE_URL"]
                for spec in services
                if environ.get(f"MICROSHOP_{spec.name.upper()}_DATABASE_URL")
            },
            service_urls=_service_urls(environ),
            redis_url=environ.get("MICROSHOP_REDIS_URL") or None,
            outbox_sweep_seconds=_seconds(
                environ, "MICROSHOP_OUTBOX_SWEEP_SECONDS", cls.outbox_sweep_seconds
            ),
            access_token_ttl=_positive_int(
                environ, "MICROSHOP_ACCESS_TOKEN_TTL", cls.access_token_ttl
            ),
            refresh_token_ttl=_positive_int(
                environ, "MICROSHOP_REFRESH_TOKEN_TTL", cls.refresh_token_ttl
            ),
            login_rate_limit=environ.get("MICROSHOP_LOGIN_RATE_LIMIT", cls.login_rate_limit),
            serving=ServingLimits.from_env(environ),
        )


def services_from_env(environ: Mapping[str, str]) -> tuple[ServiceSpec, ...]:
    """``MICROSHOP_SERVICES``: the services to mount here, in order."""
    services = tuple(
        ServiceSpec.parse(item)
        for item in environ.get("MICROSHOP_SERVICES", DEFAULT_SERVICES).split(",")
        if item.strip()
    )
    if len({spec.name for spec in services}) != len(services):
        raise ConfigError("MICROSHOP_SERVICES names a service twice")
    return services


def _service_urls(environ: Mapping[str, str]) -> dict[str, str]:
    """``MICROSHOP_<NAME>_URL``: where a service that is not mounted here answers.

    ``MICROSHOP_TEST_*`` belong to the test suite, ``*_DATABASE_URL`` to databases."""
    urls = {}
    for key, value in environ.items():
        match = _SERVICE_URL.match(key)
        name = match[1] if match else ""
        if not value or not name or name in _NOT_SERVICES or name.startswith("TEST_"):
            continue
        if name.endswith("_DATABASE"):
            continue
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"{key} must be an http:// or https:// base URL, not {value!r}")
        urls[name.lower()] = value.rstrip("/")
    return urls


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not 0 <= value < 3600:
        raise ConfigError(f"{name} must be between 0 (off) and 3600 seconds")
    return value


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0")
    return value


def _jwt_secret(configured: str, env: str, instance_dir: Path) -> str:
    if configured:
        if len(configured) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"MICROSHOP_JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters long"
            )
        return configured
    if env == "production":
        raise ConfigError(
            "MICROSHOP_JWT_SECRET is not set: production needs a secret of at least "
            f"{MIN_SECRET_LENGTH} characters shared by every microshop process"
        )
    return _instance_secret(instance_dir)


def _instance_secret(instance_dir: Path) -> str:
    """The development secret: made once, then read back, so tokens survive restarts."""
    path = instance_dir / "jwt-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    instance_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secret)
    return secret
