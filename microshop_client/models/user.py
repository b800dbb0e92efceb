"""The user service's models, generated from its OpenAPI document by
tests/client/generate_models.py: do not edit."""
# ruff: noqa

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, RootModel


class AccessToken(BaseModel):
    access_token: Annotated[str, Field(title="Access Token")]
    expires_in: Annotated[int, Field(title="Expires In")]
    token: Annotated[str, Field(title="Token")]
    token_type: Annotated[str | None, Field(title="Token Type")] = "Bearer"


class Credentials(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    password: Annotated[str, Field(max_length=128, min_length=1, title="Password")]
    username: Annotated[str, Field(max_length=32, min_length=1, title="Username")]


class RefreshToken(RootModel[str]):
    root: Annotated[str, Field(max_length=4096, min_length=1, title="Refresh Token")] = None


class Logout(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    refresh_token: Annotated[RefreshToken | None, Field(title="Refresh Token")] = None


class PasswordChange(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    new_password: Annotated[str, Field(max_length=128, min_length=8, title="New Password")]
    old_password: Annotated[str, Field(max_length=128, min_length=1, title="Old Password")]


class Registration(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
    )
    email: Annotated[EmailStr, Field(max_length=254, title="Email")]
    """
    an address that can receive mail: not on .test, .localhost, …
    """
    password: Annotated[str, Field(max_length=128, min_length=8, title="Password")]
    username: Annotated[
        str,
        Field(max_length=32, min_length=3, pattern="^[A-Za-z0-9_.-]+$", title="Username"),
    ]


class TokenPair(BaseModel):
    access_token: Annotated[str, Field(title="Access Token")]
    expires_in: Annotated[int, Field(title="Expires In")]
    refresh_token: Annotated[str, Field(title="Refresh Token")]
    token: Annotated[str, Field(title="Token")]
    token_type: Annotated[str | None, Field(title="Token Type")] = "Bearer"


class UserOut(BaseModel):
    created_at: Annotated[AwareDatetime, Field(title="Created At")]
    email: Annotated[str, Field(title="Email")]
    id: Annotated[int, Field(title="Id")]
    role: Annotated[str, Field(title="Role")]
    username: Annotated[str, Field(title="Username")]
