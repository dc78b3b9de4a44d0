"""Outcomes of delivery calls, written in batches by the claim that made the calls.

A fan-out to hundreds of receivers would otherwise write one UPDATE per call. The pool's threads
add each outcome here; whichever thread adds the FLUSH_AT-th one, or the last expected one, or
finds the oldest one waiting longer than FLUSH_AFTER_SECONDS, writes them all with one statement
per shape of outcome. The caller that waits for the calls flushes once more before it answers, so
the answer reads what was sent. A row is written only while ``claim`` still holds it (another
process may have taken over a stalled one), and the claim is held until the outcome is written:
the calls' holds on the claim end after their outcome is flushed, not when WeChat answered.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from sqlalchemy import bindparam, update

from webapp import metrics
from webapp.extensions import db
from webapp.models import Delivery, utcnow

log = logging.getLogger(__name__)

#: Outcomes written in one go at most; and how long one may wait for companions.
FLUSH_AT = 64
FLUSH_AFTER_SECONDS = 0.2


class Outcomes:
    """The pending outcomes of one claim's calls (thread-safe)."""

    def __init__(self, claim: str) -> None:
        self._claim = claim
        self._lock = threading.Lock()
        self._pending: list[tuple[int, str, dict]] = []  # (delivery id, channel, row values)
        self._first_at = 0.0
        self._expected = 0
        # What was written, per delivery id: lets a sender answer from memory instead of reading the
        # rows back. ``_exact`` turns false when a write may have missed rows (taken over by another
        # claim), and then only the database knows.
        self._written: dict[int, dict] = {}
        self._exact = True

    def expect(self, count: int) -> None:
        """``count`` more calls will report (or be cancelled, see :meth:`cancelled`)."""
        with self._lock:
            self._expected += count

    def cancelled(self, count: int) -> None:
        """``count`` expected calls never ran (their rows are released by the caller)."""
        with self._lock:
            self._expected -= count

    def add(self, delivery_ids: list[int], channel: str, values: dict) -> None:
        """The outcome of one call for ``delivery_ids``; writes the batch when it is its turn."""
        with self._lock:
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.extend((delivery_id, channel, values) for delivery_id in delivery_ids)
            self._expected -= 1
            due = (self._expected <= 0 or len(self._pending) >= FLUSH_AT
                   or time.monotonic() - self._first_at >= FLUSH_AFTER_SECONDS)
        if due:
            self.flush()

    def flush(self) -> None:
        """Write every pending outcome now (one UPDATE statement per shape of outcome)."""
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            exact = write(batch, self._claim)
            with self._lock:
                if exact:
                    self._written.update((delivery_id, values) for delivery_id, _, values in batch)
                else:
                    self._exact = False

    def written(self) -> dict[int, dict] | None:
        """The row values written so far per delivery id, or None when the database must be asked."""
        with self._lock:
            return dict(self._written) if self._exact else None


_UPDATES: dict[tuple[str, ...], object] = {}


def _update_statement(keys: tuple[str, ...]):
    """The UPDATE that sets ``keys`` on one claimed delivery, built once per set of keys.

    A statement built afresh for every write costs more Python than the database needs to run it.
    """
    statement = _UPDATES.get(keys)
    if statement is None:
        table = Delivery.__table__
        statement = _UPDATES[keys] = (
            update(table)
            .where(table.c.id == bindparam("row_id"), table.c.claimed_by == bindparam("claim"))
            .values(updated_at=bindparam("now"), attempts=table.c.attempts + 1,
                    **{key: bindparam(f"new_{key}") for key in keys}))
    return statement


def write(batch: list[tuple[int, str, dict]], claim: str) -> bool:
    """Write ``(delivery id, channel, values)`` outcomes of calls made by ``claim``; count them in the metrics.

    Each counts one attempt. Rows with the same columns to set go in one executemany UPDATE.
    Returns whether every row is known to be written (false when one was taken over by another
    claim, or the driver cannot count the rows of an executemany).
    """
    shapes: dict[tuple[str, ...], list[dict]] = {}
    for delivery_id, _, values in batch:
        shapes.setdefault(tuple(sorted(values)), []).append(
            {"row_id": delivery_id, **{f"new_{key}": value for key, value in values.items()}})
    now = utcnow()
    written, exact = 0, True
    with db.write_connection() as connection:
        for keys, rows in shapes.items():
            for row in rows:
                row["claim"], row["now"] = claim, now
            result = connection.execute(_update_statement(keys), rows[0] if len(rows) == 1 else rows)
            written += result.rowcount or 0
        exact = connection.dialect.supports_sane_multi_rowcount
    if exact and written < len(batch):
        log.warning("%d of %d deliveries were taken over by another claim; their outcome here is not recorded",
                    len(batch) - written, len(batch))
    counted = Counter((channel, values.get("status"), values.get("errcode")) for _, channel, values in batch)
    for (channel, status, errcode), count in counted.items():
        metrics.deliveries_finished(channel, {"status": status, "errcode": errcode}, count)
    return exact and written == len(batch)
