"""Token fetches under concurrency: 4 worker processes x 30 senders, against a naive per-process cache.

The simulated WeChat hands out tokens that live ``--lifetime`` seconds (stable_token, normal mode)
and answers each call after ``--latency`` ms. For ``--seconds``, every sender asks for a token
again and again. The broker should fetch at most once per expiry, whatever the number of
processes; the naive approach (each process caches its own token, no lock, the legacy
``/cgi-bin/token`` API as the BlueKing component uses) fetches per process and invalidates the others.

    .venv/bin/python -m bench.token_fetches [--seconds 30] [--database-url URL]
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import threading
import time

import requests

from bench.common import PYTHON, ROOT, instance, machine
from tests.livesrv import serve
from webapp.simulator import create_standalone_app


def worker(mode: str, database_url: str, api_base: str, senders: int, seconds: float, start_at: float) -> None:
    """One worker process: ``senders`` threads asking for a token until time runs out."""
    from webapp import create_app
    from webapp.extensions import db
    from webapp.simulator.world import MP_APPID, MP_SECRET
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

    def run() -> None:
        time.sleep(max(0.0, start_at - time.time()))
        with app.app_context():
            source = TokenSource.official_account(MP_APPID, MP_SECRET)
            while time.time() < start_at + seconds:
                try:
                    get_token(source) if mode == "broker" else ask_naive()
                    with lock:
                        counts["asks"] += 1
                except Exception as exc:  # counted and reported, the run goes on
                    with lock:
                        counts["errors"] += 1
                        kind = f"{type(exc).__name__}: {str(exc)[:80]}"
                        counts["error_kinds"][kind] = counts["error_kinds"].get(kind, 0) + 1
                db.session.remove()
                time.sleep(0.01)

    threads = [threading.Thread(target=run) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(counts))


def run_mode(mode: str, env: dict, sim, args) -> dict:
    requests.post(f"{sim}/simulator/_control/reset", timeout=5)
    requests.post(f"{sim}/simulator/_control/settings", json={"token_lifetime": args.lifetime, "latency_ms": args.latency}, timeout=5)
    start_at = time.time() + 5
    processes = [
        subprocess.Popen([PYTHON, "-m", "bench.token_fetches", "--worker", mode, env["FLASK_DATABASE_URL"], f"{sim}/simulator/mp",
                          str(args.senders), str(args.seconds), str(start_at)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(args.workers)
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
    # A token is replaced when a fifth of its life is left, so one run needs this many tokens at least.
    needed = math.ceil(args.seconds / (args.lifetime * 0.8))
    return {"token_requests": totals["asks"], "errors": totals["errors"], "error_kinds": totals["error_kinds"],
            "fetches": fetches, "tokens_needed": needed, "fetches_per_token_needed": round(fetches / needed, 2)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, mode, database_url, api_base, senders, seconds, start_at = sys.argv
        worker(mode, database_url, api_base, int(senders), float(seconds), float(start_at))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--senders", type=int, default=30, help="threads per worker")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--lifetime", type=int, default=10, help="token lifetime in seconds")
    parser.add_argument("--latency", type=int, default=50, help="ms per simulated WeChat call")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with serve(create_standalone_app()) as sim, instance(args.database_url) as env:
        broker = run_mode("broker", env, sim, args)
        naive = run_mode("naive", env, sim, args)
    print(json.dumps({"machine": machine(), "workers": args.workers, "senders_per_worker": args.senders,
                      "seconds": args.seconds, "token_lifetime_s": args.lifetime, "database": "PostgreSQL" if args.database_url else "SQLite",
                      "broker": broker, "naive_per_process_cache": naive,
                      "target": "at most one fetch per expiry", "met": broker["fetches"] <= broker["tokens_needed"]}, indent=2))


if __name__ == "__main__":
    main()
