"""Claims on deliveries that belong to a live process.

A delivery being worked on carries its claim's token (``claimed_by``) and a short lease
(``claimed_until``, DELIVERY_CLAIM_LEASE_SECONDS ahead). While the claim's work runs (the send
request's calls, the retry job's run, and calls that go on after a time budget ended), a thread of
the owning process renews every lease it holds several times per lease. A process that dies, even
by ``kill -9``, stops renewing: its rows are free again within one lease, and the next run of the
retry job (every DELIVERY_JOB_SECONDS) takes them over.

An outcome is written only while the row still belongs to the claim that made the call, so a
process that was stalled past its lease never overwrites what the process that took over recorded.
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import threading
from datetime import timedelta

from flask import Flask
from sqlalchemy import update

from webapp import runtime
from webapp.extensions import db
from webapp.models import Delivery, utcnow

log = logging.getLogger(__name__)

#: A lease is renewed this many times before it would run out, so a late renewal or two is harmless.
RENEWALS_PER_LEASE = 4


class ClaimRegistry:
    """The claims this process holds, and the thread that keeps their leases alive.

    Each claim counts its holders: the code that opened it, and each delivery call still running
    for it. When the last one lets go, the claim is no longer renewed.
    """

    def __init__(self, app: Flask):
        self._app = app
        self._lock = threading.Lock()
        self._holders: dict[str, int] = {}
        self._sequence = itertools.count(1)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._pid = os.getpid()
        self._prefix = self._new_prefix()

    @staticmethod
    def _new_prefix() -> str:
        # Host and process for the operator looking at a row; the random part tells apart two
        # processes that reused a pid (a restarted container, say).
        return f"{socket.gethostname()[:24]}:{os.getpid()}:{secrets.token_hex(4)}"

    @property
    def lease(self) -> timedelta:
        """How long a claim lasts without renewal."""
        return timedelta(seconds=float(self._app.config["DELIVERY_CLAIM_LEASE_SECONDS"]))

    def open(self) -> str:
        """A new claim held by the caller (until :meth:`let_go`); its token goes into ``claimed_by``."""
        with self._lock:
            if os.getpid() != self._pid:  # forked: the parent's claims and thread are not ours
                self._pid, self._prefix, self._holders, self._thread = os.getpid(), self._new_prefix(), {}, None
            token = f"{self._prefix}:{next(self._sequence)}"[-64:]
            self._holders[token] = 1
            self._start_renewer()
        return token

    def hold(self, token: str) -> None:
        """One more holder (a delivery call about to run) for an open claim."""
        with self._lock:
            self._holders[token] = self._holders.get(token, 0) + 1

    def let_go(self, token: str) -> None:
        """One holder is done; the last one ends the claim's renewals."""
        with self._lock:
            left = self._holders.get(token, 0) - 1
            if left > 0:
                self._holders[token] = left
            else:
                self._holders.pop(token, None)

    def held(self) -> list[str]:
        """The claims being renewed now."""
        with self._lock:
            return list(self._holders)

    @property
    def renewing(self) -> bool:
        """Whether the renewer thread runs (it starts with the first claim and stops at :meth:`close`)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def close(self) -> None:
        """Stop renewing (at the end of the process): the claims still held run out within a lease."""
        with self._lock:
            self._closed = True
        self._wake.set()

    def _start_renewer(self) -> None:
        if self._closed:
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._renew_forever, name="claim-renewer", daemon=True)
            self._thread.start()

    def _renew_forever(self) -> None:
        while not self._closed:
            self._wake.wait(self.lease.total_seconds() / RENEWALS_PER_LEASE)
            self._wake.clear()
            if self._closed:
                return
            tokens = self.held()
            if not tokens:
                continue
            try:
                with self._app.app_context():
                    renew(tokens, self.lease)
            except Exception:  # the database may be away for a while: try again at the next beat
                log.warning("could not renew %d delivery claims; retrying", len(tokens), exc_info=True)


def renew(tokens: list[str], lease: timedelta) -> int:
    """Extend the lease of every row still claimed by one of ``tokens``; return how many rows."""
    until = utcnow() + lease
    with db.write_connection(durable=False) as connection:
        return connection.execute(
            update(Delivery).where(Delivery.claimed_by.in_(tokens), Delivery.claimed_until.is_not(None))
            .values(claimed_until=until)
        ).rowcount


def registry(app: Flask) -> ClaimRegistry:
    """This process's claim registry for ``app`` (one per process, kept by its process state)."""
    return runtime.state(app).part("delivery_claims", lambda: ClaimRegistry(app))
