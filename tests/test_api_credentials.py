"""Credentials and rate limit of the send API: what a call costs the database, and that changes take effect."""
import contextlib
import time

import pytest
from sqlalchemy import event, select, text, update

from tests.api_support import mp, service  # noqa: F401  (fixtures)
from webapp.api.apps import VERIFIED_FOR_SECONDS, rotate_secret
from webapp.console.services import set_enabled
from webapp.database import make_engine
from webapp.extensions import db
from webapp.models import ApiApp, RateWindow
from webapp.simulator.world import OPENID_ALICE

BODY = {"receiver__username": "alice", "data": {"heading": "Disk alert", "message": "disk /data 91% full"}}


@pytest.fixture
def database_url(either_database_url):
    """Each test on SQLite and on PostgreSQL (the rate-limit count is a statement per database kind)."""
    return either_database_url


@contextlib.contextmanager
def statements(app):
    """The SQL statements the app's engine runs inside the block (a list filled as they run)."""
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

    def record(_conn, _cursor, statement, _params, _context, _many):
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _app_row(app) -> ApiApp:
    return db.session.scalar(select(ApiApp).where(ApiApp.app_code == "bk_monitor"))


def test_a_repeated_correct_secret_costs_no_database_read_and_the_count_one_statement(mp):
    app, base, api = mp
    assert api.send(BODY).json()["result"] is True  # verified against the stored hash, then remembered
    with statements(app) as seen:
        assert api.send(BODY).json()["result"] is True
    assert not [s for s in seen if "api_apps" in s]
    assert len([s for s in seen if "rate_windows" in s]) == 1  # the upsert answers the count itself
    assert len(_receiver_reads(seen)) == 1  # the users and their bindings in one query
    with statements(app) as seen:
        assert api.send({"receiver": OPENID_ALICE, "data": BODY["data"]}).json()["data"]["deliveries"][0]["username"] == "alice"
    assert len(_receiver_reads(seen)) == 1 and not [s for s in seen if "api_apps" in s]


def _receiver_reads(seen: list[str]) -> list[str]:
    return [s for s in seen if s.startswith("SELECT") and ("FROM bindings" in s or "FROM users" in s)]


def test_a_wrong_secret_is_refused_every_time_even_after_the_right_one_was_remembered(mp):
    app, base, api = mp
    assert api.send(BODY).status_code == 200
    right = api.secret
    api.secret = right + "x"
    for _ in range(2):
        with statements(app) as seen:
            answer = api.send(BODY)
        assert answer.status_code == 401 and "wrong" in answer.json()["message"]
        assert [s for s in seen if "api_apps" in s]  # read and checked again: wrong pairs are never remembered
    api.secret = right
    assert api.send(BODY).status_code == 200


def test_disabling_an_application_refuses_its_next_call_at_once(mp):
    app, base, api = mp
    assert api.send(BODY).status_code == 200
    with app.app_context():
        set_enabled(_app_row(app), False, "admin")  # the console's way
    answer = api.send(BODY)
    assert answer.status_code == 401 and "disabled" in answer.json()["message"]
    with app.app_context():
        set_enabled(_app_row(app), True, "admin")
    assert api.send(BODY).status_code == 200
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(ApiApp).values(enabled=False))  # a bulk statement, no ORM object
    assert api.send(BODY).status_code == 401


def test_a_rotated_secret_stops_working_at_once(mp):
    app, base, api = mp
    assert api.send(BODY).status_code == 200
    with app.app_context():
        new = rotate_secret(_app_row(app), actor="admin")
    assert api.send(BODY).status_code == 401
    api.secret = new
    assert api.send(BODY).status_code == 200


def test_a_lower_rate_limit_applies_at_once_and_every_call_is_counted(mp):
    app, base, api = mp
    if time.gmtime().tm_sec >= 55:
        time.sleep(6)  # every call below in one minute
    assert api.send(BODY).status_code == 200  # remembered with the limit of that moment
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(ApiApp).values(rate_limit_per_minute=3))
    assert [api.send(BODY).status_code for _ in range(2)] == [200, 200]  # calls 2 and 3 of the minute
    refused = api.send(BODY)
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
    with app.app_context():
        assert db.session.scalars(select(RateWindow.count)).all() == [4]  # a refused call counts too


def test_a_change_made_by_another_process_is_seen_within_a_second(mp):
    app, base, api = mp
    assert api.send(BODY).status_code == 200
    other = make_engine(app.config["DATABASE_URL"])  # another process's connection: no ORM event here
    try:
        with other.begin() as connection:
            connection.execute(text("UPDATE api_apps SET enabled = :off"), {"off": False})
    finally:
        other.dispose()
    time.sleep(VERIFIED_FOR_SECONDS + 0.1)
    answer = api.send(BODY)
    assert answer.status_code == 401 and "disabled" in answer.json()["message"]
