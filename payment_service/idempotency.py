"""``Idempotency-Key`` on POSTs, as Stripe does it, scoped to the caller and kept 24 hours.

    class PaymentList(Resource):
        method_decorators = [idempotent("pay"), access_required]   # the token is checked first

The first request with a key records it before any work starts, so a concurrent twin
finds it and gets 409 ``request_in_progress``. When the first finishes, its status and
body are stored; a repeat with the same body gets them again with
``Idempotent-Replayed: true``, one with another body 422 ``idempotency_key_mismatch``.
A 5xx is not stored: the key is freed so the client may retry, unless the request had
already made its payment or refund (``remember_made``), whose outcome is then not known. A
first use whose process died (still "running" after two minutes) is taken over by the
next, which learns what the first one made (``current_claim().made_id``) and answers
with that rather than doing it again; while another process (the reconciler) is still
finishing what was made, the view raises ``RequestInProgress`` and the key stays running.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Response, current_app, g, request
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.kit.auth import current_caller
from app.kit.database import utcnow
from app.kit.errors import ApiError, ValidationFailed
from app.kit.service import unit_of_work
from payment_service.errors import KeyMismatch, RequestInProgress
from payment_service.models import IdempotencyRecord

HEADER = "Idempotency-Key"
KEEP = timedelta(hours=24)
ABANDONED_AFTER = timedelta(minutes=2)
"""Far longer than a request runs: a first use still running after this lost its process."""


@dataclass(frozen=True)
class KeyClaim:
    """The ``Idempotency-Key`` this request holds."""

    record_id: int
    made_id: int | None = None
    """The payment or refund the key's first request made, when this request took over
    from it after it died; None when nothing was made yet."""


def current_claim() -> KeyClaim | None:
    """The key this request holds; None for a request without one."""
    return g.get("idempotency_claim")


def remember_made(session: Session, made_id: int | None) -> None:
    """Record on this request's key what it made, in the transaction that made it; None
    once that failed for sure (the provider refused), so that a 5xx frees the key."""
    claim = current_claim()
    if claim is not None:
        session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.id == claim.record_id)
            .values(made_id=made_id)
        )


def _distinct_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A repeated key makes a body the view refuses (``app.kit.validation``): it must not
    fingerprint like the body that gives the key once."""
    if len({key for key, _ in pairs}) < len(pairs):
        raise ValueError("a key is given twice")
    return dict(pairs)


def _fingerprint(operation: str, view_args: dict[str, Any]) -> str:
    raw = request.get_data(cache=True)
    try:
        canonical = json.loads(raw, object_pairs_hook=_distinct_keys)
        body = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):  # not JSON: the view answers invalid_json
        body = raw.decode("utf-8", "replace")
    text = json.dumps([operation, view_args, body], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _claim(userid: int, key: str, fingerprint: str) -> Response | None:
    """Record the key as running (``current_claim``); or answer what an earlier use of it
    calls for."""
    try:
        with unit_of_work() as session:
            session.execute(
                delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utcnow() - KEEP)
            )
            record = IdempotencyRecord(userid=userid, key=key, fingerprint=fingerprint)
            session.add(record)
            session.flush()
            g.idempotency_claim = KeyClaim(record.id)
        return None
    except IntegrityError:
        pass
    with unit_of_work() as session:
        record = session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.userid == userid, IdempotencyRecord.key == key
            )
        )
        if record is None:  # the first use failed with a 5xx and freed the key: claim again
            return _claim(userid, key, fingerprint)
        if record.fingerprint != fingerprint:
            raise KeyMismatch()
        if record.response_status is None:
            if _take_over_abandoned(session, record):
                g.idempotency_claim = KeyClaim(record.id, record.made_id)
                return None
            raise RequestInProgress()
        replay = current_app.response_class(
            record.response_body, status=record.response_status, mimetype="application/json"
        )
    replay.headers["Idempotent-Replayed"] = "true"
    return replay


def _take_over_abandoned(session: Session, record: IdempotencyRecord) -> bool:
    """A first use still "running" after ``ABANDONED_AFTER`` lost its process: this
    request takes its place (one taker wins the conditional UPDATE)."""
    now = utcnow()
    taken = session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == record.id)
        .where(IdempotencyRecord.response_status.is_(None))
        .where(IdempotencyRecord.created_at < now - ABANDONED_AFTER)
        .values(created_at=now)
    )
    return taken.rowcount == 1


def _finish(userid: int, key: str, response: Response) -> None:
    """Store the answer; a 5xx frees the key, unless the request made something already:
    then the key stays "running", for a retry to take over and finish (after two minutes)."""
    with unit_of_work() as session:
        record = session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.userid == userid, IdempotencyRecord.key == key
            )
        )
        if response.status_code < 500:
            record.response_status = response.status_code
            record.response_body = response.get_data(as_text=True)
        elif record.made_id is None:
            session.delete(record)


def idempotent(operation: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def run_once(*args: Any, **kwargs: Any) -> Response:
            key = request.headers.get(HEADER)
            if key is None:
                return view(*args, **kwargs)
            if not 1 <= len(key) <= 255 or not key.isprintable() or not key.isascii():
                raise ValidationFailed({HEADER: "must be 1 to 255 printable ASCII characters"})
            userid = current_caller().id
            replay = _claim(userid, key, _fingerprint(operation, kwargs))
            if replay is not None:
                return replay
            try:
                response = view(*args, **kwargs)
            except RequestInProgress:  # another process finishes what the key made: no answer
                raise  # yet, so the key stays running, for a retry to take over
            except ApiError as error:  # a refusal is an answer too, and is replayed as such
                response = current_app.make_response(current_app.handle_user_exception(error))
            except Exception:
                _finish(userid, key, current_app.response_class(status=500))
                raise
            _finish(userid, key, response)
            return response

        return run_once

    return decorate
