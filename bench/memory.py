"""Memory: resident size of one gunicorn worker after 10,000 sends, against a worker that only built the app.

The simulator answers at once (latency 0). First a gunicorn worker serving ``wsgi:app`` (the bare
``create_app()``) is started and asked for ``/healthz`` only: its VmRSS is the baseline. Then a
fresh worker (1 worker x 4 threads) gets ``--sends`` single-receiver ``send_weixin`` calls over
``--concurrency`` keep-alive connections, to ``--followers`` followers in turn (with
``--receivers-per-call`` above 1 it gets fewer calls with that many receivers each instead; the
default, one receiver per call, is the honest case: every call is a request, a message, a delivery
and a template send). VmRSS (and VmHWM, the peak) is read from /proc/<pid>/status at boot, after
the warm-up, every 1,000 sends, and at the end.

    .venv/bin/python -m bench.memory [--sends 10000] [--concurrency 4] [--database-url URL]
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import requests

from bench.common import child_pids, gunicorn_process, instance, load_average, machine, memory_mb, run_threads
from bench.sendbench import MP_CHANNEL, SendClient, configure_channel, register_app, service_env, simulator


def booted_worker(base: str, master) -> int:
    """Wait until the worker answers, then return its pid."""
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if requests.get(base + "/healthz", timeout=5).status_code < 500:
                break
        except requests.RequestException:
            time.sleep(0.2)
    workers = child_pids(master.pid)
    if len(workers) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {workers}")
    return workers[0]


def run_sends(base: str, code: str, secret: str, batches: list[list[str]], concurrency: int,
              on_progress=None, every: int = 1000) -> dict:
    """Send each batch as one call, over ``concurrency`` connections; count the delivery statuses."""
    lock = threading.Lock()
    position = {"next": 0, "done": 0}
    counts: dict[str, int] = {}

    def worker() -> None:
        client = SendClient(base, code, secret)
        while True:
            with lock:
                if position["next"] >= len(batches):
                    break
                batch = batches[position["next"]]
                position["next"] += 1
            _, answer = client.send(batch)
            deliveries = (answer.get("data") or {}).get("deliveries") or [{"status": f"code {answer['code']}"}]
            with lock:
                for delivery in deliveries:
                    counts[delivery["status"]] = counts.get(delivery["status"], 0) + 1
                position["done"] += 1
                done = position["done"]
            if on_progress and done % every == 0:
                on_progress(done)
        client.close()

    seconds = run_threads(worker, concurrency)
    return {"calls": len(batches), "seconds": round(seconds, 1), "calls_per_second": round(len(batches) / seconds, 1),
            "delivery_statuses": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=10_000, help="deliveries in all")
    parser.add_argument("--receivers-per-call", type=int, default=1)
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warm-up", type=int, default=100, help="single-receiver calls before the 'after warm-up' reading")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads (1 worker)")
    parser.add_argument("--database-url", help="an empty database to use instead of a new SQLite file")
    args = parser.parse_args()
    load_at_start = load_average()
    with simulator(latency_ms=0) as sim, instance(args.database_url, **service_env(sim)) as env:
        configure_channel(env, MP_CHANNEL)
        code, secret = register_app(env)
        openids = sim.add_followers(args.followers)

        with gunicorn_process(env, workers=1, threads=args.threads) as (base, master):
            pid = booted_worker(base, master)
            time.sleep(1)
            bare = memory_mb(pid)

        with gunicorn_process(env, workers=1, threads=args.threads) as (base, master):
            pid = booted_worker(base, master)
            time.sleep(1)
            readings = {"at_boot": memory_mb(pid)}
            warm = run_sends(base, code, secret, [[openids[i % len(openids)]] for i in range(args.warm_up)], args.concurrency)
            readings["after_warm_up"] = memory_mb(pid)
            per_call = args.receivers_per_call
            calls = args.sends // per_call
            batches = [[openids[(i * per_call + j) % len(openids)] for j in range(per_call)] for i in range(calls)]
            progress: list[dict] = []
            every = max(1, 1000 // per_call)
            sent_before = sim.calls()["template_send"]
            result = run_sends(base, code, secret, batches, args.concurrency,
                               on_progress=lambda done: progress.append({"sends": done * per_call, **memory_mb(pid)}),
                               every=every)
            time.sleep(1)
            readings["after_sends"] = memory_mb(pid)
            template_sends = sim.calls()["template_send"] - sent_before
    after = readings["after_sends"]["rss_mb"]
    print(json.dumps({
        "machine": machine(), "load_average_1_5_15min": {"start": load_at_start, "end": load_average()},
        "server": f"gunicorn 1 worker x {args.threads} threads",
        "database": "PostgreSQL" if args.database_url else "SQLite",
        "sends": calls * per_call, "receivers_per_call": per_call, "concurrency": args.concurrency,
        "bare_create_app_worker": bare,
        "send_worker": readings, "growth_during_sends_mb": round(after - readings["after_warm_up"]["rss_mb"], 1),
        "over_bare_worker_mb": round(after - bare["rss_mb"], 1),
        "rss_mb_every_1000_sends": [r["rss_mb"] for r in sorted(progress, key=lambda r: r["sends"])],
        "warm_up": warm, "sends_run": result, "template_send_calls": template_sends,
        "target": "< 150 MB per worker after 10,000 sends", "met": after < 150,
    }, indent=2))


if __name__ == "__main__":
    main()
