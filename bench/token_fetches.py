"""Token fetches under concurrency: 4 workers and 30 senders, against a naive per-process cache.

The simulated WeChat hands out tokens that live ``--lifetime`` seconds (stable_token, normal mode)
and answers each call after ``--latency`` ms. The broker should fetch at most once per expiry,
whatever the number of processes; the naive approach (each process caches its own token, no lock,
the legacy ``/cgi-bin/token`` API as the BlueKing component uses) fetches per process and
invalidates the others. Two modes:

- ``--mode gunicorn`` (the default): the real service under gunicorn, ``--workers`` workers x
  ``--threads`` threads, and ``--senders`` threads in this process, each calling the send API for
  one receiver again and again for ``--seconds`` (every call needs the token). The naive variant:
  ``--workers`` processes sharing ``--senders`` threads, each thread taking a token from its
  process's cache and sending the template message itself, as the BlueKing component does.
- ``--mode processes``: ``--workers`` plain processes x ``--senders`` threads each, asking the
  broker itself (``get_token``) for a token again and again, against the naive cache alone.

    .venv/bin/python -m bench.token_fetches [--mode gunicorn|processes] [--seconds 30] [--database-url URL]
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import threading
import time
from collections import Counter

import requests

from bench.common import PYTHON, ROOT, child_pids, gunicorn_process, instance, load_average, machine, summary
from bench.sendbench import (HEADING, MESSAGE, MP_CHANNEL, SendClient, configure_channel, register_app, service_env,
                             simulator, wait_until)
from tests.livesrv import serve
from webapp.simulator import create_standalone_app


def worker(mode: str, database_url: str, api_base: str, senders: int, seconds: float, start_at: float,
           openids: list[str] | None = None) -> None:
    """One worker process: ``senders`` threads asking for a token until time runs out.

    With ``openids`` (one per thread) each thread also sends a template message to its openid with
    every token it gets, as a sender of the legacy component does.
    """
    from webapp import create_app
    from webapp.extensions import db
    from webapp.simulator.world import MP_APPID, MP_SECRET, TEMPLATE_NOTIFICATION_ID
    from webapp.tokens import TokenSource, get_token
    from webapp.wechat import MpClient

    app = create_app({"SECRET_KEY": "bench", "DATABASE_URL": database_url, "SCHEDULER_ENABLED": False,
                      "WEIXIN_MP_API_BASE": api_base, "TESTING": True})
    naive = {"token": None, "expires": 0.0, "life": 1.0}
    client = MpClient(api_base)
    counts = {"asks": 0, "errors": 0, "error_kinds": {}}
    lock = threading.Lock()

    def ask_naive() -> str:
        # The legacy way: a cache in each process, refreshed with /cgi-bin/token when a fifth of the
        # token's life remains (the broker's rule too), with no lock between threads or processes.
        if naive["token"] is None or naive["expires"] - time.time() < naive["life"] / 5:
            token, life = client.legacy_token(MP_APPID, MP_SECRET)
            naive.update(token=token, expires=time.time() + life, life=life)
        return naive["token"]

    def run(openid: str | None) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        with app.app_context():
            source = TokenSource.official_account(MP_APPID, MP_SECRET)
            while time.time() < start_at + seconds:
                try:
                    token = get_token(source) if mode == "broker" else ask_naive()
                    if openid:
                        client.send_template(token, openid, TEMPLATE_NOTIFICATION_ID,
                                             {"first": HEADING, "keyword1": MESSAGE, "keyword2": "2026-01-01 00:00"})
                    with lock:
                        counts["asks"] += 1
                except Exception as exc:  # counted and reported, the run goes on
                    with lock:
                        counts["errors"] += 1
                        kind = f"{type(exc).__name__}: {str(exc)[:80]}"
                        counts["error_kinds"][kind] = counts["error_kinds"].get(kind, 0) + 1
                db.session.remove()
                if not openid:  # a sender's own WeChat call paces it; a bare token ask is paced here
                    time.sleep(0.01)

    threads = [threading.Thread(target=run, args=((openids or [None] * senders)[i],)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(counts))


def tokens_needed(args) -> int:
    """Tokens a run needs at least: one is replaced when a fifth of its life is left."""
    return math.ceil(args.seconds / (args.lifetime * 0.8))


def reset_simulator(sim: str, args) -> None:
    """A fresh simulated WeChat (no token issued, counters at 0) with this run's lifetime and latency."""
    requests.post(f"{sim}/simulator/_control/reset", timeout=5)
    requests.post(f"{sim}/simulator/_control/settings", json={"token_lifetime": args.lifetime, "latency_ms": args.latency}, timeout=5)


def run_mode(mode: str, env: dict, sim, args, senders: list[list[str | None]] | None = None, after_reset=None) -> dict:
    """Run ``mode`` ("broker" or "naive") in ``--workers`` processes; count requests served and token calls.

    ``senders`` gives each process its threads' openids (they then send a message with each token);
    by default every process has ``--senders`` threads that only ask for tokens. ``after_reset`` is
    called once the simulator is reset (to add back the followers the senders write to).
    """
    reset_simulator(sim, args)
    if after_reset:
        after_reset()
    start_at = time.time() + 5
    per_process = senders or [[None] * args.senders for _ in range(args.workers)]
    processes = [
        subprocess.Popen([PYTHON, "-m", "bench.token_fetches", "--worker", mode, env["FLASK_DATABASE_URL"], f"{sim}/simulator/mp",
                          str(len(openids)), str(args.seconds), str(start_at), ",".join(o for o in openids if o)],
                         cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for openids in per_process
    ]
    totals = {"asks": 0, "errors": 0, "error_kinds": {}}
    for process in processes:
        out, _ = process.communicate(timeout=args.seconds + 120)
        counts = json.loads(out.strip().splitlines()[-1])
        totals["asks"] += counts["asks"]
        totals["errors"] += counts["errors"]
        for kind, number in counts["error_kinds"].items():
            totals["error_kinds"][kind] = totals["error_kinds"].get(kind, 0) + number
    calls = requests.get(f"{sim}/simulator/_control/stats", timeout=5).json()["calls"]
    fetches = calls.get("stable_token", 0) + calls.get("token", 0)
    needed = tokens_needed(args)
    return {"token_requests": totals["asks"], "errors": totals["errors"], "error_kinds": totals["error_kinds"],
            "template_sends": calls.get("template_send", 0),
            "fetches": fetches, "tokens_needed": needed, "fetches_per_token_needed": round(fetches / needed, 2)}


def send_for(base: str, code: str, secret: str, openids: list[str], seconds: float) -> dict:
    """One thread per openid, each calling the send API for its openid until ``seconds`` have passed."""
    lock = threading.Lock()
    codes: Counter = Counter()
    statuses: Counter = Counter()
    latencies: list[float] = []
    deadline = time.time() + seconds

    def sender(openid: str) -> None:
        client = SendClient(base, code, secret)
        while time.time() < deadline:
            try:
                elapsed, answer = client.send([openid])
            except Exception as exc:  # counted; a sender that lost its connection opens another
                with lock:
                    codes[type(exc).__name__] += 1
                client.close()
                client = SendClient(base, code, secret)
                continue
            with lock:
                latencies.append(elapsed)
                codes[str(answer.get("code"))] += 1
                for delivery in (answer.get("data") or {}).get("deliveries", []):
                    statuses[delivery["status"]] += 1
        client.close()

    threads = [threading.Thread(target=sender, args=(openid,)) for openid in openids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"send_calls": len(latencies), "answer_codes": dict(codes), "delivery_statuses": dict(statuses),
            "latency": summary(latencies)}


def healthy(base: str) -> bool:
    """Whether the server answers /healthz (a worker still booting, or a busy machine, may not yet)."""
    try:
        return requests.get(f"{base}/healthz", timeout=10).status_code < 500
    except requests.RequestException:
        return False


def gunicorn_mode(args) -> dict:
    """The real service under gunicorn, ``--senders`` threads calling the send API; then the naive way."""
    with simulator() as sim, instance(args.database_url, **service_env(sim)) as env:
        configure_channel(env, MP_CHANNEL)  # --no-check: no token is fetched before the run
        code, secret = register_app(env)
        reset_simulator(sim.base, args)
        openids = sim.add_followers(args.senders)
        with gunicorn_process(env, workers=args.workers, threads=args.threads) as (base, master):
            # Every worker booted (they load the app in parallel) before the clock starts.
            wait_until(lambda: len(child_pids(master.pid)) == args.workers, timeout=60)
            wait_until(lambda: healthy(base), timeout=90, step=0.5)
            time.sleep(3)
            sent = send_for(base, code, secret, openids, args.seconds)
            calls = sim.calls()
        fetches = calls["stable_token"] + calls["token"]
        broker = {"server": f"gunicorn {args.workers} workers x {args.threads} threads", **sent,
                  "template_sends": calls["template_send"], "fetches": fetches, "tokens_needed": tokens_needed(args),
                  "fetches_per_token_needed": round(fetches / tokens_needed(args), 2)}
        # The same 30 senders spread over the same number of processes, each with its own cache.
        spread = [openids[i::args.workers] for i in range(args.workers)]
        naive = run_mode("naive", env, sim.base, args, senders=spread,
                         after_reset=lambda: sim.add_followers(args.senders))
    return {"broker_in_service": broker, "naive_per_process_cache": naive}


def main() -> None:
    """Run a worker process (--worker), or both approaches in the chosen mode and print the figures as JSON."""
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, mode, database_url, api_base, senders, seconds, start_at, openids = sys.argv
        worker(mode, database_url, api_base, int(senders), float(seconds), float(start_at),
               openids.split(",") if openids else None)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("gunicorn", "processes"), default="gunicorn")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--senders", type=int, default=30,
                        help="sender threads: in all (gunicorn mode), per process (processes mode)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (gunicorn mode)")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--lifetime", type=int, default=10, help="token lifetime in seconds")
    parser.add_argument("--latency", type=int, default=50, help="ms per simulated WeChat call")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    load_at_start = load_average()
    if args.mode == "gunicorn":
        figures = gunicorn_mode(args)
        broker = figures["broker_in_service"]
        shape = {"workers": args.workers, "senders_in_all": args.senders}
    else:
        with serve(create_standalone_app()) as sim, instance(args.database_url) as env:
            broker = run_mode("broker", env, sim, args)
            naive = run_mode("naive", env, sim, args)
        figures = {"broker": broker, "naive_per_process_cache": naive}
        shape = {"workers": args.workers, "senders_per_worker": args.senders}
    print(json.dumps({"machine": machine(), "load_average_1_5_15min": {"start": load_at_start, "end": load_average()},
                      "mode": args.mode, **shape, "seconds": args.seconds, "token_lifetime_s": args.lifetime,
                      "latency_ms": args.latency, "database": "PostgreSQL" if args.database_url else "SQLite",
                      **figures, "target": "at most one fetch per expiry",
                      "met": broker["fetches"] <= broker["tokens_needed"]}, indent=2))


if __name__ == "__main__":
    main()
