"""Send API overhead: latency of single-receiver sends from 8 concurrent callers, with an instant WeChat.

The simulator answers at once (latency 0). The service runs under gunicorn (1 worker x 8 threads
unless ``--workers``/``--threads`` say otherwise; ``bench.bench_wsgi:app``: the real app plus one bare
route). After a warm-up, ``--callers`` callers (8), each on its own keep-alive connection, make
``--calls`` rounds between them. A caller's round is one call of each kind, one after another:

- ``send_weixin`` to one Official Account follower (credentials, rate limit, validation, the message
  and its delivery stored, the template send to the simulator, the outcome recorded, the answer);
- the raw ``/cgi-bin/message/template/send`` to the simulator alone, with the service's MpClient and a
  token fetched once (what the send costs without the service);
- the bare route of the same server (what an empty Flask request costs there).

Rounds start on a schedule, ``--rate`` rounds a second over all callers together (each caller waits
a random, exponentially distributed pause between its rounds, so the callers' requests overlap as
independent programs' would); a caller that falls behind starts its next round at once. The callers
run in a process of their own, so that their Python does not compete with the simulator's for one
interpreter lock. The output gives median, p95 and p99 of each kind, the CPU seconds the service's
workers used in the timed part (per round: one send and one bare request), and the load average.

    .venv/bin/python -m bench.api_overhead [--calls 800] [--rate 50] [--workers 1] [--database-url URL]
    .venv/bin/python -m bench.api_overhead --quick      # a smoke run for CI: checks outcomes, not timings
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import random
import sys
import threading
import time
from urllib.parse import urlsplit

from bench.common import child_pids, cpu_seconds, gunicorn_process, instance, load_average, machine
from bench.sendbench import (HEADING, MESSAGE, MP_CHANNEL, SendClient, configure_channel, register_app, service_env,
                             simulator)
from webapp.database import make_engine
from webapp.simulator.world import MP_APPID, MP_SECRET, TEMPLATE_NOTIFICATION_ID
from webapp.wechat import MpClient, WeChatError, make_session

MEDIAN_TARGET_MS, P99_TARGET_MS = 10, 30


def percentiles(latencies: list[float]) -> dict:
    """Count, median, p95, p99, mean and max of latencies given in seconds, in milliseconds."""
    ordered = sorted(latencies)
    if not ordered:
        return {"count": 0}

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 2)

    return {"count": len(ordered), "median_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "mean_ms": round(sum(ordered) / len(ordered) * 1000, 2), "max_ms": round(ordered[-1] * 1000, 2)}


def commit_probe(database_url: str, count: int = 200) -> dict:
    """What one small durable write costs on this database now: INSERT one row + COMMIT, ``count`` times.

    A send makes a few such commits (the rate-limit count, the message and its delivery, the outcome);
    on PostgreSQL each durable one waits for the disk, shared here with whatever else the machine does.
    """
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE bench_commit_probe (id INTEGER PRIMARY KEY, note VARCHAR(32))")
    latencies = []
    try:
        for i in range(count):
            started = time.perf_counter()
            with engine.begin() as connection:
                connection.exec_driver_sql(f"INSERT INTO bench_commit_probe (id, note) VALUES ({i}, 'probe')")
            latencies.append(time.perf_counter() - started)
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE bench_commit_probe")
        engine.dispose()
    return percentiles(latencies)


class Caller:
    """One calling program: a keep-alive connection to the service, one to the simulator, and its timings."""

    def __init__(self, base: str, code: str, secret: str, simulator_mp: str, token: str):
        self.service = (base, code, secret)
        self.client = SendClient(*self.service)
        url = urlsplit(base)
        self.bare_connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        self.raw = MpClient(simulator_mp, session=make_session())
        self.token = token
        self.data = {"first": HEADING, "keyword1": MESSAGE, "keyword2": time.strftime("%Y-%m-%d %H:%M")}
        self.timings: dict[str, list[float]] = {"send": [], "template": [], "bare": []}
        self.outcomes: dict[str, int] = {}

    def round(self, openid: str) -> None:
        """One send, one raw template send and one bare request, timed (a failure is counted, not timed)."""
        try:
            seconds, answer = self.client.send([openid])
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.count(f"error {type(exc).__name__}")
            self.client.close()
            self.client = SendClient(*self.service)  # a new connection
        else:
            self.count(answer["data"]["deliveries"][0]["status"] if answer.get("data") else f"code {answer.get('code')}")
            self.timings["send"].append(seconds)
        started = time.perf_counter()
        try:
            self.raw.send_template(self.token, openid, TEMPLATE_NOTIFICATION_ID, self.data)
        except WeChatError as exc:
            self.count(f"raw template send failed: {type(exc).__name__}")
        else:
            self.timings["template"].append(time.perf_counter() - started)
        started = time.perf_counter()
        try:
            self.bare_connection.request("POST", "/api/bench/bare", body=b"x")
            self.bare_connection.getresponse().read()
        except (OSError, http.client.HTTPException) as exc:
            self.count(f"bare route failed: {type(exc).__name__}")
            self.bare_connection.close()
        else:
            self.timings["bare"].append(time.perf_counter() - started)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def close(self) -> None:
        self.client.close()
        self.bare_connection.close()


def run_callers(base: str, code: str, secret: str, simulator_mp: str, token: str, openids: list[str],
                callers: int, rounds: int, rate: float, seed: int) -> dict:
    """``rounds`` rounds shared by ``callers`` threads, started ``rate`` a second over all of them."""
    parties = [Caller(base, code, secret, simulator_mp, token) for _ in range(callers)]
    share = [rounds // callers + (1 if i < rounds % callers else 0) for i in range(callers)]
    mean_pause = callers / rate if rate > 0 else 0.0
    started = time.perf_counter()

    def work(index: int) -> None:
        party, rng = parties[index], random.Random(seed + index)
        due = time.perf_counter() + rng.uniform(0, mean_pause)  # callers start out of step
        for i in range(share[index]):
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            party.round(openids[(index + i * callers) % len(openids)])
            due = max(due + (rng.expovariate(1 / mean_pause) if mean_pause else 0), time.perf_counter())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    timings: dict[str, list[float]] = {"send": [], "template": [], "bare": []}
    outcomes: dict[str, int] = {}
    for party in parties:
        party.close()
        for kind, values in party.timings.items():
            timings[kind] += values
        for status, count in party.outcomes.items():
            outcomes[status] = outcomes.get(status, 0) + count
    return {"timings": timings, "outcomes": outcomes, "seconds": wall}


def _callers_process(results, *args) -> None:
    try:
        results.put(run_callers(*args))
    except BaseException as exc:  # the parent reports it; a silent child would leave it waiting
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


def in_own_process(*args) -> dict:
    """:func:`run_callers` in a process of its own (its threads then share no interpreter lock with the simulator)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_callers_process, args=(results, *args), daemon=True)
    process.start()
    outcome = results.get()
    process.join(timeout=30)
    if "error" in outcome:
        raise RuntimeError(f"the callers failed: {outcome['error']}")
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=800, help="timed rounds over all callers together")
    parser.add_argument("--warm-up", type=int, default=80)
    parser.add_argument("--callers", type=int, default=8, help="concurrent callers, one connection each")
    parser.add_argument("--rate", type=float, default=50, help="rounds started a second, all callers together")
    parser.add_argument("--workers", type=int, default=1,
                        help="gunicorn workers (the production file's default on this machine: cores + 1, at most 4)")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    parser.add_argument("--database-url", help="an empty database to use instead of a new SQLite file")
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run (CI): fails when a send is not sent, whatever the timings")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.warm_up = 64, 16
    load_at_start = load_average()
    with simulator(latency_ms=0) as sim, instance(args.database_url, **service_env(sim)) as env:
        configure_channel(env, MP_CHANNEL)
        code, secret = register_app(env)
        openids = sim.add_followers(50)
        commit = commit_probe(env["FLASK_DATABASE_URL"], 20 if args.quick else 200)
        token, _ = MpClient(sim.mp, session=make_session()).stable_token(MP_APPID, MP_SECRET)
        with gunicorn_process(env, module="bench.bench_wsgi:app", workers=args.workers, threads=args.threads) as (base, master):
            common = (base, code, secret, sim.mp, token, openids, args.callers)
            in_own_process(*common, args.warm_up, 0, 1)  # warm-up: as fast as the callers go
            sent_before = sim.calls()["template_send"]
            workers = child_pids(master.pid)
            cpu_before, load_before = sum(map(cpu_seconds, workers)), load_average()
            run = in_own_process(*common, args.calls, args.rate, 2)
            worker_cpu = sum(map(cpu_seconds, workers)) - cpu_before
        # Template sends the simulator received in the timed part: one per service call, one per raw call.
        template_sends = sim.calls()["template_send"] - sent_before
    timings = run["timings"]
    service, alone, empty = (percentiles(timings[kind]) for kind in ("send", "template", "bare"))
    all_sent = run["outcomes"] == {"sent": args.calls} and template_sends == 2 * args.calls
    met = all_sent and service["median_ms"] < MEDIAN_TARGET_MS and service["p99_ms"] < P99_TARGET_MS
    print(json.dumps({
        "machine": machine(),
        "load_average_1_5_15min": {"start": load_at_start, "timed_part_start": load_before, "end": load_average()},
        "server": f"gunicorn {args.workers} worker(s) x {args.threads} threads",
        "database": "PostgreSQL" if args.database_url else "SQLite", "simulator_latency_ms": 0,
        "callers": args.callers, "rounds": args.calls, "rate_rounds_per_s": args.rate,
        "seconds": round(run["seconds"], 2), "achieved_rounds_per_s": round(args.calls / run["seconds"], 1),
        "send_outcomes": run["outcomes"], "template_sends_received": template_sends,
        "send_weixin_one_receiver": service,
        "simulator_alone_template_send": alone,
        "bare_route_same_server": empty,
        "worker_cpu_seconds": round(worker_cpu, 2),
        "worker_cpu_ms_per_round": round(worker_cpu / args.calls * 1000, 2),
        "database_insert_commit": commit,
        "service_overhead_median_ms": round(service["median_ms"] - alone["median_ms"], 2),
        "target": f"send median < {MEDIAN_TARGET_MS} ms and p99 < {P99_TARGET_MS} ms", "met": met,
    }, indent=2))
    if args.quick and not all_sent:
        sys.exit("not every send was sent: see send_outcomes and template_sends_received")


if __name__ == "__main__":
    main()
