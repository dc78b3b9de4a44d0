"""Queue drain: how fast the retry queue empties with 1 and 4 processes, against a home-made queue.

The queue is filled through the real accept path: ``--deliveries`` Official Account deliveries are
posted to the send API (gunicorn, ``wsgi:app``) while the simulated WeChat answers every template
send with errcode -1 ("system busy", a transient error), so each delivery is stored, tried once
and left ``queued`` for the retry job. Then the fault is cleared and the rows are made due, and the
simulator answers each call after ``--latency`` ms. The same rows are drained once per variant
(reset to that state in between, and the simulator reset so that it forgets the client_msg_ids it
has seen):

- ``scheduler``: one ``flask --app wsgi scheduler`` process, the documented set-up for deployments
  with several web workers (``DELIVERY_JOB_SECONDS=1`` so the first tick comes soon);
- ``gunicorn``: ``--workers`` gunicorn workers of ``wsgi:app``, each with its in-process scheduler
  (``SCHEDULER_ENABLED`` on, the default), all running the retry job at once;
- ``jobs``: ``--workers`` processes calling the scheduler's job (``webapp.jobs.deliver_due``) back to
  back, with ``claim_due`` wrapped to record which rows each claim returned, so that a row claimed
  twice would show;
- ``naive``: ``--workers`` processes of a home-made queue: plain ``SELECT`` of due rows, then an
  ``UPDATE`` marking them taken (no ``FOR UPDATE SKIP LOCKED``, no ``client_msg_id``), then one
  template send after another; ``naive-unmarked``: the same without the ``UPDATE`` before sending
  (rows are only marked once sent, the simplest queue); and ``sequential``: the home-made queue in one
  process, the baseline.

Correctness per variant: template sends WeChat received, messages the simulated phones got, distinct
receivers and client_msg_ids, receivers that got the message more than once, attempts per row.

    .venv/bin/python -m bench.queue_drain --database-url postgresql+psycopg://postgres@127.0.0.1:5432/EMPTY_DB
        [--deliveries 2000] [--receivers-per-message 1] [--workers 4] [--latency 50] [--variants ...]
        [--schedulers 1,2,4] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from bench.common import PYTHON, ROOT, gunicorn_process, instance, load_average, machine
from bench.memory import run_sends
from bench.sendbench import (HEADING, MESSAGE, MP_CHANNEL, configure_channel, register_app, service_env, simulator,
                             wait_until)
from webapp.database import make_engine
from webapp.models import AccessToken, Delivery, utcnow

VARIANTS = ("scheduler", "gunicorn", "jobs", "naive", "naive-unmarked", "sequential")
WORKER_KINDS = {"jobs": "jobs", "naive": "naive", "naive-unmarked": "naive-unmarked", "sequential": "naive"}
#: Rows one claim takes: the service's ``claim_due`` default, used by the home-made queue too so
#: that the only difference between them is the locking.
BATCH = 200


# --- worker processes (started as ``python -m bench.queue_drain --worker KIND START_AT``) ----------

def jobs_worker(start_at: float) -> dict:
    """Run the scheduler's retry job back to back until a claim finds nothing; report every claim."""
    from webapp import create_app, jobs
    from webapp.delivery import engine

    app = create_app()  # configured from the FLASK_* environment, as wsgi.py is
    claims: list[list[int]] = []
    claim_due = engine.claim_due

    def recording_claim(claim: str, limit: int = BATCH) -> list[int]:
        # The real claim, only observed: deliver_due looks claim_due up in its module at each call.
        ids = claim_due(claim, limit)
        claims.append(ids)
        return ids

    engine.claim_due = recording_claim
    errors: Counter = Counter()
    time.sleep(max(0.0, start_at - time.time()))
    while True:
        with app.app_context():
            try:
                jobs.deliver_due()
            except Exception as exc:  # the scheduler logs a failed run and runs the job again: so do we
                errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
        if claims and not claims[-1]:
            break
    return {"finished_at": time.time(), "claims": [ids for ids in claims if ids], "job_errors": dict(errors)}


def naive_worker(start_at: float, mark_taken: bool = True) -> dict:
    """A home-made queue: SELECT due rows, UPDATE them as taken, send one after another, mark each sent.

    The SELECT takes no row locks, so another worker that selects before this one's UPDATE commits
    gets the same rows and sends them too. With ``mark_taken`` off the rows are only marked once
    sent (the simplest such queue), and every worker that selects while a batch is being sent sends
    it again. Like most such code (and BlueKing's component) it sends without ``client_msg_id``, so
    WeChat cannot recognise a second send as a repeat.
    """
    import os

    from webapp.simulator.world import MP_APPID, MP_SECRET, TEMPLATE_NOTIFICATION_ID
    from webapp.wechat import MpClient, make_session

    engine = make_engine(os.environ["FLASK_DATABASE_URL"])
    client = MpClient(os.environ["FLASK_WEIXIN_MP_API_BASE"], session=make_session())
    token, _ = client.stable_token(MP_APPID, MP_SECRET)
    claims: list[list[int]] = []
    errors = 0
    time.sleep(max(0.0, start_at - time.time()))
    while True:
        now = utcnow()
        due = (Delivery.status == "queued") & (Delivery.next_attempt_at <= now) & (
            Delivery.claimed_until.is_(None) | (Delivery.claimed_until < now))
        with engine.connect() as connection:
            rows = connection.execute(select(Delivery.id, Delivery.receiver).where(due)
                                      .order_by(Delivery.next_attempt_at, Delivery.id).limit(BATCH)).all()
            connection.commit()
        if not rows:
            break
        ids = [row.id for row in rows]
        if mark_taken:  # the same lease as the service's claim, only taken without a lock
            with engine.begin() as connection:
                connection.execute(update(Delivery).where(Delivery.id.in_(ids))
                                   .values(claimed_until=now + timedelta(seconds=70)))
        claims.append(ids)
        for row in rows:
            try:
                client.send_template(token, row.receiver, TEMPLATE_NOTIFICATION_ID,
                                     {"first": HEADING, "keyword1": MESSAGE, "keyword2": time.strftime("%Y-%m-%d %H:%M")})
                values = {"status": "sent", "sent_at": utcnow(), "claimed_until": None}
            except Exception:  # counted; a home-made loop goes on with the next row
                errors += 1
                values = {"claimed_until": None}
            with engine.begin() as connection:
                connection.execute(update(Delivery).where(Delivery.id == row.id)
                                   .values(attempts=Delivery.attempts + 1, **values))
    engine.dispose()
    return {"finished_at": time.time(), "claims": claims, "send_errors": errors}


# --- the bench process ---------------------------------------------------------------------------

def fill(sim, env: dict, count: int, per_message: int) -> dict:
    """Queue ``count`` deliveries through the send API while WeChat refuses every template send with -1."""
    code, secret = register_app(env)
    openids = sim.add_followers(count)
    sim.world.add_fault({"endpoint": "template_send", "kind": "errcode", "errcode": -1, "count": 10 * count})
    batches = [openids[i:i + per_message] for i in range(0, count, per_message)]
    with gunicorn_process(env, workers=1, threads=4) as (base, _master):
        result = run_sends(base, code, secret, batches, concurrency=4)
    sim.world.clear_faults()
    return {"send_calls": result["calls"], "seconds": result["seconds"], "statuses_in_answers": result["delivery_statuses"],
            "template_send_calls": sim.calls()["template_send"]}


def reset(engine, sim, after_fill: dict, openids_count: int, latency: int, *, due: bool) -> None:
    """Put every row back in its state after the fill, and give the simulator a clean memory."""
    later = utcnow() + timedelta(days=1)
    with engine.begin() as connection:
        connection.execute(update(Delivery).values(status="queued", claimed_until=None, sent_at=None, wx_msgid=None,
                                                   next_attempt_at=utcnow() if due else later, **after_fill))
        # The reset simulator below forgets the tokens it issued: without its stored token the
        # broker fetches a new one at the first send, instead of meeting 40001 on it.
        connection.execute(delete(AccessToken))
    # A reset simulator forgets the client_msg_ids of the last variant, else it would answer the
    # repeats of this variant without delivering them.
    sim.world.reset()
    sim.add_followers(openids_count)
    sim.latency(latency)


def make_due(engine) -> float:
    """Make every queued row due now; return the moment it was committed."""
    with engine.begin() as connection:
        connection.execute(update(Delivery).where(Delivery.status == "queued").values(next_attempt_at=utcnow()))
    return time.time()


def status_counts(engine) -> dict:
    """Rows per delivery status."""
    with engine.connect() as connection:
        return dict(connection.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())


def spawn(kind: str, env: dict, workers: int, start_at: float) -> list[subprocess.Popen]:
    """Start ``workers`` worker processes of this module, all waiting for ``start_at``."""
    return [subprocess.Popen([PYTHON, "-m", "bench.queue_drain", "--worker", kind, str(start_at)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True) for _ in range(workers)]


def collect(processes: list[subprocess.Popen], timeout: float) -> list[dict]:
    """The JSON report each worker process printed last."""
    reports = []
    for process in processes:
        out, _ = process.communicate(timeout=timeout)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def run_workers(kind: str, env: dict, workers: int, timeout: float) -> dict:
    """Drain with worker processes started together; time from the common start to the last one's end."""
    start_at = time.time() + 6  # time for every process to import the app before the start
    processes = spawn(kind, env, workers, start_at)
    reports = collect(processes, timeout)
    seconds = max(r["finished_at"] for r in reports) - start_at
    claimed = Counter(i for r in reports for ids in r["claims"] for i in ids)
    return {"seconds": seconds, "claims_per_worker": [len(r["claims"]) for r in reports],
            "rows_claimed_more_than_once": sum(1 for n in claimed.values() if n > 1),
            "send_errors": sum(r.get("send_errors", 0) for r in reports),
            "job_errors": sum((Counter(r.get("job_errors", {})) for r in reports), Counter())}


def run_server(kind: str, env: dict, engine, count: int, workers: int, timeout: float) -> dict:
    """Drain with the production processes; time from rows becoming due until all are sent.

    ``scheduler`` starts ``workers`` scheduler processes (one is the documented set-up; more are
    what two schedulers started by mistake, or on two hosts, do).
    """
    env = {**env, "FLASK_DELIVERY_JOB_SECONDS": "1"}
    with contextlib.ExitStack() as stack:
        if kind == "scheduler":
            for _ in range(workers):
                process = subprocess.Popen([PYTHON, "-m", "flask", "--app", "wsgi", "scheduler"], cwd=ROOT, env=env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                stack.callback(process.wait, timeout=30)
                stack.callback(process.terminate)
        else:
            stack.enter_context(gunicorn_process({**env, "FLASK_SCHEDULER_ENABLED": "true"}, workers=workers, threads=4))
        time.sleep(8)  # let the processes boot and their schedulers tick on an empty queue
        started = make_due(engine)
        done = wait_until(lambda: status_counts(engine).get("sent", 0) >= count, timeout=timeout, step=0.2)
        seconds = time.time() - started
    return {"seconds": seconds, "all_sent_before_timeout": done}


def check(sim, engine, count: int) -> dict:
    """What WeChat and the phones saw, and what the rows say, after a drain."""
    messages = sim.world.get_messages("mp")
    per_receiver = Counter(m["to"] for m in messages)
    client_ids = {m["client_msg_id"] for m in messages if m["client_msg_id"]}
    with engine.connect() as connection:
        attempts = dict(connection.execute(select(Delivery.attempts, func.count()).group_by(Delivery.attempts)).all())
    calls = sim.calls()
    return {"template_send_calls": calls["template_send"], "token_calls": calls["stable_token"] + calls["token"],
            "messages_received": len(messages), "distinct_receivers": len(per_receiver),
            "distinct_client_msg_ids": len(client_ids),
            "receivers_sent_more_than_once": sum(1 for n in per_receiver.values() if n > 1),
            "duplicate_messages": sum(n - 1 for n in per_receiver.values() if n > 1),
            "row_statuses": status_counts(engine), "rows_by_attempts": attempts,
            "exactly_once": len(messages) == count and len(per_receiver) == count and calls["template_send"] == count}


def main() -> None:
    """Fill the queue once, drain it with each variant, print the figures as JSON."""
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, start_at = sys.argv[2], float(sys.argv[3])
        report = jobs_worker(start_at) if kind == "jobs" else naive_worker(start_at, mark_taken=kind == "naive")
        print(json.dumps(report))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--receivers-per-message", type=int, default=1,
                        help="receivers named in each send call (1: every delivery is a message of its own)")
    parser.add_argument("--workers", type=int, default=4, help="processes of the concurrent variants")
    parser.add_argument("--latency", type=int, default=50, help="ms per simulated WeChat call")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {','.join(VARIANTS)}")
    parser.add_argument("--database-url", help="an empty database to use instead of a new SQLite file")
    parser.add_argument("--schedulers", default="1",
                        help="comma-separated numbers of scheduler processes for the scheduler variant, e.g. 1,2,4")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run for CI: 100 deliveries at 5 ms, one scheduler; exits 1 unless exactly once")
    args = parser.parse_args()
    if args.quick:
        args.deliveries, args.latency, args.variants, args.schedulers = 100, 5, "scheduler", "1"
    load_at_start = load_average()
    count = args.deliveries
    # Generous: the sequential loop needs count x latency, and the shared machine may be busy.
    timeout = count * (args.latency + 20) / 1000 * 3 + 120
    results = {}
    with simulator() as sim, instance(args.database_url, **service_env(sim)) as env:
        configure_channel(env, MP_CHANNEL)
        filled = fill(sim, env, count, args.receivers_per_message)
        engine = make_engine(env["FLASK_DATABASE_URL"])
        filled["row_statuses"] = status_counts(engine)
        with engine.connect() as connection:  # every row failed the same way: restored before each variant
            row = connection.execute(select(Delivery.attempts, Delivery.errcode, Delivery.errmsg).limit(1)).one()
        after_fill = {"attempts": row.attempts, "errcode": row.errcode, "errmsg": row.errmsg}
        filled["row_after_fill"] = after_fill
        runs = []
        for variant in args.variants.split(","):
            if variant == "scheduler":
                runs += [(variant, int(n), f"scheduler-{n}" if n != "1" else variant) for n in args.schedulers.split(",")]
            else:
                runs.append((variant, 1 if variant == "sequential" else args.workers, variant))
        for variant, workers, name in runs:
            load = load_average()
            if variant in ("scheduler", "gunicorn"):
                reset(engine, sim, after_fill, count, args.latency, due=False)
                figures = run_server(variant, env, engine, count, workers, timeout)
            else:
                reset(engine, sim, after_fill, count, args.latency, due=True)
                figures = run_workers(WORKER_KINDS[variant], env, workers, timeout)
            time.sleep(1)  # calls still in flight when the last row was marked land before the count
            results[name] = {"processes": workers, "load_1min_at_start": load[0],
                             "seconds": round(figures.pop("seconds"), 2),
                             "deliveries_per_second": None, **figures, **check(sim, engine, count)}
            results[name]["deliveries_per_second"] = round(count / results[name]["seconds"], 1)
        engine.dispose()
    sequential = results.get("sequential", {}).get("seconds")
    for figures in results.values():
        if sequential:
            figures["speedup_over_sequential"] = round(sequential / figures["seconds"], 2)
    print(json.dumps({
        "machine": machine(), "load_average_1_5_15min": {"start": load_at_start, "end": load_average()},
        "database": "PostgreSQL" if args.database_url else "SQLite",
        "deliveries": count, "receivers_per_message": args.receivers_per_message, "latency_ms": args.latency,
        "bound_seconds_one_call_at_a_time": round(count * args.latency / 1000, 1),
        "fill": filled, "variants": results,
    }, indent=2))
    if args.quick and not all(figures.get("exactly_once") for figures in results.values()):
        raise SystemExit("the queue was not drained exactly once")


if __name__ == "__main__":
    main()
