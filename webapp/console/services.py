"""Console work that changes things: calling applications, and the delivery log's queries."""
from __future__ import annotations

from datetime import datetime, time, timezone

from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import ApiApp, AuditEntry, Delivery, Message


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
