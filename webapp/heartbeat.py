"""The scheduler's heartbeat: one AppState row a running scheduler keeps fresh.

Any process (a web worker answering ``/healthz``, a metrics scrape) can then tell whether a
scheduler runs somewhere, on this host or another.
"""
from __future__ import annotations

import os
import socket

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from webapp.extensions import db
from webapp.models import AppState, utcnow

#: The AppState row of the heartbeat.
KEY = "scheduler.heartbeat"


def beat() -> None:
    """Write the time into the heartbeat row (and which host and process wrote it, for the operator)."""
    now, writer = utcnow(), f"{socket.gethostname()}:{os.getpid()}"
    with db.write_connection() as connection:
        changed = connection.execute(update(AppState).where(AppState.key == KEY)
                                     .values(value=writer, updated_at=now)).rowcount
    if not changed:
        try:
            with db.write_connection() as connection:
                connection.execute(AppState.__table__.insert().values(key=KEY, value=writer, updated_at=now))
        except IntegrityError:
            pass  # another scheduler wrote the first beat at the same moment: its beat does as well


def age() -> float | None:
    """Seconds since a scheduler last wrote its heartbeat, or None when none ever did."""
    with db.engine.connect() as connection:
        last = connection.execute(select(AppState.updated_at).where(AppState.key == KEY)).scalar()
    return None if last is None else max(0.0, (utcnow() - last).total_seconds())
