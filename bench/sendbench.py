"""Shared pieces of the send-API benchmarks: the simulated WeChat, the channel, a calling application, a client.

The simulator runs in the benchmark's own process (werkzeug's threaded server, as in the tests), so
followers and members are added to its World directly and its call counters are read without HTTP.
The service runs under gunicorn (see :func:`bench.common.gunicorn_process`) with its API bases
pointed at the simulator.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import tempfile
import time
from urllib.parse import urlsplit

from bench.common import PYTHON, ROOT
from tests.livesrv import serve
from webapp.simulator import create_standalone_app, get_world
from webapp.simulator.world import (MP_APPID, MP_SECRET, QY_AGENTID, QY_CORPID, QY_CORPSECRET,
                                    TEMPLATE_NOTIFICATION_ID)

SEND = "/api/c/compapi/cmsi/send_weixin/"
HEADING = "Disk usage alert"
MESSAGE = "host-42: /var is 91% full"


class Simulator:
    """The simulated WeChat of one run: its URL and its World."""

    def __init__(self, base: str, world):
        self.base, self.world = base, world
        self.mp = f"{base}/simulator/mp"
        self.qy = f"{base}/simulator/qy"

    def latency(self, ms: int) -> None:
        """Make every simulated API call wait ``ms`` before answering (outside the World's lock)."""
        self.world.update_settings({"latency_ms": ms})

    def calls(self) -> dict:
        """Calls so far per endpoint (template_send, qy_send, stable_token, gettoken, ...)."""
        return dict(self.world.stats()["calls"])

    def delivered(self, channel: str) -> int:
        """Messages the simulated phones received on ``channel`` ("mp" or "qy")."""
        return self.world.stats()["messages"][channel]

    def add_followers(self, count: int, prefix: str = "oBench") -> list[str]:
        """Add ``count`` followers of the Official Account; return their openids (28 characters, like WeChat's)."""
        openids = [f"{prefix}{i:0{28 - len(prefix)}d}" for i in range(count)]
        for openid in openids:
            self.world.upsert_mp_user(openid, None, True)
        return openids

    def add_members(self, count: int, prefix: str = "bench") -> list[str]:
        """Add ``count`` WeCom members visible to the seed application; return their userids."""
        userids = [f"{prefix}{i:05d}" for i in range(count)]
        for userid in userids:
            self.world.upsert_qy_member(userid, userid, True, QY_AGENTID)
        return userids


@contextlib.contextmanager
def simulator(latency_ms: int = 0):
    """A standalone simulated WeChat served over HTTP in this process."""
    app = create_standalone_app()
    with serve(app) as base:
        sim = Simulator(base, get_world(app))
        sim.latency(latency_ms)
        yield sim


def service_env(sim: Simulator, **extra) -> dict:
    """The FLASK_* settings that point the service at the simulator (for :func:`bench.common.instance`)."""
    return {"FLASK_WEIXIN_MP_API_BASE": sim.mp, "FLASK_WEIXIN_QY_API_BASE": sim.qy,
            **{f"FLASK_{k}": v for k, v in extra.items()}}


MP_CHANNEL = {"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": "BenchToken123",
              "wx_encrypt_mode": "plain", "wx_template_id": TEMPLATE_NOTIFICATION_ID}
QY_CHANNEL = {"wx_type": "qywx", "wx_qy_corpid": QY_CORPID, "wx_qy_corpsecret": QY_CORPSECRET,
              "wx_qy_agentid": QY_AGENTID, "wx_qy_msgtype": "text"}


def flask(env: dict, *args: str) -> str:
    """Run ``flask --app wsgi ARGS`` in the project folder; return its standard output."""
    done = subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env, check=True,
                          stdout=subprocess.PIPE, text=True)
    return done.stdout


def configure_channel(env: dict, config: dict) -> None:
    """Store the channel configuration as an operator would: ``flask --app wsgi weixin-config FILE --no-check``."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    try:
        flask(env, "weixin-config", handle.name, "--no-check")
    finally:
        os.unlink(handle.name)


def register_app(env: dict, code: str = "bench_app", rate_limit: int = 1_000_000) -> tuple[str, str]:
    """Register a calling application with a rate limit high enough not to interfere; return (code, secret)."""
    out = flask(env, "create-api-app", code, "--rate-limit", str(rate_limit))
    return code, out.strip().splitlines()[-1]


class SendClient:
    """A calling program on one keep-alive connection, posting as BlueKing's SDK does."""

    def __init__(self, base: str, code: str, secret: str, timeout: float = 120):
        url = urlsplit(base)
        self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        self.headers = {"Content-Type": "application/json",
                        "X-Bkapi-Authorization": json.dumps({"bk_app_code": code, "bk_app_secret": secret,
                                                             "bk_username": "admin"})}

    def post(self, path: str, body: bytes) -> tuple[float, int, bytes]:
        """POST ``body``; return (seconds, HTTP status, answer body)."""
        started = time.perf_counter()
        self.connection.request("POST", path, body=body, headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        return time.perf_counter() - started, response.status, data

    def send(self, receivers, heading: str = HEADING, message: str = MESSAGE) -> tuple[float, dict]:
        """One send_weixin call; return (seconds, the JSON answer)."""
        receiver = ",".join(receivers) if isinstance(receivers, list) else receivers
        body = json.dumps({"receiver": receiver, "data": {"heading": heading, "message": message}}).encode()
        seconds, status, data = self.post(SEND, body)
        answer = json.loads(data)
        answer["http_status"] = status
        return seconds, answer

    def close(self) -> None:
        self.connection.close()


def statuses(answer: dict) -> dict:
    """How many deliveries of a send answer are sent / queued / failed."""
    counts: dict[str, int] = {}
    for delivery in (answer.get("data") or {}).get("deliveries", []):
        counts[delivery["status"]] = counts.get(delivery["status"], 0) + 1
    return counts


def wait_until(predicate, timeout: float = 60, step: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
