"""Request and response models of the user service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, EmailStr, Field, WithJsonSchema

from app.kit.responses import ResponseModel
from app.kit.validation import RequestModel, text

Username = text(
    min_length=3,
    max_length=32,
    pattern=r"^[A-Za-z0-9_.-]+$",
    message="must be 3 to 32 characters, each a letter A-Z or a-z, a digit, _, . or -",
)
Password = text(min_length=8, max_length=128, message="must be 8 to 128 characters")
GivenPassword = text(min_length=1, max_length=128)
RESERVED_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")
"""The special-use names email-validator refuses: no mail is ever delivered there."""


def _any_case(name: str) -> str:
    return "".join(f"[{letter}{letter.upper()}]" for letter in name)


Email = Annotated[
    EmailStr,
    Field(max_length=254),
    WithJsonSchema(
        {
            "type": "string",
            "format": "email",
            "maxLength": 254,
            "not": {"pattern": f"[.@]({'|'.join(map(_any_case, RESERVED_DOMAINS))})$"},
            "description": "an address that can receive mail: not on .test, .localhost, …",
        }
    ),
]


class Registration(RequestModel):
    username: Username
    password: Password
    email: Email


class Credentials(RequestModel):
    username: text(min_length=1, max_length=32)
    password: GivenPassword


class Logout(RequestModel):
    refresh_token: text(min_length=1, max_length=4096) | None = None


class PasswordChange(RequestModel):
    old_password: GivenPassword
    new_password: Password


class UserOut(ResponseModel):
    id: int
    username: str
    email: str
    role: str
    created_at: datetime


class AccessToken(BaseModel):
    token: str
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (the scheme's name, not a secret)
    expires_in: int


class TokenPair(AccessToken):
    refresh_token: str
