"""Background jobs and the APScheduler that runs them, in-process or as ``flask --app wsgi scheduler``.

Every job runs inside an app context, has a fixed id, ``max_instances=1`` and ``coalesce=True``, and
is written so that two schedulers running by mistake (two processes) do no harm.
"""
from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta, timezone
from functools import partial

import click
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from webapp import logs
from webapp.extensions import db

log = logging.getLogger(__name__)


def purge_stale_rows() -> None:
    """Delete what is no longer needed: old failed sign-ins, bind tickets expired a day ago."""
    from webapp.auth.services import purge_old_failures
    from webapp.models import BindTicket, utcnow

    from webapp.api.services import purge_old_windows
    from webapp.callback.services import purge_old

    purge_old_failures()
    purge_old()
    purge_old_windows()
    with db.transaction() as session:
        session.execute(delete(BindTicket).where(BindTicket.expires_at < utcnow() - timedelta(days=1)))


def refresh_tokens() -> None:
    """Fetch the configured channel's next access token shortly before the current one runs out.

    Callers then never wait for WeChat. Two schedulers running by mistake do no harm: the broker
    fetches under a lock and re-reads first, so the second finds the fresh token.
    """
    from webapp import channel, tokens

    configured = channel.load()
    if configured is None:
        return
    tokens.get_token(configured.token_source(), margin=tokens.REFRESH_AHEAD + tokens.SCHEDULED_MARGIN)


def deliver_due() -> None:
    """Retry queued and transiently failed deliveries that are due (claimed, so workers never share one)."""
    from webapp.delivery.engine import deliver_due as run

    while run() >= 200:
        pass  # a full batch: there may be more due right now


#: The AppState row a running scheduler keeps fresh, so that any process can tell one runs somewhere.
HEARTBEAT_KEY = "scheduler.heartbeat"


def heartbeat() -> None:
    """Write the time into the heartbeat row (and which host and process wrote it, for the operator)."""
    from webapp.models import AppState, utcnow

    now, writer = utcnow(), f"{socket.gethostname()}:{os.getpid()}"
    with db.write_connection() as connection:
        changed = connection.execute(update(AppState).where(AppState.key == HEARTBEAT_KEY)
                                     .values(value=writer, updated_at=now)).rowcount
    if not changed:
        try:
            with db.write_connection() as connection:
                connection.execute(AppState.__table__.insert().values(key=HEARTBEAT_KEY, value=writer, updated_at=now))
        except IntegrityError:
            pass  # another scheduler wrote the first beat at the same moment: its beat does as well


def heartbeat_age() -> float | None:
    """Seconds since a scheduler last wrote its heartbeat, or None when none ever did."""
    from webapp.models import AppState, utcnow

    with db.engine.connect() as connection:
        beat = connection.execute(select(AppState.updated_at).where(AppState.key == HEARTBEAT_KEY)).scalar()
    return None if beat is None else max(0.0, (utcnow() - beat).total_seconds())


#: (job id, function, interval in seconds or the configuration key that holds it)
JOBS: list[tuple[str, callable, int | str]] = [
    ("heartbeat", heartbeat, "SCHEDULER_HEARTBEAT_SECONDS"),
    ("refresh_tokens", refresh_tokens, "TOKEN_JOB_SECONDS"),
    ("deliver_due", deliver_due, "DELIVERY_JOB_SECONDS"),
    ("purge_stale_rows", purge_stale_rows, "PURGE_JOB_SECONDS"),
]


def _run_in_app(app: Flask, func) -> None:
    with app.app_context(), logs.task_context(func.__name__):  # its log lines carry the job's id
        try:
            func()
        except Exception:  # a failing job must not kill the scheduler; it runs again next time
            log.exception("job %s failed", func.__name__)


def build_scheduler(app: Flask, blocking: bool = False) -> BaseScheduler:
    """A scheduler with every job of :data:`JOBS` registered (not started)."""
    scheduler = BlockingScheduler() if blocking else BackgroundScheduler(daemon=True)
    for job_id, func, seconds in JOBS:
        scheduler.add_job(
            partial(_run_in_app, app, func),
            "interval",
            seconds=float(app.config[seconds]) if isinstance(seconds, str) else seconds,
            id=job_id,
            name=job_id,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
            # The heartbeat beats at once, so /healthz sees a new scheduler without waiting an interval.
            **({"next_run_time": datetime.now(timezone.utc)} if func is heartbeat else {}),
        )
    return scheduler


def start_if_serving(app: Flask) -> None:
    """Start the in-process scheduler when this process serves requests and SCHEDULER_ENABLED is on.

    Command-line runs (``init-db``, ``create-user``, ``scheduler`` itself) load the app too; they must
    not start a second, hidden scheduler, so only ``flask run`` and WSGI servers start one here.
    """
    if not app.config["SCHEDULER_ENABLED"] or app.testing:
        return
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.info_name != "run":
        return
    scheduler = build_scheduler(app)
    scheduler.start()
    app.extensions["scheduler"] = scheduler
    log.info("background scheduler started in this process")


def state(app: Flask) -> str:
    """``running`` (in this process), ``stopped`` (crashed or shut down) or ``external`` (another process runs it)."""
    scheduler = app.extensions.get("scheduler")
    if scheduler is None:
        return "external" if not app.config["SCHEDULER_ENABLED"] else "off"
    return "running" if scheduler.running else "stopped"
