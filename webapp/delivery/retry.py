"""An administrator's retry: a failed delivery is queued again at once, and the request is audited.

The retry job (:func:`webapp.delivery.engine.deliver_due`) then sends it like any queued delivery.
The delivery keeps its ``client_msg_id``, so WeChat never shows the message twice.
"""
from __future__ import annotations

from webapp.delivery.engine import FAILED, QUEUED
from webapp.extensions import db
from webapp.models import AuditEntry, Delivery, utcnow


def retry_now(delivery_id: int, actor: str = "system") -> Delivery | None:
    """Queue a failed delivery again for ``actor`` (an administrator), audited; None when there is no such delivery.

    A delivery that is not failed is returned unchanged.
    """
    with db.transaction() as session:
        delivery = session.get(Delivery, delivery_id)
        if delivery is None or delivery.status != FAILED:
            return delivery
        # Recorded in the same transaction as the change: no retry without its audit entry, nor the reverse.
        session.add(AuditEntry(actor=actor, action="delivery.retry", target=str(delivery.receiver),
                               detail={"delivery": delivery_id, "errcode": delivery.errcode}))
        delivery.status, delivery.next_attempt_at, delivery.claimed_until, delivery.claimed_by = QUEUED, utcnow(), None, None
    return delivery
