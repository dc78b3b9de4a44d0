"""The send API checks its input strictly before anything is stored, on SQLite and PostgreSQL.

CONTRACT §5: "Validation errors: result false, code 1306000, nothing stored, nothing sent", and "A
JSON body is parsed as JSON whatever its Content-Type". A body that is not valid UTF-8 is refused
whole; a receiver id that cannot be one of the channel's fails on its own, without a WeChat call.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import requests
from sqlalchemy import func, select

from tests.api_support import SEND, mp, qy, service, sim, sim_messages  # noqa: F401  (fixtures)
from webapp.extensions import db
from webapp.models import Delivery, Message
from webapp.simulator.world import OPENID_ALICE


@pytest.fixture
def database_url(either_database_url):
    """Every test here runs on SQLite and on PostgreSQL."""
    return either_database_url


def stored(app) -> tuple[int, int]:
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(Message)),
                db.session.scalar(select(func.count()).select_from(Delivery)))


def wechat_calls(base: str) -> int:
    calls = sim(base, "stats", method="GET")["calls"]
    return calls.get("template_send", 0) + calls.get("qy_send", 0)


BAD_BYTES = {
    "invalid UTF-8": b'{"receiver": "o\xffx", "data": {"heading": "h", "message": "m"}}',
    "overlong slash": b'{"receiver": "o\xc0\xafx", "data": {"heading": "h", "message": "m"}}',
    "overlong three-byte": b'{"receiver": "o\xe0\x80\xafx", "data": {"heading": "h", "message": "m"}}',
    "encoded surrogate": b'{"receiver": "o\xed\xa0\x80x", "data": {"heading": "h", "message": "m"}}',
    "invalid UTF-8 in the message": b'{"receiver__username": "alice", "data": {"heading": "h", "message": "disk \xfe full"}}',
    "escaped lone surrogate": b'{"receiver": "o\\ud800x", "data": {"heading": "h", "message": "m"}}',
    "escaped lone surrogate in the heading": b'{"receiver__username": "alice", "data": {"heading": "\\udfff", "message": "m"}}',
    "percent-encoded invalid UTF-8 in a form": b"receiver=o%FFx&data=x",
}


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", None])
@pytest.mark.parametrize("name", list(BAD_BYTES))
def test_a_body_that_is_not_valid_utf8_is_refused_whole(mp, name, content_type):
    app, base, api = mp
    headers = api.headers()
    if content_type:
        headers["Content-Type"] = content_type
    answer = requests.post(base + SEND, data=BAD_BYTES[name], headers=headers, timeout=30)
    assert answer.status_code == 200
    body = answer.json()
    assert body["result"] is False and body["code"] == 1306000, body
    assert stored(app) == (0, 0) and wechat_calls(base) == 0


def test_an_escaped_surrogate_pair_is_one_character_and_welcome(mp):
    app, base, api = mp
    raw = ('{"receiver__username": "alice", "data": {"heading": "\\ud83d\\udd25 hot", "message": "m"}}').encode()
    answer = requests.post(base + SEND, data=raw, headers=api.headers(), timeout=30).json()
    assert answer["result"] is True, answer
    assert sim_messages(base)[0]["data"]["first"].startswith("\U0001F525")


@pytest.mark.parametrize("receiver", ["o\ufffdx", "o\u200bx", "oSim<script>", "o" * 65, "o/x", "alice@corp"])
def test_an_openid_that_cannot_be_one_fails_alone_without_a_wechat_call(mp, receiver):
    app, base, api = mp
    answer = api.send({"receiver": [receiver, OPENID_ALICE], "data": {"heading": "h", "message": "m"}}).json()
    by = {d["receiver"]: d for d in answer["data"]["deliveries"]}
    assert answer["result"] is False and by[receiver]["status"] == "failed"
    assert "not a valid openid" in by[receiver]["errmsg"]
    assert by[OPENID_ALICE]["status"] == "sent"
    assert [m["to"] for m in sim_messages(base)] == [OPENID_ALICE]


@pytest.mark.parametrize("receiver", ["zhang\u200bsan", "lisi#drop", "x" * 65, "张三"])
def test_a_wecom_userid_that_cannot_be_one_fails_alone_without_a_wechat_call(qy, receiver):
    app, base, api = qy
    answer = api.send({"receiver": [receiver, "zhangsan", "first.last@corp"], "data": {"heading": "h", "message": "m"}}).json()
    by = {d["receiver"]: d for d in answer["data"]["deliveries"]}
    assert by[receiver]["status"] == "failed" and "not a valid WeCom userid" in by[receiver]["errmsg"]
    assert by["zhangsan"]["status"] == "sent"
    # "first.last@corp" is a valid shape: WeCom itself says whether it is a member (invaliduser).
    assert "invaliduser" in by["first.last@corp"]["errmsg"]
    [call] = sim_messages(base, "qy")
    assert receiver not in call["to"]


def test_json_sent_with_a_form_content_type_is_read_as_json(mp):
    """``curl -d '{...}'`` sends JSON as application/x-www-form-urlencoded."""
    app, base, api = mp
    body = {"bk_app_code": api.code, "bk_app_secret": api.secret, "receiver__username": "alice",
            "data": {"heading": "Disk alert", "message": "disk full"}}
    answer = requests.post(base + SEND, data=json.dumps(body), timeout=30,
                           headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    assert answer["result"] is True, answer


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_dash_d_as_the_readme_shows_it(mp):
    app, base, api = mp
    body = json.dumps({"bk_app_code": api.code, "bk_app_secret": api.secret, "receiver__username": "alice",
                       "data": {"heading": "Disk alert", "message": "disk /var is 91% full"}})
    done = subprocess.run(["curl", "-sS", "-d", body, base + SEND], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] is True, done.stdout


def test_a_form_body_is_still_read_as_a_form(mp):
    app, base, api = mp
    answer = requests.post(base + SEND, timeout=30, data={
        "bk_app_code": api.code, "bk_app_secret": api.secret, "receiver": OPENID_ALICE, "data": "not an object"}).json()
    assert answer["result"] is False and answer["code"] == 1306000 and "data must be an object" in answer["message"]
    assert stored(app) == (0, 0)
