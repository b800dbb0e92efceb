"""The order service's HTTP resources: parse, apply the rule, answer."""

from __future__ import annotations

from flask import Response

from app.kit.api import Resource
from app.kit.auth import access_required, current_caller, service_required
from app.kit.openapi import operation
from app.kit.responses import created, ok
from app.kit.service import unit_of_work
from app.kit.validation import parse, parse_query
from order_service import service
from order_service.schemas import NewOrder, OrderFacts, OrderOut, OrderPage, OrderQuery


class OrderList(Resource):
    method_decorators = [access_required]

    @operation(query=OrderQuery, responses={200: OrderPage})
    def get(self) -> Response:
        """The caller's orders, newest first, a page at a time."""
        query = parse_query(OrderQuery)
        with unit_of_work(readonly=True) as session:
            return ok(OrderPage.of(service.list_orders(session, current_caller(), query)))

    @operation(body=NewOrder, responses={201: OrderOut}, errors=(403,), creates="order_id")
    def post(self) -> Response:
        """Place an order for the caller."""
        form = parse(NewOrder)
        with unit_of_work() as session:
            order = service.place_order(session, current_caller(), form)
            out = OrderOut.of(order)
        return created(out, "order placed")


class OrderItem(Resource):
    method_decorators = [access_required]

    @operation(responses={200: OrderOut}, errors=(403, 404, 422))
    def get(self, order_id: int) -> Response:
        """One order, for its owner or an admin."""
        with unit_of_work(readonly=True) as session:
            return ok(OrderOut.of(service.view_order(session, current_caller(), order_id)))

    @operation(responses={200: OrderOut}, errors=(403, 404, 422))
    def delete(self, order_id: int) -> Response:
        """Cancel an order (kept, never deleted); cancelling again changes nothing."""
        with unit_of_work() as session:
            out = OrderOut.of(service.cancel_order(session, current_caller(), order_id))
        return ok(out, "order cancelled")


class InternalOrder(Resource):
    method_decorators = [service_required]

    def get(self, order_id: int) -> Response:
        """What another service may know of an order: owner, amount, currency, status."""
        with unit_of_work(readonly=True) as session:
            return ok(OrderFacts.of(service.read_order(session, order_id)))
