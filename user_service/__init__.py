"""The user service: accounts, login, tokens. A Flask app of its own, mounted at ``/user``.

app = create_app()                      # settings from the environment
app = create_app(settings)              # or given, as the composition and tests do
"""

from __future__ import annotations

from flask import Flask

from app.api import JsonApi
from app.auth import init_jwt
from app.events import init_events
from app.platform import init_service
from app.settings import Settings
from user_service import resources, service
from user_service.commands import create_admin
from user_service.models import Base
from user_service.rate_limits import limit_logins


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    platform = init_service(app, settings, service="user", metadata=Base.metadata)

    def is_revoked(claims: dict) -> bool:
        with platform.database.unit_of_work() as session:
            return service.is_revoked(session, claims)

    init_jwt(app, settings, is_revoked=is_revoked)
    init_events(app, platform, handlers={})  # it publishes; it subscribes to nothing
    api = JsonApi(app)
    api.add_resource(resources.Registrations, "/register")
    api.add_resource(resources.Logins, "/login", endpoint="login")
    api.add_resource(resources.Refreshes, "/refresh")
    api.add_resource(resources.Logouts, "/logout")
    api.add_resource(resources.Me, "/me", "/info")
    api.add_resource(resources.Users, "/<id:user_id>")
    api.add_resource(resources.Passwords, "/password")
    limit_logins(app, settings, endpoint="login")
    app.cli.add_command(create_admin)
    return app
