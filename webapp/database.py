"""A small SQLAlchemy 2.x integration: one engine per app, one scoped session per request or job."""
from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager, nullcontext

from flask import Flask
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, scoped_session, sessionmaker


class Database:
    """Owns the engine and the session registry of one Flask app.

    ``db.session`` is a ``scoped_session``: each thread (request, scheduler job) gets its own
    session, removed at the end of the request or app context.
    """

    def __init__(self) -> None:
        self._factory = sessionmaker(expire_on_commit=False)
        # SQLite admits one writer at a time and makes the others sleep and poll (1 ms, 2 ms, 5 ms...);
        # threads of one process queue on this lock instead, which is far cheaper under load.
        self._sqlite_writer = threading.Lock()
        self.session = scoped_session(self._factory)
        self.engine: Engine | None = None

    def init_app(self, app: Flask) -> None:
        """Create the engine for ``DATABASE_URL`` and remove the session after each app context."""
        url = app.config["DATABASE_URL"]
        self.engine = make_engine(url, app.config.get("DATABASE_POOL_SIZE", 5), app.config.get("DATABASE_MAX_OVERFLOW", 10))
        self._factory.configure(bind=self.engine)
        app.extensions["database"] = self

        @app.teardown_appcontext
        def remove_session(_exc: BaseException | None) -> None:
            self.session.remove()

    @contextmanager
    def write_connection(self, durable: bool = True):
        """A Core connection in a write transaction of its own (outside the request's session).

        On SQLite it holds the database's write lock from BEGIN; commits at the end of the block,
        rolls back if it raises. For short, hot writes that need no ORM objects. ``durable=False``
        lets PostgreSQL acknowledge the commit before it reaches the disk (a crash may lose the last
        fraction of a second of such writes, never corrupt anything): for bookkeeping only.
        """
        sqlite = self.engine.dialect.name == "sqlite"
        with self._sqlite_writer if sqlite else nullcontext(), self.engine.connect() as connection:
            if sqlite:
                connection = connection.execution_options(sqlite_begin="IMMEDIATE")
            with connection.begin():
                if not durable and connection.dialect.name == "postgresql":
                    connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield connection

    @contextmanager
    def transaction(self):
        """A write transaction on the request's session: commit when the block ends, roll back if it raises.

        On SQLite a transaction that has only read cannot always become a writer (another writer may
        have committed since it began, and waiting would not help), so the read is ended first and the
        write transaction takes the database's write lock at BEGIN, waiting its turn like PostgreSQL would.
        """
        session = self.session()  # this thread's Session (the registry itself has no in_transaction)
        if self.engine.dialect.name != "sqlite":
            with self._committing(session):
                yield session
            return
        with self._sqlite_writer:
            if session.in_transaction() and not (session.new or session.dirty or session.deleted):
                session.rollback()
            if not session.in_transaction():
                session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            with self._committing(session):
                yield session

    @staticmethod
    @contextmanager
    def _committing(session: Session):
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def make_engine(url: str, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """Create an engine tuned for the database kind: SQLite gets WAL and a busy timeout.

    ``pool_size + max_overflow`` is the most connections one process opens; with PostgreSQL keep
    workers x that under the server's max_connections (100 by default).
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=pool_size, max_overflow=max_overflow
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # WAL lets readers work while one writer commits; foreign keys are off by default in SQLite.
            # Transactions are begun by us (BEGIN IMMEDIATE where we need a write lock up front).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            # WAL is a property of the database file: switch once (switching needs a moment alone with
            # the file, which a busy database may refuse), then every connection finds it on.
            for attempt in range(20):
                try:
                    if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        cursor.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError:
                    # Another process holds the file while switching it: it will be WAL in a moment.
                    time.sleep(0.05 * (attempt + 1))
            # In WAL mode NORMAL keeps the database consistent through crashes and only risks the last
            # commits on a power loss; FULL would fsync on every commit.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # execution_options(sqlite_begin="IMMEDIATE") takes the write lock at BEGIN: the SQLite
            # counterpart of PostgreSQL's SELECT ... FOR UPDATE for single-flight work.
            conn.exec_driver_sql("BEGIN " + conn.get_execution_options().get("sqlite_begin", ""))

        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow)
    _ping_when_idle(engine)
    return engine


#: A pooled server connection unused for longer than this is checked with ``SELECT 1`` before use.
PING_IDLE_SECONDS = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle for a while.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: three round trips (the statement, its
    implicit BEGIN, the ROLLBACK) before every transaction, a large share of a short request. A
    connection handed back a moment ago was working a moment ago; one that sat idle may have been
    cut (a server restart, a firewall's idle timeout) and is pinged, and replaced if it is dead. A
    connection that breaks between two quick uses fails that one statement (the pool then drops
    every connection made before the failure, so the next checkout opens a fresh one).
    """

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_IDLE_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:
            # The pool discards this connection and checks out another (a fresh one if need be).
            raise DisconnectionError("the pooled connection is no longer usable") from exc


def is_sqlite(session: Session) -> bool:
    """Whether the session talks to SQLite (which has no row locks, only a database write lock)."""
    return session.get_bind().dialect.name == "sqlite"
