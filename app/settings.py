"""Settings read from the environment (12-factor), once, at start-up, and checked there.

    settings = Settings.from_env()          # MICROSHOP_* variables
    settings.database_url("order")          # each service's own database

Every value is checked here and nowhere else: one that cannot be used raises
``ConfigError``, one line that names the variable and says what it accepts, so a bad
value stops start-up instead of failing later (or, for a rate limit, failing open).
Production refuses to start without a strong ``MICROSHOP_JWT_SECRET``; development
makes one secret once and keeps it in the instance folder, so tokens survive restarts.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from limits import parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

ENVIRONMENTS = ("development", "testing", "production")
DEFAULT_SERVICES = "user,order,payment"
MIN_SECRET_LENGTH = 32
MAX_TOKEN_TTL = 366 * 24 * 60 * 60
"""A year and a day: no token lives longer (a larger number would not even be a date)."""
MAX_PORT = 65535
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SERVICE_URL = re.compile(r"^MICROSHOP_([A-Z][A-Z0-9_]*)_URL$")
_NOT_SERVICES = {"REDIS", "BROKER"}
_REDIS_SCHEMES = ("redis", "rediss", "redis+unix")
_RATE_LIMIT = "a limit such as '10 per minute' (several joined by ';')"
_DATABASE_URL = (
    "a database URL such as sqlite:///path/to/file.db, postgresql://user@host/db "
    "or mysql://user@host/db"
)


DRIVERS = {
    "postgres://": "postgresql+psycopg://",
    "postgresql://": "postgresql+psycopg://",
    "mysql://": "mysql+pymysql://",
    "mariadb://": "mariadb+pymysql://",
}
"""A URL without a driver means the driver microshop installs: psycopg 3, PyMySQL."""


def normalize_url(url: str) -> str:
    """``postgres://``/``postgresql://`` use psycopg 3; ``mysql://``/``mariadb://`` PyMySQL."""
    for prefix, with_driver in DRIVERS.items():
        if url.startswith(prefix):
            return with_driver + url.removeprefix(prefix)
    return url


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
            threads=_whole_number(environ, "MICROSHOP_THREADS", cls.threads, maximum=1024),
            connection_limit=_whole_number(
                environ, "MICROSHOP_CONNECTION_LIMIT", cls.connection_limit, maximum=100_000
            ),
            channel_timeout=_whole_number(
                environ, "MICROSHOP_CHANNEL_TIMEOUT", cls.channel_timeout, maximum=3600
            ),
            max_header_bytes=_whole_number(
                environ,
                "MICROSHOP_MAX_HEADER_BYTES",
                cls.max_header_bytes,
                minimum=1024,
                maximum=1024 * 1024,
            ),
            max_body_bytes=_whole_number(
                environ,
                "MICROSHOP_MAX_REQUEST_BYTES",
                cls.max_body_bytes,
                minimum=64 * 1024,
                maximum=1024**3,
            ),
            trusted_proxy=_trusted_proxy(environ.get("MICROSHOP_TRUSTED_PROXY", "")),
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
    broker_url: str | None = None
    """RabbitMQ (``amqp://``), which carries the events between processes when set."""
    outbox_sweep_seconds: float = 2.0
    event_max_attempts: int = 10
    """Failed handlings of an event before it is a dead letter."""
    event_retention_days: int = 7
    """How long sent outbox rows and the inbox's event ids are kept."""
    access_token_ttl: int = 15 * 60
    refresh_token_ttl: int = 30 * 24 * 60 * 60
    login_rate_limit: str = "10 per minute"
    password_rate_limit: str = "10 per minute"  # noqa: S105 - a limit, not a password
    serving: ServingLimits = field(default_factory=ServingLimits)

    def __post_init__(self) -> None:
        """A rate limit that flask-limiter cannot parse would switch the limit off (it logs
        and lets every request through), so no ``Settings`` is ever made with one."""
        _check_rate_limit("MICROSHOP_LOGIN_RATE_LIMIT", self.login_rate_limit)
        _check_rate_limit("MICROSHOP_PASSWORD_RATE_LIMIT", self.password_rate_limit)

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
        database_urls = _database_urls(environ)
        if env != "production" or any(spec.name not in database_urls for spec in services):
            _writable_folder("MICROSHOP_INSTANCE_DIR", instance_dir)  # a secret or SQLite files
        return cls(
            env=env,
            jwt_secret=_jwt_secret(environ.get("MICROSHOP_JWT_SECRET", ""), env, instance_dir),
            instance_dir=instance_dir,
            services=services,
            database_urls={
                spec.name: database_urls[spec.name]
                for spec in services
                if spec.name in database_urls
            },
            service_urls=_service_urls(environ),
            redis_url=_redis_url(environ.get("MICROSHOP_REDIS_URL", "")),
            broker_url=_broker_url(environ.get("MICROSHOP_BROKER_URL", "")),
            outbox_sweep_seconds=_seconds(
                environ, "MICROSHOP_OUTBOX_SWEEP_SECONDS", cls.outbox_sweep_seconds
            ),
            event_max_attempts=_whole_number(
                environ, "MICROSHOP_EVENT_MAX_ATTEMPTS", cls.event_max_attempts, maximum=1000
            ),
            event_retention_days=_whole_number(
                environ, "MICROSHOP_EVENT_RETENTION_DAYS", cls.event_retention_days, maximum=3650
            ),
            access_token_ttl=_whole_number(
                environ, "MICROSHOP_ACCESS_TOKEN_TTL", cls.access_token_ttl, maximum=MAX_TOKEN_TTL
            ),
            refresh_token_ttl=_whole_number(
                environ,
                "MICROSHOP_REFRESH_TOKEN_TTL",
                cls.refresh_token_ttl,
                maximum=MAX_TOKEN_TTL,
            ),
            login_rate_limit=environ.get("MICROSHOP_LOGIN_RATE_LIMIT") or cls.login_rate_limit,
            password_rate_limit=(
                environ.get("MICROSHOP_PASSWORD_RATE_LIMIT") or cls.password_rate_limit
            ),
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


def listening_port(raw: str, name: str) -> int:
    """A TCP port to listen on, from ``--port`` or ``PORT`` (``name`` says which)."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PORT:
        raise ConfigError(f"{name} must be a port number from 1 to {MAX_PORT}, not {raw!r}")
    return value


def _database_urls(environ: Mapping[str, str]) -> dict[str, str]:
    """Every ``MICROSHOP_<NAME>_DATABASE_URL``, checked, by service name; a URL is never
    quoted back, since it may hold a password."""
    urls = {}
    for key, value in environ.items():
        match = _SERVICE_URL.match(key)
        name = match[1] if match else ""
        if not value or not name.endswith("_DATABASE") or name.startswith("TEST_"):
            continue
        _check_database_url(key, value)
        urls[name.removesuffix("_DATABASE").lower()] = value
    return urls


def _check_database_url(name: str, value: str) -> None:
    try:
        url = make_url(normalize_url(value))
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise ConfigError(f"{name} must be {_DATABASE_URL}") from None
    try:
        dialect.import_dbapi()
    except ImportError:
        raise ConfigError(
            f"{name}: the {url.get_driver_name()!r} driver of {url.get_backend_name()} "
            "is not installed"
        ) from None
    if url.port is not None and not 1 <= url.port <= MAX_PORT:
        raise ConfigError(f"{name} must be {_DATABASE_URL}, with a port from 1 to {MAX_PORT}")
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        _writable_folder(name, Path(url.database).resolve().parent)


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
        if not _is_base_url(value, ("http", "https")):
            raise ConfigError(
                f"{key} must be an http:// or https:// base URL such as "
                f"http://10.0.0.5:8080, not {value!r}"
            )
        urls[name.lower()] = value.rstrip("/")
    return urls


def _is_base_url(value: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname) and not parts.query + parts.fragment


def _broker_url(value: str) -> str | None:
    """A query (``?heartbeat=30``) is allowed: pika reads its options from there."""
    if value and not _is_base_url(value.partition("?")[0], ("amqp", "amqps")):
        raise ConfigError(
            "MICROSHOP_BROKER_URL must be a RabbitMQ URL: amqp://user:password@host[:port][/vhost]"
            " or amqps:// (TLS)"
        )
    return value or None


def _redis_url(value: str) -> str | None:
    if not value:
        return None
    scheme = value.partition("://")[0]
    if scheme == "redis+unix":
        valid = bool(urlsplit(value).path)
    else:
        valid = _is_base_url(value, _REDIS_SCHEMES)
    if not valid:
        raise ConfigError(
            "MICROSHOP_REDIS_URL must be a Redis URL: redis://[:password@]host[:port][/db], "
            "rediss:// (TLS) or redis+unix:///path/to/socket"
        )
    return value


def _trusted_proxy(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if value != "*":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ConfigError(
                "MICROSHOP_TRUSTED_PROXY must be the proxy's IP address (such as 10.0.0.2) "
                f"or * for any peer, not {value!r}"
            ) from None
    return value


def _check_rate_limit(name: str, value: str) -> None:
    try:
        limits = parse_many(value)
    except ValueError:
        limits = []
    if not limits or any(limit.amount < 1 for limit in limits):
        raise ConfigError(f"{name} must be {_RATE_LIMIT}, not {value!r}")


def _writable_folder(name: str, path: Path) -> None:
    """``path`` is a folder microshop can write in, made if it is missing."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"{name}: cannot make the folder {str(path)!r} ({error.strerror}); "
            "it must be a folder microshop can write in"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{name}: the folder {str(path)!r} is not writable by microshop")


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (value == 0 or 0.1 <= value <= 3600):
        raise ConfigError(
            f"{name} must be a number of seconds from 0.1 to 3600, or 0 (off), not {raw!r}"
        )
    return value


def _whole_number(
    environ: Mapping[str, str], name: str, default: int, *, maximum: int, minimum: int = 1
) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be a whole number from {minimum} to {maximum}, not {raw!r}")
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
