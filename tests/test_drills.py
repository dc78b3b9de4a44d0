"""Failure drills: WeChat down, the database restarted, a worker killed — while programs keep sending.

Each drill runs the real service (gunicorn workers plus a ``flask --app wsgi scheduler`` process, as
a multi-worker deployment does) against the simulated WeChat served in the test process, with short
retry settings, while calling programs keep posting messages through the send API. During the
fault the drill watches what callers are told; afterwards it waits until the queue is empty and
compares the database with what the simulated phones received: every accepted message delivered
exactly once, nothing lost, no answer a 500. docs/drills.md describes each drill.

The fault window lasts ``DRILL_SECONDS`` (about 20 s, so that the drills fit in a CI run). Set the
environment variable ``DRILL_SECONDS`` to run them for longer, e.g. ``DRILL_SECONDS=600`` for ten
minutes of outage per drill.
"""
from __future__ import annotations

import os
import pwd
import signal
import threading
import time
import uuid
from collections import Counter

import pytest
import requests

from tests.api_support import mp, service  # noqa: F401  (fixtures: the service in-process, channel connected)
from tests.crash_support import database, wait_for, wechat, world  # noqa: F401  (fixtures)
from tests.drill_support import (MP_CHANNEL, QY_CHANNEL, OwnPostgres, Senders, Service, add_followers, add_members,
                                 check_mp_exactly_once, check_qy_exactly_once, headers, postgres_binaries,
                                 connections_per_process, settle)

#: Seconds of fault per drill. Longer runs: DRILL_SECONDS=600 pytest tests/test_drills.py (up to about
#: 1200: beyond, the outage outlasts WeChat's 10-minute duplicate guards; see docs/drills.md).
DRILL_SECONDS = float(os.environ.get("DRILL_SECONDS", "20"))
#: Once the fault is over, every queued delivery must be sent within this long.
SETTLE_SECONDS = 120 + DRILL_SECONDS / 2

#: Short timings, so that a drill recovers in seconds: WeChat calls time out after 1.5 s, a send
#: request waits 3 s for WeChat, retries start after 1 s and back off to at most 4 s, the retry job
#: runs every second, and a dead worker's claimed rows are taken over 3 s after its budget ran out.
FAST = {"SCHEDULER_ENABLED": False, "WEIXIN_HTTP_TIMEOUT": 1.5, "DELIVERY_TIME_BUDGET": 3,
        "DELIVERY_RETRY_BASE_SECONDS": 1, "DELIVERY_RETRY_MAX_SECONDS": 4, "DELIVERY_JOB_SECONDS": 1,
        "DELIVERY_CLAIM_LEASE_SECONDS": 3, "DELIVERY_POOL_SIZE": 4, "DATABASE_POOL_SIZE": 4,
        "DATABASE_MAX_OVERFLOW": 6}


@pytest.fixture
def services():
    """Every service made by a test is stopped (processes killed) at the end."""
    made: list[Service] = []
    yield made
    for service in made:
        service.stop()


def deployment(services: list, database: str, wechat_base: str, tmp_path, channel: dict, workers: int = 2,
               **settings) -> tuple[Service, str]:
    """Install and start the service: gunicorn ``workers`` without scheduler, and one scheduler process."""
    service = Service(database, wechat_base, tmp_path, **{**FAST, **settings})
    services.append(service)
    secret = service.install(channel, app_code="drill")
    service.start(workers=workers, threads=4)
    service.start_scheduler()
    return service, secret


def no_server_errors(records: list[dict], allowed: tuple = (200,)) -> None:
    """No answer was a 500 (or anything but ``allowed``); every answer was JSON; no connection failed."""
    statuses = Counter(r["status"] for r in records)
    assert set(statuses) <= set(allowed), f"unexpected answers {statuses}: " + \
        str([r for r in records if r["status"] not in allowed][:3])
    assert all(r["content_type"].startswith("application/json") for r in records)


# --- the drill's tools -----------------------------------------------------------------------------

def test_a_fault_window_fails_every_call_until_it_ends(world):
    world.add_fault({"endpoint": "template_send", "kind": "errcode", "errcode": -1, "for_seconds": 0.5})
    assert world.take_fault("template_send")["errcode"] == -1
    assert world.take_fault("template_send") is not None and world.take_fault("stable_token") is None
    assert 0 < world.list_faults()[0]["remaining_seconds"] <= 0.5
    wait_for(lambda: world.take_fault("template_send") is None, 5, what="the window to end")
    assert world.list_faults() == []


def test_the_simulator_counts_the_duplicates_it_suppressed(world):
    from webapp.simulator.world import OPENID_ALICE, TEMPLATE_NOTIFICATION_ID

    token = world.mp_stable_token({"grant_type": "client_credential", "appid": MP_CHANNEL["wx_app_id"],
                                   "secret": MP_CHANNEL["wx_secret"]})["access_token"]
    body = {"touser": OPENID_ALICE, "template_id": TEMPLATE_NOTIFICATION_ID, "client_msg_id": "drill-1",
            "data": {"keyword1": {"value": "once"}}}
    assert world.mp_send_template(token, body) == world.mp_send_template(token, body)
    assert world.stats()["duplicates_suppressed"] == {"mp": 1, "qy": 0}
    assert len(world.get_messages("mp")) == 1


def test_an_unreachable_database_answers_503_with_a_sentence(make_app):
    """Without a database the send API and /healthz answer 503 JSON naming the database, never a 500."""
    app = make_app(DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    client = app.test_client()
    answer = client.post("/api/c/compapi/cmsi/send_weixin/", json={"receiver": "x", "data": {"heading": "h", "message": "m"}},
                         headers=headers("secret"))
    assert answer.status_code == 503 and answer.is_json and answer.headers["Retry-After"]
    assert answer.json["result"] is False and "database is unavailable" in answer.json["message"]
    assert "psycopg" not in answer.text and "127.0.0.1" not in answer.text
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json["database"] == "unavailable"


def test_a_message_stored_before_the_database_went_away_is_answered_queued(mp, monkeypatch):
    """The database fails after the message was stored: the caller hears "queued" (it must not send
    the message again), and the message is delivered all the same."""
    from sqlalchemy.exc import OperationalError

    from webapp.delivery import answers
    from webapp.simulator.world import OPENID_ALICE

    app, base, api = mp

    def unavailable(*args, **kwargs):
        raise OperationalError("SELECT ...", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(answers, "describe", unavailable)
    monkeypatch.setattr(answers, "describe_sent", unavailable)
    answer = api.send({"receiver": OPENID_ALICE, "data": {"heading": "Drill", "message": "stored first"}})
    assert answer.status_code == 200 and answer.json()["result"] is True, answer.text
    data = answer.json()["data"]
    assert [(d["receiver"], d["status"]) for d in data["deliveries"]] == [(OPENID_ALICE, "queued")]
    assert "being delivered in the background" in answer.json()["message"]
    monkeypatch.undo()
    status = api.status(data["message_id"]).json()["data"]["deliveries"]
    assert [d["status"] for d in status] == ["sent"]


# --- drill 1: WeChat down ---------------------------------------------------------------------------

#: The outage, in order: each fault holds for a quarter of DRILL_SECONDS, on every WeChat endpoint.
OUTAGE = [
    ("http_5xx", {"kind": "http_status", "status": 502}),
    ("system_busy", {"kind": "errcode", "errcode": -1}),
    ("timeout", {"kind": "delay", "seconds": 3}),  # twice WEIXIN_HTTP_TIMEOUT; WeChat still delivers
    ("dropped", {"kind": "drop"}),
]
#: What a queued delivery's errmsg says in each phase (the reason the caller is given).
REASONS = {
    "http_5xx": lambda d: "502" in (d["errmsg"] or ""),
    "system_busy": lambda d: d["errcode"] == -1 and d["errmsg"],
    "timeout": lambda d: "timeout" in (d["errmsg"] or "").lower() or "timed out" in (d["errmsg"] or "").lower(),
    "dropped": lambda d: "connection" in (d["errmsg"] or "").lower(),
}


@pytest.mark.parametrize("channel", ["mp", "qywx"])
def test_drill_wechat_outage(world, wechat, database, services, tmp_path, channel):
    """WeChat answers HTTP 502, then -1, then too slowly, then hangs up; then it recovers.

    Callers are told "queued" with the reason; afterwards every accepted message is delivered
    exactly once (the calls that timed out were delivered by WeChat anyway: their retries must
    be recognised by client_msg_id / WeCom's duplicate check, which the simulator reports).
    """
    receivers = add_followers(world, 40) if channel == "mp" else add_members(world, 40)
    world.update_settings({"latency_ms": 20})
    service, secret = deployment(services, database, wechat[0], tmp_path, MP_CHANNEL if channel == "mp" else QY_CHANNEL)
    senders = Senders(service.base, secret, receivers, threads=3, pause=0.2, per_message=2).start()
    try:
        wait_for(lambda: len(senders.results) >= 10, 60, 0.1, "the first answers")
        window = DRILL_SECONDS / len(OUTAGE)
        for phase, fault in OUTAGE:
            senders.phase = phase
            world.add_fault({"endpoint": "*", **fault, "for_seconds": window})
            time.sleep(window)  # the drill's timeline: the fault holds this long
        senders.phase = "after"
        world.clear_faults()
        wait_for(lambda: sum(r["phase"] == "after" for r in senders.results) >= 10, 60, 0.1, "answers after the outage")
    finally:
        records = senders.stop()
    settle(service, SETTLE_SECONDS, f"after the outage\n{service.log()}")

    no_server_errors(records)
    failed = [r for r in records if not r["answer"]["result"]]
    assert not failed, f"a transient outage failed {len(failed)} messages, e.g. {failed[:2]}"
    for phase, _ in OUTAGE:
        answers = [r["answer"] for r in records if r["phase"] == phase]
        queued = [d for a in answers for d in a["data"]["deliveries"] if d["status"] == "queued"]
        assert answers and queued, f"nothing was queued during {phase}"
        for answer in answers:
            if any(d["status"] == "queued" for d in answer["data"]["deliveries"]):
                assert "being delivered in the background" in answer["message"], answer
        assert any(REASONS[phase](d) for d in queued), f"no answer during {phase} named the reason: {queued[:3]}"
        for delivery in queued:
            assert "access_token=" not in (delivery["errmsg"] or "").replace("access_token=***", ""), delivery
    rows = service.rows()
    check = check_mp_exactly_once if channel == "mp" else check_qy_exactly_once
    result = check(world, rows, senders.accepted())
    assert result["suppressed"] >= 1, "no call that timed out was retried: the duplicate guard was not exercised"
    print(f"\nwechat outage ({channel}, {database.split(':')[0]}): {len(records)} sends, {result}")


# --- drill 2: the database restarts -----------------------------------------------------------------

@pytest.fixture
def own_postgres():
    """A PostgreSQL cluster of this test's own (initdb into a temporary folder, on a free port)."""
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl) are not installed: "
                    "apt-get install postgresql to run the database restart drill")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no 'postgres' user to run the PostgreSQL server as")
    cluster = OwnPostgres(binaries)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


class HealthWatch:
    """Polls /healthz in the background and keeps every answer."""

    def __init__(self, base: str):
        self.base, self.answers = base, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                answer = requests.get(self.base + "/healthz", timeout=10)
                self.answers.append((time.monotonic(), answer.status_code, answer.json()))
            except (requests.RequestException, ValueError) as exc:
                self.answers.append((time.monotonic(), None, {"error": str(exc)}))
            self._stop.wait(0.25)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=20)


@pytest.mark.postgres
def test_drill_database_restart(world, wechat, own_postgres, services, tmp_path):
    """PostgreSQL stops (fast shutdown) while programs keep sending, stays down a while, comes back.

    During the outage callers get a clear 503 JSON answer saying the database is unavailable (never
    a 500), /healthz says so; afterwards every message accepted with a 200 is delivered exactly
    once, and so is every message stored before its caller was told 503.
    """
    receivers = add_followers(world, 30)
    world.update_settings({"latency_ms": 20})
    service, secret = deployment(services, own_postgres.url, wechat[0], tmp_path, MP_CHANNEL)
    senders = Senders(service.base, secret, receivers, threads=3, pause=0.2, per_message=2).start()
    with HealthWatch(service.base) as health:
        try:
            wait_for(lambda: len(senders.results) >= 10, 60, 0.1, "the first answers")
            senders.phase = "outage"
            own_postgres.stop("fast")
            down = time.monotonic()
            time.sleep(max(5.0, DRILL_SECONDS / 2))  # the drill's timeline: the database stays down
            outage = [r for r in senders.results if r["sent_at"] > down]
            senders.phase = "restarting"
            own_postgres.start()
            back = time.monotonic()
            senders.phase = "after"
            wait_for(lambda: sum(r["phase"] == "after" and r["status"] == 200 for r in senders.results) >= 10, 90, 0.2,
                     "sends to succeed again after the restart")
            wait_for(lambda: health.answers and health.answers[-1][1] == 200, 60, 0.2, "/healthz to recover")
        finally:
            records = senders.stop()
    settle(service, SETTLE_SECONDS, f"after the restart\n{service.log()}")

    no_server_errors(records, allowed=(200, 503))
    refused = [r for r in outage if r["status"] == 503]
    assert refused, f"no call was refused while the database was down: {Counter(r['status'] for r in outage)}"
    for record in (r for r in records if r["status"] == 503):
        answer = record["answer"]
        assert answer["result"] is False and answer["code"] == 503, answer
        assert "database is unavailable" in answer["message"] and "retry" in answer["message"].lower(), answer
    during = [(status, body) for at, status, body in health.answers if down + 1 < at < back]
    assert any(status == 503 and body.get("database") == "unavailable" for status, body in during), during[:5]
    assert health.answers[-1][1] == 200 and health.answers[-1][2]["database"] == "ok"

    rows = service.rows()
    result = check_mp_exactly_once(world, rows, senders.accepted())
    # A message stored before the database went away is answered "queued", not 503 (which would make
    # the caller send it again); only a commit whose acknowledgement was lost can still be both.
    stored_refused = {r["tag"] for r in records if r["status"] == 503} & {row["body"] for row in rows}
    assert len(stored_refused) <= 2, f"{len(stored_refused)} messages were stored but their callers told 503"
    print(f"\ndatabase restart: {len(records)} sends, {len(refused)} answered 503 during the outage, "
          f"{len(stored_refused)} of the refused ones had been stored (delivered once all the same), {result}")


# --- drill 3: a worker killed mid-batch --------------------------------------------------------------

def test_drill_worker_killed_mid_batch(world, wechat, database, services, tmp_path):
    """``kill -9`` of the gunicorn worker delivering a 160-receiver fan-out, with senders posting.

    The master starts a new worker; the scheduler process takes the dead request's claimed rows
    over once the claim expires (time budget + DELIVERY_CLAIM_MARGIN_SECONDS). Calls in flight at
    the kill were delivered by WeChat without anyone reading the answer: their retries must be
    suppressed by client_msg_id, so that the phones show exactly one message per delivery.
    """
    fan_out = add_followers(world, 160, prefix="oFan")
    others = add_followers(world, 20, prefix="oBusy")
    # Each WeChat call takes a second, far longer than the service's own work per delivery, so that
    # at the kill the pool's threads are inside calls (their answers are then lost), even on a
    # loaded machine where the service's own work slows down.
    world.update_settings({"latency_ms": 1000})
    service, secret = deployment(services, database, wechat[0], tmp_path, MP_CHANNEL, workers=3, DELIVERY_TIME_BUDGET=20)
    workers = wait_for(lambda: len(service.workers()) == 3 and service.workers(), 30, 0.1, "three workers")
    sim_port = int(wechat[0].rsplit(":", 1)[1])
    senders = Senders(service.base, secret, others, threads=2, pause=0.3, per_message=1).start()
    content = f"fan {uuid.uuid4().hex[:8]}"
    outcome = {}

    def fan():
        try:
            outcome["answer"] = requests.post(service.base + "/api/c/compapi/v2/cmsi/send_weixin/", timeout=60,
                                              headers=headers(secret),
                                              json={"receiver": fan_out, "data": {"heading": "Fan-out", "message": content}})
        except requests.RequestException as exc:
            outcome["error"] = exc

    def delivered() -> int:
        return sum(1 for m in world.get_messages("mp") if m["data"].get("keyword1") == content)

    try:
        caller = threading.Thread(target=fan)
        caller.start()
        wait_for(lambda: delivered() >= 30, 60, 0.02, "the fan-out to be under way")
        # The worker delivering the fan-out is the one with the most connections to WeChat (one per
        # busy pool thread); the senders' workers make a call now and then. Sampled for a moment.
        connections = Counter()
        for _ in range(20):
            connections.update(connections_per_process(workers, sim_port))
            time.sleep(0.02)
        busy, most = connections.most_common(1)[0]
        assert most >= 20, f"no worker is fanning out: {connections}"
        os.kill(busy, signal.SIGKILL)
        kill_time, killed_at = time.monotonic(), delivered()
        caller.join(timeout=60)
        wait_for(lambda: len(service.workers()) == 3 and busy not in service.workers(), 60, 0.2,
                 "the master to start a new worker")
        wait_for(lambda: len(senders.results) >= 10, 60, 0.1, "the senders to keep going")
    finally:
        records = senders.stop()
    assert "answer" not in outcome and isinstance(outcome.get("error"), requests.ConnectionError), outcome
    assert killed_at < len(fan_out), "the fan-out had finished before the kill"
    settle(service, SETTLE_SECONDS, f"after the kill\n{service.log()}")

    # A sender whose request the killed worker was serving loses its answer too (its message, if
    # stored, is in the rows checked below); every other answer is a 200.
    cut = [r for r in records if r["status"] is None and r["sent_at"] < kill_time < r["answered_at"]]
    no_server_errors([r for r in records if r not in cut])
    rows = service.rows()
    result = check_mp_exactly_once(world, rows, senders.accepted())
    assert delivered() == len(fan_out) == len({m["to"] for m in world.get_messages("mp")
                                               if m["data"].get("keyword1") == content})
    assert result["calls"] >= result["deliveries"] + result["suppressed"]
    assert result["suppressed"] >= 1, "no call was in flight at the kill: the lost-answer path was not exercised"
    print(f"\nworker killed ({database.split(':')[0]}): killed after {killed_at} of {len(fan_out)}, {result}")
