"""A fan-out to many Official Account followers: the calls share their preparation and their writes."""
from __future__ import annotations

import threading

from sqlalchemy import event, text

from tests.api_support import mp, service, sim  # noqa: F401  (fixtures)
from webapp.extensions import db
from webapp.simulator import get_world

RECEIVERS = 150


def followers(app, count: int) -> list[str]:
    """``count`` simulated followers of the Official Account (openids of 28 characters)."""
    openids = [f"oFan{i:024d}" for i in range(count)]
    world = get_world(app)
    for openid in openids:
        world.upsert_mp_user(openid, None, True)
    return openids


class Statements:
    """The SQL statements the app's engine runs (in any thread) while it is attached."""

    def __init__(self, app):
        self.engine = db.engine if app is None else app.extensions["database"].engine
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, _connection, _cursor, statement, _parameters, _context, _executemany):
        with self.lock:
            self.seen.append(" ".join(statement.split()))

    def count(self, prefix: str) -> int:
        return sum(1 for statement in self.seen if statement.upper().startswith(prefix.upper()))


def test_a_fan_out_writes_its_outcomes_in_batches_and_reads_the_token_once(mp):
    app, base, api = mp
    openids = followers(app, RECEIVERS)
    api.send({"receiver__username": "alice", "data": {"heading": "Disk", "message": "warm"}})  # a token is stored
    with Statements(app) as statements:
        answer = api.send({"receiver": ",".join(openids), "data": {"heading": "Disk", "message": "full"}}).json()
    assert [d["status"] for d in answer["data"]["deliveries"]] == ["sent"] * RECEIVERS, answer
    outcome_writes = sum(1 for s in statements.seen if s.startswith("UPDATE deliveries") and "wx_msgid" in s)
    # One write per call would be 150 statements; batches of up to 64 make a handful.
    assert 1 <= outcome_writes <= 10, [s[:90] for s in statements.seen if s.startswith("UPDATE")]
    # The token of the first send is held by this process: the fan-out does not read it again.
    assert statements.count("SELECT access_tokens.id") == 0
    assert statements.count("SELECT messages") == 0 and statements.count("SELECT deliveries") <= 2


def test_a_failing_token_fetch_is_one_wechat_call_for_the_whole_fan_out(mp):
    app, base, api = mp
    openids = followers(app, 40)
    with app.app_context():
        with db.transaction() as session:
            session.execute(text("DELETE FROM access_tokens"))  # the next send must fetch one
    sim(base, "faults", {"endpoint": "stable_token", "kind": "errcode", "errcode": -1, "count": 100})
    before = sim(base, "stats", method="GET")["calls"].get("stable_token", 0)
    answer = api.send({"receiver": ",".join(openids), "data": {"heading": "Disk", "message": "full"}}).json()
    assert {d["status"] for d in answer["data"]["deliveries"]} == {"queued"}, answer
    assert sim(base, "stats", method="GET")["calls"].get("stable_token", 0) - before == 1
