"""``kill -9`` mid-batch loses nothing and duplicates nothing.

CONTRACT §5: "A message whose send call returned is never lost: a restart or crash afterwards only
delays its queued deliveries, and no receiver gets it twice."

The simulated WeChat runs in the test process (it must outlive the service); the service runs as
its own gunicorn process on a real database file (SQLite, or a fresh PostgreSQL schema for the
``postgres`` variants), installed with the real CLI, with a small delivery pool, a short time
budget, and the retry job running every second with a short claim margin, so a restarted service
takes the dead one's claimed rows over within seconds. WeChat answers slowly (``latency_ms``), so
calls are in flight when the process dies: WeChat then delivers a message whose answer the
service never reads, and the retry after the restart must be recognised as the same message
(``client_msg_id`` for template messages, ``enable_duplicate_check`` for WeCom batches).

Each test: send, ``kill -9`` the whole process group at a chosen moment, start the service again
on the same database, wait (bounded) until every delivery row is ``sent``, then compare with what
the simulator delivered: every receiver got the message exactly once.
"""
from __future__ import annotations

import json
import threading
import uuid
from collections import Counter

import pytest
import requests

from tests.crash_support import Installation, database, wait_for, wechat, world  # noqa: F401  (fixtures)
from tests.gunicorn_support import installations
from webapp.simulator.world import (
    MP_APPID,
    MP_SECRET,
    QY_AGENTID,
    QY_CORPID,
    QY_CORPSECRET,
    TEMPLATE_NOTIFICATION_ID,
)

SEND = "/api/c/compapi/v2/cmsi/send_weixin/"
FOLLOWERS = 60
SETTLE_SECONDS = 60  # every delivery must be sent within this long after the restart

MP_CHANNEL = {"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": "CrashToken2026",
              "wx_template_id": TEMPLATE_NOTIFICATION_ID}


def qy_channel(msgtype: str = "text") -> dict:
    return {"wx_type": "qywx", "wx_qy_corpid": QY_CORPID, "wx_qy_corpsecret": QY_CORPSECRET,
            "wx_qy_agentid": QY_AGENTID, "wx_qy_msgtype": msgtype}


# --- fixtures --------------------------------------------------------------------------------------

@pytest.fixture
def installation(database, wechat, tmp_path):
    """Make installations of the service on this test's database; every process is killed at the end."""
    defaults = {"DELIVERY_POOL_SIZE": 3, "DELIVERY_TIME_BUDGET": 1, "DELIVERY_CLAIM_LEASE_SECONDS": 2,
                "DELIVERY_JOB_SECONDS": 1, "DELIVERY_RETRY_BASE_SECONDS": 1}
    with installations(Installation, database, wechat[0], tmp_path, **defaults) as make:
        yield make


# --- helpers ---------------------------------------------------------------------------------------

def headers(code: str, secret: str) -> dict:
    return {"X-Bkapi-Authorization": json.dumps({"bk_app_code": code, "bk_app_secret": secret, "bk_username": "admin"})}


def add_followers(world, count: int = FOLLOWERS) -> list[str]:
    openids = [f"oCrash{i:04d}".ljust(28, "x") for i in range(count)]
    for openid in openids:
        world.upsert_mp_user(openid, openid[:10], True)
    return openids


def add_members(world, count: int) -> list[str]:
    userids = [f"crash{i:04d}" for i in range(count)]
    for userid in userids:
        world.upsert_qy_member(userid, userid, True, QY_AGENTID)
    return userids


def mp_received(world, content: str) -> Counter:
    """How many times each openid received a template message whose content is ``content``."""
    return Counter(m["to"] for m in world.get_messages("mp") if m["data"].get("keyword1") == content)


def in_flight(world, content: str, delivered: int) -> bool:
    """At least ``delivered`` template messages delivered, and calls WeChat has received but not answered yet.

    The simulator counts a call when it arrives and delivers after its latency, so more calls than
    deliveries means some are in flight: killing the service now loses their answers for sure.
    """
    done = sum(mp_received(world, content).values())
    return done >= delivered and world.stats()["calls"].get("template_send", 0) > done


def qy_received(world, content: str) -> Counter:
    """How many times each userid received a WeCom message containing ``content``."""
    counts: Counter = Counter()
    for message in world.get_messages("qy"):
        if content in str(message["content"]):
            counts.update(message["to"])
    return counts


def settle(service: Installation, total: int) -> None:
    """Wait until every one of ``total`` delivery rows is sent (the restarted service's retry job)."""
    wait_for(lambda: service.statuses() == {"sent": total}, SETTLE_SECONDS, 0.2,
             f"all {total} deliveries to be sent (now {service.statuses()}); log:\n{service.log()}")


def assert_exactly_once(received: Counter, receivers: list[str]) -> None:
    twice = {r: n for r, n in received.items() if n > 1}
    missing = [r for r in receivers if received[r] == 0]
    assert not twice, f"{len(twice)} receivers got the message more than once, e.g. {list(twice.items())[:5]}"
    assert not missing, f"{len(missing)} receivers never got the message, e.g. {missing[:5]}"
    assert set(received) == set(receivers)


# --- Official Account ------------------------------------------------------------------------------

@pytest.mark.parametrize("kill_after", [20, 40])
def test_kill_after_the_answer_mid_batch_official_account(world, installation, kill_after):
    """The call answered (most receivers ``queued``); the retry job is delivering them when the process dies."""
    openids = add_followers(world)
    world.update_settings({"latency_ms": 150})
    service = installation()
    secret = service.install(MP_CHANNEL)
    base = service.start()
    content = f"crash {uuid.uuid4().hex[:8]}"

    answer = requests.post(base + SEND, headers=headers("crash_test", secret), timeout=30,
                           json={"receiver": openids, "data": {"heading": "Crash test", "message": content}}).json()
    assert answer["result"] is True, answer
    statuses = Counter(d["status"] for d in answer["data"]["deliveries"])
    assert statuses["queued"] > 0 and statuses["queued"] + statuses["sent"] == FOLLOWERS, statuses

    wait_for(lambda: in_flight(world, content, kill_after), 20, 0.005, f"{kill_after} deliveries and calls in flight")
    service.kill()
    at_kill = service.statuses()
    assert at_kill.get("queued", 0) > 0, f"the kill came too late to interrupt anything: {at_kill}"

    service.start()
    settle(service, FOLLOWERS)
    # calls were in flight at the kill: WeChat delivered them, their answers were lost, they were retried
    assert world.stats()["calls"]["template_send"] > FOLLOWERS, "no answer was lost: the retry path was not exercised"
    assert_exactly_once(mp_received(world, content), openids)
    assert {d["body"] for d in service.deliveries()} == {content}


@pytest.mark.parametrize("kill_when", ["stored", "first_call", "half_delivered"])
def test_kill_while_the_send_call_is_being_answered_official_account(world, installation, kill_when):
    """The process dies inside the send request; whatever was stored is delivered exactly once, none twice."""
    openids = add_followers(world)
    world.update_settings({"latency_ms": 150})
    service = installation(DELIVERY_TIME_BUDGET=5)  # the request is still sending when it is killed
    secret = service.install(MP_CHANNEL)
    base = service.start()
    content = f"crash {uuid.uuid4().hex[:8]}"
    outcome = {}

    def call():
        try:
            outcome["answer"] = requests.post(base + SEND, headers=headers("crash_test", secret), timeout=30, json={
                "receiver": openids, "data": {"heading": "Crash test", "message": content}})
        except requests.RequestException as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    if kill_when == "stored":
        wait_for(lambda: service.messages_stored() > 0, 20, 0.005, "the message to be stored")
    elif kill_when == "first_call":
        wait_for(lambda: world.stats()["calls"].get("template_send", 0) > 0, 20, 0.005, "the first WeChat call")
    else:
        wait_for(lambda: in_flight(world, content, FOLLOWERS // 2), 20, 0.005, "half the deliveries and calls in flight")
    service.kill()
    caller.join(timeout=30)
    assert "answer" not in outcome, "the send call was answered before the kill"
    assert isinstance(outcome["error"], requests.ConnectionError), outcome

    at_kill = service.statuses()
    assert service.messages_stored() == 1 and sum(at_kill.values()) == FOLLOWERS
    assert at_kill.get("queued", 0) > 0, at_kill

    service.start()
    settle(service, FOLLOWERS)
    if kill_when != "stored":  # killed after WeChat was called: at least that call's answer was lost
        assert world.stats()["calls"]["template_send"] > FOLLOWERS, "no answer was lost: the retry path was not exercised"
    assert_exactly_once(mp_received(world, content), openids)


# --- WeCom -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("members", [
    150,
    pytest.param(1500, id="1500-two-batches"),
])
def test_kill_during_a_wecom_batch_call(world, installation, members):
    """Both WeCom batch calls are in flight when the process dies; WeChat delivers them anyway.

    The restarted service must send each batch again *identically* so that WeCom's duplicate check
    (``enable_duplicate_check``) recognises the repeat and delivers nothing twice.

    With 1500 members this needs the retry job to claim whole messages and rebuild the same
    1000 + 500 batches (a claim cut at 200 rows once sent different ``touser`` lists, which the
    duplicate check could not match).
    """
    userids = add_members(world, members)
    world.update_settings({"latency_ms": 1500})
    service = installation(DELIVERY_POOL_SIZE=2, DELIVERY_TIME_BUDGET=0.5)
    secret = service.install(qy_channel("text"))
    base = service.start()
    content = f"crash {uuid.uuid4().hex[:8]}"

    answer = requests.post(base + SEND, headers=headers("crash_test", secret), timeout=30,
                           json={"receiver": userids, "data": {"heading": "Crash test", "message": content}}).json()
    assert answer["result"] is True and {d["status"] for d in answer["data"]["deliveries"]} == {"queued"}, answer["message"]
    batches = -(-members // 1000)
    # every batch call has reached WeCom and is waiting out its latency: kill now
    wait_for(lambda: world.stats()["calls"].get("qy_send", 0) >= batches, 10, 0.005, "the batch calls")
    service.kill()
    assert service.statuses() == {"queued": members}
    # Usually WeChat got the whole call and delivers it although nobody hears the answer. If the kill
    # cut the request short, WeChat never had it and the retry is the first delivery: both must end
    # with exactly one message per member.
    try:
        wait_for(lambda: sum(qy_received(world, content).values()) >= members, 10, what="WeCom to deliver the lost calls")
    except AssertionError:
        pass

    world.update_settings({"latency_ms": 100})
    service.start()
    settle(service, members)
    assert_exactly_once(qy_received(world, content), userids)


def test_kill_during_a_wecom_textcard_call_keeps_the_detail_link_stable(world, installation):
    """A WeCom ``textcard`` without a caller ``url`` links to the signed detail page; the link must be
    the same at every attempt (no time inside it), so that a retry after a crash is the identical
    body WeCom's duplicate check needs, and no member gets the message twice.
    """
    userids = add_members(world, 50)
    world.update_settings({"latency_ms": 1500})
    service = installation(DELIVERY_POOL_SIZE=2, DELIVERY_TIME_BUDGET=0.5, PUBLIC_URL="http://notify.example.test")
    secret = service.install(qy_channel("textcard"))
    base = service.start()
    content = f"crash {uuid.uuid4().hex[:8]}"

    answer = requests.post(base + SEND, headers=headers("crash_test", secret), timeout=30,
                           json={"receiver": userids, "data": {"heading": "Crash test", "message": content}}).json()
    assert answer["result"] is True, answer["message"]
    wait_for(lambda: world.stats()["calls"].get("qy_send", 0) >= 1, 10, 0.005, "the batch call")
    service.kill()
    try:  # as above: normally WeChat delivers the lost call; if the kill cut it short, the retry is the first
        wait_for(lambda: sum(qy_received(world, content).values()) >= 50, 10, what="WeCom to deliver the lost call")
    except AssertionError:
        pass

    world.update_settings({"latency_ms": 100})
    service.start()
    settle(service, 50)
    assert_exactly_once(qy_received(world, content), userids)
