"""The service behind the shipped nginx file, as an operator runs it: what each log says, the redirect
to HTTPS on another port, a sign-in without a Referer, and what ``/healthz`` tells whom.

The stack is the one of ``tests/test_deploy_files.py`` (gunicorn with ``gunicorn.conf.py``, nginx
with both deployment files, ``FLASK_PROXY_COUNT=1``), here with JSON logs and HTTPS on a high port
named in the file's ``$weixin_notify_https_port``. Clients connect from other loopback addresses
(127.0.0.x) than nginx does, so the address the service logs is visibly the one nginx saw.
"""
from __future__ import annotations

import json
import re

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.conftest import csrf_token
from tests.crash_support import wait_for
from tests.livesrv import serve
from tests.test_deploy_files import NAME, Stack, certificate, nginx_binary, other_teams_app  # noqa: F401  (fixture)

SECRET_IN_QUERY = "QUERY-SECRET-4f1c9a"
ADMIN = ("root", "correct-horse-9")


class FromAddress(HTTPAdapter):
    """Connections from a chosen local address (the client as nginx sees it)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client(address: str, cert: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    session.mount("https://", FromAddress(address))
    session.verify = cert
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would replace the test CA
    return session


@pytest.fixture
def proxied(tmp_path, simulator, certificate):
    """The deployment with JSON logs and HTTPS on a port other than 443, named where the file says."""
    nginx_binary()
    with serve(other_teams_app) as other:
        stack = Stack(tmp_path, simulator.base_url, certificate, int(other.rsplit(":", 1)[1]))
        stack.env["FLASK_LOG_FORMAT"] = "json"
        setting = 'set $weixin_notify_https_port "";'
        assert setting in stack.main, "the nginx file no longer names the HTTPS port for its redirect"
        stack.main = stack.main.replace(setting, f'set $weixin_notify_https_port ":{stack.https_port}";')
        try:
            stack.start()
            stack.cli("create-user", ADMIN[0], "--password", ADMIN[1], "--admin")
            yield stack
        finally:
            stack.stop()


def nginx_log(stack: Stack, containing: str) -> str:
    """nginx's access log once it holds a line with ``containing`` (nginx writes it after answering)."""
    path = stack.folder / "nginx" / "weixin-notify.access.log"
    return wait_for(lambda: (lambda text: text if containing in text else None)(path.read_text() if path.exists() else ""),
                    10, 0.05, f"nginx to log {containing!r}")


def access_lines(stack: Stack) -> list[dict]:
    """The service's JSON access lines (gunicorn's output)."""
    entries = []
    for line in (stack.folder / "gunicorn.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "webapp.access":
                entries.append(entry)
    return entries


def test_both_logs_show_the_real_client_and_never_the_query_string(proxied, certificate):
    cert, _ = certificate
    https = f"https://127.0.0.1:{proxied.https_port}"
    caller = client("127.0.0.7", cert)
    # A caller that puts its secret in the query (allowed, not advised), with a forged X-Forwarded-For.
    answer = caller.post(https + f"/api/c/compapi/cmsi/send_weixin/?bk_app_code=bk_monitor&bk_app_secret={SECRET_IN_QUERY}",
                         json={"receiver": "x", "data": {"heading": "h", "message": "m"}},
                         headers={"Host": NAME, "X-Forwarded-For": "6.6.6.6", "X-Request-Id": "proxied-call-0001"},
                         timeout=10)
    assert answer.status_code == 401  # no such application: refused, and counted for 127.0.0.7
    logged = nginx_log(proxied, "send_weixin")
    line = next(entry for entry in logged.splitlines() if "send_weixin" in entry)
    assert line.startswith("127.0.0.7 ") and '"POST /api/c/compapi/cmsi/send_weixin/ HTTP/1.1" 401' in line, line
    assert SECRET_IN_QUERY not in logged and "bk_app_secret" not in logged
    # The service's access line: the address nginx saw (through FLASK_PROXY_COUNT=1), not the forged one.
    entry = next(e for e in access_lines(proxied) if e["request_id"] == "proxied-call-0001")
    assert (entry["client"], entry["path"], entry["status"]) == ("127.0.0.7", "/api/c/compapi/cmsi/send_weixin/", 401)
    assert entry["message"].endswith(" from 127.0.0.7")
    service_log = (proxied.folder / "gunicorn.log").read_text(errors="replace")
    assert SECRET_IN_QUERY not in service_log and "6.6.6.6" not in service_log
    # A detail link's token is a capability: nginx writes it masked too.
    caller.get(https + "/m/CAPABILITY-TOKEN-77?x=1", headers={"Host": NAME, "Referer": f"https://{NAME}/login?next=/secret-ref"},
               timeout=10)
    logged = nginx_log(proxied, "GET /m/")
    assert "CAPABILITY-TOKEN-77" not in logged and '"GET /m/*** HTTP/1.1"' in logged
    assert "/secret-ref" not in logged and f'"https://{NAME}/login"' in logged


def test_http_is_sent_to_https_on_its_own_port(proxied, certificate):
    cert, _ = certificate
    browser = client("127.0.0.8", cert)
    moved = browser.get(f"http://127.0.0.1:{proxied.http_port}/login?next=/console/", headers={"Host": NAME},
                        allow_redirects=False, timeout=10)
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"https://{NAME}:{proxied.https_port}/login?next=/console/"
    # Following it (NAME resolves to this machine here) reaches the sign-in page.
    page = browser.get(f"https://127.0.0.1:{proxied.https_port}/login?next=/console/",
                       headers={"Host": f"{NAME}:{proxied.https_port}"}, timeout=10)
    assert page.status_code == 200 and 'name="csrf_token"' in page.text


def sign_in(session: requests.Session, base: str, host: str, referer: str | None) -> requests.Response:
    page = session.get(base + "/login", headers={"Host": host}, timeout=10)
    form = {"username": ADMIN[0], "password": ADMIN[1], "csrf_token": csrf_token(page.text)}
    extra = {"Referer": referer} if referer else {}
    return session.post(base + "/login", data=form, headers={"Host": host, **extra}, allow_redirects=False, timeout=10)


def test_a_sign_in_without_referer_says_what_is_missing(proxied, certificate):
    cert, _ = certificate
    base = f"https://127.0.0.1:{proxied.https_port}"
    host = f"{NAME}:{proxied.https_port}"
    browser = client("127.0.0.9", cert)
    refused = sign_in(browser, base, host, referer=None)
    assert refused.status_code == 400
    assert "Referer missing" in refused.text and "without a Referer header" in refused.text
    assert "Form expired" not in refused.text
    foreign = sign_in(browser, base, host, referer="https://elsewhere.example.org/login")
    assert foreign.status_code == 400 and "Form sent from another address" in foreign.text and host in foreign.text
    signed_in = sign_in(browser, base, host, referer=f"https://{host}/login")
    assert signed_in.status_code == 302, signed_in.text[:500]


def test_healthz_tells_the_details_to_administrators_and_the_monitoring_network_only(proxied, certificate):
    cert, _ = certificate
    base = f"https://127.0.0.1:{proxied.https_port}"
    host = f"{NAME}:{proxied.https_port}"
    outsider = client("127.0.0.10", cert)
    # 127.0.0.10 is not in FLASK_METRICS_ALLOW_FROM (127.0.0.1/32 by default); forging the header does not help.
    for extra in ({}, {"X-Forwarded-For": "127.0.0.1"}):
        answer = outsider.get(base + "/healthz", headers={"Host": host, **extra}, timeout=10)
        assert answer.status_code == 200 and answer.json() == {"status": answer.json()["status"]}
        assert answer.json()["status"] in ("ok", "degraded")
    # The monitoring network (this host, as nginx reports it) sees everything.
    monitoring = client("127.0.0.1", cert).get(base + "/healthz", headers={"Host": host}, timeout=10).json()
    assert {"database", "scheduler", "tokens"} <= set(monitoring)
    # So does an administrator's browser, from anywhere.
    assert sign_in(outsider, base, host, referer=f"https://{host}/login").status_code == 302
    detailed = outsider.get(base + "/healthz", headers={"Host": host}, timeout=10).json()
    assert detailed["scheduler"]["state"] == "external" and re.fullmatch(r"ok|degraded", detailed["status"])
