"""The WeCom application's callback over real HTTP, on SQLite and PostgreSQL: WeCom's URL check, encrypted
pushes (receiveid = CorpID), contact changes acting on bindings, and the guards it shares with the
Official Account's callback (timestamp window, replays, WeCom's retries, size, not configured).

The bodies are encrypted here as WeCom encrypts them (PROTOCOL.md section 5, vector W1 included);
the simulator's side of the same flows is in tests/simulator/test_sim_qy_server.py.
"""
from __future__ import annotations

import time
import uuid

import pytest
import requests
from sqlalchemy import select

from tests.api_support import bind, qy, service, sim_messages  # noqa: F401  (fixtures)
from tests.livesrv import serve
from webapp import channel
from webapp.callback.services import last_verification, recent_attempts
from webapp.extensions import db
from webapp.models import AuditEntry, Binding
from webapp.simulator.world import QY_AGENTID, QY_CORPID, QY_CORPSECRET
from webapp.wechat import MessageCrypto, sign

URL = "/console/user_center/weixin/qy/callback/"
TOKEN = "QyToken2026abc"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OTHER_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"

# PROTOCOL.md section 7, W1: Tencent's WeCom sample.
W1_TOKEN, W1_KEY, W1_CORPID = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo", "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt", "ww1436e0e65a779aee"
W1_CHECK = {"msg_signature": "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "timestamp": "1476416373", "nonce": "47744683",
            "echostr": "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="}
W1_POST = {"msg_signature": "0c3914025cb4b4d68103f6bfc8db550f79dcf48e", "timestamp": "1476422779", "nonce": "1597212914"}
W1_ENCRYPT = ("Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew+"
              "kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4"
              "ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux0"
              "82f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+")


@pytest.fixture
def database_url(either_database_url):
    """Every test here runs on SQLite and on PostgreSQL."""
    return either_database_url


def connect(app, token=TOKEN, key=KEY, **extra) -> None:
    """Configure the simulator's WeCom application, with its 接收消息 server when ``token`` is given."""
    config = {"wx_type": "qywx", "wx_qy_corpid": QY_CORPID, "wx_qy_corpsecret": QY_CORPSECRET,
              "wx_qy_agentid": QY_AGENTID, **extra}
    if token:
        config.update(wx_qy_token=token, wx_qy_encoding_aes_key=key)
    with app.app_context():
        channel.save(channel.normalize(config, current=channel.load()), actor="test")


def url_check(base, plaintext="6202153408374261011", token=TOKEN, key=KEY, corpid=QY_CORPID, timestamp=None, nonce=None):
    """WeCom's GET check: msg_signature over the encrypted echostr."""
    timestamp = str(timestamp or int(time.time()))
    nonce = nonce or uuid.uuid4().hex[:10]
    echostr = MessageCrypto(token, key, corpid).encrypt(plaintext)
    params = {"msg_signature": sign(token, timestamp, nonce, echostr), "timestamp": timestamp, "nonce": nonce,
              "echostr": echostr}
    return requests.get(base + URL, params=params, timeout=5)


def event(change=None, userid="zhangsan", new_userid=None, event_name="change_contact", from_user="sys",
          create_time=None) -> str:
    """The plain XML of a WeCom event, as WeCom writes it before encrypting."""
    fields = f"<ChangeType><![CDATA[{change}]]></ChangeType><UserID><![CDATA[{userid}]]></UserID>" if change else ""
    if new_userid:
        fields += f"<NewUserID><![CDATA[{new_userid}]]></NewUserID>"
    return (f"<xml><ToUserName><![CDATA[{QY_CORPID}]]></ToUserName><FromUserName><![CDATA[{from_user}]]></FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event_name}]]></Event>{fields}<AgentID>{QY_AGENTID}</AgentID></xml>")


def push(base, inner, token=TOKEN, key=KEY, corpid=QY_CORPID, timestamp=None, nonce=None, signature=None):
    """An encrypted push as WeCom sends it."""
    timestamp = str(timestamp or int(time.time()))
    nonce = nonce or uuid.uuid4().hex[:10]
    encrypted = MessageCrypto(token, key, corpid).encrypt(inner)
    params = {"msg_signature": signature or sign(token, timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    body = (f"<xml><ToUserName><![CDATA[{corpid}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<AgentID><![CDATA[{QY_AGENTID}]]></AgentID></xml>")
    return requests.post(base + URL, params=params, data=body.encode(), timeout=10)


def binding_of(app, wx_id):
    """The binding of ``wx_id`` (with its user loaded), or None."""
    with app.app_context():
        binding = db.session.scalar(select(Binding).where(Binding.wx_id == wx_id))
        if binding is not None:
            binding.user  # noqa: B018  (loaded while the session is open)
        return binding


def audits(app, action):
    with app.app_context():
        return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def counter(base: str, name: str, **labels) -> float:
    """A counter of /metrics (0 when absent). Counters belong to the process, so tests compare before and after."""
    for line in requests.get(base + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def wecom(qy):
    """WeCom connected with its 接收消息 server; alice bound to zhangsan, bob to lisi."""
    app, base, api = qy
    connect(app)
    return qy


# --- the URL check (GET) --------------------------------------------------------------------------

def test_the_url_check_answers_the_decrypted_echostr_only_and_fast(wecom):
    app, base, _api = wecom
    verified = counter(base, "weixin_qy_callback_requests_total", method="GET", outcome="verified")
    started = time.monotonic()
    answer = url_check(base, "6202153408374261011")
    assert time.monotonic() - started < 1
    assert answer.status_code == 200 and answer.content == b"6202153408374261011"
    assert answer.headers["Content-Type"].startswith("text/plain")
    with app.app_context():
        attempt = last_verification("qywx")
        assert attempt.outcome == "verified" and attempt.channel == "qywx"
        assert last_verification("mp") is None, "a WeCom check counted as the Official Account's"
    assert counter(base, "weixin_qy_callback_requests_total", method="GET", outcome="verified") == verified + 1


def test_tencents_sample_vectors_are_answered_over_http(make_app):
    """PROTOCOL.md W1: the URL check and a pushed text message of Tencent's sample, byte for byte
    (the sample's timestamps are from 2016, so the clock window is opened for this test)."""
    app = make_app(CALLBACK_MAX_CLOCK_SKEW=10 ** 10)
    with app.app_context():
        channel.save(channel.normalize({"wx_type": "qywx", "wx_qy_corpid": W1_CORPID, "wx_qy_corpsecret": QY_CORPSECRET,
                                        "wx_qy_agentid": 1000002, "wx_qy_token": W1_TOKEN,
                                        "wx_qy_encoding_aes_key": W1_KEY}), actor="test")
    with serve(app) as base:
        messages = counter(base, "weixin_qy_callback_events_total", kind="message")
        check = requests.get(base + URL, params=W1_CHECK, timeout=5)
        assert check.status_code == 200 and check.content == b"1288432023552776189"
        body = (f"<xml><ToUserName><![CDATA[{W1_CORPID}]]></ToUserName><Encrypt><![CDATA[{W1_ENCRYPT}]]></Encrypt>"
                "<AgentID><![CDATA[1000002]]></AgentID></xml>")
        pushed = requests.post(base + URL, params=W1_POST, data=body.encode(), timeout=5)
        assert pushed.status_code == 200 and pushed.text == "success"
        assert counter(base, "weixin_qy_callback_events_total", kind="message") == messages + 1


def test_a_url_check_with_another_token_is_refused_without_the_echo(wecom):
    app, base, _api = wecom
    answer = url_check(base, "1111222233334444", token="SomeOtherToken")
    assert answer.status_code == 403 and "1111222233334444" not in answer.text and "Token" in answer.text
    with app.app_context():
        assert last_verification("qywx").outcome == "bad_signature"


def test_a_url_check_encrypted_for_another_corpid_is_refused(wecom):
    app, base, _api = wecom
    answer = url_check(base, "1111222233334444", corpid="ww00000000000000aa")
    assert answer.status_code == 403 and "1111222233334444" not in answer.text and "CorpID" in answer.text
    with app.app_context():
        assert last_verification("qywx").outcome == "wrong_corpid"


@pytest.mark.parametrize("drop", ["msg_signature", "timestamp", "nonce", "echostr"])
def test_the_url_check_needs_every_parameter(wecom, drop):
    _app, base, _api = wecom
    timestamp, nonce = str(int(time.time())), "12345"
    echostr = MessageCrypto(TOKEN, KEY, QY_CORPID).encrypt("42")
    params = {"msg_signature": sign(TOKEN, timestamp, nonce, echostr), "timestamp": timestamp, "nonce": nonce,
              "echostr": echostr}
    del params[drop]
    answer = requests.get(base + URL, params=params, timeout=5)
    assert answer.status_code == 400 and answer.text != "42"


def test_a_stale_or_replayed_url_check_is_refused(wecom):
    _app, base, _api = wecom
    assert url_check(base, "77", timestamp=int(time.time()) - 3600).status_code == 403
    first = url_check(base, "78", nonce="555666777", timestamp=int(time.time()))
    assert first.status_code == 200 and first.text == "78"
    again = url_check(base, "79", nonce="555666777", timestamp=first.request.url.split("timestamp=")[1].split("&")[0])
    assert again.status_code == 403 and "replay" in again.text


def test_the_callback_answers_404_until_a_server_is_configured(service):
    app, base, _api = service
    assert url_check(base).status_code == 404
    assert push(base, event("delete_user")).status_code == 404
    connect(app, token=None)  # WeCom connected, but without a 接收消息 server
    answer = url_check(base)
    assert answer.status_code == 404 and answer.headers["Content-Type"].startswith("text/plain")
    assert "接收消息" in answer.text
    with app.app_context():
        assert {a.outcome for a in recent_attempts(channel="qywx")} == {"not_configured"}


# --- pushes (POST) ----------------------------------------------------------------------------------

def test_delete_user_ends_the_binding_and_later_sends_fail_at_once(wecom):
    app, base, api = wecom
    deleted = counter(base, "weixin_qy_callback_events_total", kind="delete_user")
    answer = push(base, event("delete_user", "zhangsan"))
    assert answer.status_code == 200 and answer.text == "success"
    binding = binding_of(app, "zhangsan")
    assert not binding.active and binding.deactivated_reason == "member_deleted"
    [audit] = audits(app, "binding.deactivated")
    assert audit.target == "zhangsan" and audit.detail["reason"] == "member_deleted" and audit.actor == "wecom"
    assert binding_of(app, "lisi").active, "another member's binding changed"
    assert counter(base, "weixin_qy_callback_events_total", kind="delete_user") == deleted + 1
    # A send to alice (by user name, or by her old userid) fails at once, in both languages, and
    # WeCom is not called.
    before = len(sim_messages(base, "qy"))
    data = {"heading": "Disk alert", "message": "disk full"}
    by_name = api.send({"receiver__username": "alice", "data": data}).json()
    assert by_name["result"] is False and by_name["data"]["username_check"]["invalid"] == ["alice"]
    [refused] = by_name["data"]["deliveries"]
    assert refused["status"] == "failed" and "deleted from the contacts" in refused["errmsg"] and "通讯录" in refused["errmsg"]
    by_id = api.send({"receiver": "zhangsan", "data": data}).json()
    [refused] = by_id["data"]["deliveries"]
    assert refused["status"] == "failed" and "deleted from WeCom's contacts" in refused["errmsg"] and "通讯录" in refused["errmsg"]
    assert len(sim_messages(base, "qy")) == before, "WeCom was called for a deleted member"
    # bob (lisi) still receives.
    assert api.send({"receiver__username": "bob", "data": data}).json()["result"] is True


def test_update_user_with_a_new_userid_moves_the_binding(wecom):
    app, base, api = wecom
    requests.post(base + "/simulator/_control/qy/members", json={"userid": "zhangsan2", "name": "Zhang San",
                                                                  "visible": True}, timeout=5)
    answer = push(base, event("update_user", "zhangsan", new_userid="zhangsan2"))
    assert answer.status_code == 200 and answer.text == "success"
    assert binding_of(app, "zhangsan") is None
    moved = binding_of(app, "zhangsan2")
    assert moved.active and moved.user.username == "alice"
    [audit] = audits(app, "binding.userid_changed")
    assert audit.target == "zhangsan2" and audit.detail["from_userid"] == "zhangsan"
    sent = api.send({"receiver__username": "alice", "data": {"heading": "Hi", "message": "moved"}}).json()
    assert sent["result"] is True and sent["data"]["deliveries"][0]["receiver"] == "zhangsan2"
    # An update without NewUserID (a changed name or department) changes no binding.
    assert push(base, event("update_user", "lisi")).status_code == 200
    assert binding_of(app, "lisi").active and not audits(app, "binding.removed")


def test_enter_agent_and_messages_are_accepted_and_counted(wecom):
    app, base, _api = wecom
    before = {kind: counter(base, "weixin_qy_callback_events_total", kind=kind) for kind in ("enter_agent", "message")}
    accepted = counter(base, "weixin_qy_callback_requests_total", method="POST", outcome="ok")
    entered = push(base, event(event_name="enter_agent", from_user="zhangsan"))
    assert entered.status_code == 200 and entered.text == "success"
    text = (f"<xml><ToUserName><![CDATA[{QY_CORPID}]]></ToUserName><FromUserName><![CDATA[lisi]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[你好]]></Content><MsgId>7001</MsgId><AgentID>{QY_AGENTID}</AgentID></xml>")
    assert push(base, text).text == "success"
    assert counter(base, "weixin_qy_callback_events_total", kind="enter_agent") == before["enter_agent"] + 1
    assert counter(base, "weixin_qy_callback_events_total", kind="message") == before["message"] + 1
    assert counter(base, "weixin_qy_callback_requests_total", method="POST", outcome="ok") == accepted + 2
    assert binding_of(app, "zhangsan").active and binding_of(app, "lisi").active


def test_wecoms_retry_of_one_event_is_handled_once(wecom):
    """The same event again with a fresh nonce (WeCom's retry) is answered, not acted on again: a
    binding made since then is not ended by a late retry."""
    app, base, _api = wecom
    create_time = int(time.time())
    assert push(base, event("delete_user", "zhangsan", create_time=create_time)).status_code == 200
    with app.app_context():
        with db.transaction() as session:
            session.execute(Binding.__table__.update().where(Binding.wx_id == "zhangsan").values(active=True))
    assert push(base, event("delete_user", "zhangsan", create_time=create_time)).status_code == 200
    assert binding_of(app, "zhangsan").active
    # Two different members deleted within the same second are two events.
    assert push(base, event("delete_user", "lisi", create_time=create_time)).status_code == 200
    assert not binding_of(app, "lisi").active


def test_a_captured_push_cannot_be_replayed(wecom):
    app, base, _api = wecom
    timestamp, nonce = int(time.time()), "246813579"
    assert push(base, event(event_name="enter_agent", from_user="lisi"), timestamp=timestamp, nonce=nonce).status_code == 200
    replayed = push(base, event("delete_user", "zhangsan"), timestamp=timestamp, nonce=nonce)
    assert replayed.status_code == 403 and "replay" in replayed.text
    assert binding_of(app, "zhangsan").active


def test_a_bad_signature_a_foreign_corpid_or_another_key_change_nothing(wecom):
    app, base, _api = wecom
    forged = push(base, event("delete_user"), signature="0" * 40)
    assert forged.status_code == 403 and "msg_signature" in forged.text
    foreign = push(base, event("delete_user"), corpid="ww00000000000000aa")
    assert foreign.status_code == 403 and "CorpID" in foreign.text
    wrong_key = push(base, event("delete_user"), key=OTHER_KEY)
    assert wrong_key.status_code == 400 and "EncodingAESKey" in wrong_key.text
    stale = push(base, event("delete_user"), timestamp=int(time.time()) - 3600)
    assert stale.status_code == 403
    assert binding_of(app, "zhangsan").active
    with app.app_context():
        outcomes = {a.outcome for a in recent_attempts(channel="qywx")}
    assert {"bad_signature", "wrong_corpid", "decrypt_failed", "stale_timestamp"} <= outcomes


def test_bodies_that_are_not_encrypted_or_too_large_are_refused(wecom):
    app, base, _api = wecom
    timestamp, nonce = str(int(time.time())), "13579"
    params = {"msg_signature": sign(TOKEN, timestamp, nonce, ""), "timestamp": timestamp, "nonce": nonce}
    plain = requests.post(base + URL, params=params, data=event("delete_user").encode(), timeout=5)
    assert plain.status_code == 400 and "Encrypt" in plain.text
    junk = requests.post(base + URL, params=params, data=b"<xml><a>", timeout=5)
    assert junk.status_code == 400
    huge = requests.post(base + URL, params=params, data=b"<xml>" + b"x" * 70000 + b"</xml>", timeout=5)
    assert huge.status_code == 413
    chunked = requests.post(base + URL, params=params, data=iter([b"<xml>", b"x" * 70000, b"</xml>"]), timeout=5)
    assert chunked.status_code == 413
    assert binding_of(app, "zhangsan").active
    with app.app_context():
        assert "too_large" in {a.outcome for a in recent_attempts(channel="qywx")}


def test_a_changed_key_keeps_the_previous_one_for_messages_encrypted_before_the_switch(wecom):
    app, base, _api = wecom
    connect(app, key=OTHER_KEY)
    with app.app_context():
        configured = channel.load()
        assert configured.wx_qy_encoding_aes_key == OTHER_KEY and configured.wx_qy_previous_encoding_aes_key == KEY
    assert push(base, event("delete_user", "lisi"), key=KEY).status_code == 200  # encrypted before the switch
    assert not binding_of(app, "lisi").active
    assert url_check(base, "99", key=OTHER_KEY).text == "99"
