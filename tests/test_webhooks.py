"""The alert webhooks over real HTTP: Alertmanager and Grafana notifications become WeChat messages.

The service runs with its simulator (``tests/api_support.py``); the notifications are the fixtures
in ``tests/fixtures/``, written from the formats Alertmanager (webhook version 4) and Grafana's
unified alerting document. Every refusal is checked to have stored nothing and called WeChat never.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from sqlalchemy import func, select

from tests.api_support import mp, qy, service, sim, sim_messages  # noqa: F401  (fixtures)
from tests.binding_support import browser
from tests.test_metrics import http_get, scrape, value
from webapp.alerts import notifications
from webapp.extensions import db
from webapp.models import Delivery, IdempotencyRecord, Message
from webapp.simulator.world import OPENID_ALICE, OPENID_BOB

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ALERTMANAGER = "/api/v1/webhooks/alertmanager/"
GRAFANA = "/api/v1/webhooks/grafana/"
TO_ALICE_AND_BOB = "?receiver__username=alice,bob"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def post(api, path: str, body, query: str = TO_ALICE_AND_BOB, auth="basic", headers: dict | None = None):
    """Post a notification as the senders do: JSON, credentials as HTTP Basic (user app code, password secret)."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    extra = {"Content-Type": "application/json", **(headers or {})}
    if auth == "basic":
        auth = (api.code, api.secret)
    elif auth == "header":
        extra.update(api.headers())
        auth = None
    return requests.post(api.base + path + query, data=data, auth=auth, headers=extra, timeout=60)


def counts(app) -> dict:
    """Rows that a refused request must not have added."""
    with app.app_context():
        found = {model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
                 for model in (Message, Delivery, IdempotencyRecord)}
        db.session.remove()
        return found


def sends(base: str) -> int:
    """How many times WeChat was asked to deliver something (either channel)."""
    calls = sim(base, "stats", method="GET")["calls"]
    return calls.get("template_send", 0) + calls.get("qy_send", 0)


def stored(app, public_id: str) -> Message:
    with app.app_context():
        message = db.session.scalar(select(Message).where(Message.public_id == public_id))
        db.session.expunge(message)
        db.session.remove()
        return message


def local(moment: str) -> str:
    """An RFC 3339 time as the message's date shows it: the server's local time, minutes."""
    return datetime.fromisoformat(moment).astimezone().strftime("%Y-%m-%d %H:%M")


# --- a notification becomes one message ------------------------------------------------------------

def test_an_alertmanager_notification_is_one_message_to_each_receiver(mp):
    app, base, api = mp
    firing = fixture("alertmanager_firing.json")
    answer = post(api, ALERTMANAGER, firing)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"] is True and body["code"] == 0 and body["request_id"] == answer.headers["X-Request-Id"]
    assert [(d["username"], d["status"]) for d in body["data"]["deliveries"]] == [("alice", "sent"), ("bob", "sent")]

    phone = sim_messages(base)
    assert sorted(m["to"] for m in phone) == sorted([OPENID_ALICE, OPENID_BOB])
    for shown in phone:
        assert shown["data"]["first"] == "[FIRING:2] DiskFull"  # the heading (WeChat no longer shows it)
        # What the follower reads: one line of 20 characters, the status first, in both languages.
        assert shown["data"]["keyword1"].startswith("告警中 / Firing: ") and shown["data"]["keyword1"].endswith("…")
        assert shown["data"]["keyword2"] == local("2026-03-02T08:15:30.123456Z")
        # Cut, so the message opens the whole text on this service (which links on to Prometheus).
        assert shown["url"].startswith(base + "/m/")

    message = stored(app, body["data"]["message_id"])
    assert message.source == "alertmanager" and message.heading == "[FIRING:2] DiskFull"
    assert message.body.splitlines() == ["告警中 / Firing: DiskFull",
                                         "db-1:9100: /data on db-1 is 93% full",
                                         "db-2:9100: /data on db-2 is 95% full"]
    assert message.url == firing["alerts"][0]["generatorURL"]
    detail = requests.get(phone[0]["url"], timeout=10)
    assert detail.status_code == 200
    assert "/data on db-1 is 93% full" in detail.text and "/data on db-2 is 95% full" in detail.text
    assert 'href="http://prometheus.example.internal:9090/graph?' in detail.text


def test_a_grafana_notification_on_wecom_shows_every_alert(qy):
    app, base, api = qy
    answer = post(api, GRAFANA, fixture("grafana_firing.json"), auth="header")  # the send API's header works too
    assert answer.status_code == 200 and answer.json()["result"] is True, answer.text
    [shown] = sim_messages(base, "qy")
    assert sorted(shown["to"]) == ["lisi", "zhangsan"]
    assert shown["content"]["content"].splitlines() == [
        "[FIRING:2] API latency high",
        "告警中 / Firing: API latency high",
        "region=cn-east: p99 latency of checkout is 2.4 s in cn-east",
        "region=cn-north: p99 latency of checkout is 1.9 s in cn-north",
        "Date: " + local("2026-03-02T10:41:00+08:00"),
    ]
    assert stored(app, answer.json()["data"]["message_id"]).source == "grafana"


# --- the same notification again -------------------------------------------------------------------

def test_a_repeated_notification_answers_the_first_message_and_sends_nothing(mp):
    app, base, api = mp
    firing = fixture("alertmanager_firing.json")
    first = post(api, ALERTMANAGER, firing)
    assert first.status_code == 200, first.text
    before, rows = sends(base), counts(app)

    # Alertmanager retries when an answer is late; the alerts may come in another order.
    again = copy.deepcopy(firing)
    again["alerts"].reverse()
    for repeated in (firing, again):
        answer = post(api, ALERTMANAGER, repeated)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Idempotent-Replayed"] == "true"
        assert answer.json()["data"]["message_id"] == first.json()["data"]["message_id"]
        assert [d["status"] for d in answer.json()["data"]["deliveries"]] == ["sent", "sent"]
    assert sends(base) == before and counts(app) == rows and len(sim_messages(base)) == 2

    # Resolved is news: a new message.
    resolved = post(api, ALERTMANAGER, fixture("alertmanager_resolved.json"))
    assert resolved.status_code == 200 and resolved.json()["result"] is True, resolved.text
    assert resolved.json()["data"]["message_id"] != first.json()["data"]["message_id"]
    assert sends(base) == before + 2
    latest = sim_messages(base)[-1]
    assert stored(app, resolved.json()["data"]["message_id"]).heading == "[RESOLVED:2] DiskFull"
    assert latest["data"]["first"] == "[RESOLVED:2] DiskFu…"  # a template value: 20 characters
    assert latest["data"]["keyword1"].startswith("已恢复 / Resolved")

    # The same notification to other receivers (a second webhook_configs URL) is another message.
    others = post(api, ALERTMANAGER, firing, query="?receiver__username=carol")
    assert others.json()["data"]["message_id"] != first.json()["data"]["message_id"]

    # Ten minutes later it is a new notification (Alertmanager's repeat_interval): sent again.
    with app.app_context():
        with db.transaction() as session:
            session.execute(IdempotencyRecord.__table__.update().values(expires_at=datetime(2000, 1, 1).astimezone()))
        db.session.remove()
    later = post(api, ALERTMANAGER, firing)
    assert later.status_code == 200 and "Idempotent-Replayed" not in later.headers
    assert later.json()["data"]["message_id"] != first.json()["data"]["message_id"]


def test_the_metrics_count_messages_by_source_and_repeated_notifications(mp):
    app, base, api = mp
    before = scrape(http_get(base))
    post(api, ALERTMANAGER, fixture("alertmanager_firing.json"))
    post(api, ALERTMANAGER, fixture("alertmanager_firing.json"))
    post(api, GRAFANA, fixture("grafana_firing.json"))
    after = scrape(http_get(base))

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("weixin_messages_total", source="alertmanager") == 1
    assert delta("weixin_messages_total", source="grafana") == 1
    assert delta("weixin_repeated_requests_total", source="alertmanager") == 1


# --- refusals: nothing stored, nothing sent --------------------------------------------------------

def _refused(app, base, answer, status: int, words: str, rows: dict, calls: int):
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert body["result"] is False and isinstance(body["request_id"], str) and words in body["message"], body
    assert counts(app) == rows and sends(base) == calls


@pytest.mark.parametrize("auth, words", [
    (None, "credentials are missing"),
    (("bk_monitor", "not-the-secret"), "code or secret is wrong"),
    (("nobody", "whatever"), "code or secret is wrong"),
])
def test_wrong_or_missing_credentials_are_refused_with_401(mp, auth, words):
    app, base, api = mp
    rows, calls = counts(app), sends(base)
    answer = post(api, ALERTMANAGER, fixture("alertmanager_firing.json"), auth=auth)
    _refused(app, base, answer, 401, words, rows, calls)
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")


def _without(field: str) -> dict:
    body = fixture("alertmanager_firing.json")
    del body[field]
    return body


def _alert_without(field: str) -> dict:
    body = fixture("alertmanager_firing.json")
    del body["alerts"][1][field]
    return body


BAD_NOTIFICATIONS = {
    "not JSON": (b'{"version": "4", "alerts": [', "not valid JSON"),
    "empty body": (b"", "body is empty"),
    "not UTF-8": (b'{"status": "firing\xff"}', "not valid UTF-8"),
    "a list": (b"[]", "must be a JSON object"),
    "no alerts": (_without("alerts"), "alerts is missing"),
    "alerts empty": ({**fixture("alertmanager_firing.json"), "alerts": []}, "alerts is empty"),
    "alerts not a list": ({**fixture("alertmanager_firing.json"), "alerts": {"a": 1}}, "alerts must be a list"),
    "no status": (_without("status"), "status is missing"),
    "odd status": ({**fixture("alertmanager_firing.json"), "status": "burning"}, "status must be firing or resolved"),
    "no groupKey": (_without("groupKey"), "groupKey is missing"),
    "version 3": ({**fixture("alertmanager_firing.json"), "version": "3"}, "version 4"),
    "no startsAt": (_alert_without("startsAt"), "alerts[1].startsAt is missing"),
    "no labels": (_alert_without("labels"), "alerts[1].labels is missing"),
    "bad startsAt": ({**fixture("alertmanager_firing.json"),
                      "alerts": [{"labels": {"alertname": "x"}, "startsAt": "yesterday"}]}, "alerts[0].startsAt is not"),
    "NUL": ({**fixture("alertmanager_firing.json"), "receiver": "we\x00chat"}, "NUL character"),
    "a send API body": ({"receiver__username": "alice", "data": {"heading": "h", "message": "m"}}, "alerts is missing"),
}


@pytest.mark.parametrize("case", list(BAD_NOTIFICATIONS))
def test_a_body_that_is_no_notification_is_refused_with_400_naming_what_is_wrong(mp, case):
    app, base, api = mp
    body, words = BAD_NOTIFICATIONS[case]
    rows, calls = counts(app), sends(base)
    _refused(app, base, post(api, ALERTMANAGER, body), 400, words, rows, calls)


def test_grafana_needs_no_group_key_or_version_but_its_alerts(mp):
    app, base, api = mp
    grafana = fixture("grafana_firing.json")
    del grafana["groupKey"], grafana["version"]
    assert post(api, GRAFANA, grafana).json()["result"] is True
    rows, calls = counts(app), sends(base)
    del grafana["alerts"]
    answer = post(api, GRAFANA, grafana)
    _refused(app, base, answer, 400, "alerts is missing: a Grafana notification", rows, calls)


def test_a_url_without_receivers_is_refused(mp):
    app, base, api = mp
    rows, calls = counts(app), sends(base)
    _refused(app, base, post(api, ALERTMANAGER, fixture("alertmanager_firing.json"), query=""), 400,
             "?receiver__username=", rows, calls)
    _refused(app, base, post(api, ALERTMANAGER, fixture("alertmanager_firing.json"), query="?receiver=" + "x" * 200),
             400, "longer than 128 characters", rows, calls)


def test_the_sentence_follows_the_senders_language(mp):
    app, base, api = mp
    answer = post(api, ALERTMANAGER, _without("alerts"), headers={"Accept-Language": "zh-CN"})
    assert answer.status_code == 400 and "alerts" in answer.json()["message"]
    assert re.search(r"[\u4e00-\u9fff]", answer.json()["message"]), answer.json()["message"]


def test_a_body_over_one_megabyte_is_refused_with_413(mp):
    app, base, api = mp
    rows, calls = counts(app), sends(base)
    big = fixture("alertmanager_firing.json")
    big["commonAnnotations"] = {"description": "x" * (1024 * 1024)}
    _refused(app, base, post(api, ALERTMANAGER, big), 413, "", rows, calls)


def test_without_a_channel_the_sender_is_told_to_retry_later(service):
    app, base, api = service
    rows = counts(app)
    answer = post(api, ALERTMANAGER, fixture("alertmanager_firing.json"))
    assert answer.status_code == 503 and answer.headers["Retry-After"] and "set-up" in answer.json()["message"]
    assert counts(app) == rows


# --- long groups -----------------------------------------------------------------------------------

def test_a_long_group_is_cut_for_wechat_and_whole_behind_the_detail_link(qy):
    app, base, api = qy
    body = fixture("alertmanager_firing.json")
    template = body["alerts"][0]
    body["alerts"] = [{**template, "labels": {**template["labels"], "instance": f"node-{i:03d}:9100"},
                       "fingerprint": f"{i:016x}", "annotations": {"summary": f"disk of node {i} is full"}}
                      for i in range(120)]
    answer = post(api, ALERTMANAGER, body)
    assert answer.status_code == 200 and answer.json()["result"] is True, answer.text
    [shown] = sim_messages(base, "qy")
    content = shown["content"]["content"]
    assert content.startswith("[FIRING:120] DiskFull\n告警中 / Firing: DiskFull\nnode-000:9100: disk of node 0 is full")
    assert len(content.encode()) <= 2048 and "node-119" not in content  # WeCom's limit, cut on a line
    link = content.rsplit("\n", 1)[1]
    assert link.startswith(base + "/m/")
    detail = requests.get(link, timeout=10).text
    assert "node-119:9100: disk of node 119 is full" in detail


# --- reading and writing notifications (no HTTP) ----------------------------------------------------

def test_a_firing_group_lists_its_resolved_alerts_after_the_firing_ones():
    body = fixture("alertmanager_firing.json")
    body["alerts"][0]["status"] = "resolved"
    body["truncatedAlerts"] = 3
    note = notifications.compose(notifications.parse("alertmanager", body))
    assert note.heading == "[FIRING:1] DiskFull"
    # Outside a request there is no catalogue: the words are English only.
    assert note.message.splitlines() == ["Firing: DiskFull", "db-2:9100: /data on db-2 is 95% full",
                                         "db-1:9100: /data on db-1 is 93% full (resolved)",
                                         "3 more alerts not listed."]


def test_without_an_instance_label_the_labels_that_differ_name_the_alert():
    body = fixture("alertmanager_firing.json")
    for alert in body["alerts"]:
        del alert["labels"]["instance"], alert["annotations"]["summary"], alert["annotations"]["description"]
    body["alerts"][1]["labels"]["mountpoint"] = "/logs"
    body["alerts"][1]["labels"]["alertname"] = "InodesFull"
    del body["groupLabels"]["alertname"], body["commonLabels"]["alertname"]
    note = notifications.compose(notifications.parse("alertmanager", body))
    assert note.heading == "[FIRING:2] DiskFull, InodesFull"
    assert note.message.splitlines()[1:] == ["DiskFull mountpoint=/data", "InodesFull mountpoint=/logs"]


def test_the_identity_ignores_order_and_content_but_not_status_or_start():
    group = notifications.parse("alertmanager", fixture("alertmanager_firing.json"))
    reordered = fixture("alertmanager_firing.json")
    reordered["alerts"].reverse()
    reordered["commonAnnotations"] = {"note": "rendered differently"}
    assert notifications.parse("alertmanager", reordered).identity() == group.identity()
    restarted = fixture("alertmanager_firing.json")
    restarted["alerts"][0]["startsAt"] = "2026-03-02T11:00:00Z"
    assert notifications.parse("alertmanager", restarted).identity() != group.identity()
    resolved = notifications.parse("alertmanager", fixture("alertmanager_resolved.json"))
    assert resolved.identity() != group.identity()


# --- the console -------------------------------------------------------------------------------------

def test_the_console_shows_which_application_and_webhook_sent_a_message(mp):
    app, base, api = mp
    from webapp.auth.services import create_user

    with app.app_context():
        create_user("root", "violet-orbit-61", is_admin=True)
        db.session.remove()
    webhook = post(api, GRAFANA, fixture("grafana_firing.json")).json()["data"]["message_id"]
    direct = api.send({"receiver__username": "alice", "data": {"heading": "Direct", "message": "m"}}).json()["data"]["message_id"]
    session = browser(base, "root", "violet-orbit-61")
    page = session.get(f"{base}/console/messages/{webhook}", timeout=10).text
    assert re.search(r"bk_monitor</code>\s*<span[^>]*>Grafana webhook</span>", page), page
    page = session.get(f"{base}/console/messages/{direct}", timeout=10).text
    assert re.search(r"bk_monitor</code>\s*<span[^>]*>Send API</span>", page), page
    listing = session.get(f"{base}/console/deliveries/", timeout=10).text
    assert listing.count("Grafana webhook") == 2 and listing.count("Send API") == 1


# --- docs/alerting.md ---------------------------------------------------------------------------------

def _yaml_blocks(text: str) -> list:
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def _pointed_at(url: str) -> tuple[str, str]:
    """The documented URL's path and query, to be posted to the service under test."""
    parts = urlsplit(url)
    return parts.path, ("?" + parts.query) if parts.query else ""


def test_the_documented_alertmanager_receiver_and_grafana_contact_point_work(mp):
    """docs/alerting.md's alertmanager.yml and Grafana contact point, posted as those tools do."""
    app, base, api = mp
    from webapp.api.apps import create_app_credentials

    with app.test_request_context():
        _, secret = create_app_credentials("alerting")  # the application the page registers
        db.session.remove()
    blocks = _yaml_blocks((ROOT / "docs" / "alerting.md").read_text(encoding="utf-8"))
    alertmanager = next(b for b in blocks if isinstance(b, dict) and "receivers" in b)
    route_receiver = alertmanager["route"]["receiver"]
    [receiver] = [r for r in alertmanager["receivers"] if r["name"] == route_receiver]
    [webhook] = receiver["webhook_configs"]
    assert webhook["send_resolved"] is True
    basic = webhook["http_config"]["basic_auth"]
    path, query = _pointed_at(webhook["url"])
    assert path == ALERTMANAGER and basic["username"] == "alerting" and basic["password"] == "APP_SECRET"
    firing = fixture("alertmanager_firing.json")
    firing["receiver"] = route_receiver
    answer = requests.post(base + path + query, json=firing, auth=(basic["username"], secret), timeout=60)
    assert answer.status_code == 200 and answer.json()["result"] is True, answer.text
    assert {d["username"] for d in answer.json()["data"]["deliveries"]} == {"alice", "bob"}

    grafana = next(b for b in blocks if isinstance(b, dict) and "contactPoints" in b)
    [point] = grafana["contactPoints"]
    [integration] = point["receivers"]
    settings = integration["settings"]
    assert integration["type"] == "webhook" and settings["httpMethod"] == "POST"
    path, query = _pointed_at(settings["url"])
    assert path == GRAFANA and settings["username"] == "alerting" and settings["password"] == "APP_SECRET"
    answer = requests.post(base + path + query, json=fixture("grafana_firing.json"),
                           auth=(settings["username"], secret), timeout=60)
    assert answer.status_code == 200 and answer.json()["result"] is True, answer.text
    assert {d["username"] for d in answer.json()["data"]["deliveries"]} == {"alice", "bob"}


def test_the_documented_curl_notification_is_answered_like_alertmanagers(mp):
    """docs/alerting.md's hand-made notification, run with curl as written (address and secret replaced)."""
    app, base, api = mp
    from webapp.api.apps import create_app_credentials

    with app.test_request_context():
        _, secret = create_app_credentials("alerting")
        db.session.remove()
    text = (ROOT / "docs" / "alerting.md").read_text(encoding="utf-8")
    [command] = [block for block in re.findall(r"```sh\n(.*?)```", text, re.S) if "webhooks/alertmanager" in block]
    command = command.replace("https://weixin.example.com", base).replace("APP_SECRET", secret)
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["result"] is True, answer
    [delivery] = answer["data"]["deliveries"]
    assert delivery["username"] == "alice" and delivery["status"] == "sent"
