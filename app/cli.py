"""The ``microshop`` console script: the platform's commands plus those the services offer.

    microshop serve --port 8080             # waitress, every service in one process
    microshop init-db                       # create each mounted service's tables
    microshop create-admin alice --email alice@example.com   # a user service command

A service offers a command by adding it to its Flask app's ``app.cli``; it runs inside
that app's context, so the platform needs no knowledge of any service.
"""

from __future__ import annotations

import os

import click
from flask import Flask

from app.composition import Application, create_application
from app.platform import platform_of
from app.settings import ConfigError, Settings


def _application(ctx: click.Context) -> Application:
    """The composed application, built once per invocation."""
    root = ctx.find_root()
    if "application" not in root.meta:
        try:
            root.meta["application"] = create_application(Settings.from_env())
        except ConfigError as error:
            raise click.ClickException(str(error)) from None
        root.call_on_close(root.meta["application"].dispose)
    return root.meta["application"]


def _service_commands(ctx: click.Context) -> dict[str, tuple[Flask, click.Command]]:
    return {
        name: (app, command)
        for app in _application(ctx).services.values()
        if isinstance(app, Flask)
        for name, command in app.cli.commands.items()
    }


class MicroshopGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        try:
            offered = _service_commands(ctx)
        except click.ClickException:  # help still works when the configuration does not
            offered = {}
        return sorted({*super().list_commands(ctx), *offered})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        found = _service_commands(ctx).get(cmd_name)
        if found is None:
            return None
        app, command = found
        ctx.with_resource(app.app_context())
        return command


@click.group(cls=MicroshopGroup)
def main() -> None:
    """microshop: users, orders and payments as Flask services in one WSGI process."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=int,
    default=lambda: int(os.environ.get("PORT", "8080")),
    show_default="8080 or $PORT",
    help="Port to listen on.",
)
@click.option("--threads", type=int, default=4, show_default=True, help="Worker threads.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, threads: int) -> None:
    """Serve every configured service with waitress."""
    from waitress import serve as waitress_serve

    waitress_serve(_application(ctx), host=host, port=port, threads=threads)


@main.command("init-db")
@click.pass_context
def init_db(ctx: click.Context) -> None:
    """Create the tables of every mounted service that are missing (existing ones are kept)."""
    for name, app in _application(ctx).services.items():
        platform = platform_of(app)
        if platform is None:
            continue
        platform.database.create_schema()
        click.echo(f"{name}: schema ready")
