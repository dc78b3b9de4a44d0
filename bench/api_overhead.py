"""Send API overhead: latency of single-receiver sends with an instant WeChat, against the raw template send.

The simulator answers at once (latency 0). The service runs under gunicorn (1 worker x 4 threads,
``bench.bench_wsgi:app``: the real app plus one bare route). After a warm-up, one client on one
keep-alive connection makes ``--calls`` rounds, each round one call of each kind, one after another:

- ``send_weixin`` to one Official Account follower (credentials, rate limit, validation, the message
  and its delivery stored, the template send to the simulator, the outcome recorded, the answer);
- the raw ``/cgi-bin/message/template/send`` to the simulator alone, with the service's MpClient and a
  token fetched once (what the send costs without the service);
- the bare route of the same server (what an empty Flask request costs there).

Interleaving the three keeps drift on the shared machine out of the comparison.

    .venv/bin/python -m bench.api_overhead [--calls 500] [--database-url URL]
"""
from __future__ import annotations

import argparse
import http.client
import json
import time
from urllib.parse import urlsplit

from bench.common import gunicorn_process, instance, load_average, machine, summary
from bench.sendbench import (HEADING, MESSAGE, MP_CHANNEL, SendClient, configure_channel, register_app, service_env,
                             simulator)
from webapp.database import make_engine
from webapp.simulator.world import MP_APPID, MP_SECRET, TEMPLATE_NOTIFICATION_ID
from webapp.wechat import MpClient, make_session


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
    return summary(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warm-up", type=int, default=50)
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads (1 worker)")
    parser.add_argument("--database-url", help="an empty database to use instead of a new SQLite file")
    args = parser.parse_args()
    load_at_start = load_average()
    with simulator(latency_ms=0) as sim, instance(args.database_url, **service_env(sim)) as env:
        configure_channel(env, MP_CHANNEL)
        code, secret = register_app(env)
        openids = sim.add_followers(50)
        commit = commit_probe(env["FLASK_DATABASE_URL"])
        raw = MpClient(sim.mp, session=make_session())
        token, _ = raw.stable_token(MP_APPID, MP_SECRET)
        data = {"first": HEADING, "keyword1": MESSAGE, "keyword2": time.strftime("%Y-%m-%d %H:%M")}
        with gunicorn_process(env, module="bench.bench_wsgi:app", workers=1, threads=args.threads) as (base, _):
            client = SendClient(base, code, secret)
            url = urlsplit(base)
            bare_connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

            def bare() -> float:
                started = time.perf_counter()
                bare_connection.request("POST", "/api/bench/bare", body=b"x")
                bare_connection.getresponse().read()
                return time.perf_counter() - started

            def template(openid: str) -> float:
                started = time.perf_counter()
                raw.send_template(token, openid, TEMPLATE_NOTIFICATION_ID, data)
                return time.perf_counter() - started

            outcomes: dict[str, int] = {}

            def send(openid: str) -> float:
                seconds, answer = client.send([openid])
                status = answer["data"]["deliveries"][0]["status"] if answer.get("data") else f"code {answer['code']}"
                outcomes[status] = outcomes.get(status, 0) + 1
                return seconds

            for i in range(args.warm_up):
                bare(), template(openids[i % 50]), send(openids[i % 50])
            outcomes.clear()
            sent_before = sim.calls()["template_send"]
            timings: dict[str, list[float]] = {"send": [], "template": [], "bare": []}
            for i in range(args.calls):
                openid = openids[i % len(openids)]
                timings["send"].append(send(openid))
                timings["template"].append(template(openid))
                timings["bare"].append(bare())
            client.close()
            bare_connection.close()
        # Template sends the simulator received in the timed part: one per service call, one per raw call.
        template_sends = sim.calls()["template_send"] - sent_before
    service, alone, empty = summary(timings["send"]), summary(timings["template"]), summary(timings["bare"])
    print(json.dumps({
        "machine": machine(), "load_average_1_5_15min": {"start": load_at_start, "end": load_average()},
        "server": f"gunicorn 1 worker x {args.threads} threads",
        "database": "PostgreSQL" if args.database_url else "SQLite", "simulator_latency_ms": 0,
        "calls_each": args.calls, "send_outcomes": outcomes, "template_sends_received": template_sends,
        "send_weixin_one_receiver": service,
        "simulator_alone_template_send": alone,
        "bare_route_same_server": empty,
        "database_insert_commit": commit,
        "service_overhead_median_ms": round(service["median_ms"] - alone["median_ms"], 2),
        "target": "send median < 20 ms", "met": service["median_ms"] < 20 and template_sends == 2 * args.calls,
    }, indent=2))


if __name__ == "__main__":
    main()
