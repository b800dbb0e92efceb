"""The authenticated order read as a Flask tutorial writes it, with no microshop code.

    BENCH_ORDER_DATABASE_URL=sqlite:///…/order.db MICROSHOP_JWT_SECRET=… \\
        waitress-serve --threads=4 --call bench.peers.naive_flask:create_app

flask-restful for the resource, flask-jwt-extended for the token (its blocklist loader
looks the ``jti`` up in ``denied_tokens`` by primary key), Flask-SQLAlchemy's
``db.session.get`` for the order, the owner check, and microshop's envelope.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask_jwt_extended import JWTManager, get_jwt, jwt_required
from flask_restful import Api, Resource
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

db = SQLAlchemy()


class Order(db.Model):  # type: ignore[name-defined,misc]
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


class DeniedToken(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "denied_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime]


def _utc(value: datetime) -> str:
    return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


class OrderItem(Resource):
    method_decorators = [jwt_required()]

    def get(self, order_id: int) -> Any:
        """One order, for its owner or an admin."""
        claims = get_jwt()
        order = db.session.get(Order, order_id)
        if order is None:
            return {"code": 404, "msg": "order not found", "data": {"error": "not_found"}}, 404
        if order.userid != int(claims["sub"]) and claims.get("role") != "admin":
            return {"code": 403, "msg": "forbidden", "data": {"error": "forbidden"}}, 403
        data = {
            "id": order.id,
            "userid": order.userid,
            "product": order.product,
            "price": order.price_minor / 100,
            "quantity": order.quantity,
            "amount": order.amount_minor / 100,
            "currency": order.currency,
            "status": order.status,
            "created_at": _utc(order.created_at),
            "updated_at": _utc(order.updated_at),
        }
        return {"code": 0, "msg": "ok", "data": data}


def create_app() -> Flask:
    """The app, from ``BENCH_ORDER_DATABASE_URL`` and ``MICROSHOP_JWT_SECRET``."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["BENCH_ORDER_DATABASE_URL"]
    app.config["JWT_SECRET_KEY"] = os.environ["MICROSHOP_JWT_SECRET"]
    db.init_app(app)
    jwt = JWTManager(app)

    @jwt.token_in_blocklist_loader
    def revoked(_header: dict[str, Any], claims: dict[str, Any]) -> bool:
        return db.session.get(DeniedToken, claims["jti"]) is not None

    Api(app).add_resource(OrderItem, "/order/<int:order_id>")
    return app
