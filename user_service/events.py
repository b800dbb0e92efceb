"""The user service's events: it publishes ``token.revoked`` (a logout) and
``user.tokens_invalidated`` (a password change), and handles none: revocations start here.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.kit.events import Handler


def handlers() -> Mapping[str, Handler]:
    """What the user service does on other services' events: nothing yet."""
    return {}
