"""``create-admin``: the user service's command, offered by ``microshop`` and ``flask``."""

from __future__ import annotations

import os

import click
from flask.cli import with_appcontext

from app.kit.errors import Conflict, ValidationFailed
from app.kit.service import unit_of_work
from app.kit.validation import validate
from user_service import service
from user_service.schemas import Registration


@click.command("create-admin")
@click.argument("username")
@click.option("--email", required=True, help="The admin's email address.")
@with_appcontext
def create_admin(username: str, email: str) -> None:
    """Create an admin account (password from MICROSHOP_ADMIN_PASSWORD or a prompt)."""
    password = os.environ.get("MICROSHOP_ADMIN_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    try:
        form = validate(Registration, {"username": username, "email": email, "password": password})
        with unit_of_work() as session:
            user = service.register(session, form, role="admin")
    except ValidationFailed as error:
        problems = "; ".join(f"{name} {message}" for name, message in error.fields.items())
        raise click.ClickException(problems) from None
    except Conflict as error:
        raise click.ClickException(error.message) from None
    click.echo(f"created admin {user.username} (id {user.id})")
