"""The user service: accounts, login, tokens. A Flask app of its own, mounted at ``/user``.

app = create_app()                      # settings from the environment
app = create_app(settings)              # or given, as the composition and tests do
"""

from __future__ import annotations

from flask import Flask

from app.kit.api import JsonApi
from app.kit.auth import init_jwt
from app.kit.service import init_service
from app.settings import Settings
from user_service import events, resources
from user_service.commands import create_admin
from user_service.models import Base, outbox
from user_service.rate_limits import init_rate_limits

COMMANDS = (create_admin,)
"""What the user service adds to ``microshop`` (and to ``flask --app user_service``)."""


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    init_service(
        app,
        settings,
        name="user",
        metadata=Base.metadata,
        outbox=outbox,
        handlers=events.handlers(),
    )
    init_jwt(app, settings, is_revoked=resources.token_is_revoked)
    api = JsonApi(app)
    api.route(resources.Registrations, "/register")
    api.route(resources.Logins, "/login", endpoint="login")
    api.route(resources.Refreshes, "/refresh")
    api.route(resources.Logouts, "/logout")
    api.route(resources.CurrentUser, "/me", legacy={"/info": "GET"})
    api.route(resources.UserItem, "/<id:user_id>")
    api.route(resources.Passwords, "/password", endpoint="password")
    init_rate_limits(
        app,
        settings,
        login_endpoint="login",
        password_endpoint="password",  # noqa: S106 - an endpoint's name
    )
    for command in COMMANDS:
        app.cli.add_command(command)
    return app
