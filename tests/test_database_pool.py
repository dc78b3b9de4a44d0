"""The PostgreSQL connection pool: a connection is checked before use only after it sat idle."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from webapp import database
from webapp.database import make_engine

pytestmark = pytest.mark.postgres


def last_statement_start(observer, pid: int):
    """When the server last started a statement for backend ``pid``, as another connection sees it."""
    with observer.connect() as watch:
        return watch.execute(text("SELECT query_start FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).scalar_one()


@pytest.fixture
def engines(postgres_url):
    engine, observer = make_engine(postgres_url, pool_size=1, max_overflow=0), make_engine(postgres_url)
    yield engine, observer
    engine.dispose()
    observer.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_in_use_is_not_pinged_before_each_transaction(engines):
    engine, observer = engines
    pid = backend_pid(engine)
    before = last_statement_start(observer, pid)
    with engine.connect():
        # Checked out again at once: nothing went to the server before the caller's own statement.
        assert last_statement_start(observer, pid) == before


def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(engines, monkeypatch):
    engine, observer = engines
    monkeypatch.setattr(database, "PING_IDLE_SECONDS", 0.2)
    pid = backend_pid(engine)
    before = last_statement_start(observer, pid)
    time.sleep(0.3)
    with engine.connect() as connection:
        assert last_statement_start(observer, pid) > before  # the liveness check ran at checkout
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() == pid
    with observer.connect() as watch:  # the server drops the pooled connection (a restart, say)
        watch.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    time.sleep(0.3)
    assert backend_pid(engine) != pid  # a fresh connection, and no error for the caller
