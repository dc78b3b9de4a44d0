"""What one process holds for the application, in one typed object with one owner.

:func:`webapp.create_app` creates a :class:`ProcessState` and keeps it in ``app.extensions``;
everything else reaches it through :func:`state`. It holds what must not be created twice in a
process and is shared by its threads (request threads, the delivery pool, the scheduler's jobs):
the HTTP session to WeChat, the delivery thread pool, the decrypted channel snapshot, the access
tokens it last read, the delivery claim registry, the in-process scheduler and the "set-up is done"
flag. Each part that threads share is guarded by a lock, and :meth:`ProcessState.shutdown` stops
and closes them at the end of the process, so that a test or an embedding program can create and
drop apps cleanly.
"""
from __future__ import annotations

import atexit
import logging
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Callable, Generic, Hashable, Mapping, Protocol, TypeVar

from flask import Flask, current_app

from webapp.wechat.http import DEFAULT_POOL_SIZE, TimeoutSession, make_session

log = logging.getLogger(__name__)

EXTENSION = "process_state"
#: How long a kept access token is served before the stored row is read again: however many sends
#: a process makes, it reads a good token's row at most once per this time.
KEPT_TOKEN_RECHECK = timedelta(seconds=2)
T = TypeVar("T")


class Closeable(Protocol):
    """A part with background work of its own (the claim registry's renewer) that must be stopped."""

    def close(self) -> None:
        """Stop the background work; called once, at shutdown."""


class Scheduler(Protocol):
    """The part of APScheduler's interface the process state uses."""

    running: bool

    def shutdown(self, wait: bool = True) -> None:
        """Stop running jobs."""


class VersionedValue(Generic[T]):
    """A value built from stored data, kept while the stored version is unchanged.

    Used for the decrypted channel configuration: every request reads the stored version (a cheap
    one-row read), and the value is built again (decrypted) only when the version differs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: Hashable | None = None
        self._value: T | None = None

    def get(self, version: Hashable | None, build: Callable[[], T | None]) -> T | None:
        """The value for ``version``: the kept one when the version is unchanged, else ``build()``."""
        with self._lock:
            if version is not None and version == self._version:
                return self._value
        value = None if version is None else build()
        with self._lock:
            self._version, self._value = version, value
        return value

    def current(self) -> tuple[Hashable, T | None] | None:
        """The kept (version, value), without looking at the stored version; None before the first :meth:`get`."""
        with self._lock:
            return None if self._version is None else (self._version, self._value)

    def forget(self) -> None:
        """Build the value again on the next :meth:`get`."""
        with self._lock:
            self._version, self._value = None, None


class KeptTokens:
    """The access tokens this process last read or fetched, each served for a short while.

    The database stays the truth across processes (``webapp.tokens``); this spares most sends the
    read of a token the process already holds. A token is served from here only while the stored
    one would still be served (its life minus the refresh-ahead margin) and for at most
    :data:`KEPT_TOKEN_RECHECK` after it was last read or fetched: a token another process replaced,
    or that an operator expired in the database, is then read again within that time. A token
    WeChat refused is never served from here: its holder asks the database, where another process
    may have replaced it already.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[Hashable, tuple[str, datetime]] = {}

    def get(self, key: Hashable, now: datetime) -> str | None:
        """The token kept for ``key``, if it may still be served at ``now``."""
        with self._lock:
            found = self._kept.get(key)
        return found[0] if found is not None and found[1] > now else None

    def keep(self, key: Hashable, token: str, usable_until: datetime, now: datetime) -> None:
        """Keep ``token`` for ``key``, read or fetched at ``now`` and due for refreshing at ``usable_until``."""
        with self._lock:
            self._kept[key] = (token, min(usable_until, now + KEPT_TOKEN_RECHECK))

    def forget(self, key: Hashable, token: str) -> None:
        """Stop serving ``token`` for ``key`` (WeChat refused it); a newer token kept meanwhile stays."""
        with self._lock:
            if self._kept.get(key, ("",))[0] == token:
                del self._kept[key]


class ProcessState:
    """The per-process parts of one application (see the module's docstring)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._lock = threading.Lock()
        self._config = config
        self._delivery_pool_size = 0
        self._delivery_pool: ThreadPoolExecutor | None = None
        self._http: TimeoutSession | None = None
        self._parts: dict[str, Closeable] = {}
        self._closed = False
        self.channel: VersionedValue[Any] = VersionedValue()
        self.tokens = KeptTokens()
        self.scheduler: Scheduler | None = None
        self.setup_done = False  # once an administrator exists it stays true; a stale False only costs a read

    @property
    def http(self) -> TimeoutSession:
        """The HTTP session every WeChat call of this process uses (one connection pool)."""
        with self._lock:
            if self._http is None:
                # One connection per delivery thread, plus the request threads' own calls (tokens, QR codes).
                self._http = make_session(pool_size=max(DEFAULT_POOL_SIZE, int(self._config["DELIVERY_POOL_SIZE"]) + 16))
            return self._http

    @property
    def delivery_pool(self) -> ThreadPoolExecutor:
        """The thread pool that makes this process's delivery calls (DELIVERY_POOL_SIZE threads).

        Created on first use; made again when the configured size changed, the old pool finishing
        the calls it has.
        """
        size = int(self._config["DELIVERY_POOL_SIZE"])
        with self._lock:
            if self._closed:
                raise RuntimeError("the application's process state is shut down")
            if self._delivery_pool is None or self._delivery_pool_size != size:
                if self._delivery_pool is not None:
                    self._delivery_pool.shutdown(wait=False)
                self._delivery_pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="delivery")
                self._delivery_pool_size = size
            return self._delivery_pool

    def part(self, name: str, create: Callable[[], Closeable]) -> Any:
        """The process's one ``name`` part, made by ``create()`` on first use (e.g. the claim registry)."""
        with self._lock:
            found = self._parts.get(name)
            if found is None:
                found = self._parts[name] = create()
            return found

    @property
    def scheduler_state(self) -> str:
        """``running`` or ``stopped`` for a scheduler started in this process, else ``none``."""
        if self.scheduler is None:
            return "none"
        return "running" if self.scheduler.running else "stopped"

    def shutdown(self) -> None:
        """Stop the scheduler and the claim renewer, let the pool finish its calls, close the session."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, http, parts, scheduler = self._delivery_pool, self._http, list(self._parts.values()), self.scheduler
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        if pool is not None:
            pool.shutdown(wait=True)  # calls in flight finish and record their outcome
        for part in parts:  # after the pool: the claims of those calls stay renewed until they end
            part.close()
        if http is not None:
            http.close()


def install(app: Flask) -> ProcessState:
    """Give ``app`` its process state, shut down when the process exits."""
    found = ProcessState(app.config)
    app.extensions[EXTENSION] = found
    # A weak reference: an app dropped by its owner (tests create many) is not kept alive for atexit.
    reference = weakref.ref(found)
    atexit.register(lambda: (lambda held: held and held.shutdown())(reference()))
    return found


def state(app: Flask | None = None) -> ProcessState:
    """The process state of ``app`` (by default the current app)."""
    return (app or current_app).extensions[EXTENSION]
