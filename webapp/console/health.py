"""What the console's overview shows: the channel's health, recent deliveries, frequent errors."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from webapp import channel as channel_config
from webapp.api import throttle
from webapp.callback.services import last_verification, plaintext_refusals, recent_attempts
from webapp.extensions import db
from webapp.models import CHANNEL_MP, AccessToken, Delivery, utcnow
from webapp.wechat import diagnose


def token_state(configured) -> AccessToken | None:
    """The stored access token row of the configured channel (its expiry and last error), if any."""
    if configured is None:
        return None
    prefix = configured.account if configured.wx_type == CHANNEL_MP else configured.account + ":"
    return db.session.scalar(select(AccessToken).where(AccessToken.kind == configured.wx_type,
                                                       AccessToken.account.startswith(prefix))
                             .order_by(AccessToken.fetched_at.desc().nulls_last()).limit(1))


def hourly_deliveries(hours: int = 24) -> tuple[list[dict], list[datetime], dict]:
    """Deliveries created in each of the last ``hours`` hours, by status; the hours' starts (UTC); the totals."""
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=hours - 1)
    rows = db.session.execute(select(Delivery.created_at, Delivery.status).where(Delivery.created_at >= start)).all()
    buckets = [{"sent": 0, "queued": 0, "failed": 0} for _ in range(hours)]
    totals = {"sent": 0, "queued": 0, "failed": 0}
    for created_at, status in rows:
        index = int((created_at - start).total_seconds() // 3600)
        if 0 <= index < hours and status in totals:
            buckets[index][status] += 1
            totals[status] += 1
    return buckets, [start + timedelta(hours=i) for i in range(hours)], totals


def frequent_errors(language: str, days: int = 7, limit: int = 5) -> list[dict]:
    """The most frequent WeChat errcodes of the last days, with the advice for each."""
    configured = channel_config.load()
    wx_type = configured.wx_type if configured else CHANNEL_MP
    since = utcnow() - timedelta(days=days)
    rows = db.session.execute(
        select(Delivery.errcode, func.count(), func.max(Delivery.errmsg))
        .where(Delivery.errcode.is_not(None), Delivery.errcode != 0, Delivery.created_at >= since)
        .group_by(Delivery.errcode).order_by(func.count().desc()).limit(limit)
    ).all()
    return [{"errcode": code, "count": count, "advice": diagnose(code, errmsg or "", wx_type).message(language)}
            for code, count, errmsg in rows]


def overview(language: str) -> dict:
    """Everything the overview page shows."""
    configured = channel_config.load()
    buckets, starts, totals = hourly_deliveries()
    return {
        "configured": configured,
        "token": token_state(configured),
        "verification": last_verification(),
        "attempts": recent_attempts(5),
        "plaintext_refused": plaintext_refusals()[0],
        "buckets": buckets,
        "labels": [f"{hour:%H}:00" for hour in starts],
        "starts": starts,
        "totals": totals,
        "errors": frequent_errors(language),
        "api_auth_failures": throttle.recent(10),
        "now": utcnow(),
    }
