"""WeCom batching: one send call to 2500 members, against one call per member and against one unbounded batch.

The simulated WeCom has 2500 extra members, all visible to the application, and answers each call
after ``--latency`` ms. The service (gunicorn, 1 worker x 4 threads) should send them in
ceil(2500 / 1000) = 3 ``message/send`` calls. Two legacy ways are measured in the same run against
the same simulator:

- one ``message/send`` per member, one after another, with a token fetched once (what a loop over
  receivers does);
- BlueKing's component, which joins every receiver into one ``touser`` of a single call: WeCom takes
  at most 1000 ids per call and refuses the whole call (errcode 40032), so nobody is notified.

    .venv/bin/python -m bench.wecom_batching [--receivers 2500] [--latency 50] [--database-url URL]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import requests

from bench.common import child_pids, cpu_seconds, gunicorn_process, instance, load_average, machine
from bench.sendbench import (HEADING, MESSAGE, QY_CHANNEL, SendClient, configure_channel, register_app, service_env,
                             simulator, statuses)
from webapp.simulator.world import QY_AGENTID, QY_CORPID, QY_CORPSECRET
from webapp.wechat import WorkClient, make_session

TEXT = {"content": f"{HEADING}\n{MESSAGE}"}


def recipients_reached(sim, userids: set[str], since: int) -> int:
    """Distinct bench members who received a WeCom message among the messages delivered after the first ``since``."""
    reached: set[str] = set()
    for message in sim.world.get_messages("qy")[since:]:
        reached.update(u for u in message["to"] if u in userids)
    return len(reached)


def service_send(sim, base: str, code: str, secret: str, userids: list[str], worker: int) -> dict:
    client = SendClient(base, code, secret)
    before, delivered_before = sim.calls(), sim.delivered("qy")
    cpu = cpu_seconds(worker)
    seconds, answer = client.send(userids)
    cpu = cpu_seconds(worker) - cpu
    client.close()
    after = sim.calls()
    calls = after["qy_send"] - before["qy_send"]
    return {"seconds": round(seconds, 3), "http_status": answer["http_status"], "code": answer["code"],
            "message": answer["message"], "statuses": statuses(answer),
            "qy_send_calls": calls, "gettoken_calls": after["gettoken"] - before["gettoken"],
            "members_reached": recipients_reached(sim, set(userids), delivered_before),
            "cpu_seconds_service_worker": round(cpu, 2)}


def one_call_per_member(sim, userids: list[str]) -> dict:
    """A loop over receivers: one message/send per member, each waiting for the last."""
    client = WorkClient(sim.qy, session=make_session())
    before, delivered_before = sim.calls(), sim.delivered("qy")
    started = time.perf_counter()
    token, _ = client.get_token(QY_CORPID, QY_CORPSECRET)
    failed = 0
    for userid in userids:
        try:
            client.send_message(token, QY_AGENTID, [userid], "text", TEXT, enable_duplicate_check=False)
        except Exception:  # counted; the loop goes on
            failed += 1
    seconds = time.perf_counter() - started
    after = sim.calls()
    return {"seconds": round(seconds, 3), "qy_send_calls": after["qy_send"] - before["qy_send"], "failed": failed,
            "members_reached": recipients_reached(sim, set(userids), delivered_before)}


def one_unbounded_batch(sim, userids: list[str]) -> dict:
    """BlueKing's component: every receiver in one touser. Sent raw: the service's WorkClient refuses it before sending."""
    session = make_session()
    before, delivered_before = sim.calls(), sim.delivered("qy")
    token, _ = WorkClient(sim.qy, session=session).get_token(QY_CORPID, QY_CORPSECRET)
    started = time.perf_counter()
    answer = session.post(f"{sim.qy}/cgi-bin/message/send", params={"access_token": token}, timeout=30,
                          json={"touser": "|".join(userids), "msgtype": "text", "agentid": QY_AGENTID, "text": TEXT}).json()
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "qy_send_calls": sim.calls()["qy_send"] - before["qy_send"],
            "errcode": answer.get("errcode"), "errmsg": answer.get("errmsg", "")[:120],
            "members_reached": recipients_reached(sim, set(userids), delivered_before)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receivers", type=int, default=2500)
    parser.add_argument("--latency", type=int, default=50, help="ms per simulated WeChat call")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads (1 worker)")
    parser.add_argument("--database-url", help="an empty database to use instead of a new SQLite file")
    parser.add_argument("--skip-loop", action="store_true", help="leave out the one-call-per-member loop (~2.5 min at 50 ms)")
    args = parser.parse_args()
    load_at_start = load_average()
    with simulator() as sim, instance(args.database_url, **service_env(sim)) as env:
        configure_channel(env, QY_CHANNEL)
        code, secret = register_app(env)
        userids = sim.add_members(args.receivers)
        with gunicorn_process(env, workers=1, threads=args.threads) as (base, master):
            # Warm-up without latency: the worker loads the app and stores the token; one seeded member.
            client = SendClient(base, code, secret)
            warm_up = [client.send(["zhangsan"])[1]["code"] for _ in range(3)]
            client.close()
            sim.latency(args.latency)
            service = service_send(sim, base, code, secret, userids, child_pids(master.pid)[0])
        unbounded = one_unbounded_batch(sim, userids)
        loop = None if args.skip_loop else one_call_per_member(sim, userids)
    needed = math.ceil(args.receivers / 1000)
    print(json.dumps({
        "machine": machine(), "load_average_1_5_15min": {"start": load_at_start, "end": load_average()},
        "server": f"gunicorn 1 worker x {args.threads} threads",
        "database": "PostgreSQL" if args.database_url else "SQLite",
        "receivers": args.receivers, "latency_ms": args.latency, "warm_up_codes": warm_up,
        "service_one_call": service,
        "legacy_one_call_per_member": loop,
        "legacy_one_unbounded_batch": unbounded,
        "speedup_vs_loop": round(loop["seconds"] / service["seconds"], 1) if loop else None,
        "target": f"{needed} message/send calls", "met": service["qy_send_calls"] == needed
        and service["members_reached"] == args.receivers and service["statuses"].get("sent") == args.receivers,
    }, indent=2))


if __name__ == "__main__":
    main()
