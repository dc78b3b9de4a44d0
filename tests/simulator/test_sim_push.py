"""The simulated WeChat calling the service: the server configuration's URL check, pushes of
messages and events in the three modes, retries, and how the answers show on the phone."""
from __future__ import annotations

import json
import re
import socket
import time

import pytest
from flask import Response

from webapp.simulator import get_world
from webapp.simulator.push import PUSH_TRIES, push_event
from webapp.simulator.world import (MP_APPID, MP_ORIGINAL_ID, NOTICE_UNAVAILABLE, OPENID_ALICE,
                                    OPENID_BOB, OPENID_EVE)
from webapp.wechat import MessageCrypto, build_text_reply, parse_message, sign

from .receiver import KEY, OTHER_KEY, TOKEN, Receiver, receiver, receiver_server  # noqa: F401
from .support import SimClient, sim, sim_server  # noqa: F401  (fixtures)

MODES = ("plain", "compatible", "safe")
NOTICE = "暂时无法提供服务"


def configure(sim: SimClient, receiver: Receiver, mode: str = "plain", **extra) -> dict:
    """Point the simulated account at the receiver; the URL check must pass."""
    answer = sim.control("mp/server", {"url": receiver.url, "token": TOKEN,
                                       "encoding_aes_key": KEY, "mode": mode, **extra})
    assert answer["ok"] is True, answer
    return answer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chat(sim: SimClient, openid: str) -> list[dict]:
    return sim.control(f"mp/chat/{openid}", method="GET")["chat"]


def page(sim: SimClient, path: str) -> str:
    response = sim.http.get(f"{sim.root}{path}", timeout=5)
    assert response.status_code == 200, response.text
    return response.text


# ---- the URL check ------------------------------------------------------------------------------

def test_url_check_passes_and_keeps_the_configuration(sim: SimClient, receiver: Receiver):
    assert sim.control("mp/server", method="GET") == {
        "server": {"url": "", "token": "", "encoding_aes_key": "", "mode": "plain",
                   "enabled": False},
        "last_check": None}
    answer = configure(sim, receiver, "safe")
    assert answer["reason"] == "ok" and answer["message"] == "提交成功"
    assert answer["status"] == 200
    [check] = receiver.gets()
    args = check["args"]
    assert set(args) == {"signature", "timestamp", "nonce", "echostr"}
    assert args["signature"] == sign(TOKEN, args["timestamp"], args["nonce"])
    assert args["echostr"].isdigit() and answer["echostr"] == args["echostr"]
    state = sim.control("mp/server", method="GET")
    assert state["server"] == {"url": receiver.url, "token": TOKEN, "encoding_aes_key": KEY,
                               "mode": "safe", "enabled": True}
    assert state["last_check"]["ok"] is True


@pytest.mark.parametrize("failure", ["wrong_echo", "wrong_token", "refused", "timeout"])
def test_a_failed_url_check_keeps_the_previous_configuration(
        sim: SimClient, receiver: Receiver, failure: str):
    configure(sim, receiver, "plain")
    before = sim.control("mp/server", method="GET")["server"]
    change = {"url": receiver.url, "token": TOKEN, "mode": "compatible",
              "encoding_aes_key": KEY}
    if failure == "wrong_echo":
        receiver.verify = "wrong"
        expected = ("wrong_echo", "Token验证失败")
    elif failure == "wrong_token":  # the receiver refuses the signature with 403
        change["token"] = "AnotherToken7"
        expected = ("http_status", "Token验证失败")
    elif failure == "refused":
        change["url"] = f"http://127.0.0.1:{free_port()}/cb"
        expected = ("connect_error", None)
    else:
        sim.settings(push_timeout=0.5)
        receiver.verify, receiver.delay = "sleep", 1.5
        expected = ("timeout", "请求URL超时")
    started = time.monotonic()
    answer = sim.control("mp/server", change)
    assert answer["ok"] is False
    assert answer["reason"] == expected[0], answer
    if expected[1]:
        assert answer["message"] == expected[1]
    assert answer["detail"]
    if failure == "wrong_token":
        assert answer["status"] == 403 and "403" in answer["detail"]
    if failure == "refused":
        assert "connect" in answer["detail"]
    if failure == "timeout":
        assert time.monotonic() - started < 1.4
    state = sim.control("mp/server", method="GET")
    assert state["server"] == before
    assert state["last_check"]["reason"] == expected[0]


def test_input_the_console_refuses_changes_nothing(sim: SimClient, receiver: Receiver):
    for bad in ({"url": "ftp://example.com/", "token": TOKEN},
                {"url": receiver.url, "token": "no"},
                {"url": receiver.url, "token": "bad token!"},
                {"url": receiver.url, "token": TOKEN, "mode": "secret"},
                {"url": receiver.url, "token": TOKEN, "mode": "safe"},  # no key
                {"url": receiver.url, "token": TOKEN, "encoding_aes_key": "short"},
                {"url": receiver.url, "token": TOKEN, "colour": "red"},
                {"url": receiver.url, "token": TOKEN, "enabled": "yes"}):
        assert "error" in sim.control("mp/server", bad, expect=400)
    assert receiver.gets() == []
    assert sim.control("mp/server", method="GET")["server"]["url"] == ""
    sim.control("mp/server", {"enabled": True}, expect=400)  # nothing to enable yet


def test_enabled_alone_turns_pushing_off_and_on_without_a_check(
        sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    off = sim.control("mp/server", {"enabled": False})
    assert off["server"]["enabled"] is False and len(receiver.gets()) == 1
    result = sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "anyone?"})
    assert result["outcome"] == "disabled" and result["tries"] == []
    assert receiver.posts() == []
    assert [e["kind"] for e in chat(sim, OPENID_ALICE)] == ["sent"]
    sim.control("mp/server", {"enabled": True})
    sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "now?"})
    assert len(receiver.posts()) == 1
    sim.control("mp/server", method="DELETE")
    assert sim.control("mp/server", method="GET")["server"]["enabled"] is False


# ---- pushes in the three modes ------------------------------------------------------------------

def check_push(receiver: Receiver, mode: str, openid: str) -> dict:
    """The one push the receiver got: signed right, shaped right for the mode; its fields."""
    [record] = receiver.posts()
    args, outer = record["args"], record["outer"]
    assert record["signature_ok"], args
    assert args["openid"] == openid
    assert record["content_type"].startswith("text/xml")
    if mode == "plain":
        assert set(args) == {"signature", "timestamp", "nonce", "openid"}
        assert "Encrypt" not in outer
        return record["fields"]
    assert list(args) == ["signature", "timestamp", "nonce", "openid", "encrypt_type",
                          "msg_signature"]
    assert args["encrypt_type"] == "aes"
    assert record["msg_signature_ok"]
    assert args["msg_signature"] == sign(TOKEN, args["timestamp"], args["nonce"],
                                         outer["Encrypt"])
    fields = record["fields"]
    assert fields is not None, record.get("error")
    if mode == "safe":
        assert set(outer) == {"ToUserName", "Encrypt"}
        assert outer["ToUserName"] == MP_ORIGINAL_ID
    else:
        assert {k: v for k, v in outer.items() if k != "Encrypt"} == fields
    # The payload is MessageCrypto(token, key, appid).encrypt(inner XML): decrypts to the fields.
    plain, _ = MessageCrypto(TOKEN, KEY, MP_APPID).decrypt(outer["Encrypt"])
    assert parse_message(plain) == fields
    return fields


@pytest.mark.parametrize("mode", MODES)
def test_text_message_push(sim: SimClient, receiver: Receiver, mode: str):
    configure(sim, receiver, mode)
    now = sim.control("clock", method="GET")["now"]
    result = sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "你好 <b>&"})
    fields = check_push(receiver, mode, OPENID_ALICE)
    assert fields["ToUserName"] == MP_ORIGINAL_ID
    assert fields["FromUserName"] == OPENID_ALICE
    assert abs(int(fields["CreateTime"]) - now) <= 2
    assert fields["MsgType"] == "text" and fields["Content"] == "你好 <b>&"
    assert fields["MsgId"].isdigit() and fields["MsgId"] == result["msg_id"]
    assert set(fields) == {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Content",
                           "MsgId"}
    assert result["outcome"] == "success" and result["reason"] == "success"
    assert [e["kind"] for e in chat(sim, OPENID_ALICE)] == ["sent"]


@pytest.mark.parametrize("mode", MODES)
def test_subscribe_push_makes_a_follower(sim: SimClient, receiver: Receiver, mode: str):
    configure(sim, receiver, mode)
    result = sim.control("mp/phone/subscribe", {"openid": OPENID_EVE})
    fields = check_push(receiver, mode, OPENID_EVE)
    assert fields["MsgType"] == "event" and fields["Event"] == "subscribe"
    assert fields["EventKey"] == "" and "MsgId" not in fields
    assert fields["FromUserName"] == OPENID_EVE
    assert result["outcome"] == "success"
    users = {u["openid"]: u for u in sim.control("world", method="GET")["mp"]["users"]}
    assert users[OPENID_EVE]["following"] is True
    sim.control("mp/phone/subscribe", {"openid": OPENID_EVE}, expect=400)  # already following


@pytest.mark.parametrize("mode", MODES)
def test_unsubscribe_push_ends_following(sim: SimClient, receiver: Receiver, mode: str):
    configure(sim, receiver, mode)
    sim.control("mp/phone/unsubscribe", {"openid": OPENID_BOB})
    fields = check_push(receiver, mode, OPENID_BOB)
    assert fields["Event"] == "unsubscribe" and fields["MsgType"] == "event"
    users = {u["openid"]: u for u in sim.control("world", method="GET")["mp"]["users"]}
    assert users[OPENID_BOB]["following"] is False
    # Who does not follow cannot write, nor unfollow again.
    sim.control("mp/phone/text", {"openid": OPENID_BOB, "content": "hi"}, expect=400)
    sim.control("mp/phone/unsubscribe", {"openid": OPENID_BOB}, expect=400)


def test_each_message_gets_its_own_msgid(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    for text in ("one", "two", "three"):
        sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": text})
    ids = [r["fields"]["MsgId"] for r in receiver.posts()]
    assert len(set(ids)) == 3


@pytest.mark.parametrize("mode", MODES)
def test_any_event_can_be_pushed_through_the_control_api(
        sim: SimClient, receiver: Receiver, mode: str):
    configure(sim, receiver, mode)
    result = sim.control("mp/push", {"openid": OPENID_ALICE, "fields": {
        "MsgType": "event", "Event": "TEMPLATESENDJOBFINISH", "MsgID": 200163836,
        "Status": "success"}})
    fields = check_push(receiver, mode, OPENID_ALICE)
    assert fields["Event"] == "TEMPLATESENDJOBFINISH" and fields["MsgID"] == "200163836"
    assert b"<MsgID>200163836</MsgID>" in (
        receiver.posts()[0]["body"] if mode != "safe" else
        MessageCrypto(TOKEN, KEY, MP_APPID).decrypt(
            receiver.posts()[0]["outer"]["Encrypt"])[0].encode())
    assert result["outcome"] == "success" and result["event"] == "TEMPLATESENDJOBFINISH"
    sim.control("mp/push", {"openid": OPENID_ALICE, "fields": "nope"}, expect=400)
    sim.control("mp/push", {"fields": {"MsgType": "event"}}, expect=400)
    sim.control("mp/push", {"openid": OPENID_ALICE, "fields": {"bad name": "x"}}, expect=400)


def test_push_event_in_process(sim: SimClient, receiver: Receiver):
    configure(sim, receiver, "compatible")
    world = get_world(sim.app)
    result = push_event(world, OPENID_ALICE, {"MsgType": "event", "Event": "SCAN",
                                              "EventKey": "42", "Ticket": "gQH47joAAA=="})
    fields = check_push(receiver, "compatible", OPENID_ALICE)
    assert fields["EventKey"] == "42" and fields["Ticket"] == "gQH47joAAA=="
    assert result.outcome == "success" and result.id is not None
    assert result.mode == "compatible" and result.url == receiver.url
    assert len(result.tries) == 1 and result.tries[0].status == 200
    assert result.create_time == int(fields["CreateTime"])
    assert result.xml.startswith("<xml><ToUserName><![CDATA[" + MP_ORIGINAL_ID)


def test_nothing_is_pushed_without_a_configuration(sim: SimClient, receiver: Receiver):
    result = sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "hello?"})
    assert result["outcome"] == "disabled" and result["tries"] == []
    assert sim.control("mp/phone/subscribe", {"openid": OPENID_EVE})["outcome"] == "disabled"
    assert receiver.received == []
    assert sim.control("mp/pushes", method="GET")["pushes"] == []
    assert [e["kind"] for e in chat(sim, OPENID_ALICE)] == ["sent"]


# ---- retries ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_a_slow_service_gets_three_tries_of_the_same_message(
        sim: SimClient, receiver: Receiver, mode: str):
    configure(sim, receiver, mode)
    sim.settings(push_timeout=0.4)
    receiver.delay = 0.8
    started = time.monotonic()
    result = sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "slow"})
    assert time.monotonic() - started < 0.4 * PUSH_TRIES + 1.0
    assert result["outcome"] == "unavailable" and result["reason"] == "timeout"
    assert [t["error"] for t in result["tries"]] == ["timeout"] * 3
    assert all(t["status"] is None and t["elapsed_ms"] >= 350 for t in result["tries"])
    posts = receiver.posts()
    assert len(posts) == 3
    assert len({p["body"] for p in posts}) == 1  # the very same body every time
    assert len({p["fields"]["MsgId"] for p in posts}) == 1
    assert len({p["fields"]["CreateTime"] for p in posts}) == 1
    assert len({p["args"]["nonce"] for p in posts}) == 3  # a fresh nonce, signed, per try
    assert all(p["signature_ok"] for p in posts)
    if mode == "safe":
        assert all(p["msg_signature_ok"] for p in posts)
    assert chat(sim, OPENID_ALICE)[-1]["text"] == NOTICE_UNAVAILABLE
    assert NOTICE in page(sim, f"/phone/{OPENID_ALICE}")


def test_retries_stop_at_the_first_2xx_answer(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    receiver.answer = lambda r: (Response("busy", 503) if len(receiver.posts()) == 1
                                 else "success")
    result = sim.control("mp/phone/subscribe", {"openid": OPENID_EVE})
    assert [t["status"] for t in result["tries"]] == [503, 200]
    assert result["outcome"] == "success"
    assert all(e["kind"] != "notice" for e in chat(sim, OPENID_EVE))


def test_errors_on_every_try_show_the_notice(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    receiver.answer = lambda r: Response("oops", 500)
    result = sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "hi"})
    assert [t["status"] for t in result["tries"]] == [500, 500, 500]
    assert result["outcome"] == "unavailable" and result["reason"] == "http_status"
    assert result["shown"] == NOTICE_UNAVAILABLE


def test_a_service_that_went_away_gets_three_tries(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    world = get_world(sim.app)
    server = world.get_mp_server()["server"]
    world.apply_mp_server({**server, "url": f"http://127.0.0.1:{free_port()}/cb"}, None)
    result = sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "hi"})
    assert [t["error"] for t in result["tries"]] == ["connect_error"] * 3
    assert result["outcome"] == "unavailable" and result["reason"] == "connect_error"


# ---- answers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", ["success", "", "  success\n"])
def test_success_or_an_empty_answer_shows_nothing(sim: SimClient, receiver: Receiver, body):
    configure(sim, receiver, "safe")
    receiver.answer = lambda r: body
    result = sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "hi"})
    assert result["outcome"] == "success" and result["shown"] is None
    assert [e["kind"] for e in chat(sim, OPENID_ALICE)] == ["sent"]


@pytest.mark.parametrize("mode", ["plain", "compatible"])
def test_a_plain_passive_reply_appears_on_the_phone(sim: SimClient, receiver: Receiver, mode):
    configure(sim, receiver, mode)
    receiver.answer = lambda r: receiver.text_reply(r, "Hello <Alice> & welcome")
    result = sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "hi"})
    assert result["outcome"] == "reply" and result["encrypted_reply"] is False
    assert result["reply"]["Content"] == "Hello <Alice> & welcome"
    lines = chat(sim, OPENID_ALICE)
    assert [(e["kind"], e["text"]) for e in lines] == [
        ("sent", "hi"), ("reply", "Hello <Alice> & welcome")]
    html = page(sim, f"/phone/{OPENID_ALICE}")
    assert "Hello &lt;Alice&gt; &amp; welcome" in html
    assert html.index(">hi<") < html.index("Hello &lt;Alice&gt;")  # the newest at the bottom


@pytest.mark.parametrize("mode", ["compatible", "safe"])
def test_an_encrypted_passive_reply_appears_on_the_phone(
        sim: SimClient, receiver: Receiver, mode):
    configure(sim, receiver, mode)
    receiver.answer = lambda r: receiver.encrypted_reply(r, "欢迎关注")
    result = sim.control("mp/phone/subscribe", {"openid": OPENID_EVE})
    assert result["outcome"] == "reply" and result["encrypted_reply"] is True
    assert result["shown"] == "欢迎关注"
    assert chat(sim, OPENID_EVE)[-1]["kind"] == "reply"
    assert "欢迎关注" in page(sim, f"/phone/{OPENID_EVE}")


def junk_answers(receiver: Receiver) -> dict:
    """Answers WeChat cannot use, by the reason the simulator should give."""
    wrong_key = MessageCrypto(TOKEN, OTHER_KEY, MP_APPID)
    wrong_appid = MessageCrypto(TOKEN, KEY, "wx0000000000000000")

    def bad_signature(r):
        envelope = receiver.encrypted_reply(r, "hi")
        return envelope.replace(r["args"]["nonce"], "123", 1)

    def wrong_user(r):
        fields = r["fields"]
        return build_text_reply(OPENID_BOB, fields["ToUserName"], "hi", int(time.time()))

    return {
        "json": ("plain", lambda r: Response(json.dumps({"ok": True}),
                                             content_type="application/json"), "junk"),
        "html": ("plain", lambda r: "<html><body>It works!</body></html>", "junk"),
        "text": ("plain", lambda r: "OK", "junk"),
        "not_xml_reply": ("plain", lambda r: "<xml><Foo>1</Foo></xml>", "junk"),
        "wrong_user": ("plain", wrong_user, "wrong_address"),
        "plain_in_safe": ("safe", lambda r: receiver.text_reply(r, "hi"), "not_encrypted"),
        "encrypted_in_plain": ("plain", lambda r: receiver.encrypted_reply(r, "hi"), "not_plain"),
        "bad_signature": ("safe", bad_signature, "bad_signature"),
        "wrong_key": ("safe", lambda r: receiver.encrypted_reply(r, "hi", wrong_key),
                      "bad_signature_or_undecryptable"),
        "wrong_appid": ("compatible", lambda r: receiver.encrypted_reply(r, "hi", wrong_appid),
                        "undecryptable"),
    }


@pytest.mark.parametrize("case", ["json", "html", "text", "not_xml_reply", "wrong_user",
                                  "plain_in_safe", "encrypted_in_plain", "bad_signature",
                                  "wrong_key", "wrong_appid"])
def test_unusable_answers_show_the_notice(sim: SimClient, receiver: Receiver, case: str):
    mode, answer, reason = junk_answers(receiver)[case]
    configure(sim, receiver, mode)
    receiver.answer = answer
    result = sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "hi"})
    assert len(result["tries"]) == 1  # a 2xx answer is not retried, however bad
    assert result["outcome"] == "unavailable", result
    if reason == "bad_signature_or_undecryptable":
        assert result["reason"] == "undecryptable"  # same Token: the signature holds
    else:
        assert result["reason"] == reason, result
    assert result["shown"] == NOTICE_UNAVAILABLE
    assert chat(sim, OPENID_ALICE)[-1]["kind"] == "notice"
    assert NOTICE in page(sim, f"/phone/{OPENID_ALICE}")


def test_answers_to_unsubscribe_are_shown_to_nobody(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    receiver.answer = lambda r: "{}"
    result = sim.control("mp/phone/unsubscribe", {"openid": OPENID_ALICE})
    assert result["outcome"] == "unavailable" and result["shown"] is None
    assert all(e["kind"] != "notice" for e in chat(sim, OPENID_ALICE))


def test_pushes_are_logged_with_their_tries(sim: SimClient, receiver: Receiver):
    configure(sim, receiver, "compatible")
    receiver.answer = lambda r: (Response("no", 502) if len(receiver.posts()) == 1
                                 else receiver.text_reply(r, "pong"))
    sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "ping"})
    sim.control("mp/phone/subscribe", {"openid": OPENID_EVE})
    pushes = sim.control("mp/pushes", method="GET")["pushes"]
    assert [p["openid"] for p in pushes] == [OPENID_ALICE, OPENID_EVE]
    first = pushes[0]
    assert first["id"] < pushes[1]["id"]
    assert [t["status"] for t in first["tries"]] == [502, 200]
    assert all(isinstance(t["elapsed_ms"], int) and t["query"]["nonce"] for t in first["tries"])
    assert first["outcome"] == "reply" and first["shown"] == "pong"
    assert first["msg_type"] == "text" and first["mode"] == "compatible"
    only_eve = sim.control(f"mp/pushes?openid={OPENID_EVE}", method="GET")["pushes"]
    assert len(only_eve) == 1 and only_eve[0]["event"] == "subscribe"
    assert len(sim.control("mp/pushes?limit=1", method="GET")["pushes"]) == 1
    html = page(sim, f"/phone/{OPENID_ALICE}")
    assert "HTTP 502" in html and "HTTP 200" in html and "pong" in html
    assert sim.control("stats", method="GET")["pushes"] == 2


def test_push_timeout_setting_is_checked(sim: SimClient):
    assert sim.control("settings", method="GET")["push_timeout"] == 5.0
    sim.control("settings", {"push_timeout": 0}, expect=400)
    sim.control("settings", {"push_timeout": 100}, expect=400)
    assert sim.settings(push_timeout=1)["push_timeout"] == 1.0


# ---- the pages ----------------------------------------------------------------------------------

def test_server_form_on_the_overview(sim: SimClient, receiver: Receiver):
    html = page(sim, "/")
    assert 'action="/simulator/panel/server"' in html
    assert 'name="encoding_aes_key"' in html and 'value="safe"' in html
    response = sim.http.post(f"{sim.root}/panel/server", data={
        "url": receiver.url, "token": TOKEN, "encoding_aes_key": KEY, "mode": "compatible",
        "enabled": "on", "next": "/simulator/"}, allow_redirects=False, timeout=5)
    assert response.status_code == 303
    server = sim.control("mp/server", method="GET")["server"]
    assert server["mode"] == "compatible" and server["enabled"] is True
    html = page(sim, "/")
    assert "提交成功" in html and receiver.url in html
    # A wrong Token: WeChat's words, and the configuration stays.
    sim.http.post(f"{sim.root}/panel/server", data={
        "url": receiver.url, "token": "WrongToken1", "encoding_aes_key": KEY, "mode": "plain",
        "enabled": "on"}, timeout=5)
    html = page(sim, "/")
    assert "Token验证失败" in html and "HTTP 403" in html
    assert sim.control("mp/server", method="GET")["server"] == server
    # What the console would not even submit is reported the same way.
    sim.http.post(f"{sim.root}/panel/server", data={
        "url": receiver.url, "token": "x", "mode": "plain"}, timeout=5)
    assert "Token必须为英文或数字" in page(sim, "/")
    # Disable and enable without a new check.
    sim.http.post(f"{sim.root}/panel/server/enabled", data={"enabled": "0"}, timeout=5)
    assert sim.control("mp/server", method="GET")["server"]["enabled"] is False
    assert len(receiver.gets()) == 2


def test_phone_page_sends_text_and_follows(sim: SimClient, receiver: Receiver):
    configure(sim, receiver, "safe")
    receiver.answer = lambda r: receiver.encrypted_reply(
        r, "echo: " + r["fields"].get("Content", r["fields"].get("Event", "")))
    html = page(sim, f"/phone/{OPENID_ALICE}")
    assert 'action="/simulator/panel/send"' in html and 'name="content"' in html
    assert "Unfollow the account" in html
    response = sim.http.post(f"{sim.root}/panel/send", data={
        "openid": OPENID_ALICE, "content": "from the page",
        "next": f"/simulator/phone/{OPENID_ALICE}"}, allow_redirects=False, timeout=10)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/simulator/phone/{OPENID_ALICE}")
    assert receiver.posts()[-1]["fields"]["Content"] == "from the page"
    html = page(sim, f"/phone/{OPENID_ALICE}")
    assert "from the page" in html and "echo: from the page" in html
    assert "Pushes to the service" in html
    # Unfollow, then follow again, from the page.
    sim.http.post(f"{sim.root}/panel/follow", data={"openid": OPENID_ALICE, "following": "0"},
                  timeout=10)
    sim.http.post(f"{sim.root}/panel/follow", data={"openid": OPENID_ALICE, "following": "1"},
                  timeout=10)
    events = [r["fields"].get("Event") for r in receiver.posts()]
    assert events[-2:] == ["unsubscribe", "subscribe"]
    html = page(sim, f"/phone/{OPENID_ALICE}")
    assert "echo: subscribe" in html and "followed the account" in html
    # A second click on a stale page sends nothing more.
    sim.http.post(f"{sim.root}/panel/follow", data={"openid": OPENID_ALICE, "following": "1"},
                  timeout=10)
    assert len(receiver.posts()) == 3
    assert sim.http.post(f"{sim.root}/panel/send", data={"openid": OPENID_ALICE, "content": ""},
                         timeout=5).status_code == 400
    assert sim.http.post(f"{sim.root}/panel/send", data={"openid": "nobody", "content": "x"},
                         timeout=5).status_code == 404


def test_a_non_follower_sees_no_text_box(sim: SimClient):
    html = page(sim, f"/phone/{OPENID_EVE}")
    assert 'name="content"' not in html and "Follow the account" in html


def test_phone_page_has_no_inline_script(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    sim.control("mp/phone/text", {"openid": OPENID_ALICE, "content": "<script>x()</script>"})
    html = page(sim, f"/phone/{OPENID_ALICE}")
    bodies = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert all(not body.strip() for body in bodies)
    assert "&lt;script&gt;x()&lt;/script&gt;" in html
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)
