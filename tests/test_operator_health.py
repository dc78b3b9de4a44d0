"""What ``/healthz`` tells whom, the client address of the access lines, and deliveries refused before
WeChat is called counted in ``weixin_deliveries_total``."""
from __future__ import annotations

import re

from tests.api_support import mp, service  # noqa: F401  (fixtures)
from tests.conftest import AuthActions
from tests.test_logs import lines
from tests.test_metrics import http_get, scrape, value
from webapp.simulator.world import OPENID_ALICE

OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}


def test_healthz_is_plain_for_everyone_else(client):
    answer = client.get("/healthz", environ_base=OUTSIDE)
    assert answer.status_code == 200 and answer.json == {"status": "degraded"}  # no scheduler ever ran here


def test_healthz_details_for_the_metrics_network_and_token(make_app):
    client = make_app(METRICS_ALLOW_FROM="203.0.113.0/24").test_client()
    assert set(client.get("/healthz", environ_base=OUTSIDE).json) == {"status", "database", "scheduler", "tokens"}
    assert client.get("/healthz", environ_base={"REMOTE_ADDR": "198.51.100.1"}).json == {"status": "degraded"}
    client = make_app(METRICS_TOKEN="monitoring-token-0123456789").test_client()
    detailed = client.get("/healthz", environ_base=OUTSIDE, headers={"Authorization": "Bearer monitoring-token-0123456789"})
    assert detailed.json["scheduler"]["status"] == "never"
    wrong = client.get("/healthz", environ_base=OUTSIDE, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.json == {"status": "degraded"}


def test_healthz_details_for_administrators_only(client, auth, users):
    auth.login()
    assert "scheduler" in client.get("/healthz", environ_base=OUTSIDE).json
    auth.logout()
    AuthActions(client).login(*users["user"])
    assert client.get("/healthz", environ_base=OUTSIDE).json == {"status": "degraded"}


def test_a_database_outage_says_unavailable_and_nothing_more(make_app, tmp_path):
    broken = tmp_path / "not-a-database.sqlite3"
    broken.write_bytes(b"this is not sqlite" * 100)
    client = make_app(DATABASE_URL=f"sqlite:///{broken}").test_client()
    answer = client.get("/healthz", environ_base=OUTSIDE)
    assert answer.status_code == 503 and answer.json == {"status": "unavailable"}
    assert client.get("/healthz").json["database"] == "unavailable"  # this host may read the metrics


def test_access_lines_name_the_client_the_trusted_proxy_reports(make_app, capsys):
    client = make_app(PROXY_COUNT=1).test_client()
    # The client forged the first entry; the proxy (the peer, 10.0.0.5) appended the address it saw.
    client.get("/healthz", environ_base={"REMOTE_ADDR": "10.0.0.5"},
               headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7", "X-Request-Id": "proxied-0001"})
    access = [line for line in lines(capsys.readouterr().err) if line["rid"] == "proxied-0001"]
    assert len(access) == 1 and re.fullmatch(r"GET /healthz 200 \S+ms from 203\.0\.113\.7", access[0]["message"])
    client = make_app().test_client()  # no trusted proxy: the peer is the client, the header is ignored
    client.get("/healthz", environ_base={"REMOTE_ADDR": "10.0.0.5"},
               headers={"X-Forwarded-For": "203.0.113.7", "X-Request-Id": "direct-00001"})
    access = [line for line in lines(capsys.readouterr().err) if line["rid"] == "direct-00001"]
    assert access[0]["message"].endswith(" from 10.0.0.5")


def test_deliveries_refused_before_wechat_are_counted_with_their_reason(mp):
    app, base, api = mp
    before = scrape(http_get(base))
    data = {"heading": "Disk alert", "message": "disk /data 91% full"}
    names = api.send({"receiver__username": "alice,dave,nobody,carol", "data": data}).json()["data"]["deliveries"]
    assert [d["status"] for d in names] == ["sent", "failed", "failed", "failed"]
    ids = api.send({"receiver": f"{OPENID_ALICE},bad!id", "data": data}).json()["data"]["deliveries"]
    assert [d["status"] for d in ids] == ["sent", "failed"]
    after = scrape(http_get(base))
    delta = lambda **labels: (value(after, "weixin_deliveries_total", channel="mp", **labels)  # noqa: E731
                              - value(before, "weixin_deliveries_total", channel="mp", **labels))
    assert delta(status="sent", errcode="0") == 2
    assert delta(status="failed", errcode="not_bound") == 1  # dave has no binding
    assert delta(status="failed", errcode="no_such_user") == 1
    assert delta(status="failed", errcode="unfollowed") == 0  # carol's binding is active: WeChat refuses her
    assert delta(status="failed", errcode="43004") == 1
    assert delta(status="failed", errcode="invalid_id") == 1
