"""What a sender is told about a message: one entry per receiver with its current status.

This is the ``data`` of the send API's answer and of its status endpoint (and what the set-up
wizard shows after its test message). The statuses are read on a connection of their own: the
pool's threads record outcomes on theirs, and the caller's session (its open transaction, objects
it has added) is left exactly as it was.
"""
from __future__ import annotations

from sqlalchemy import select

from webapp.delivery.engine import QUEUED
from webapp.extensions import db
from webapp.models import Delivery, Message

_COLUMNS = (Delivery.receiver, Delivery.username, Delivery.status, Delivery.errcode, Delivery.errmsg, Delivery.receipt)


def describe(message: Message, invalid_usernames: list[str] | None = None) -> dict:
    """The answer's ``data`` for ``message`` with the current status of each delivery, in receiver order."""
    return describe_stored(message.id, message.public_id, invalid_usernames)


def describe_stored(message_id: int, public_id: str, invalid_usernames: list[str] | None = None) -> dict:
    """:func:`describe` for a message known by its ids only, e.g. one another request has just committed.

    Nothing is read through the caller's session: its transaction may predate that commit (SQLite
    keeps the snapshot of a transaction's first read), and would not see the message at all.
    """
    with db.engine.connect() as connection:  # a fresh snapshot, outside the caller's session
        rows = connection.execute(select(*_COLUMNS).where(Delivery.message_id == message_id).order_by(Delivery.id)).all()
    return {
        "message_id": public_id,
        "deliveries": [
            {"receiver": r.receiver, "username": r.username, "status": r.status,
             "errcode": r.errcode, "errmsg": r.errmsg, "receipt": r.receipt}
            for r in rows
        ],
        "username_check": {"invalid": invalid_usernames or []},
    }


def describe_accepted(message: Message, invalid_usernames: list[str] | None = None) -> dict:
    """The answer's ``data`` as :func:`webapp.delivery.engine.accept` stored it, from memory (no database round trip).

    Taken right after ``accept``: if the database goes away before the real statuses can be read,
    the caller is still told its message was accepted (it is stored, and will be delivered) rather
    than an error that would make it send the message a second time.
    """
    return _from_memory(message, {}, invalid_usernames)


def describe_sent(message: Message, written: dict[int, dict], invalid_usernames: list[str] | None = None) -> dict:
    """The answer's ``data`` from memory: the deliveries as accepted, with the outcomes ``written`` since.

    ``written`` is what :func:`webapp.delivery.engine.send_now` returns when it knows every outcome
    it wrote (delivery id -> row values); a delivery not in it is as it was accepted. This is what
    :func:`describe` would read back, without the round trip (a receipt comes later, from WeChat).
    """
    return _from_memory(message, written, invalid_usernames)


def _from_memory(message: Message, written: dict[int, dict], invalid_usernames: list[str] | None) -> dict:
    deliveries = []
    for d in message.accepted:
        outcome = written.get(d.id)
        status, errcode, errmsg = ((outcome["status"], outcome.get("errcode"), outcome.get("errmsg"))
                                   if outcome else (d.status or QUEUED, d.errcode, d.errmsg))
        deliveries.append({"receiver": d.receiver, "username": d.username, "status": status,
                           "errcode": errcode, "errmsg": errmsg, "receipt": None})
    return {"message_id": message.public_id, "deliveries": deliveries,
            "username_check": {"invalid": invalid_usernames or []}}
