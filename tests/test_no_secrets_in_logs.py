"""No secret ever reaches the logs: a whole installation's life, served by a real process logging at DEBUG.

The service is installed as an operator installs it (``flask --app wsgi ...`` commands), served by
``flask run`` with its scheduler, and talks to the simulated WeChat over HTTP. Then everything a
deployment does happens once: WeChat checks the callback URL, people sign in (once with a wrong
password), a user binds by scanning, programs send (credentials in the header and in the query
string), WeChat fails, tokens are revoked and refused, the scheduler retries, phones push messages.
Afterwards not one of the secrets involved may appear in anything the processes wrote.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import string
import subprocess
import sys
from pathlib import Path

import requests

from tests.binding_support import CALLBACK, browser
from tests.crash_support import free_port, wait_for
from webapp.simulator import get_world
from webapp.simulator.world import MP_APPID, MP_SECRET, OPENID_ALICE, OPENID_NOT_FOLLOWING, TEMPLATE_NOTIFICATION_ID

ROOT = Path(__file__).resolve().parent.parent
SEND = "/api/c/compapi/cmsi/send_weixin/"
QRCODE = "/console/user_center/weixin/mp/get_qrcode/"
BIND_STATUS = "/console/user_center/weixin/get_bind_status/"


def random_text(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    """Unpredictable text, so that finding it in a log cannot be a coincidence."""
    return "".join(secrets.choice(alphabet) for _ in range(length))


class Service:
    """The installation: its environment, its commands, its server process and everything they printed."""

    def __init__(self, tmp_path: Path, database_url: str, simulator):
        self.tmp_path = tmp_path
        self.outputs: list[str] = []  # what the commands printed (stdout and stderr)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.secret_key = "logs-" + random_text(40)
        self.env = {**os.environ,
                    "FLASK_DATABASE_URL": database_url, "FLASK_SECRET_KEY": self.secret_key,
                    "FLASK_WEIXIN_MP_API_BASE": simulator.mp_base, "FLASK_WEIXIN_QY_API_BASE": simulator.qy_base,
                    "FLASK_WEIXIN_SIMULATOR": "false", "FLASK_SCHEDULER_ENABLED": "true", "FLASK_PUBLIC_URL": self.base,
                    "FLASK_LOG_LEVEL": "DEBUG", "FLASK_DELIVERY_JOB_SECONDS": "1", "FLASK_DELIVERY_RETRY_BASE_SECONDS": "1"}
        for name in ("FLASK_APP", "FLASK_DEBUG", "PROMETHEUS_MULTIPROC_DIR"):
            self.env.pop(name, None)
        self.log_path = tmp_path / "server.log"
        self.process: subprocess.Popen | None = None

    def cli(self, *args: str, keep_stdout: bool = True) -> str:
        """Run ``flask --app wsgi ARGS``; its output is kept for the search (stdout only if ``keep_stdout``)."""
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"flask {args[0]} failed:\n{done.stdout}\n{done.stderr}"
        self.outputs.append(done.stderr)
        if keep_stdout:
            self.outputs.append(done.stdout)
        return done.stdout

    def start(self) -> None:
        """Serve with ``flask run`` (threaded, scheduler in the process), all output into one file."""
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def ready():
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")
            with contextlib.suppress(requests.RequestException):
                health = requests.get(self.base + "/healthz", timeout=2).json()
                return health["scheduler"]["status"] == "ok"
            return False

        wait_for(ready, 30, 0.1, "the service to answer with its scheduler beating")

    def stop(self) -> None:
        """Stop the server (and anything it started) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)

    def everything_logged(self) -> str:
        """The server's output and the commands' output."""
        return self.log_path.read_text(errors="replace") + "\n".join(self.outputs)


def test_a_whole_installation_logs_no_secret(tmp_path, database_url, simulator):
    service = Service(tmp_path, database_url, simulator)
    wx_token = random_text(24)
    aes_key = random_text(43)
    admin_password = "Adm-" + random_text(16)
    alice_password = "Ali-" + random_text(16)
    wrong_password = "Wrong-" + random_text(16)
    wrong_app_secret = random_text(32)

    # --- installing, as the README says ---------------------------------------------------------------
    service.cli("init-db")
    service.cli("create-user", "admin", "--password", admin_password, "--admin")
    service.cli("create-user", "alice", "--password", alice_password)
    # The one command whose job is to print a secret (its last line): its stdout is not a log.
    app_secret = service.cli("create-api-app", "monitor", keep_stdout=False).strip().splitlines()[-1]
    config = tmp_path / "channel.json"
    config.write_text(json.dumps({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": wx_token,
                                  "wx_encoding_aes_key": aes_key, "wx_encrypt_mode": "safe",
                                  "wx_template_id": TEMPLATE_NOTIFICATION_ID}))
    service.cli("weixin-config", str(config))  # checked live against the simulated WeChat (a token fetch)
    service.start()
    try:
        base = service.base
        # WeChat's 服务器配置 page: the URL check (signed GET), then safe-mode pushes.
        check = simulator.control("mp/server", {"url": base + CALLBACK, "token": wx_token,
                                                "encoding_aes_key": aes_key, "mode": "safe"})
        assert check["ok"], check

        # --- people -------------------------------------------------------------------------------------
        guesser = requests.Session()
        page = guesser.get(base + "/login", timeout=5).text
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        refused = guesser.post(base + "/login", data={"username": "admin", "password": wrong_password, "csrf_token": csrf},
                               allow_redirects=False, timeout=5)
        assert refused.status_code != 302
        admin = browser(base, "admin", admin_password)
        alice = browser(base, "alice", alice_password)
        assert admin.get(base + "/", timeout=5).status_code == 200

        # Alice binds: her page draws the QR code, her phone scans it, WeChat pushes the encrypted event.
        code = alice.get(base + QRCODE, timeout=10).json()["data"]
        scan = simulator.control("mp/scan", {"openid": OPENID_ALICE, "url": code["url"]})
        assert scan["outcome"] in ("success", "reply"), scan
        assert alice.get(base + BIND_STATUS, timeout=5).json()["result"] is True

        # --- programs -----------------------------------------------------------------------------------
        header = {"X-Bkapi-Authorization": json.dumps({"bk_app_code": "monitor", "bk_app_secret": app_secret,
                                                       "bk_username": "admin"})}
        body = {"receiver__username": "alice", "data": {"heading": "Disk alert", "message": "disk /data 91% full"}}
        sent = requests.post(base + SEND, json=body, headers=header, timeout=30).json()
        assert sent["data"]["deliveries"][0]["status"] == "sent", sent
        # Credentials in the query string (allowed by BlueKing's API), and a wrong secret.
        in_query = requests.post(base + SEND, params={"bk_app_code": "monitor", "bk_app_secret": app_secret},
                                 json={"receiver": OPENID_NOT_FOLLOWING, "data": body["data"]}, timeout=30).json()
        assert in_query["data"]["deliveries"][0]["errcode"] == 43004, in_query
        wrong = requests.post(base + SEND, params={"bk_app_code": "monitor", "bk_app_secret": wrong_app_secret},
                              json=body, timeout=10)
        assert wrong.status_code == 401

        # WeChat is busy once: the delivery is queued and the scheduler's retry sends it.
        simulator.control("faults", {"endpoint": "template_send", "kind": "errcode", "errcode": -1, "count": 1})
        queued = requests.post(base + SEND, json=body, headers=header, timeout=30).json()
        assert queued["data"]["deliveries"][0]["status"] == "queued", queued
        message_id = queued["data"]["message_id"]
        wait_for(lambda: requests.get(f"{base}/api/v1/messages/{message_id}", headers=header, timeout=5)
                 .json()["data"]["deliveries"][0]["status"] == "sent", 20, 0.2, "the scheduler to retry")

        # Tokens revoked (40001 -> refresh and retry), then a refused token fetch (IP whitelist).
        simulator.control("tokens/invalidate", {"channel": "mp"})
        assert requests.post(base + SEND, json=body, headers=header, timeout=30).json()["result"] is True
        simulator.control("tokens/invalidate", {"channel": "mp"})
        simulator.control("faults", {"endpoint": "stable_token", "kind": "errcode", "errcode": 40164, "count": 1})
        requests.post(base + SEND, json=body, headers=header, timeout=30)

        # The phone talks to the account; the console pages and the operators' endpoints are read.
        push = simulator.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "hello"})
        assert push["outcome"] in ("success", "reply"), push
        for path in ("/console/", "/console/messages", "/console/apps"):
            admin.get(base + path, timeout=10)
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        assert requests.get(base + "/metrics", timeout=5).status_code == 200

        issued_tokens = list(get_world(simulator.app).tokens)
        cookies = [c.value for s in (admin, alice, guesser) for c in s.cookies]
    finally:
        service.stop()

    logged = service.everything_logged()
    # The search is only worth something if the logs say a lot: DEBUG lines, access lines with ids.
    assert re.search(r" DEBUG \[", logged), logged[-3000:]
    assert len(re.findall(r"\] webapp\.access: (GET|POST) ", logged)) > 20
    assert re.search(r"\[deliver_due\] ", logged) or re.search(r"\[refresh_tokens\] ", logged)
    assert len(issued_tokens) >= 2 and cookies  # stable_token hands out the current one until it is revoked

    found = {
        name: value
        for name, values in {
            "wx_secret": [MP_SECRET], "wx_encoding_aes_key": [aes_key], "wx_token": [wx_token],
            "api app secret": [app_secret, wrong_app_secret], "SECRET_KEY": [service.secret_key],
            "password": [admin_password, alice_password, wrong_password],
            "access token": issued_tokens, "cookie": cookies,
        }.items()
        for value in values
        if value and value in logged
    }
    assert not found, f"secrets in the logs: {sorted(found)}"
