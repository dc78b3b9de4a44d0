"""Background jobs and the APScheduler that runs them, in-process or as ``flask --app wsgi scheduler``.

Every job runs inside an app context, has a fixed id, ``max_instances=1`` and ``coalesce=True``, and
is written so that two schedulers running by mistake (two processes) do no harm.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from functools import partial

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask
from webapp import channel, heartbeat, logs, runtime, tokens
from webapp.api import services as api_services
from webapp.auth import services as auth_services
from webapp.binding import services as binding_services
from webapp.callback import services as callback_services
from webapp.delivery import engine, idempotency

log = logging.getLogger(__name__)


def purge_stale_rows() -> None:
    """Delete what is no longer needed: old failed sign-ins, callback records, rate windows, bind tickets,
    idempotency records past their lifetime."""
    auth_services.purge_old_failures()
    callback_services.purge_old()
    api_services.purge_old_windows()
    binding_services.purge_expired_tickets()
    idempotency.purge_expired()


def refresh_tokens() -> None:
    """Fetch the configured channel's next access token shortly before the current one runs out.

    Callers then never wait for WeChat. Two schedulers running by mistake do no harm: one fetch
    lease is taken at a time, and the other finds the fresh token.
    """
    configured = channel.load()
    if configured is None:
        return
    tokens.get_token(configured.token_source(), margin=tokens.REFRESH_AHEAD + tokens.SCHEDULED_MARGIN)


def deliver_due() -> None:
    """Retry queued and transiently failed deliveries that are due (claimed, so workers never share one)."""
    while engine.deliver_due() >= 200:
        pass  # a full batch: there may be more due right now


#: (job id, function, interval in seconds or the configuration key that holds it)
JOBS: list[tuple[str, callable, int | str]] = [
    ("heartbeat", heartbeat.beat, "SCHEDULER_HEARTBEAT_SECONDS"),
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
            **({"next_run_time": datetime.now(timezone.utc)} if func is heartbeat.beat else {}),
        )
    return scheduler


def start_with_first_request(app: Flask) -> None:
    """Start the in-process scheduler when this process serves its first request (SCHEDULER_ENABLED).

    A process that only runs a command (``init-db``, ``create-user``, ``scheduler`` itself) serves no
    request, so it never starts a second, hidden scheduler; ``flask run`` and each WSGI worker start
    one with their first request. The scheduler belongs to the app's process state, which stops it.
    """
    if not app.config["SCHEDULER_ENABLED"] or app.testing:
        return
    process = runtime.state(app)
    lock = threading.Lock()

    def start_once() -> None:
        if process.scheduler is not None:
            return
        with lock:
            if process.scheduler is None:
                scheduler = build_scheduler(app)
                scheduler.start()
                process.scheduler = scheduler
                log.info("background scheduler started in this process")

    app.before_request_funcs.setdefault(None, []).insert(0, start_once)
