"""Console work that changes things: calling applications, and the delivery log's queries."""
from __future__ import annotations

import json
import shlex
import time as clock
from datetime import datetime, time, timezone

from flask import session
from sqlalchemy import func, select

from webapp import secretbox
from webapp.extensions import db
from webapp.models import ApiApp, AuditEntry, Delivery, Message

# The send API path the examples use: the one BlueKing's SDK calls by default (bk_api_ver "v2").
SEND_PATH = "/api/c/compapi/v2/cmsi/send_weixin/"
EXAMPLE_DATA = {"heading": "Disk alert", "message": "disk /data 91% full"}
# A new secret waits this long in the session for the page that shows it once.
SHOW_SECRET_WITHIN_SECONDS = 300
_SECRET_KEY = "console.new_secret"


def set_enabled(api_app: ApiApp, enabled: bool, actor: str) -> None:
    """Enable or disable an application (a disabled one gets 401 on every call)."""
    with db.transaction() as session:
        api_app.enabled = enabled
        session.add(AuditEntry(actor=actor, action="api_app.enable" if enabled else "api_app.disable", target=api_app.app_code))


def set_rate_limit(api_app: ApiApp, per_minute: int, actor: str) -> None:
    """Change an application's requests-per-minute limit."""
    with db.transaction() as session:
        old = api_app.rate_limit_per_minute
        api_app.rate_limit_per_minute = per_minute
        session.add(AuditEntry(actor=actor, action="api_app.rate_limit", target=api_app.app_code,
                               detail={"from": old, "to": per_minute}))


def _day(text: str, end: bool = False) -> datetime | None:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except (TypeError, ValueError):
        return None
    return datetime.combine(day, time.max if end else time.min, tzinfo=timezone.utc)


def delivery_log(status: str = "", receiver: str = "", app_code: str = "", since: str = "", until: str = "",
                 limit: int = 50, offset: int = 0):
    """Deliveries (newest first) with their message and application, filtered; and the total."""
    query = (select(Delivery, Message, ApiApp.app_code).join(Message, Message.id == Delivery.message_id)
             .outerjoin(ApiApp, ApiApp.id == Message.api_app_id))
    if status in ("queued", "sent", "failed"):
        query = query.where(Delivery.status == status)
    if receiver:
        like = f"%{receiver.strip().lower()}%"
        query = query.where(func.lower(Delivery.receiver).like(like) | func.lower(func.coalesce(Delivery.username, "")).like(like))
    if app_code:
        query = query.where(ApiApp.app_code == app_code)
    if _day(since):
        query = query.where(Delivery.created_at >= _day(since))
    if _day(until, end=True):
        query = query.where(Delivery.created_at <= _day(until, end=True))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.execute(query.order_by(Delivery.id.desc()).limit(limit).offset(offset)).all()
    return rows, total


# --- a new application secret, shown once after the redirect that follows Register or New secret --------

def keep_secret_for_next_page(app_code: str, secret: str, *, rotated: bool) -> None:
    """Hand a new secret to the next page this browser opens (encrypted: the session is a readable cookie)."""
    session[_SECRET_KEY] = {"code": app_code, "secret": secretbox.box().encrypt(secret), "rotated": rotated,
                            "at": int(clock.time())}


def take_secret() -> dict | None:
    """The secret kept by :func:`keep_secret_for_next_page`, once: ``{"code", "secret", "rotated"}``, or None."""
    kept = session.pop(_SECRET_KEY, None)
    if not isinstance(kept, dict) or clock.time() - kept.get("at", 0) > SHOW_SECRET_WITHIN_SECONDS:
        return None
    try:
        secret = secretbox.box().decrypt(kept["secret"])
    except (KeyError, TypeError, secretbox.SecretUnreadable):
        return None
    return {"code": kept.get("code", ""), "secret": secret, "rotated": bool(kept.get("rotated"))}


def example_calls(base_url: str, app_code: str, secret: str, username: str) -> dict[str, str]:
    """Ready-to-paste calls of the send API at ``base_url``: a curl command and BlueKing SDK Python.

    Both send the example message to ``username`` (the administrator looking at the page).
    """
    url = base_url.rstrip("/") + SEND_PATH
    credentials = json.dumps({"bk_app_code": app_code, "bk_app_secret": secret, "bk_username": username})
    body = json.dumps({"receiver__username": username, "data": EXAMPLE_DATA}, ensure_ascii=False)
    curl = " \\\n  ".join([
        f"curl -s -X POST {shlex.quote(url)}",
        "-H 'Content-Type: application/json'",
        f"-H {shlex.quote('X-Bkapi-Authorization: ' + credentials)}",
        f"-d {shlex.quote(body)}",
    ])
    python = "\n".join([
        "from bkapi_component.open.shortcuts import get_client_by_username",
        "",
        f"client = get_client_by_username({_py(username)}, endpoint={_py(base_url.rstrip('/'))},",
        f"                                bk_app_code={_py(app_code)}, bk_app_secret={_py(secret)})",
        f"answer = client.cmsi.send_weixin({{\"receiver__username\": {_py(username)},",
        f"                                  \"data\": {json.dumps(EXAMPLE_DATA, ensure_ascii=False)}}})",
        "print(answer[\"result\"], answer[\"message\"])",
    ])
    return {"curl": curl, "python": python, "url": url}


def _py(text: str) -> str:
    """A Python string literal for ``text`` (JSON's double-quoted form is one)."""
    return json.dumps(text, ensure_ascii=False)
