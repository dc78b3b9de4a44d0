"""WeChat's delivery reports: TEMPLATESENDJOBFINISH events set each template message's receipt."""
from __future__ import annotations

from webapp.delivery import receipts


def template_finished(message: dict, configured) -> None:
    """Record ``Status`` (success, failed:user block, failed: system failed, ...) on the delivery with ``MsgID``."""
    msgid = message.get("MsgID") or message.get("MsgId") or ""
    if msgid:
        receipts.record_receipt(msgid, message.get("Status", ""))
    return None
