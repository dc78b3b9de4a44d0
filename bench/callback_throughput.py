"""Callback throughput in safe mode (signature + decrypt + parse + dedupe) against a bare Flask route.

Both run in the same gunicorn server (2 workers x 4 threads) on the same machine; the load generator
sends prepared requests over 8 keep-alive connections. Two kinds of pushes, each one a distinct
event signed and encrypted as WeChat does it (fresh nonce): text messages (own MsgId, answered
``success``) and subscribe events of new followers (answered with the encrypted welcome reply).
Target (DESIGN.md): within 2x of the bare route's throughput, p99 under 50 ms.

    .venv/bin/python -m bench.callback_throughput [--requests 3000] [--database-url URL]
    .venv/bin/python -m bench.callback_throughput --quick     # a smoke run: a few hundred requests, checked

Besides rates and latencies it prints the CPU seconds the gunicorn workers used per round (and per
request, the figure that other work on the machine moves least) and the load average.
"""
from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

from bench.common import PYTHON, ROOT, child_pids, cpu_seconds, gunicorn_process, hammer, instance, load_average, machine
from webapp.wechat import MessageCrypto, parse_message, sign

APPID = "wx0123456789abcdef"
TOKEN = "BenchToken123"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
PATH = "/console/user_center/weixin/mp/callback/"
ACCOUNT_ID = "gh_5130a0e1c2d3"
KINDS = ("text", "subscribe")


def _inner(kind: str, serial: int, timestamp: str, run: str) -> str:
    sender = f"o{run}{serial:021d}"
    head = (f"<xml><ToUserName><![CDATA[{ACCOUNT_ID}]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
            f"<CreateTime>{timestamp}</CreateTime>")
    if kind == "text":
        return (head + f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello {serial}]]></Content>"
                       f"<MsgId>{int(run, 16) * 10**7 + serial}</MsgId></xml>")
    # A plain follow (no QR scene): the welcome reply, after a look for a binding to reactivate.
    return head + "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey></xml>"


def signed_requests(count: int, kind: str = "text") -> list[tuple[str, str, bytes]]:
    """``count`` distinct safe-mode pushes of ``kind``, each with its own nonce and identity, as WeChat sends them."""
    crypto = MessageCrypto(TOKEN, KEY, APPID)
    run = uuid.uuid4().hex[:6]  # every call gives events never seen before
    prepared = []
    for serial in range(count):
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:12]
        encrypted = crypto.encrypt(_inner(kind, serial, timestamp, run))
        query = (f"?signature={sign(TOKEN, timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}&openid=o{run}{serial:021d}"
                 f"&encrypt_type=aes&msg_signature={sign(TOKEN, timestamp, nonce, encrypted)}")
        body = f"<xml><ToUserName><![CDATA[{ACCOUNT_ID}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        prepared.append(("POST", PATH + query, body.encode()))
    return prepared


def check_answers(base: str) -> dict:
    """One push of each kind, and a replay of it, with the answers read: what the smoke run asserts."""
    crypto = MessageCrypto(TOKEN, KEY, APPID)
    host = urlsplit(base)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    found = {}
    for kind in KINDS:
        [(method, path, body)] = signed_requests(1, kind)
        statuses = []
        for _ in range(2):  # the second is a replay of the first
            connection.request(method, path, body=body, headers={"Content-Type": "text/xml"})
            response = connection.getresponse()
            answer = response.read()
            statuses.append(response.status)
            if len(statuses) == 1:
                first = answer
        if kind == "text":
            content = first.decode()
        else:
            outer = parse_message(first)
            inner, _key = crypto.decrypt(outer["Encrypt"])
            content = parse_message(inner.encode()).get("Content", "")
        found[kind] = {"statuses": statuses, "answer": content}
    connection.close()
    return found


def _workers_cpu(master_pid: int) -> float:
    return sum(cpu_seconds(pid) for pid in child_pids(master_pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", "--messages", type=int, default=3000, help="requests per route and round")
    parser.add_argument("--database-url", help="an empty database to use instead of a new SQLite file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=8, help="senders, each on a keep-alive connection")
    parser.add_argument("--quick", action="store_true", help="a smoke run (300 requests, one round); exit 1 if an answer is wrong")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = min(args.requests, 300), 1
    load_at_start = load_average()  # other work on the two shared cores moves these figures a lot
    with instance(args.database_url) as env:
        config = {"wx_type": "mp", "wx_app_id": APPID, "wx_secret": "0" * 32, "wx_token": TOKEN,
                  "wx_encoding_aes_key": KEY, "wx_encrypt_mode": "safe", "wx_template_id": "bench-template-id"}
        path = ROOT / "instance" / f"bench-weixin-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(config))
        try:
            subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", "weixin-config", str(path), "--no-check"],
                           cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        finally:
            path.unlink()
        with gunicorn_process(env, "bench.bench_wsgi:app", args.workers, args.threads) as (base, master):
            hammer(base, [("POST", "/api/bench/bare", b"x")] * 200)  # warm up both workers
            for kind in KINDS:
                hammer(base, signed_requests(200, kind))
            checks = check_answers(base)
            # Alternate the routes, several rounds, and keep each one's median round: the machine's
            # other work shifts single runs by a fair margin.
            rounds: dict[str, list[dict]] = {"bare": [], **{kind: [] for kind in KINDS}}
            for _ in range(args.rounds):
                for name in rounds:
                    prepared = ([("POST", "/api/bench/bare", b"<xml/>")] * args.requests if name == "bare"
                                else signed_requests(args.requests, name))
                    before = _workers_cpu(master.pid)
                    result = hammer(base, prepared, concurrency=args.concurrency)
                    used = _workers_cpu(master.pid) - before
                    result.update(worker_cpu_s=round(used, 2), worker_cpu_ms_per_request=round(used / args.requests * 1000, 3),
                                  load_1min_after=load_average()[0])
                    rounds[name].append(result)
    median = {name: sorted(runs, key=lambda r: r["per_second"])[len(runs) // 2] for name, runs in rounds.items()}
    bare = median["bare"]
    figures = {}
    for kind in KINDS:
        ratio = bare["per_second"] / median[kind]["per_second"]
        figures[kind] = {"callback_safe_mode": median[kind], "slowdown": round(ratio, 2),
                         "met": ratio <= 2.0 and median[kind]["p99_ms"] < 50}
    report = {"machine": machine(), "load_average_1_5_15min": {"start": load_at_start, "end": load_average()},
              "server": f"gunicorn {args.workers} workers x {args.threads} threads, {args.concurrency} senders",
              "database": "PostgreSQL" if args.database_url else "SQLite",
              "requests_per_round": args.requests, "rounds": args.rounds,
              "bare_route": bare, **figures, "target": "slowdown <= 2.0 and p99 < 50 ms", "answers": checks}
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.quick:
        wrong = [name for name, runs in rounds.items() for run in runs if set(run["statuses"]) != {200}]
        wrong += [kind for kind, check in checks.items() if check["statuses"] != [200, 403]]
        if checks["text"]["answer"] != "success" or "Welcome" not in checks["subscribe"]["answer"]:
            wrong.append("answers")
        if wrong:
            print(f"smoke run failed: {wrong}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
