"""The ``microshop`` console script: the platform's commands plus those the services offer.

    microshop serve --port 8080             # waitress, every service in one process
    microshop migrate [--service order]     # each mounted service's schema to its head
    microshop init-db                       # the same as migrate (its older name)
    microshop events                        # events unsent, failing or dead, per service
    microshop events retry <event id>       # put a dead letter back
    microshop worker [--service order]      # consume RabbitMQ in a process of its own
    microshop create-admin alice --email alice@example.com   # a user service command

A service offers a command in its module's ``COMMANDS`` (``user_service.COMMANDS``); it
runs inside that service's app context, so the platform needs no knowledge of any
service. Listing the commands (``--help``) builds nothing.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from app import __version__
from app.kit.events import Outbox, retry_failed, revive
from app.kit.service import ServiceParts, parts_of
from app.runtime import serving
from app.runtime.composition import Application, create_application, load_factory
from app.runtime.consumers import queue_of
from app.runtime.documents import build_document
from app.runtime.migrations import MigrationError, prepare_schema
from app.settings import ConfigError, ServiceSpec, Settings, listening_port, services_from_env


def _settings(ctx: click.Context) -> Settings:
    """The checked settings, read once per invocation: a bad value is one line, exit 1."""
    root = ctx.find_root()
    if "settings" not in root.meta:
        try:
            root.meta["settings"] = Settings.from_env()
        except ConfigError as error:
            raise click.ClickException(str(error)) from None
    return root.meta["settings"]


def _application(ctx: click.Context, *, deliver_events: bool = False) -> Application:
    """The composed application, built once per invocation; only ``serve`` delivers events."""
    root = ctx.find_root()
    if "application" not in root.meta:
        settings = _settings(ctx)
        try:
            root.meta["application"] = create_application(settings, deliver_events=deliver_events)
        except ConfigError as error:
            raise click.ClickException(str(error)) from None
        root.call_on_close(root.meta["application"].dispose)
    return root.meta["application"]


class ServiceCommand(click.Command):
    """A command a service offers: run inside that service's app context, in the composed
    application, which is built only when the command runs (never for ``--help``)."""

    def __init__(self, service: str, command: click.Command):
        super().__init__(
            command.name,
            callback=command.callback,
            params=command.params,
            help=command.help,
            short_help=command.short_help,
        )
        self.service = service

    def invoke(self, ctx: click.Context) -> object:
        app = _application(ctx).services[self.service]
        with app.app_context():  # type: ignore[attr-defined]
            return super().invoke(ctx)


def _offered_commands(specs: tuple[ServiceSpec, ...]) -> dict[str, ServiceCommand]:
    """The commands the services ``specs`` offer, read from their modules' ``COMMANDS``:
    listing them builds nothing, connects to nothing and migrates nothing."""
    offered: dict[str, ServiceCommand] = {}
    for spec in specs:
        module = sys.modules[load_factory(spec).__module__]
        for command in getattr(module, "COMMANDS", ()):
            offered[command.name or ""] = ServiceCommand(spec.name, command)
    return offered


def _not_mounted(cmd_name: str) -> str | None:
    """Why ``cmd_name`` is missing when one of microshop's own services that this process
    does not mount offers it."""
    mounted = {spec.name for spec in services_from_env(os.environ)}
    for spec in services_from_env({}):
        if spec.name in mounted:
            continue
        command = _offered_commands((spec,)).get(cmd_name)
        if command is not None:
            return (
                f"{cmd_name} is a command of the {spec.name} service, which this process "
                f"does not mount (MICROSHOP_SERVICES={os.environ.get('MICROSHOP_SERVICES')}); "
                f"add {spec.name} to MICROSHOP_SERVICES to use it"
            )
    return None


class MicroshopGroup(click.Group):
    """The platform's commands, and those of the mounted services. When the services
    cannot be listed (a bad ``MICROSHOP_SERVICES``), ``--help`` still lists the
    platform's and says why the others are missing; asking for one says why too."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        try:
            offered = _offered_commands(services_from_env(os.environ))
        except ConfigError as error:
            ctx.meta["unavailable"] = str(error)
            offered = {}
        return sorted({*super().list_commands(ctx), *offered})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        if "unavailable" in ctx.meta:
            with formatter.section("Service commands unavailable"):
                formatter.write_text(ctx.meta["unavailable"])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        try:
            offered = _offered_commands(services_from_env(os.environ))
        except ConfigError as error:
            raise click.ClickException(str(error)) from None
        if cmd_name in offered:
            return offered[cmd_name]
        reason = _not_mounted(cmd_name)
        if reason is not None:
            raise click.ClickException(reason)
        return None


@click.group(cls=MicroshopGroup)
def main() -> None:
    """microshop: users, orders and payments as Flask services in one WSGI process."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    "port_given",
    metavar="1-65535",
    show_default="$PORT, else 8080",
    help="Port to listen on.",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port_given: str | None) -> None:
    """Serve every configured service with waitress, with the MICROSHOP_* limits."""
    try:
        if port_given is None:
            port = listening_port(os.environ.get("PORT") or "8080", "PORT")
        else:
            port = listening_port(port_given, "--port")
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    try:
        listener = serving.listen(_settings(ctx).serving, host=host, port=port)
    except serving.ListenError as error:
        raise click.ClickException(str(error)) from None
    try:
        application = _application(ctx, deliver_events=True)
    except BaseException:
        listener.close()
        raise
    serving.serve(application, listener)


def _migrate(ctx: click.Context, only: str | None) -> None:
    """Bring each mounted service's schema (or only one's) to the head of its migrations."""
    services = _application(ctx).services
    if only is not None and only not in services:
        mounted = ", ".join(services) or "none"
        raise click.BadParameter(
            f"no service {only!r} is mounted here (mounted: {mounted})", param_hint="'--service'"
        )
    for name, app in services.items():
        if only is not None and name != only:
            continue
        service = parts_of(app)
        if service is None:
            if only is not None:
                raise click.ClickException(f"{name}: not built on the platform, no database")
            continue
        try:
            done = prepare_schema(service.database, service.name, getattr(app, "import_name", ""))
        except (MigrationError, SQLAlchemyError) as error:
            raise click.ClickException(f"{name}: migration failed: {error}") from None
        click.echo(f"{name}: schema ready ({done})")


@main.command()
@click.option("--service", "only", metavar="NAME", help="Migrate only this mounted service.")
@click.pass_context
def migrate(ctx: click.Context, only: str | None) -> None:
    """Migrate every mounted service's database to its latest schema (Alembic)."""
    _migrate(ctx, only)


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("openapi"),
    show_default=True,
    help="Folder to write <service>.openapi.json files into.",
)
@click.pass_context
def openapi(ctx: click.Context, out: Path) -> None:
    """Write each mounted service's OpenAPI 3.1 document to a file."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise click.ClickException(
            f"--out: cannot make the folder {out}: {error.strerror}"
        ) from None
    for name, app in _application(ctx).services.items():
        if parts_of(app) is None:
            continue
        document = build_document(app, service=name, server=f"/{name}", version=__version__)
        path = out / f"{name}.openapi.json"
        try:
            path.write_text(json.dumps(document, indent=2) + "\n")
        except OSError as error:
            raise click.ClickException(f"--out: cannot write {path}: {error.strerror}") from None
        click.echo(f"{name}: {path}")


@main.command("init-db")
@click.pass_context
def init_db(ctx: click.Context) -> None:
    """The same as `migrate`: every mounted service's schema, created or brought up to date."""
    _migrate(ctx, None)


def _event_services(ctx: click.Context) -> dict[str, tuple[Any, ServiceParts, Outbox]]:
    """The mounted services that publish and take events: their app, parts and outbox."""
    found = {}
    for name, app in _application(ctx).services.items():
        service = parts_of(app)
        if service is not None and service.outbox is not None:
            found[name] = (app, service, service.outbox)
    return found


@main.group(invoke_without_command=True)
@click.pass_context
def events(ctx: click.Context) -> None:
    """List the events each mounted service has not sent, is still failing to handle, or
    gave up on (dead letters), oldest first."""
    if ctx.invoked_subcommand is not None:
        return
    lines = []
    for name, (_app, service, outbox) in _event_services(ctx).items():
        with service.database.unit_of_work(readonly=True) as session:
            for trouble in outbox.troubles(session):
                since = trouble.since.strftime("%Y-%m-%dT%H:%M:%SZ")
                error = (trouble.last_error or "").replace("\n", " ")
                lines.append(
                    f"{name:<8} {trouble.state:<7} {trouble.event_id} {trouble.topic:<24} "
                    f"attempts={trouble.attempts:<3} since={since} {error}".rstrip()
                )
    click.echo("\n".join(lines) if lines else "no event is unsent, failing or dead")


@events.command("retry")
@click.argument("event_id")
@click.pass_context
def retry(ctx: click.Context, event_id: str) -> None:
    """Put the dead letter EVENT_ID back, with its attempts counted from none: handled now,
    or with a broker, put back in its service's queue. If it fails again, it is retried as
    any failed event is."""
    found = False
    application = _application(ctx)
    for name, (app, service, outbox) in _event_services(ctx).items():
        if not revive(service.database, outbox, event_id):
            continue
        found = True
        if application.broker is not None:  # back into the queue, for a consumer to take
            if application.broker.retry_dead(queue_of(name), event_id):
                click.echo(f"{name}: {event_id} put back in {queue_of(name)}")
            else:
                click.echo(f"{name}: {event_id} revived; it is not in {queue_of(name)}.dead")
            continue
        with app.app_context():
            retry_failed(
                service.database,
                outbox,
                service.handlers,
                max_attempts=service.settings.event_max_attempts,
                event_id=event_id,
            )
        with service.database.unit_of_work(readonly=True) as session:
            left = [t for t in outbox.troubles(session) if t.event_id == event_id]
        if left:
            click.echo(f"{name}: {event_id} failed again ({left[0].state}): {left[0].last_error}")
        else:
            click.echo(f"{name}: {event_id} handled")
    if not found:
        raise click.ClickException(f"no mounted service has a dead letter {event_id}")


@main.command()
@click.option("--service", "only", metavar="NAME", help="Consume only this service's queue.")
@click.pass_context
def worker(ctx: click.Context, only: str | None) -> None:
    """Take the mounted services' events from RabbitMQ (MICROSHOP_BROKER_URL), and relay
    their outboxes, in a process of its own, until SIGTERM or Ctrl-C."""
    settings = _settings(ctx)
    if settings.broker_url is None:
        raise click.ClickException("worker needs MICROSHOP_BROKER_URL: it consumes RabbitMQ")
    mounted = {spec.name for spec in settings.services}
    if only is not None and only not in mounted:
        raise click.BadParameter(
            f"no service {only!r} is mounted here (mounted: {', '.join(sorted(mounted))})",
            param_hint="'--service'",
        )
    # Blocked before the threads start, which inherit the mask, so the kernel hands the
    # signal to sigwait here: a handler would run only once the main thread ran Python
    # again, and a signal taken by a consumer thread left it blocked in a wait for good.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    application = create_application(settings, consume=None if only is None else {only})
    names = ", ".join(consumer.name for consumer in application.consumers) or "nothing"
    click.echo(f"worker: consuming {names}")
    try:
        signal.sigwait(stop_signals)
    finally:
        application.dispose()
