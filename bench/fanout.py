"""Fan-out: one send call to 400 Official Account followers, 50 ms per WeChat call, against the legacy loop.

The service runs under gunicorn (1 worker x 4 threads; its delivery pool has DELIVERY_POOL_SIZE
threads, 16 by default) against the simulated WeChat, which answers each call after ``--latency`` ms.
One ``send_weixin`` call names all the receivers; the answer says which were ``sent`` within the call.
The legacy way (BlueKing's ``send_weixin`` component) is measured in the same run against the same
simulator: a token fetched once, then one ``/cgi-bin/message/template/send`` after another, with the
service's own ``MpClient`` on a keep-alive connection. The bound for the service is
receivers x latency / pool size.

    .venv/bin/python -m bench.fanout [--receivers 400] [--latency 50] [--pool-size 64] [--database-url URL]
        [--legacy-receivers N] [--quick]

With ``--receivers`` in the thousands the legacy loop would take minutes: ``--legacy-receivers``
times it on the first N receivers only and scales its time to all of them. ``--quick`` is the CI
smoke run (40 receivers at 5 ms, no target): it exits 1 unless every receiver was sent.
The service's worker CPU seconds per delivery are printed next to the target of 1.5 ms.
"""
from __future__ import annotations

import argparse
import json
import time

import os

from bench.common import child_pids, cpu_seconds, gunicorn_process, instance, load_average, machine, memory_mb
from bench.sendbench import (HEADING, MESSAGE, MP_CHANNEL, SendClient, configure_channel, register_app, service_env,
                             simulator, statuses, wait_until)
from webapp.simulator.world import MP_APPID, MP_SECRET, TEMPLATE_NOTIFICATION_ID
from webapp.wechat import MpClient, make_session


def legacy_loop(sim, openids: list[str]) -> dict:
    """BlueKing's component: one token, then one template send per receiver, each waiting for the last."""
    client = MpClient(sim.mp, session=make_session())
    before = sim.calls()
    started = time.perf_counter()
    token, _ = client.stable_token(MP_APPID, MP_SECRET)
    sent = failed = 0
    for openid in openids:
        try:
            client.send_template(token, openid, TEMPLATE_NOTIFICATION_ID,
                                 {"first": HEADING, "keyword1": MESSAGE, "keyword2": time.strftime("%Y-%m-%d %H:%M")})
            sent += 1
        except Exception:  # counted; the legacy loop goes on with the next receiver
            failed += 1
    seconds = time.perf_counter() - started
    after = sim.calls()
    return {"seconds": round(seconds, 3), "sent": sent, "failed": failed,
            "template_send_calls": after["template_send"] - before["template_send"],
            "token_calls": after["stable_token"] - before["stable_token"]}


def service_send(sim, base: str, code: str, secret: str, openids: list[str], worker: int) -> dict:
    """One send_weixin call naming every receiver."""
    client = SendClient(base, code, secret)
    before, delivered_before = sim.calls(), sim.delivered("mp")
    cpu = cpu_seconds(worker), cpu_seconds(os.getpid())
    seconds, answer = client.send(openids)
    cpu = cpu_seconds(worker) - cpu[0], cpu_seconds(os.getpid()) - cpu[1]
    client.close()
    counts = statuses(answer)
    at_answer = sim.delivered("mp") - delivered_before
    # Deliveries still queued at the answer finish in the background (or go to the retry job): wait a
    # little so that the call counts below are complete.
    wait_until(lambda: sim.delivered("mp") - delivered_before >= len(openids), timeout=30)
    after = sim.calls()
    return {"seconds": round(seconds, 3), "http_status": answer["http_status"], "code": answer["code"],
            "worker_memory_after": memory_mb(worker),
            "message": answer["message"], "statuses": counts,
            "cpu_seconds_service_worker": round(cpu[0], 2), "cpu_seconds_simulator_process": round(cpu[1], 2), "sent_within_call": counts.get("sent", 0),
            "delivered_at_answer": at_answer, "delivered_after_30s": sim.delivered("mp") - delivered_before,
            "template_send_calls": after["template_send"] - before["template_send"],
            "token_calls": after["stable_token"] - before["stable_token"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=400)
    parser.add_argument("--latency", type=int, default=50, help="ms per simulated WeChat call")
    parser.add_argument("--pool-size", type=int, default=64, help="FLASK_DELIVERY_POOL_SIZE")
    parser.add_argument("--legacy-receivers", type=int, default=400,
                        help="receivers the legacy loop is timed on (its time is scaled to --receivers)")
    parser.add_argument("--quick", action="store_true", help="a smoke run for CI: 40 receivers at 5 ms, no target")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads (1 worker)")
    parser.add_argument("--database-url", help="an empty database to use instead of a new SQLite file")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="another service setting (FLASK_KEY), e.g. DATABASE_MAX_OVERFLOW=40; repeatable")
    args = parser.parse_args()
    if args.quick:
        args.receivers, args.latency, args.legacy_receivers = 40, 5, 40
    load_at_start = load_average()
    extra = dict(item.split("=", 1) for item in args.config)
    with simulator() as sim, instance(args.database_url, **service_env(sim, DELIVERY_POOL_SIZE=args.pool_size, **extra)) as env:
        configure_channel(env, MP_CHANNEL)
        code, secret = register_app(env)
        openids = sim.add_followers(args.receivers)
        warm = sim.add_followers(args.pool_size, prefix="oWarm")
        with gunicorn_process(env, workers=1, threads=args.threads) as (base, master):
            # Warm-up without latency: the worker loads the app, fetches and stores the token, opens
            # its connections and starts its delivery threads.
            client = SendClient(base, code, secret)
            warm_up = [client.send(warm)[1]["code"] for _ in range(3)]
            client.close()
            sim.latency(args.latency)
            service = service_send(sim, base, code, secret, openids, child_pids(master.pid)[0])
        timed = openids[:min(args.legacy_receivers, len(openids))]
        legacy = legacy_loop(sim, timed)
        legacy["receivers_timed"] = len(timed)
        legacy["seconds_for_all"] = round(legacy["seconds"] * len(openids) / len(timed), 3)
    bound = args.receivers * args.latency / 1000 / args.pool_size
    speedup = legacy["seconds_for_all"] / service["seconds"]
    all_sent = service["sent_within_call"] == args.receivers
    print(json.dumps({
        "machine": machine(), "load_average_1_5_15min": {"start": load_at_start, "end": load_average()},
        "server": f"gunicorn 1 worker x {args.threads} threads",
        "database": "PostgreSQL" if args.database_url else "SQLite",
        "receivers": args.receivers, "latency_ms": args.latency, "delivery_pool_size": args.pool_size,
        "other_settings": extra,
        "warm_up_codes": warm_up,
        "service_one_call": service, "legacy_sequential_loop": legacy,
        "bound_seconds": round(bound, 3), "speedup": round(speedup, 2),
        # Per delivery sent within the call (with 10,000 receivers the rest is left to the retry job).
        "cpu_ms_per_delivery": round(1000 * service["cpu_seconds_service_worker"] / max(1, service["sent_within_call"]), 2),
        "target": ">= 20x, <= 1.5 ms CPU per delivery",
        "met": speedup >= 20 and all_sent and service["cpu_seconds_service_worker"] / args.receivers <= 0.0015,
        "answered_within_budget": service["seconds"] <= 10,
    }, indent=2))
    if not all_sent and args.receivers <= 1000:
        raise SystemExit(f"only {service['sent_within_call']} of {args.receivers} receivers were sent within the call")


if __name__ == "__main__":
    main()
