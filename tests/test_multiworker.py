"""Several processes on one PostgreSQL database: tokens fetched once, deliveries claimed once.

DESIGN.md: "a caller that finds no fresh token takes a row lock and re-reads before fetching, so
many threads and processes cause one fetch", and the retry job claims rows "so that two workers
never take the same one (FOR UPDATE SKIP LOCKED on PostgreSQL)". These tests check both with real
processes: gunicorn with four workers, four delivery loops racing for one queue, and two
``flask --app wsgi scheduler`` processes started by mistake, all on a fresh PostgreSQL schema and
the simulated WeChat served in the test process (see ``tests/drill_support.py``).
"""
from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from webapp.runtime import KEPT_TOKEN_RECHECK

from tests.crash_support import PYTHON, ROOT, postgres_schema, wait_for, wechat, world  # noqa: F401  (fixtures)
from tests.drill_support import MP_CHANNEL, Senders, Service, add_followers, check_mp_exactly_once, settle
from tests.gunicorn_support import installations, start_workers

pytestmark = pytest.mark.postgres

SENDERS = 30  # concurrent calling programs
WORKERS = 4  # gunicorn worker processes


@pytest.fixture
def service(postgres_url, wechat, tmp_path):
    """Make a :class:`Service` on a fresh PostgreSQL schema; every process is killed at the end."""
    # Small connection pools: four workers and the test share the server with other sessions.
    defaults = {"SCHEDULER_ENABLED": False, "DATABASE_POOL_SIZE": 4, "DATABASE_MAX_OVERFLOW": 4,
                "DELIVERY_POOL_SIZE": 4, "DELIVERY_TIME_BUDGET": 5, "DELIVERY_CLAIM_LEASE_SECONDS": 8}
    with postgres_schema(postgres_url) as url, installations(Service, url, wechat[0], tmp_path, **defaults) as make:
        yield make


def burst(senders: Senders, count: int) -> list[dict]:
    """``count`` sends at once, each from its own calling program (thread), all through the workers."""
    barrier = threading.Barrier(count)

    def one(_):
        barrier.wait(timeout=60)
        return senders.post_one()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def assert_all_sent(records: list[dict]) -> None:
    bad = [r for r in records if r["status"] != 200 or not r["answer"]["result"]
           or {d["status"] for d in r["answer"]["data"]["deliveries"]} != {"sent"}]
    assert not bad, f"{len(bad)} sends were not answered 'sent', e.g. {bad[:2]}"


def test_four_workers_fetch_one_token_per_expiry(world, service):
    """30 concurrent senders through 4 gunicorn workers: one token fetch for the absent token, one
    after WeChat invalidates it mid-run, one when the stored token expires, one when WeChat's says
    it expired (42001) although the stored one looks fresh."""
    openids = add_followers(world, 30)
    world.update_settings({"latency_ms": 30})  # calls overlap, as with the real WeChat
    svc = service()
    secret = svc.install(MP_CHANNEL, app_code="drill")
    # 4 threads per worker: a request holds up to two connections at once (its session and the rate
    # limiter's), so threads x 2 must stay within the pool (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW).
    base = start_workers(svc, workers=WORKERS, threads=4)
    senders = Senders(base, secret, openids, per_message=1)

    def fetches() -> int:
        return world.stats()["calls"].get("stable_token", 0)

    # 1. No token stored yet: 30 senders at once cause one fetch.
    records = burst(senders, SENDERS)
    assert_all_sent(records)
    assert fetches() == 1, f"{fetches()} fetches for the first token"

    # 2. WeChat invalidates the token while senders keep posting: one refresh, not one per worker.
    senders.start()
    wait_for(lambda: len(senders.results) > SENDERS + 20, 60, 0.05, "senders to be posting")
    world.invalidate_tokens("mp")
    posted = len(senders.results)
    wait_for(lambda: len(senders.results) > posted + 40, 60, 0.05, "more sends after the invalidation")
    senders.stop()
    assert_all_sent(senders.results)
    assert fetches() == 2, f"{fetches() - 1} fetches after WeChat invalidated the token"

    # 3. The stored token runs out (its expiry passes in the database): one fetch for 30 senders.
    with svc.engine.begin() as conn:
        conn.execute(text("UPDATE access_tokens SET expires_at = :past"), {"past": "2000-01-01 00:00:00"})
    time.sleep(KEPT_TOKEN_RECHECK.total_seconds() + 0.5)  # each worker reads the row again after this
    assert_all_sent(burst(senders, SENDERS))
    assert fetches() == 3, f"{fetches() - 2} fetches for an expired stored token"

    # 4. WeChat's clock says the token expired (42001) while the stored one still looks fresh.
    world.advance(7300)
    assert_all_sent(burst(senders, SENDERS))
    assert fetches() == 4, f"{fetches() - 3} fetches after WeChat expired the token"

    # every accepted message reached its receiver once
    rows = svc.rows()
    check_mp_exactly_once(world, rows, senders.accepted())
    assert world.stats()["calls"].get("token", 0) == 0, "the legacy /cgi-bin/token was called"


def _queue_failed_messages(world, svc: Service, secret: str, openids: list[str], count: int) -> list[dict]:
    """Post ``count`` one-receiver messages while WeChat answers -1: each sits queued for a retry."""
    world.add_fault({"endpoint": "template_send", "kind": "errcode", "errcode": -1, "for_seconds": 3600})
    senders = Senders(svc.base, secret, openids, per_message=1)
    with ThreadPoolExecutor(8) as pool:
        records = list(pool.map(lambda _: senders.post_one(), range(count)))
    world.clear_faults()
    assert all(r["status"] == 200 for r in records), [r for r in records if r["status"] != 200][:2]
    queued = [d for r in records for d in r["answer"]["data"]["deliveries"]]
    assert len(queued) == count and {d["status"] for d in queued} == {"queued"}
    assert all(d["errcode"] == -1 and d["errmsg"] for d in queued), queued[:2]
    return records


def test_four_delivery_loops_never_claim_a_delivery_twice(world, service):
    """300 queued deliveries, four processes running the retry job in a tight loop, all released at
    the same moment: every delivery is claimed by exactly one process and sent exactly once."""
    count, loops = 300, 4
    openids = add_followers(world, 30)
    # The first attempts' backoff is long, so that nothing is retried before the test releases it.
    svc = service(DELIVERY_RETRY_BASE_SECONDS=3600)
    secret = svc.install(MP_CHANNEL, app_code="drill")
    svc.start(workers=2, threads=4)
    records = _queue_failed_messages(world, svc, secret, openids, count)
    svc.kill()  # only the delivery loops touch the queue from now on
    calls_before = world.stats()["calls"]["template_send"]
    world.update_settings({"latency_ms": 20})

    processes = [subprocess.Popen([PYTHON, "-m", "tests.drill_support", "deliver-loop", "25", "180"], cwd=ROOT,
                                  env=svc.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(loops)]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready", process.stderr.read()
        with svc.engine.begin() as conn:  # everything is due now, for all four at once
            conn.execute(text("UPDATE deliveries SET next_attempt_at = CURRENT_TIMESTAMP AT TIME ZONE 'UTC'"))
        outputs = [process.communicate(timeout=240) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    claims = []
    for (out, err), process in zip(outputs, processes):
        assert process.returncode == 0, err
        claims.append(json.loads(out.strip().splitlines()[-1])["claimed"])

    every = Counter(i for claimed in claims for i in claimed)
    twice = {i: n for i, n in every.items() if n > 1}
    assert not twice, f"{len(twice)} deliveries were claimed more than once: {list(twice.items())[:5]}"
    rows = svc.rows()
    assert set(every) == {r["id"] for r in rows}, "some deliveries were never claimed"
    assert sum(1 for claimed in claims if claimed) >= 2, f"one process did all the work: {[len(c) for c in claims]}"
    assert {r["attempts"] for r in rows} == {2}, Counter(r["attempts"] for r in rows)
    result = check_mp_exactly_once(world, rows, records)
    assert result["suppressed"] == 0, "a delivery was sent twice (WeChat's client_msg_id guard caught it)"
    assert world.stats()["calls"]["template_send"] - calls_before == count


def test_two_schedulers_by_mistake_do_no_harm(world, service):
    """Two ``flask --app wsgi scheduler`` processes on one database for a while: each token is
    fetched once when it runs out (never once per scheduler), each retry is delivered once, and the
    purge job deletes what is stale and nothing else, without errors."""
    lifetime, run_seconds = 20, 45
    openids = add_followers(world, 20)
    world.update_settings({"token_lifetime": lifetime, "latency_ms": 10})
    svc = service(DELIVERY_RETRY_BASE_SECONDS=1, DELIVERY_RETRY_MAX_SECONDS=2, DELIVERY_JOB_SECONDS=0.5,
                  DELIVERY_CLAIM_LEASE_SECONDS=4, TOKEN_JOB_SECONDS=1, PURGE_JOB_SECONDS=1)
    secret = svc.install(MP_CHANNEL, app_code="drill")
    svc.start(workers=2, threads=4)
    # stale rows the purge job must delete, next to the current rate-limit window it must keep
    with svc.engine.begin() as conn:
        app_id = conn.execute(text("SELECT id FROM api_apps")).scalar()
        conn.execute(text("INSERT INTO rate_windows (api_app_id, window_start, count) VALUES (:a, :t, 5)"),
                     {"a": app_id, "t": "2000-01-01 00:00:00"})

    started = time.monotonic()
    svc.start_scheduler()
    svc.start_scheduler()
    records = _queue_failed_messages(world, svc, secret, openids, 100)
    senders = Senders(svc.base, secret, openids, threads=2, pause=0.3, per_message=1).start()
    time.sleep(max(0.0, run_seconds - (time.monotonic() - started)))  # the drill's length, not a bound
    senders.stop()
    settle(svc, 60)
    elapsed = time.monotonic() - started

    assert [p.poll() for p in svc.schedulers] == [None, None], svc.log()
    failures = svc.logs_containing("failed", "Traceback", "ERROR")
    assert not failures, "\n".join(failures[:20])
    rows = svc.rows()
    result = check_mp_exactly_once(world, rows, records + senders.accepted())
    assert result["suppressed"] == 0, "a retry was sent twice"
    with svc.engine.connect() as conn:
        windows = conn.execute(text("SELECT window_start FROM rate_windows")).scalars().all()
    assert windows and all(w.year > 2000 for w in windows), windows

    # Tokens: every fetch brought a new token (a second scheduler fetching the same one would be
    # a wasted, racing fetch), and there were about as many fetches as the run needed tokens.
    stable = [t for t in world.tokens.values() if t.source == "stable_token"]
    fetches = world.stats()["calls"]["stable_token"]
    assert fetches == len(stable), f"{fetches} fetches brought {len(stable)} tokens"
    # refreshed when a fifth of the lifetime is left: one token per 0.8 x lifetime, plus the first
    assert fetches <= math.ceil(elapsed / (lifetime * 0.8)) + 1, (fetches, elapsed)
    assert fetches >= 2, "the tokens were never refreshed: the refresh job did not run"

