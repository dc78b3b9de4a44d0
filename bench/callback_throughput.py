"""Callback throughput in safe mode (signature + decrypt + parse + dedupe) against a bare Flask route.

Both run in the same gunicorn server (2 workers x 4 threads) on the same machine; the load generator
sends prepared requests over keep-alive connections. Target (DESIGN.md): within 2x of the bare route.

    .venv/bin/python -m bench.callback_throughput [--requests 3000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
import uuid

from bench.common import PYTHON, ROOT, gunicorn, hammer, instance, load_average, machine
from webapp.wechat import MessageCrypto, sign

APPID = "wx0123456789abcdef"
TOKEN = "BenchToken123"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
PATH = "/console/user_center/weixin/mp/callback/"


def signed_requests(count: int) -> list[tuple[str, str, bytes]]:
    """``count`` distinct safe-mode text messages, each with its own nonce and MsgId, as WeChat sends them."""
    crypto = MessageCrypto(TOKEN, KEY, APPID)
    prepared = []
    for i in range(count):
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:12]
        inner = (f"<xml><ToUserName><![CDATA[gh_5130a0e1c2d3]]></ToUserName><FromUserName><![CDATA[o{i:027d}]]></FromUserName>"
                 f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello {i}]]></Content>"
                 f"<MsgId>{10**15 + i}</MsgId></xml>")
        encrypted = crypto.encrypt(inner)
        query = (f"?signature={sign(TOKEN, timestamp, nonce)}&timestamp={timestamp}&nonce={nonce}&openid=o{i:027d}"
                 f"&encrypt_type=aes&msg_signature={sign(TOKEN, timestamp, nonce, encrypted)}")
        body = f"<xml><ToUserName><![CDATA[gh_5130a0e1c2d3]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        prepared.append(("POST", PATH + query, body.encode()))
    return prepared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--database-url", help="an empty database to use instead of a new SQLite file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    load_at_start = load_average()  # other work on the two shared cores moves these figures a lot
    with instance(args.database_url) as env:
        config = {"wx_type": "mp", "wx_app_id": APPID, "wx_secret": "0" * 32, "wx_token": TOKEN,
                  "wx_encoding_aes_key": KEY, "wx_encrypt_mode": "safe", "wx_template_id": "bench-template-id"}
        path = ROOT / "instance" / "bench-weixin.json"
        path.write_text(json.dumps(config))
        try:
            subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", "weixin-config", str(path), "--no-check"],
                           cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        finally:
            path.unlink()
        with gunicorn(env, workers=args.workers, threads=args.threads) as base:
            hammer(base, [("POST", "/api/bench/bare", b"x")] * 200)  # warm up both workers
            hammer(base, signed_requests(200))
            # Alternate the two, several rounds, and keep each one's median round: the machine's other
            # work shifts single runs by a fair margin.
            bare_rounds, callback_rounds = [], []
            for _ in range(args.rounds):
                bare_rounds.append(hammer(base, [("POST", "/api/bench/bare", b"<xml/>")] * args.requests))
                callback_rounds.append(hammer(base, signed_requests(args.requests)))
    bare = sorted(bare_rounds, key=lambda r: r["per_second"])[len(bare_rounds) // 2]
    callback = sorted(callback_rounds, key=lambda r: r["per_second"])[len(callback_rounds) // 2]
    ratio = bare["per_second"] / callback["per_second"]
    print(json.dumps({"machine": machine(), "load_average_1_5_15min": {"start": load_at_start, "end": load_average()},
                      "server": f"gunicorn {args.workers} workers x {args.threads} threads",
                      "database": "PostgreSQL" if args.database_url else "SQLite",
                      "bare_route": bare, "callback_safe_mode": callback,
                      "slowdown": round(ratio, 2), "target": "<= 2.0", "met": ratio <= 2.0}, indent=2))


if __name__ == "__main__":
    main()
