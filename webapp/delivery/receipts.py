"""Delivery receipts: WeChat's own report of whether a template message reached its receiver.

The Official Account pushes a TEMPLATESENDJOBFINISH event per template message (``Status``:
``success``, ``failed:user block``, ``failed: system failed``, ...); it names the message by the
``MsgID`` that WeChat answered the send with, which the engine stored as the delivery's ``wx_msgid``.
"""
from __future__ import annotations

from sqlalchemy import update

from webapp.extensions import db
from webapp.models import Delivery

#: The longest receipt kept (the column's width).
RECEIPT_MAX_LENGTH = 64


#: The receipt's update in plain SQL, for the callback's own connection (see ``handlers``).
RECEIPT_SQL = "UPDATE deliveries SET receipt = :receipt WHERE wx_msgid = :msgid"


def receipt_values(wx_msgid: str, status: str) -> dict:
    """The parameters of :data:`RECEIPT_SQL` for WeChat's report ``status`` on ``wx_msgid``."""
    return {"msgid": wx_msgid, "receipt": status[:RECEIPT_MAX_LENGTH]}


def record_receipt(wx_msgid: str, status: str) -> int:
    """Record WeChat's delivery report ``status`` on the delivery sent as ``wx_msgid``; returns rows updated."""
    with db.write_connection() as connection:
        return connection.execute(update(Delivery).where(Delivery.wx_msgid == wx_msgid)
                                  .values(receipt=status[:RECEIPT_MAX_LENGTH])).rowcount

