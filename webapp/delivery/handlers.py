"""WeChat's delivery reports: TEMPLATESENDJOBFINISH events set each template message's receipt."""
from __future__ import annotations

from webapp.callback import store
from webapp.delivery import receipts


def template_finished(message: dict, configured) -> None:
    """Record ``Status`` (success, failed:user block, failed: system failed, ...) on the delivery with ``MsgID``.

    Inside a callback request the write goes on the callback's own connection: WeChat pushes one
    report per template message, and a request holding two connections would let a burst of them
    take every pooled connection while each waited for its second.
    """
    msgid = message.get("MsgID") or message.get("MsgId") or ""
    if not msgid:
        return None
    status = message.get("Status", "")
    ledger = store.current()
    if ledger is None:
        receipts.record_receipt(msgid, status)
    else:
        ledger.write(receipts.RECEIPT_SQL, receipts.receipt_values(msgid, status))
    return None
