"""Idempotency keys of the send API: the same request again answers the first message and sends nothing.

Over real HTTP with the built-in simulator (``tests/api_support.py``), then with real gunicorn workers
on PostgreSQL: two identical requests at the same moment in two processes make one message, and a
caller whose worker was killed mid-send retries with its key and gets its message, delivered once.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, text, update

from tests.api_support import SEND, mp, service, sim, sim_messages  # noqa: F401  (fixtures)
from tests.crash_support import postgres_schema, wait_for, wechat, world  # noqa: F401  (fixtures)
from tests.drill_support import (MP_CHANNEL, Service, add_followers, check_mp_exactly_once, connections_per_process,
                                 headers, settle)
from tests.gunicorn_support import installations, start_workers
from tests.binding_support import connect_qy
from webapp import channel, jobs
from webapp.api.apps import create_app_credentials
from webapp.delivery import engine, idempotency
from webapp.delivery.content import Notification
from webapp.extensions import db
from webapp.models import Delivery, IdempotencyRecord, Message
from webapp.simulator.world import OPENID_ALICE, OPENID_BOB

BODY = {"receiver__username": "alice,bob", "data": {"heading": "Deploy", "message": "release 4.2 is live"}}
SEND_MSG = "/api/c/compapi/v2/cmsi/send_msg/"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def counts(app) -> tuple[int, int]:
    with app.app_context():
        found = (db.session.scalar(select(func.count()).select_from(Message)),
                 db.session.scalar(select(func.count()).select_from(Delivery)))
        db.session.remove()
        return found


def template_sends(base: str) -> int:
    return sim(base, "stats", method="GET")["calls"].get("template_send", 0)


def post(api, body: dict, key: str | None = None, path: str = SEND, **extra_headers) -> requests.Response:
    extra = {"Idempotency-Key": key} if key is not None else {}
    return requests.post(api.base + path, json=body, headers=api.headers(**extra, **extra_headers), timeout=60)


# --- one process ---------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["header", "body"])
def test_the_same_key_again_answers_the_first_message_and_sends_nothing(mp, where):
    app, base, api = mp
    key = str(uuid.uuid4())
    body, header = (BODY, key) if where == "header" else ({**BODY, "idempotency_key": key}, None)
    first = post(api, body, header)
    assert first.status_code == 200 and first.json()["result"] is True, first.text
    assert "Idempotent-Replayed" not in first.headers
    sent, rows = template_sends(base), counts(app)
    assert sent == 2 and rows == (1, 2)

    again = post(api, body, header)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["data"] == {**first.json()["data"], "deliveries": [
        {**d, "receipt": again.json()["data"]["deliveries"][i]["receipt"]} for i, d in enumerate(first.json()["data"]["deliveries"])]}
    assert again.json()["request_id"] != first.json()["request_id"]  # a request of its own
    assert template_sends(base) == sent and counts(app) == rows and len(sim_messages(base)) == 2

    # The key is the caller's own: the credentials may move (header, body) without changing the request.
    moved = requests.post(base + SEND, json={**body, "bk_app_code": api.code, "bk_app_secret": api.secret},
                          headers={"Idempotency-Key": header} if header else {}, timeout=60)
    assert moved.json()["data"]["message_id"] == first.json()["data"]["message_id"]
    assert template_sends(base) == sent


def test_a_repeated_request_answers_the_current_statuses_and_the_names_that_failed(mp):
    app, base, api = mp
    key = "order-7781-shipped"
    body = {"receiver__username": "alice,nobody", "data": {"heading": "h", "message": "m"}}
    first = post(api, body, key).json()
    assert first["data"]["username_check"] == {"invalid": ["nobody"]}
    with app.app_context():
        with db.transaction() as session:  # the delivery report came meanwhile
            session.execute(update(Delivery).where(Delivery.receiver == OPENID_ALICE).values(receipt="success"))
        db.session.remove()
    again = post(api, body, key).json()
    assert again["result"] is False and again["code"] == first["code"] == 1306201
    assert again["data"]["username_check"] == {"invalid": ["nobody"]}
    assert [d["receipt"] for d in again["data"]["deliveries"]] == ["success", None]


def test_the_same_key_with_another_body_is_refused_with_409(mp):
    app, base, api = mp
    key = str(uuid.uuid4())
    first = post(api, BODY, key).json()["data"]["message_id"]
    sent, rows = template_sends(base), counts(app)
    other = {**BODY, "data": {**BODY["data"], "message": "release 4.3 is live"}}
    answer = post(api, other, key)
    assert answer.status_code == 409
    body = answer.json()
    assert body["result"] is False and body["code"] == 409 and first in body["message"]
    assert "Use a new key" in body["message"] and isinstance(body["request_id"], str)
    zh = post(api, other, key, **{"Accept-Language": "zh-CN"}).json()["message"]
    assert "幂等键" in zh and first in zh
    # Another endpoint is another request too (send_msg's fields, same key).
    answer = post(api, {"msg_type": "weixin", "receiver__username": "alice,bob", "title": "Deploy",
                        "content": "release 4.2 is live"}, key, path=SEND_MSG)
    assert answer.status_code == 409
    assert template_sends(base) == sent and counts(app) == rows


@pytest.mark.parametrize("key, words", [
    ("k" * 129, "1 to 128 printable ASCII characters"),
    ("", "1 to 128 printable ASCII characters"),
    ("clé-unique", "1 to 128 printable ASCII characters"),
    ("tab\there", "1 to 128 printable ASCII characters"),
])
def test_a_key_that_is_not_1_to_128_printable_characters_is_a_validation_error(mp, key, words):
    app, base, api = mp
    rows, sent = counts(app), template_sends(base)
    if key.isascii() and "\t" not in key:
        answer = post(api, BODY, key)
    else:  # not sendable in a header: the SDK's body field
        answer = post(api, {**BODY, "idempotency_key": key})
    body = answer.json()
    assert answer.status_code == 200 and body["result"] is False and body["code"] == 1306000, body
    assert words in body["message"]
    assert counts(app) == rows and template_sends(base) == sent


def test_a_key_of_128_characters_and_two_keys_that_differ(mp):
    app, base, api = mp
    assert post(api, BODY, "k" * 128).json()["result"] is True
    answer = post(api, {**BODY, "idempotency_key": "one"}, "two").json()
    assert answer["code"] == 1306000 and "differ" in answer["message"]
    answer = post(api, {**BODY, "idempotency_key": 42}).json()
    assert answer["code"] == 1306000 and "idempotency_key must be a string" in answer["message"]


def test_keys_belong_to_their_application(mp):
    app, base, api = mp
    with app.test_request_context():
        _, other_secret = create_app_credentials("other_app")
        db.session.remove()
    key = str(uuid.uuid4())
    mine = post(api, BODY, key).json()["data"]["message_id"]
    theirs = requests.post(base + SEND, json=BODY, timeout=60, headers={
        "Idempotency-Key": key,
        "X-Bkapi-Authorization": json.dumps({"bk_app_code": "other_app", "bk_app_secret": other_secret})}).json()
    assert theirs["result"] is True and theirs["data"]["message_id"] != mine
    assert template_sends(base) == 4


def test_a_key_is_kept_a_day_then_forgotten_and_purged(mp):
    app, base, api = mp
    key = str(uuid.uuid4())
    first = post(api, BODY, key).json()["data"]["message_id"]
    with app.app_context():
        record = db.session.scalar(select(IdempotencyRecord))
        assert (record.expires_at - record.created_at).total_seconds() == 24 * 3600
        assert record.kind == "key" and key not in (record.key_hash, record.fingerprint)  # only hashes stored
        with db.transaction() as session:
            session.execute(update(IdempotencyRecord).values(expires_at=datetime(2000, 1, 1).astimezone()))
        db.session.remove()
    later = post(api, BODY, key)
    assert later.json()["data"]["message_id"] != first and "Idempotent-Replayed" not in later.headers
    assert template_sends(base) == 4
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(IdempotencyRecord).values(expires_at=datetime(2000, 1, 1).astimezone()))
        jobs.purge_stale_rows()
        assert db.session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0
        db.session.remove()


def test_a_repeat_committed_after_this_requests_first_read_is_answered(mp):
    """The first request commits while this one's transaction is open: the repeat is still answered.

    This is what two identical requests at once do on SQLite, made certain here: the later request's
    session took its snapshot (its first read) before the winner's commit, then found the winner's
    record on a fresh connection; its answer must not be read through the old snapshot.
    """
    from webapp.api import sending

    app, base, api = mp
    key = str(uuid.uuid4())
    with app.test_request_context(SEND, method="POST", json=BODY, headers=api.headers(**{"Idempotency-Key": key})):
        assert db.session.scalar(select(func.count()).select_from(Message)) == 0  # the snapshot begins here
        first = post(api, BODY, key)  # another request (the live server's thread) commits meanwhile
        assert first.status_code == 200 and first.json()["result"] is True, first.text
        again = sending.send_blueking(sending.SEND_WEIXIN, "repeat-after-snapshot")
        db.session.rollback()
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.data["message_id"] == first.json()["data"]["message_id"]
    assert [d["status"] for d in again.data["deliveries"]] == ["sent", "sent"]
    assert counts(app) == (1, 2) and template_sends(base) == 2


def test_two_identical_requests_at_once_make_one_message(mp):
    app, base, api = mp
    key = str(uuid.uuid4())
    barrier = threading.Barrier(6)

    def one(_):
        barrier.wait(timeout=30)
        return post(api, BODY, key)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["data"]["message_id"] for a in answers}) == 1
    assert sum(1 for a in answers if "Idempotent-Replayed" not in a.headers) == 1
    assert counts(app) == (1, 2) and template_sends(base) == 2
    assert sorted(m["to"] for m in sim_messages(base)) == sorted([OPENID_ALICE, OPENID_BOB])


def test_the_second_of_two_identical_requests_waits_for_the_first_then_stores_nothing(make_app, either_database_url):
    """The guarantee itself, without timing luck: while the first request's transaction holds its
    record (not committed yet), the second one's ``accept`` waits; once the first commits, the second
    stores nothing and names the first message. On SQLite and on PostgreSQL."""
    app = make_app(DATABASE_URL=either_database_url)
    connect_qy(app)
    with app.test_request_context():
        caller, _ = create_app_credentials("racer")
        guard = idempotency.for_key(caller.id, "same-key", ["heading", BODY])
        db.session.remove()
    note = Notification("Deploy", "release 4.2 is live")
    first_in = threading.Event()
    commit_first = threading.Event()
    outcome = {}

    def first():
        with app.app_context():
            configured = channel.load()
            session = db.session()
            message = Message(request_id="first", api_app_id=guard.api_app_id, channel=configured.wx_type,
                              account=configured.account, heading=note.heading, body=note.message, source="api")
            session.add(message)
            session.flush()
            idempotency.record(session, guard, message)
            outcome["first"] = message.public_id
            first_in.set()
            commit_first.wait(30)
            session.commit()
            db.session.remove()

    def second():
        with app.app_context():
            try:
                engine.accept(api_app_id=guard.api_app_id, request_id="second", configured=channel.load(),
                              notification=note, targets=[engine.Target("zhangsan", "alice")], guard=guard)
            except idempotency.Repeated as exc:
                outcome["second"] = exc.earlier.public_id
            finally:
                db.session.remove()

    one = threading.Thread(target=first)
    one.start()
    assert first_in.wait(30)
    two = threading.Thread(target=second)
    two.start()
    two.join(1.5)
    assert two.is_alive(), "the second request did not wait for the first one's transaction"
    commit_first.set()
    one.join(30)
    two.join(30)
    assert outcome.get("second") == outcome["first"], outcome
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Message)) == 1
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert db.session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 1
        db.session.remove()


# --- several processes, PostgreSQL -----------------------------------------------------------------

@pytest.fixture
def workers_service(postgres_url, wechat, tmp_path):
    """Make a :class:`Service` (gunicorn, real processes) on a fresh PostgreSQL schema."""
    defaults = {"SCHEDULER_ENABLED": False, "DATABASE_POOL_SIZE": 4, "DATABASE_MAX_OVERFLOW": 4,
                "DELIVERY_POOL_SIZE": 4, "DELIVERY_CLAIM_LEASE_SECONDS": 8}
    with postgres_schema(postgres_url) as url, installations(Service, url, wechat[0], tmp_path, **defaults) as make:
        yield make


def _at_once(count: int, call) -> list:
    """``count`` calls released at the same moment, each on a connection of its own."""
    barrier = threading.Barrier(count)

    def one(number):
        barrier.wait(timeout=60)
        return call(number)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.postgres
def test_identical_requests_on_two_workers_make_one_message(world, workers_service):
    """The same key, and the same Alertmanager notification, posted by eight callers at once to two
    gunicorn workers on PostgreSQL: one message each, delivered once, every caller told its id."""
    openids = add_followers(world, 3)
    world.update_settings({"latency_ms": 50})  # the first request is still sending when the others arrive
    svc = workers_service()
    secret = svc.install(MP_CHANNEL, app_code="drill")
    base = start_workers(svc, workers=2, threads=4)
    key = str(uuid.uuid4())
    body = {"receiver": openids, "data": {"heading": "Deploy", "message": "release 4.2"}}

    def send(number):
        with requests.Session() as session:  # a connection of its own: the callers spread over both workers
            return session.post(base + "/api/c/compapi/v2/cmsi/send_weixin/", json=body, timeout=60,
                                headers={**headers(secret), "Idempotency-Key": key})

    answers = _at_once(8, send)
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers if a.status_code != 200]
    assert len({a.json()["data"]["message_id"] for a in answers}) == 1
    assert svc.messages_stored() == 1 and world.stats()["calls"]["template_send"] == 3

    notification = json.loads((FIXTURES / "alertmanager_firing.json").read_text(encoding="utf-8"))
    url = base + "/api/v1/webhooks/alertmanager/?receiver=" + ",".join(openids)

    def notify(number):
        with requests.Session() as session:
            return session.post(url, json=notification, auth=("drill", secret), timeout=60)

    answers = _at_once(8, notify)
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers if a.status_code != 200]
    assert len({a.json()["data"]["message_id"] for a in answers}) == 1
    assert svc.messages_stored() == 2 and world.stats()["calls"]["template_send"] == 6
    with svc.engine.connect() as conn:
        assert conn.execute(text("SELECT source, COUNT(*) FROM messages GROUP BY source ORDER BY source")).all() \
            == [("alertmanager", 1), ("api", 1)]
    shown = Counter(m["to"] for m in world.get_messages("mp"))
    assert shown == {openid: 2 for openid in openids}


@pytest.mark.postgres
def test_drill_a_caller_whose_worker_was_killed_retries_with_its_key(world, wechat, workers_service):
    """``kill -9`` of the worker sending a 50-receiver message: the caller gets no answer (nginx would
    say 502). It retries with the same Idempotency-Key and gets the message's id; the retry job
    finishes what the dead worker left, and every receiver gets the message exactly once."""
    openids = add_followers(world, 50, prefix="oKey")
    world.update_settings({"latency_ms": 400})  # 50 calls, four at a time: about five seconds of sending
    svc = workers_service(DELIVERY_TIME_BUDGET=30)
    secret = svc.install(MP_CHANNEL, app_code="drill")
    base = start_workers(svc, workers=2, threads=4)
    svc.start_scheduler()
    sim_port = int(wechat[0].rsplit(":", 1)[1])
    key = str(uuid.uuid4())
    content = f"key {key[:8]}"
    body = {"receiver": openids, "data": {"heading": "Fan-out", "message": content}}
    outcome = {}

    def call():
        try:
            outcome["answer"] = requests.post(base + "/api/c/compapi/v2/cmsi/send_weixin/", json=body, timeout=60,
                                              headers={**headers(secret), "Idempotency-Key": key})
        except requests.RequestException as exc:
            outcome["error"] = exc

    def delivered() -> int:
        return sum(1 for m in world.get_messages("mp") if m["data"].get("keyword1") == content)

    caller = threading.Thread(target=call)
    caller.start()
    wait_for(lambda: delivered() >= 8, 60, 0.02, "the send to be under way")
    connections = Counter()
    for _ in range(10):
        connections.update(connections_per_process(svc.workers(), sim_port))
        time.sleep(0.02)
    busy, most = connections.most_common(1)[0]
    assert most >= 2, f"no worker is sending: {connections}"
    os.kill(busy, signal.SIGKILL)
    killed_at = delivered()
    caller.join(timeout=60)
    assert "answer" not in outcome and isinstance(outcome.get("error"), requests.ConnectionError), outcome
    assert killed_at < len(openids), "the send had finished before the kill"
    wait_for(lambda: len(svc.workers()) == 2 and busy not in svc.workers(), 60, 0.2, "a new worker")

    # What the caller does after a 5xx or no answer: the same request, the same key.
    retry = requests.post(base + "/api/c/compapi/v2/cmsi/send_weixin/", json=body, timeout=60,
                          headers={**headers(secret), "Idempotency-Key": key})
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true", retry.text
    assert {d["status"] for d in retry.json()["data"]["deliveries"]} <= {"sent", "queued"}
    settle(svc, 120, "after the kill")
    assert svc.messages_stored() == 1
    result = check_mp_exactly_once(world, svc.rows(), [])
    assert delivered() == len(openids) == result["deliveries"]
    final = requests.get(f"{base}/api/v1/messages/{retry.json()['data']['message_id']}", headers=headers(secret),
                         timeout=10).json()
    assert {d["status"] for d in final["data"]["deliveries"]} == {"sent"}
