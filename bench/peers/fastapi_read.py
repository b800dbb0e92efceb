"""microshop's authenticated order read, written the FastAPI way, for a fair comparison.

    BENCH_ORDER_DATABASE_URL=sqlite:///…/order.db MICROSHOP_JWT_SECRET=… \\
        uvicorn --factory bench.peers.fastapi_read:create_app

``GET /order/{order_id}`` keeps microshop's rules: an HS256 access token signed with the
shared secret, whose ``sub`` is a numeric string, with a ``jti`` and a ``role``; refused
when its ``jti`` is in ``denied_tokens`` or its ``ver`` is below the user's row in
``token_versions`` (two primary-key lookups, as microshop's deny list makes); the order
only for its owner or an admin; errors as 401/403/404 with microshop's slugs; the answer
in microshop's envelope and shape. It reads the same SQLite order database through
SQLAlchemy's ORM, one session per request, in a plain ``def`` route (FastAPI's
threadpool), as FastAPI's own SQL tutorial does. (No ``from __future__ import
annotations`` here: FastAPI reads the routes' annotations at run time.)
"""

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, field_serializer
from sqlalchemy import BigInteger, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

ROLES = ("user", "admin")


class Base(DeclarativeBase):
    pass


class OrderRow(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    userid: Mapped[int] = mapped_column(BigInteger)
    product: Mapped[str] = mapped_column(String(200))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DeniedToken(Base):
    __tablename__ = "denied_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]


class TokenVersion(Base):
    __tablename__ = "token_versions"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[int]


class OrderOut(BaseModel):
    id: int
    userid: int
    product: str
    price: float
    quantity: int
    amount: float
    currency: str
    status: str
    created_at: datetime
    updated_at: datetime

    @field_serializer("created_at", "updated_at")
    def _utc(self, value: datetime) -> str:
        return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


class OrderEnvelope(BaseModel):
    code: int = 0
    msg: str = "ok"
    data: OrderOut


class Refused(Exception):
    def __init__(self, status: int, slug: str, message: str):
        self.status, self.slug, self.message = status, slug, message


class Caller(BaseModel):
    id: int
    role: str


def create_app() -> FastAPI:
    """The app, its engine and its secret, from ``BENCH_ORDER_DATABASE_URL`` and
    ``MICROSHOP_JWT_SECRET``."""
    secret = os.environ["MICROSHOP_JWT_SECRET"]
    engine = create_engine(
        os.environ["BENCH_ORDER_DATABASE_URL"], connect_args={"check_same_thread": False}
    )
    sessions = sessionmaker(engine)
    bearer = HTTPBearer(auto_error=False)
    app = FastAPI()

    @app.exception_handler(Refused)
    def refused(_request: Request, error: Refused) -> JSONResponse:
        body = {"code": error.status, "msg": error.message, "data": {"error": error.slug}}
        return JSONResponse(body, status_code=error.status)

    def database() -> Iterator[Session]:
        with sessions() as session:
            yield session

    def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        session: Annotated[Session, Depends(database)],
    ) -> Caller:
        if credentials is None:
            raise Refused(401, "missing_token", "missing bearer token")
        claims = _verified_claims(credentials.credentials, secret)
        if session.get(DeniedToken, claims["jti"]) is not None:
            raise Refused(401, "token_revoked", "token has been revoked")
        minimum = session.get(TokenVersion, int(claims["sub"]))
        if minimum is not None and claims.get("ver", 0) < minimum.version:
            raise Refused(401, "token_revoked", "token has been revoked")
        return Caller(id=int(claims["sub"]), role=claims["role"])

    @app.get("/order/{order_id}", response_model=OrderEnvelope)
    def read_order(
        order_id: int,
        who: Annotated[Caller, Depends(caller)],
        session: Annotated[Session, Depends(database)],
    ) -> OrderEnvelope:
        order = session.get(OrderRow, order_id)
        if order is None:
            raise Refused(404, "not_found", "order not found")
        if order.userid != who.id and who.role != "admin":
            raise Refused(403, "forbidden", "forbidden")
        return OrderEnvelope(
            data=OrderOut(
                id=order.id,
                userid=order.userid,
                product=order.product,
                price=order.price_minor / 100,
                quantity=order.quantity,
                amount=order.amount_minor / 100,
                currency=order.currency,
                status=order.status,
                created_at=order.created_at,
                updated_at=order.updated_at,
            )
        )

    return app


def _verified_claims(token: str, secret: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.ExpiredSignatureError:
        raise Refused(401, "token_expired", "token has expired") from None
    except jwt.PyJWTError:
        raise Refused(401, "invalid_token", "invalid token") from None
    sub, jti = claims.get("sub"), claims.get("jti")
    if claims.get("type") != "access" or not (isinstance(sub, str) and sub.isdecimal()):
        raise Refused(401, "invalid_token", "invalid token")
    if not (isinstance(jti, str) and jti) or claims.get("role") not in ROLES:
        raise Refused(401, "invalid_token", "invalid token")
    return claims
