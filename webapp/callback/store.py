"""The callback's bookkeeping in the database, in as few statements as each database allows.

Every push WeChat sends goes through here: the request's (timestamp, nonce) is used up and the
event's identity admitted, both only while the stored configuration is still the version the push
was checked with (the process's decrypted copy; a stale copy makes the caller read it again and
start over). That is the whole of a callback's database work in the common case, so it runs on one
pooled DBAPI connection in autocommit mode, without the ORM or a Core connection around it (their
bookkeeping cost more than the statements themselves):

- PostgreSQL: one statement checks the version, uses up the replay key, admits the event and
  returns the reply stored for an earlier delivery of it; it asks for no disk flush at commit
  (``synchronous_commit`` off for that transaction only: a crash may forget the last instant of
  these records, which only lets a WeChat retry through again; the handlers are idempotent).
- SQLite: one ``INSERT ... ON CONFLICT DO NOTHING`` for each (the replay key's also checks the
  version); each is a transaction of its own, so the database's write lock is held only inside
  SQLite, never while Python code runs (a lock held across Python code waits for the interpreter
  lock too, and makes the other processes poll).

Nothing here keeps a transaction open, and nothing keeps a read snapshot open: on SQLite an open
reader stops the write-ahead log from being checkpointed, and every commit then gets slower.
"""
from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Iterator

from flask import g

from webapp.extensions import db
from webapp.models import UTCDateTime

#: Outcomes of :meth:`Ledger.admit` (STALE: the configuration changed, nothing was written).
NEW, DUPLICATE, REPLAY, STALE = "new", "duplicate", "replay", "stale"

#: The stored configuration is still version (:config_id, :config_version): the first row's.
_CURRENT_CONFIG = ("SELECT 1 FROM channel_config WHERE id = :config_id AND version = :config_version "
                   "AND id = (SELECT min(id) FROM channel_config)")

# Threads of one process wait their turn here rather than in SQLite, which makes a writer that finds
# the database locked sleep and poll (1 ms, 2 ms, 5 ms...).
_sqlite_statement_lock = threading.Lock()


@lru_cache(maxsize=64)
def _pyformat(sql: str) -> str:
    """``:name`` parameters as psycopg spells them (``%(name)s``)."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql.replace("%", "%%"))


_SQL = {
    "sqlite": {
        "guard": "INSERT INTO callback_replay_guard (replay_key, at) VALUES (:replay, :at) ON CONFLICT DO NOTHING",
        "guard_current": "INSERT INTO callback_replay_guard (replay_key, at) SELECT :replay, :at FROM channel_config "
                         "WHERE id = :config_id AND version = :config_version "
                         "AND id = (SELECT min(id) FROM channel_config) ON CONFLICT DO NOTHING",
        "current": _CURRENT_CONFIG,
        "event": "INSERT INTO callback_events (dedupe_key, received_at) VALUES (:key, :at) ON CONFLICT DO NOTHING",
        "reply": "SELECT reply FROM callback_events WHERE dedupe_key = :key",
        "save_reply": "UPDATE callback_events SET reply = :reply WHERE dedupe_key = :key",
        "forget": "DELETE FROM callback_events WHERE dedupe_key = :key",
        "attempt": "INSERT INTO callback_attempts (at, method, kind, outcome, mode, remote_addr, detail, channel) "
                   "VALUES (:at, :method, :kind, :outcome, :mode, :remote_addr, :detail, :channel)",
    },
    "postgresql": {
        # The final SELECT sees the table as it was before the statement: for a retry, the row (and
        # reply) of the first delivery; for a new event, no row. Nothing is written unless the
        # configuration is the expected version.
        "admit": "WITH config AS (SELECT 1 FROM channel_config WHERE id = %(config_id)s "
                 "AND version = %(config_version)s AND id = (SELECT min(id) FROM channel_config)), "
                 "guard AS (INSERT INTO callback_replay_guard (replay_key, at) SELECT %(replay)s, %(at)s FROM config "
                 "ON CONFLICT DO NOTHING RETURNING 1), "
                 "event AS (INSERT INTO callback_events (dedupe_key, received_at) SELECT %(key)s, %(at)s FROM guard "
                 "ON CONFLICT DO NOTHING RETURNING 1) "
                 "SELECT EXISTS (SELECT 1 FROM config), EXISTS (SELECT 1 FROM guard), EXISTS (SELECT 1 FROM event), "
                 "(SELECT reply FROM callback_events WHERE dedupe_key = %(key)s), "
                 "set_config('synchronous_commit', 'off', true)",
        "guard": "INSERT INTO callback_replay_guard (replay_key, at) "
                 "SELECT %(replay)s, %(at)s WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL "
                 "ON CONFLICT DO NOTHING",
        "save_reply": "UPDATE callback_events SET reply = %(reply)s WHERE dedupe_key = %(key)s "
                      "AND set_config('synchronous_commit', 'off', true) IS NOT NULL",
        "forget": "DELETE FROM callback_events WHERE dedupe_key = %(key)s",
        "attempt": "INSERT INTO callback_attempts (at, method, kind, outcome, mode, remote_addr, detail, channel) "
                   "VALUES (%(at)s, %(method)s, %(kind)s, %(outcome)s, %(mode)s, %(remote_addr)s, %(detail)s, %(channel)s)",
    },
}


class Ledger:
    """The callback's statements on one autocommit DBAPI cursor (see :func:`ledger`)."""

    def __init__(self, cursor, dialect) -> None:
        self._cursor = cursor
        self._sqlite = dialect.name == "sqlite"
        self._sql = _SQL["sqlite" if self._sqlite else "postgresql"]
        self._time = UTCDateTime().bind_processor(dialect) or (lambda value: value)

    def read(self, sql: str, params: dict | None = None) -> tuple | None:
        """The first row of a query, or None; ``sql`` names its parameters ``:name`` on every database.

        For the few reads of the callback's common case (the channel's version; whether a new
        follower is a returning one), which are cheaper here than through the ORM session.
        """
        self._cursor.execute(sql if self._sqlite else _pyformat(sql), params or {})
        rows = self._cursor.fetchall()  # to the end: on SQLite a statement left half-read keeps a snapshot open
        return tuple(rows[0]) if rows else None

    def write(self, sql: str, params: dict) -> int:
        """Run one small write (``sql`` names its parameters ``:name``) on this connection; rows changed.

        For event handlers: a handler that took a connection of its own would hold two for its
        request, and a burst of callbacks (WeChat pushes a delivery report per message) would then
        hold every pooled connection while each waited for a second one.
        """
        if self._sqlite:
            with _sqlite_statement_lock:
                self._cursor.execute(sql, params)
        else:
            self._cursor.execute(_pyformat(sql), params)
        return self._cursor.rowcount

    def _write(self, name: str, params: dict) -> int:
        if self._sqlite:
            with _sqlite_statement_lock:
                self._cursor.execute(self._sql[name], params)
        else:
            self._cursor.execute(self._sql[name], params)
        return self._cursor.rowcount

    def consume(self, replay_key: str, at: datetime) -> bool:
        """Use up a request's (timestamp, nonce): True the first time, False for a replay."""
        return self._write("guard", {"replay": replay_key, "at": self._time(at)}) == 1

    def admit(self, replay_key: str, dedupe_key: str, at: datetime, config: tuple) -> tuple[str, str | None]:
        """Use up the replay key and admit the event, if the stored configuration is still ``config``
        (``(id, version)``): (NEW, None), (DUPLICATE, first reply), (REPLAY, None) or (STALE, None)."""
        current = {"config_id": config[0], "config_version": config[1]}
        if self._sqlite:
            if self._write("guard_current", {"replay": replay_key, "at": self._time(at), **current}) != 1:
                self._cursor.execute(self._sql["current"], current)
                return (REPLAY if self._cursor.fetchall() else STALE), None
            if self._write("event", {"key": dedupe_key, "at": self._time(at)}) == 1:
                return NEW, None
            self._cursor.execute(self._sql["reply"], {"key": dedupe_key})
            rows = self._cursor.fetchall()
            return DUPLICATE, rows[0][0] if rows else None
        self._cursor.execute(self._sql["admit"],
                             {"replay": replay_key, "key": dedupe_key, "at": self._time(at), **current})
        still_current, fresh, new, reply, _setting = self._cursor.fetchone()
        if not still_current:
            return STALE, None
        if not fresh:
            return REPLAY, None
        return (NEW, None) if new else (DUPLICATE, reply)

    def save_reply(self, dedupe_key: str, reply: str) -> None:
        """Keep the reply given to an event, for WeChat's retries of it."""
        self._write("save_reply", {"key": dedupe_key, "reply": reply})

    def forget(self, dedupe_key: str) -> None:
        """Forget an admitted event (its handler failed): WeChat's retry of it runs the handler again."""
        self._write("forget", {"key": dedupe_key})

    def attempt(self, at: datetime, method: str, kind: str, outcome: str, mode: str, remote_addr: str, detail: str,
                channel: str = "mp") -> None:
        """Add a request's outcome to the attempt log the set-up wizard and the console show
        (``channel``: whose callback it was, the Official Account's or the WeCom application's)."""
        self._write("attempt", {"at": self._time(at), "method": method, "kind": kind, "outcome": outcome,
                                "mode": mode, "remote_addr": remote_addr[:64], "detail": detail[:500],
                                "channel": channel})


def current() -> Ledger | None:
    """The ledger of the callback request being handled, for its event handlers' reads; else None."""
    return g.get("callback_ledger")


@contextmanager
def ledger() -> Iterator[Ledger]:
    """A :class:`Ledger` on a pooled connection of its own, in autocommit mode until the block ends.

    While the block runs, :func:`current` returns it.
    """
    engine = db.engine
    pooled = engine.raw_connection()
    connection = pooled.driver_connection
    postgresql = engine.dialect.name == "postgresql"
    try:
        if postgresql:
            pooled.rollback()  # the pool's liveness check may have left a transaction open
            connection.autocommit = True
        cursor = pooled.cursor()
        g.callback_ledger = opened = Ledger(cursor, engine.dialect)
        try:
            yield opened
        finally:
            g.pop("callback_ledger", None)
            cursor.close()
    finally:
        try:
            if postgresql and not connection.closed:
                connection.autocommit = False
        finally:
            pooled.close()  # back to the pool
