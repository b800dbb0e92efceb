"""The user service's own error slugs; the platform's are in ``app.kit.errors``."""

from __future__ import annotations

from app.kit.errors import ApiError, Conflict


class UsernameTaken(Conflict):
    slug, message = "username_taken", "username already taken"


class EmailTaken(Conflict):
    slug, message = "email_taken", "email already registered"


class InvalidCredentials(ApiError):
    """A wrong password and an unknown username alike: nothing tells them apart."""

    status, slug, message = 401, "invalid_credentials", "invalid username or password"
