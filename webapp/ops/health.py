"""What ``GET /healthz`` reports: the database, the scheduler's heartbeat, the access tokens held.

The answer is 200 whenever the database answers, so that a load balancer does not take a worker out
of service for a problem no worker can fix (a stopped scheduler, WeChat refusing a token); those
show as ``"status": "degraded"`` with the part that is wrong. Only a database that does not answer
makes it 503. Token values are never part of it: only whether one is held and when it expires.

``/healthz`` is public through nginx, so :func:`visible_answer` cuts the answer to its ``status``
(``ok``, ``degraded`` or ``unavailable``) for everyone but administrators and the clients allowed to
read ``/metrics`` (:func:`may_see_details`).
"""
from __future__ import annotations

import logging
import re

from flask import current_app
from sqlalchemy import select, text

from webapp import heartbeat, metrics, runtime
from webapp.extensions import db
from webapp.models import AccessToken, utcnow

log = logging.getLogger(__name__)

_ERRCODE = re.compile(r"errcode (-?\d+)")


#: The overall states, for everyone: all is well; the service answers but a part needs attention;
#: the database does not answer.
STATUSES = ("ok", "degraded", "unavailable")


def report() -> tuple[dict, int]:
    """The health answer with every detail, and its HTTP status (503 only when the database does not answer)."""
    answer = {"status": "ok", "database": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means "not healthy", whatever its type
        db.session.rollback()
        log.warning("health check: database unavailable: %s", type(exc).__name__)
        answer.update(status="unavailable", database="unavailable", scheduler=scheduler(None), tokens={})
        return answer, 503
    answer["scheduler"] = scheduler(heartbeat.age())
    answer["tokens"] = tokens()
    if answer["scheduler"]["status"] != "ok" or any(t.get("status") == "failing" for t in answer["tokens"].values()):
        answer["status"] = "degraded"
    return answer, 200


def may_see_details() -> bool:
    """Whether this request may see the details: it may read ``/metrics`` (an allowed network or the
    metrics token), or it comes from a signed-in administrator's session."""
    if metrics.scrape_allowed():
        return True
    from flask_login import current_user

    try:
        return bool(current_user.is_authenticated and current_user.is_admin)
    except Exception:  # the session's user cannot be loaded (database down): no details, still an answer
        db.session.rollback()
        log.debug("health check: the signed-in user could not be read", exc_info=True)
        return False


def visible_answer(answer: dict, details: bool) -> dict:
    """``answer`` as this client may see it: whole with ``details``, else only its overall status."""
    return answer if details else {"status": answer["status"]}


def scheduler(heartbeat_age: float | None) -> dict:
    """Whether this process runs the scheduler, and how long ago any scheduler last gave a sign of life."""
    app = current_app._get_current_object()
    stale_after = float(app.config["SCHEDULER_HEARTBEAT_STALE_SECONDS"])
    if heartbeat_age is None:
        status = "never"
    else:
        status = "ok" if heartbeat_age <= stale_after else "stale"
    state = scheduler_state(app)
    return {
        "in_process": state == "running",
        "state": state,
        "last_heartbeat_age_seconds": None if heartbeat_age is None else round(heartbeat_age, 1),
        "status": status,
    }


def scheduler_state(app) -> str:
    """``running`` or ``stopped`` (in this process), ``external`` (another process runs it), or ``off``."""
    in_process = runtime.state(app).scheduler_state
    if in_process == "none":
        return "external" if not app.config["SCHEDULER_ENABLED"] else "off"
    return in_process


def tokens() -> dict:
    """Per configured channel: whether a fresh access token is held, its remaining life, the last fetch error."""
    from webapp import channel as channel_config

    try:
        configured = channel_config.load()
    except Exception as exc:  # an unreadable configuration (SECRET_KEY changed) must not break the health check
        log.warning("health check: the channel configuration cannot be read: %s", type(exc).__name__)
        return {"configuration": {"status": "failing", "fresh": False, "expires_in_seconds": None,
                                  "last_fetch_failed": False, "last_error_code": None}}
    if configured is None:
        return {}
    source = configured.token_source()
    row = db.session.execute(
        select(AccessToken.token_enc.is_not(None).label("held"), AccessToken.expires_at, AccessToken.last_error)
        .where(AccessToken.kind == source.kind, AccessToken.account == source.account)
    ).first()
    now = utcnow()
    fresh = bool(row and row.held and row.expires_at and row.expires_at > now)
    failed = bool(row and row.last_error)
    code = _ERRCODE.search(row.last_error) if failed else None
    return {source.kind: {
        "status": "failing" if failed else ("ok" if fresh else "missing"),
        "fresh": fresh,
        "expires_in_seconds": int((row.expires_at - now).total_seconds()) if fresh else None,
        "last_fetch_failed": failed,
        "last_error_code": int(code.group(1)) if code else None,
    }}
