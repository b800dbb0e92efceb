"""The user service's events: it publishes ``token.revoked`` (a logout) and
``user.tokens_invalidated`` (a password change), and handles none: revocations start here.
"""

from __future__ import annotations

from app.kit.events import Handlers


def handlers() -> Handlers:
    """What the user service does on other services' events: nothing yet."""
    return {}
