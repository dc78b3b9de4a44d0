"""Guarantees that only hold across processes, tried with real ones on SQLite and PostgreSQL.

- A configuration stored by one process (``weixin-config`` in a shell) governs the very next request
  of every gunicorn worker (CONTRACT §4), and a message keeps the channel and account it was
  accepted for: if they changed, its deliveries fail at once and WeChat is not called.
- A claim on deliveries belongs to a live process: a process killed with SIGKILL leaves its rows to
  be taken over within seconds (one lease, DELIVERY_CLAIM_LEASE_SECONDS, plus a run of the retry
  job), while a live process keeps the rows it is still sending, however long that takes.
- A slow token fetch holds nobody else up: while WeChat's token endpoint takes 8 s, callbacks are
  answered within a second, and the four workers' senders still cause one fetch.

The service runs as gunicorn with several workers and ``flask --app wsgi scheduler`` processes
(``tests/drill_support.py``); the simulated WeChat runs in the test process and outlives them.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.crash_support import database, wait_for, wechat, world  # noqa: F401  (fixtures)
from tests.drill_support import (MP_CHANNEL, QY_CHANNEL, SEND, Senders, Service, add_followers, add_members,
                                 check_mp_exactly_once, headers)
from tests.gunicorn_support import installations, start_workers
from webapp.wechat import sign

CALLBACK = "/console/user_center/weixin/mp/callback/"


@pytest.fixture
def service(database, wechat, tmp_path):
    """Make a :class:`Service` on this test's database (SQLite file or PostgreSQL schema); all its processes die at the end."""
    with installations(Service, database, wechat[0], tmp_path,
                       SCHEDULER_ENABLED=False, DATABASE_POOL_SIZE=4, DATABASE_MAX_OVERFLOW=4) as make:
        yield make


def post_fresh(base: str, secret: str, receivers: list[str], content: str) -> dict:
    """One send on a new connection (so the gunicorn workers share the requests between them)."""
    with requests.Session() as session:
        answer = session.post(base + SEND, headers=headers(secret), timeout=60,
                              json={"receiver": receivers, "data": {"heading": "Switch", "message": content}})
    assert answer.status_code == 200, answer.text
    return answer.json()


def load_channel(svc: Service, channel: dict) -> None:
    path = svc.log_dir / f"channel-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(channel))
    svc.cli("weixin-config", str(path), "--no-check")


# --- configuration -------------------------------------------------------------------------------

def test_a_configuration_stored_in_a_shell_governs_the_next_request_of_every_worker(world, service):
    members, openids = add_members(world, 2), add_followers(world, 2)
    svc = service()
    secret = svc.install(QY_CHANNEL, app_code="drill")
    base = start_workers(svc, workers=3, threads=2)
    rounds = 12  # on fresh connections: every worker takes some, and has the configuration in hand
    for number in range(rounds):
        assert post_fresh(base, secret, members, f"qy {number}")["result"] is True
    qy_calls = world.stats()["calls"]["qy_send"]

    for switch in range(2):  # to the Official Account and back, each followed at once by sends
        load_channel(svc, MP_CHANNEL)
        answers = [post_fresh(base, secret, openids, f"mp {switch}-{number}") for number in range(rounds)]
        failed = [a for a in answers if not a["result"]]
        assert not failed, f"{len(failed)} sends right after the switch failed, e.g. {failed[0]}"
        assert world.stats()["calls"]["qy_send"] == qy_calls, "a send after the switch still went to WeCom"
        load_channel(svc, QY_CHANNEL)
        answers = [post_fresh(base, secret, members, f"qy {switch}-{number}") for number in range(rounds)]
        assert all(a["result"] for a in answers), [a for a in answers if not a["result"]][:1]
        qy_calls = world.stats()["calls"]["qy_send"]
    assert world.stats()["calls"]["template_send"] == 2 * rounds * len(openids)
    assert world.stats()["calls"].get("stable_token", 0) == 1, "tokens were fetched for a channel mix-up"


def test_a_queued_message_is_never_sent_through_another_account(world, service):
    """Accepted for WeCom, queued while WeCom is down; the channel becomes the Official Account
    before the retry: the deliveries fail at once with a sentence, and no WeChat call is made."""
    members = add_members(world, 3)
    svc = service(DELIVERY_RETRY_BASE_SECONDS=1, DELIVERY_JOB_SECONDS=1)
    secret = svc.install(QY_CHANNEL, app_code="drill")
    base = svc.start(workers=2, threads=2)
    world.add_fault({"endpoint": "qy_send", "kind": "errcode", "errcode": -1, "for_seconds": 3600})
    answer = post_fresh(base, secret, members, "queued for WeCom")
    assert {d["status"] for d in answer["data"]["deliveries"]} == {"queued"}, answer
    world.clear_faults()
    load_channel(svc, MP_CHANNEL)
    calls = dict(world.stats()["calls"])
    svc.start_scheduler()
    rows = wait_for(lambda: [r for r in svc.rows() if r["status"] != "queued"] == svc.rows() and svc.rows(), 30, 0.2,
                    "the queued deliveries to be decided")
    assert {r["status"] for r in rows} == {"failed"}, rows
    assert all("account changed" in r["errmsg"] and "WeCom" in r["errmsg"] for r in rows), rows[0]["errmsg"]
    after = world.stats()["calls"]
    assert after["qy_send"] == calls["qy_send"] and after.get("template_send", 0) == calls.get("template_send", 0)
    status = requests.get(f"{base}/api/v1/messages/{answer['data']['message_id']}", headers=headers(secret), timeout=10).json()
    assert {d["status"] for d in status["data"]["deliveries"]} == {"failed"}


# --- claims of live processes --------------------------------------------------------------------

def test_a_killed_workers_deliveries_are_taken_over_within_seconds(world, service):
    """A send to 60 receivers is being delivered by its worker (slow WeChat, long budget) when the
    whole gunicorn group is killed with SIGKILL; the separate scheduler, with the default lease and
    job interval, takes the rows over and every delivery is final within 30 s, exactly once."""
    openids = add_followers(world, 60)
    world.update_settings({"latency_ms": 1000})
    svc = service(DELIVERY_TIME_BUDGET=60)
    secret = svc.install(MP_CHANNEL, app_code="drill")
    base = svc.start(workers=2, threads=2)
    svc.start_scheduler()
    senders = Senders(base, secret, openids, per_message=60, timeout=90)
    caller = threading.Thread(target=senders.post_one)
    caller.start()
    wait_for(lambda: world.stats()["calls"].get("template_send", 0) >= 16, 30, 0.02, "the worker to be sending")
    svc.kill()
    killed_at = time.monotonic()
    calls_at_kill = world.stats()["calls"]["template_send"]
    caller.join(timeout=30)
    assert svc.statuses().get("queued", 0) >= 40, svc.statuses()

    wait_for(lambda: world.stats()["calls"]["template_send"] > calls_at_kill, 30, 0.05, "the scheduler to take the rows over")
    taken_over = time.monotonic() - killed_at
    wait_for(lambda: svc.statuses() and not svc.statuses().get("queued"), 30, 0.2,
             f"every delivery to be final within 30 s of the kill (now {svc.statuses()})")
    final = time.monotonic() - killed_at
    print(f"taken over {taken_over:.1f} s after the kill, all 60 deliveries final after {final:.1f} s")
    assert taken_over <= 15, f"the dead worker's rows were taken over only after {taken_over:.1f} s"
    result = check_mp_exactly_once(world, svc.rows(), [])
    assert result["deliveries"] == 60


def test_a_live_process_keeps_the_deliveries_it_is_still_sending(world, service):
    """Sending takes four times the claim's lease; a scheduler runs the retry job every half second
    beside it. The sending process renews its claim, so nothing is taken from it: every delivery is
    sent by one call, none twice."""
    openids = add_followers(world, 40)
    world.update_settings({"latency_ms": 400})
    svc = service(DELIVERY_POOL_SIZE=2, DELIVERY_TIME_BUDGET=60, DELIVERY_CLAIM_LEASE_SECONDS=2,
                  DELIVERY_JOB_SECONDS=0.5)
    secret = svc.install(MP_CHANNEL, app_code="drill")
    base = svc.start(workers=1, threads=2)
    svc.start_scheduler()
    started = time.monotonic()
    answer = Senders(base, secret, openids, per_message=40, timeout=90).post_one()
    assert time.monotonic() - started > 4 * 2, "the send did not outlast the lease"
    assert answer["answer"]["result"] is True and {d["status"] for d in answer["answer"]["data"]["deliveries"]} == {"sent"}
    rows = svc.rows()
    result = check_mp_exactly_once(world, rows, [answer])
    assert result["calls"] == 40 and result["suppressed"] == 0, result
    assert {r["attempts"] for r in rows} == {1}


# --- a slow token fetch --------------------------------------------------------------------------

def _signed_text_push(base: str, token: str, number: int) -> float:
    """POST one plaintext text message as WeChat would; return how long the answer took."""
    timestamp, nonce = str(int(time.time())), f"{number:010d}"
    body = (f"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oPush{number:023d}]]></FromUserName>"
            f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content>"
            f"<MsgId>{7000000 + number}</MsgId></xml>")
    started = time.monotonic()
    answer = requests.post(base + CALLBACK, params={"signature": sign(token, timestamp, nonce), "timestamp": timestamp,
                                                     "nonce": nonce}, data=body.encode(), timeout=10)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200 and answer.text == "success", answer.text
    return elapsed


def test_callbacks_are_answered_within_a_second_while_a_token_fetch_takes_8_s(world, service):
    """Six sends wait for the token that one of them fetches (WeChat answers in 8 s); callbacks that
    arrive meanwhile are answered at once. (A send waiting for WeChat holds one of its worker's
    threads: with fewer waiting sends than GUNICORN_THREADS, every worker has a thread free.)"""
    openids = add_followers(world, 6)
    svc = service(DATABASE_POOL_SIZE=6)
    secret = svc.install(MP_CHANNEL, app_code="drill")
    base = start_workers(svc, workers=4, threads=8)
    world.add_fault({"endpoint": "stable_token", "kind": "delay", "seconds": 8, "count": 1})
    senders = Senders(base, secret, openids, per_message=1, timeout=60)
    latencies, finished_at = [], []

    def push(number: int) -> None:
        latencies.append(_signed_text_push(base, MP_CHANNEL["wx_token"], number))
        finished_at.append(time.monotonic())

    with ThreadPoolExecutor(6) as pool, ThreadPoolExecutor(4) as pushers:
        sends = [pool.submit(senders.post_one) for _ in range(6)]
        wait_for(lambda: world.stats()["calls"].get("stable_token", 0) >= 1, 20, 0.02, "the token fetch to start")
        fetch_started = time.monotonic()
        number = 0
        while time.monotonic() - fetch_started < 6:  # callbacks all through the fetch
            list(pushers.map(push, range(number, number + 4)))
            number += 4
        records = [future.result() for future in sends]
    fetch_ended = min(r["answered_at"] for r in records)
    during = [latency for latency, at in zip(latencies, finished_at) if at < fetch_ended]
    assert len(during) >= 20, f"only {len(during)} callbacks were answered while the token was being fetched"
    assert max(latencies) < 1.0, f"slowest callback {max(latencies):.2f} s during the fetch: {sorted(latencies)[-5:]}"
    print(f"{len(during)} callbacks during an 8 s token fetch: slowest {max(latencies) * 1000:.0f} ms")
    assert all(r["status"] == 200 and r["answer"]["result"] for r in records), [r for r in records if r["status"] != 200][:2]
    assert world.stats()["calls"]["stable_token"] == 1, "the senders of four workers fetched more than once"
    assert Counter(m["to"] for m in world.get_messages("mp")) == Counter(openids)
