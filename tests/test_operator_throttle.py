"""Failed API authentication is throttled per application code and per client address, across processes.

Everything goes over real HTTP: from distinct loopback addresses (127.0.0.x) to the service served
by werkzeug, and to gunicorn with several workers on PostgreSQL, where the workers share the counts
through the database.
"""
from __future__ import annotations

import http.client
import json
import re
import time
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.api_support import SEND, mp, service  # noqa: F401  (fixtures)
from tests.conftest import AuthActions
from tests.crash_support import postgres_schema, wechat, world  # noqa: F401  (fixtures)
from tests.drill_support import MP_CHANNEL, Service
from tests.gunicorn_support import installations, start_workers
from webapp.api.apps import create_app_credentials
from webapp.auth.services import create_user
from webapp.extensions import db

BODY = {"receiver__username": "alice", "data": {"heading": "Disk alert", "message": "disk /data 91% full"}}


def post(base: str, code: str, secret: str, source: str = "127.0.0.1", language: str = "en") -> tuple[int, dict, dict]:
    """One send call from the loopback address ``source``: (status, JSON answer, headers)."""
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30, source_address=(source, 0))
    try:
        connection.request("POST", SEND, body=json.dumps(BODY), headers={
            "Content-Type": "application/json", "Accept-Language": language,
            "X-Bkapi-Authorization": json.dumps({"bk_app_code": code, "bk_app_secret": secret, "bk_username": "admin"})})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read()), dict(answer.getheaders())
    finally:
        connection.close()


def refused(base: str) -> dict[str, float]:
    """weixin_api_auth_refused_total by outcome, from a real scrape of /metrics."""
    scraped = requests.get(base + "/metrics", timeout=10).text
    found = {}
    for family in text_string_to_metric_families(scraped):
        for sample in family.samples:
            if sample.name == "weixin_api_auth_refused_total":
                found[sample.labels["outcome"]] = sample.value
    return found


def register(app, code: str) -> str:
    with app.test_request_context():
        _, secret = create_app_credentials(code)
        db.session.remove()
    return secret


def test_forty_wrong_secrets_are_throttled_and_nobody_else_is(mp):
    app, base, api = mp
    other_secret = register(app, "other_app")
    before = refused(base)
    answers = [post(base, api.code, "wrong-" + str(i)) for i in range(40)]
    statuses = [status for status, _, _ in answers]
    limit = app.config["API_AUTH_MAX_FAILURES_PER_APP"]
    assert statuses == [401] * limit + [429] * (40 - limit)
    status, body, headers = answers[-1]
    # The send API's shape, with a sentence that says how long to wait and that a right secret waits too.
    assert body["result"] is False and body["code"] == 429 and body["request_id"] == headers["X-Request-Id"]
    assert "wait" in body["message"] and "even with the right secret" in body["message"]
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= app.config["API_AUTH_WINDOW_SECONDS"] + 1
    assert f"wait {retry_after} s" in body["message"] or f"wait {retry_after - 1} s" in body["message"]
    # The right secret is refused as well until the window has passed, and the secret is not even checked.
    status, body, _ = post(base, api.code, api.secret, language="zh")
    assert status == 429 and body["result"] is False and "秒" in body["message"] and api.code in body["message"]
    # Counted: every wrong secret once, every throttled call once.
    after = refused(base)
    assert after.get("wrong_credentials", 0) - before.get("wrong_credentials", 0) == limit
    assert after.get("throttled", 0) - before.get("throttled", 0) == 40 - limit + 1
    # Another application from the same address, and the throttled one's neighbours, are unaffected.
    status, body, _ = post(base, "other_app", other_secret)
    assert status == 200 and body["result"] is True, body
    status, body, _ = post(base, "other_app", other_secret, source="127.0.0.2")
    assert status == 200 and body["result"] is True, body


def test_one_address_guessing_many_codes_is_throttled_alone(mp):
    app, base, api = mp
    limit = app.config["API_AUTH_MAX_FAILURES_PER_ADDRESS"]
    for i in range(limit):
        status, _, _ = post(base, f"guess_{i}", "nope", source="127.0.0.3")
        assert status == 401
    # From that address even a real application with its right secret waits...
    status, body, headers = post(base, api.code, api.secret, source="127.0.0.3")
    assert status == 429 and "from this address" in body["message"] and int(headers["Retry-After"]) >= 1
    # ...while it is served from anywhere else.
    status, body, _ = post(base, api.code, api.secret, source="127.0.0.4")
    assert status == 200 and body["result"] is True, body


def test_the_throttle_ends_with_its_window(make_app, simulator):
    """A short window: once it has passed, the right secret is accepted again."""
    from tests.binding_support import connect_mp
    from tests.livesrv import serve

    app = make_app(WEIXIN_SIMULATOR=True, API_AUTH_WINDOW_SECONDS=3, API_AUTH_MAX_FAILURES_PER_APP=3)
    secret = register(app, "short_window")
    with app.test_request_context():
        create_user("alice", "violet-orbit-61")
        db.session.remove()
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", PUBLIC_URL=base)
        connect_mp(app, base)
        assert [post(base, "short_window", "wrong")[0] for _ in range(4)] == [401, 401, 401, 429]
        status, _, headers = post(base, "short_window", secret)
        assert status == 429 and int(headers["Retry-After"]) <= 4
        time.sleep(int(headers["Retry-After"]) + 0.2)
        status, body, _ = post(base, "short_window", secret)
        assert status == 200, body  # the user is not bound: answered per receiver, credentials accepted
        assert body["data"]["username_check"]["invalid"] == ["alice"]


def test_the_console_overview_shows_the_refused_credentials(mp):
    app, base, api = mp
    for _ in range(app.config["API_AUTH_MAX_FAILURES_PER_APP"]):
        post(base, api.code, "wrong", source="127.0.0.5")
    post(base, "<b>invented</b>", "wrong", source="127.0.0.6")
    with app.test_request_context():
        create_user("root", "correct-horse-9", is_admin=True)
        db.session.remove()
    client = app.test_client()
    AuthActions(client).login("root", "correct-horse-9")
    page = client.get("/console/").text
    section = page[page.index('id="api-auth-failures"'):]
    rows = re.findall(r"<tr>(.*?)</tr>", section, re.S)
    first = rows[1]  # after the header row: most failures first
    assert api.code in first and "127.0.0.5" in first and ">20<" in first.replace(" ", "")
    assert "application code throttled" in first
    assert "&lt;b&gt;invented&lt;/b&gt;" in section and "<b>invented</b>" not in section
    assert "counting" in rows[2]


# --- several processes on PostgreSQL -------------------------------------------------------------

@pytest.mark.postgres
def test_gunicorn_workers_share_the_counts(postgres_url, wechat, tmp_path):
    """Three workers on PostgreSQL: the failures counted by any worker throttle the calls every worker serves."""
    defaults = {"SCHEDULER_ENABLED": False, "DATABASE_POOL_SIZE": 2, "DATABASE_MAX_OVERFLOW": 2,
                "DELIVERY_POOL_SIZE": 2, "API_AUTH_MAX_FAILURES_PER_APP": 12}
    with postgres_schema(postgres_url) as url, installations(Service, url, wechat[0], tmp_path, **defaults) as make:
        svc = make()
        secret = svc.install(MP_CHANNEL, app_code="guarded")
        base = start_workers(svc, workers=3, threads=2)
        # Each call on a connection of its own, so that the workers take turns.
        statuses = [post(base, "guarded", uuid.uuid4().hex)[0] for _ in range(40)]
        assert statuses == [401] * 12 + [429] * 28
        status, body, headers = post(base, "guarded", secret)
        assert status == 429 and headers["Retry-After"]
        with svc.engine.connect() as connection:
            rows = connection.execute(text("SELECT count(*) FROM login_failures WHERE username = :key"), {"key": ":guarded"}).scalar()
        assert rows == 12  # throttled calls are not recorded: the window ends for everyone at the same time
