"""WeChat's delivery reports: TEMPLATESENDJOBFINISH events set each template message's receipt."""
from __future__ import annotations

from webapp.callback.handlers import on
from webapp.delivery import engine


@on("event", "templatesendjobfinish")
def template_finished(message: dict, configured) -> None:
    """Record ``Status`` (success, failed:user block, failed: system failed, ...) on the delivery with ``MsgID``."""
    msgid = message.get("MsgID") or message.get("MsgId") or ""
    if msgid:
        engine.record_receipt(msgid, message.get("Status", ""))
    return None
