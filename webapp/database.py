"""A small SQLAlchemy 2.x integration: one engine per app, one scoped session per request or job."""
from __future__ import annotations

from contextlib import contextmanager

from flask import Flask
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, scoped_session, sessionmaker


class Database:
    """Owns the engine and the session registry of one Flask app.

    ``db.session`` is a ``scoped_session``: each thread (request, scheduler job) gets its own
    session, removed at the end of the request or app context.
    """

    def __init__(self) -> None:
        self._factory = sessionmaker(expire_on_commit=False)
        self.session = scoped_session(self._factory)
        self.engine: Engine | None = None

    def init_app(self, app: Flask) -> None:
        """Create the engine for ``DATABASE_URL`` and remove the session after each app context."""
        url = app.config["DATABASE_URL"]
        self.engine = make_engine(url)
        self._factory.configure(bind=self.engine)
        app.extensions["database"] = self

        @app.teardown_appcontext
        def remove_session(_exc: BaseException | None) -> None:
            self.session.remove()

    @contextmanager
    def locking_session(self):
        """A new session (outside the request's) whose transaction holds the database's write lock on
        SQLite from its first statement; on PostgreSQL use ``with_for_update()`` on the rows to lock.
        Commits at the end of the block, rolls back if it raises."""
        with self.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                connection = connection.execution_options(sqlite_begin="IMMEDIATE")
            with Session(bind=connection, expire_on_commit=False) as session:
                with session.begin():
                    yield session

    @contextmanager
    def transaction(self):
        """A write transaction on the request's session: commit when the block ends, roll back if it raises.

        On SQLite a transaction that has only read cannot always become a writer (another writer may
        have committed since it began, and waiting would not help), so the read is ended first and the
        write transaction takes the database's write lock at BEGIN, waiting its turn like PostgreSQL would.
        """
        session = self.session()  # this thread's Session (the registry itself has no in_transaction)
        if self.engine.dialect.name == "sqlite":
            if session.in_transaction() and not (session.new or session.dirty or session.deleted):
                session.rollback()
            if not session.in_transaction():
                session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def make_engine(url: str) -> Engine:
    """Create an engine tuned for the database kind: SQLite gets WAL and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # WAL lets readers work while one writer commits; foreign keys are off by default in SQLite.
            # Transactions are begun by us (BEGIN IMMEDIATE where we need a write lock up front).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # execution_options(sqlite_begin="IMMEDIATE") takes the write lock at BEGIN: the SQLite
            # counterpart of PostgreSQL's SELECT ... FOR UPDATE for single-flight work.
            conn.exec_driver_sql("BEGIN " + conn.get_execution_options().get("sqlite_begin", ""))

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def is_sqlite(session: Session) -> bool:
    """Whether the session talks to SQLite (which has no row locks, only a database write lock)."""
    return session.get_bind().dialect.name == "sqlite"
