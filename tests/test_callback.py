"""The WeChat callback over real HTTP: verification, the three modes, replays, retries and bad bodies."""
import time
import uuid

import pytest
import requests

from tests.livesrv import serve
from webapp import channel
from webapp.callback import handlers
from webapp.callback.services import last_verification, recent_attempts
from webapp.wechat import MessageCrypto, parse_message, sign
from webapp.wechat.crypto import generate_encoding_aes_key

URL = "/console/user_center/weixin/mp/callback/"
APPID = "wx2c2769f8efd9abc2"
TOKEN = "spamtest"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OPENID = "oyORnuP8q7ou2gfYjqLzSIWZf0rs"


def configure(app, **overrides):
    config = {"wx_type": "mp", "wx_app_id": APPID, "wx_secret": "0" * 32, "wx_token": TOKEN,
              "wx_encoding_aes_key": KEY, "wx_template_id": "template-id-0001", **overrides}
    with app.app_context():
        channel.save(channel.normalize(config, current=channel.load()), actor="test")


@pytest.fixture
def server(app):
    """The callback served in plain mode with an EncodingAESKey: it accepts all three formats."""
    configure(app, wx_encrypt_mode="plain")
    with serve(app) as base:
        yield base


def query(nonce=None, timestamp=None, token=TOKEN):
    timestamp = str(timestamp or int(time.time()))
    nonce = nonce or uuid.uuid4().hex[:10]
    return {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "openid": OPENID}


def event_xml(content="hello", msg_id=None, create_time=None, msg_type="text", extra=""):
    create_time = create_time or int(time.time())
    body = f"<Content><![CDATA[{content}]]></Content>" if msg_type == "text" else ""
    msg = f"<MsgId>{msg_id}</MsgId>" if msg_id else ""
    return (f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{body}{msg}{extra}</xml>")


def post(base, inner, mode="plain", key=KEY, nonce=None, timestamp=None, token=TOKEN):
    params = query(nonce, timestamp, token)
    if mode == "plain":
        return requests.post(base + URL, params=params, data=inner.encode(), timeout=10)
    encrypted = MessageCrypto(token, key, APPID).encrypt(inner)
    params.update(encrypt_type="aes", msg_signature=sign(token, params["timestamp"], params["nonce"], encrypted))
    if mode == "compatible":
        body = inner.replace("</xml>", f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
    else:
        body = f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return requests.post(base + URL, params=params, data=body.encode(), timeout=10)


@pytest.fixture
def echo_handler(app):
    """A text handler that answers with what it got, and counts its calls."""
    calls = []

    def reply(message, configured):
        calls.append(message)
        return "you said: " + message.get("Content", "")

    handlers.table(app).add("text", "", reply)
    return calls


# --- URL verification (GET) -------------------------------------------------------------------

def test_verification_echoes_exactly_on_a_valid_signature(server, app):
    response = requests.get(server + URL, params={**query(), "echostr": "5927782489442352469"}, timeout=5)
    assert response.status_code == 200 and response.text == "5927782489442352469"
    with app.app_context():
        assert last_verification().outcome == "verified"


def test_verification_refuses_a_wrong_token_without_echo(server, app):
    response = requests.get(server + URL, params={**query(token="other"), "echostr": "abc"}, timeout=5)
    assert response.status_code == 403 and "abc" not in response.text and "Token" in response.text
    with app.app_context():
        assert last_verification().outcome == "bad_signature"


@pytest.mark.parametrize("drop", ["signature", "timestamp", "nonce", "echostr"])
def test_verification_needs_every_parameter(server, drop):
    params = {**query(), "echostr": "abc"}
    del params[drop]
    response = requests.get(server + URL, params=params, timeout=5)
    assert response.status_code == 400 and "abc" not in response.text


def test_verification_refuses_an_old_timestamp(server):
    params = {**query(timestamp=int(time.time()) - 3600), "echostr": "abc"}
    assert requests.get(server + URL, params=params, timeout=5).status_code == 403


def test_unconfigured_service_answers_404_in_plain_text(app):
    with serve(app) as base:
        response = requests.get(base + URL, params={**query(), "echostr": "x"}, timeout=5)
    assert response.status_code == 404 and response.headers["Content-Type"].startswith("text/plain")


# --- messages (POST) in the three modes ----------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
def test_unhandled_messages_are_answered_success(server, mode):
    response = post(server, event_xml(msg_type="event", extra="<Event><![CDATA[VIEW]]></Event>"), mode)
    assert response.status_code == 200 and response.text == "success"


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
def test_replies_are_encrypted_when_the_request_was(server, echo_handler, mode):
    response = post(server, event_xml("ping", msg_id=uuid.uuid4().int % 10**18), mode)
    assert response.status_code == 200
    reply = parse_message(response.content)
    if mode == "plain":
        assert reply["Content"] == "you said: ping" and reply["ToUserName"] == OPENID
    else:
        assert set(reply) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
        assert reply["MsgSignature"] == sign(TOKEN, reply["TimeStamp"], reply["Nonce"], reply["Encrypt"])
        inner, _ = MessageCrypto(TOKEN, KEY, APPID).decrypt(reply["Encrypt"])
        assert parse_message(inner.encode())["Content"] == "you said: ping"
    assert len(echo_handler) == 1


def test_key_rotation_accepts_the_previous_key_and_replies_with_it(app, echo_handler):
    new_key = generate_encoding_aes_key()
    configure(app)
    configure(app, wx_encoding_aes_key=new_key)  # KEY becomes the previous key
    with serve(app) as base:
        old = post(base, event_xml("old key", msg_id=1), "safe", key=KEY)
        new = post(base, event_xml("new key", msg_id=2), "safe", key=new_key)
    assert old.status_code == 200 and new.status_code == 200
    inner, label = MessageCrypto(TOKEN, new_key, APPID, KEY).decrypt(parse_message(old.content)["Encrypt"])
    assert label == "previous" and "old key" in inner
    inner, label = MessageCrypto(TOKEN, new_key, APPID, KEY).decrypt(parse_message(new.content)["Encrypt"])
    assert label == "current" and "new key" in inner


def test_a_configuration_saved_by_another_process_governs_the_next_push(make_app, echo_handler):
    """This process holds the old Token and key: a push signed with them is refused once another
    process stored new ones, and a push signed with the new ones is accepted at once."""
    serving, other = make_app(), make_app()  # two apps on one database are two processes
    handlers.table(serving).add("text", "", lambda message, configured: "got " + message.get("Content", ""))
    configure(serving, wx_encrypt_mode="safe")
    new_token, new_key = "rotatedToken1", generate_encoding_aes_key()
    with serve(serving) as base:
        assert post(base, event_xml("before", msg_id=11), "safe").status_code == 200  # the old one is held
        configure(other, wx_encrypt_mode="safe", wx_token=new_token, wx_encoding_aes_key=new_key)
        stale = post(base, event_xml("old token", msg_id=12), "safe")
        fresh = post(base, event_xml("new token", msg_id=13), "safe", key=new_key, token=new_token)
    assert stale.status_code == 403 and "Token" in stale.text
    assert fresh.status_code == 200
    inner, label = MessageCrypto(new_token, new_key, APPID).decrypt(parse_message(fresh.content)["Encrypt"])
    assert label == "current" and "got new token" in inner
    with serving.app_context():
        outcomes = [attempt.outcome for attempt in recent_attempts(channel="mp") if attempt.kind == "message"]
    assert outcomes.count("bad_signature") == 1, outcomes


def test_official_vector_m1_through_the_route(make_app):
    """PROTOCOL.md's compatible-mode sample message, accepted by the real route."""
    app = make_app(CALLBACK_MAX_CLOCK_SKEW=10**10)
    configure(app)
    encrypt = ("hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpb"
               "UAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpK"
               "n6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1D"
               "lD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=")
    body = (f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            "<CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]></Content>"
            f"<MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
    params = {"signature": "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a", "timestamp": "1409735669", "nonce": "1320562132",
              "encrypt_type": "aes", "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa"}
    with serve(app) as base:
        response = requests.post(base + URL, params=params, data=body.encode(), timeout=5)
    assert response.status_code == 200 and response.text == "success"


# --- refusals --------------------------------------------------------------------------------------

def test_plain_messages_need_the_signature(server):
    params = query()
    params["signature"] = "0" * 40
    response = requests.post(server + URL, params=params, data=event_xml().encode(), timeout=5)
    assert response.status_code == 403


def test_encrypted_messages_need_msg_signature_not_just_signature(server):
    params = query()
    encrypted = MessageCrypto(TOKEN, KEY, APPID).encrypt(event_xml())
    params.update(encrypt_type="aes", msg_signature="0" * 40)
    body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    assert requests.post(server + URL, params=params, data=body.encode(), timeout=5).status_code == 403


def test_a_message_for_another_appid_is_refused(server):
    params = query()
    encrypted = MessageCrypto(TOKEN, KEY, "wx0000000000000000").encrypt(event_xml())
    params.update(encrypt_type="aes", msg_signature=sign(TOKEN, params["timestamp"], params["nonce"], encrypted))
    body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    assert requests.post(server + URL, params=params, data=body.encode(), timeout=5).status_code == 403


def test_wrong_key_is_a_4xx(server):
    response = post(server, event_xml(), "safe", key=generate_encoding_aes_key())
    assert response.status_code == 400 and "EncodingAESKey" in response.text


def test_stale_timestamps_and_repeated_nonces_are_refused(server, echo_handler):
    assert post(server, event_xml(), timestamp=int(time.time()) - 301).status_code == 403
    assert post(server, event_xml(msg_id=5), nonce="fixed-nonce").status_code == 200
    assert post(server, event_xml(msg_id=6), nonce="fixed-nonce").status_code == 403
    assert len(echo_handler) == 1


def test_wechat_retries_are_processed_once(server, app, echo_handler):
    create_time = int(time.time())
    first = post(server, event_xml("retry me", msg_id=777, create_time=create_time))
    again = post(server, event_xml("retry me", msg_id=777, create_time=create_time))  # new nonce, same MsgId
    assert first.text == again.text and "you said: retry me" in first.text
    assert len(echo_handler) == 1
    # Events have no MsgId: FromUserName + CreateTime identify them.
    calls = []
    handlers.table(app).add("event", "click", lambda m, c: calls.append(m) or None)
    event = event_xml(msg_type="event", create_time=create_time, extra="<Event><![CDATA[CLICK]]></Event>")
    post(server, event)
    post(server, event)
    assert len(calls) == 1


def test_a_failing_handler_is_answered_success_and_runs_again_on_retry(server, app):
    attempts = []

    def flaky(message, configured):
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("database hiccup")
        return "ok now"

    handlers.table(app).add("text", "", flaky)
    xml = event_xml(msg_id=4242)
    assert post(server, xml).text == "success"
    assert "ok now" in post(server, xml).text


def test_oversized_bodies_get_413(server):
    response = requests.post(server + URL, params=query(), data=b"<xml>" + b"a" * 70_000 + b"</xml>", timeout=5)
    assert response.status_code == 413


@pytest.mark.parametrize("body", [
    b"not xml at all",
    b"<xml><unclosed></xml>",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Content>&e;</Content></xml>',
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><xml><C>&d;</C></xml>',
])
def test_malformed_xxe_and_entity_bombs_get_a_quick_4xx(server, body):
    started = time.monotonic()
    response = requests.post(server + URL, params=query(), data=body, timeout=5)
    assert response.status_code == 400 and "passwd" not in response.text and "root:" not in response.text
    assert time.monotonic() - started < 1


def test_outcomes_are_recorded_for_the_wizard(server, app):
    requests.get(server + URL, params={**query(token="wrong"), "echostr": "x"}, timeout=5)
    post(server, event_xml())
    with app.app_context():
        outcomes = [a.outcome for a in recent_attempts()]
    assert outcomes[:2] == ["ok", "bad_signature"]


def test_callback_is_never_redirected_to_setup_and_needs_no_csrf(app):
    configure(app, wx_encrypt_mode="plain")
    client = app.test_client()
    response = client.post(URL, query_string=query(), data=event_xml().encode())
    assert response.status_code == 200 and response.text == "success"


def test_works_behind_a_server_that_forwards_wechat_calls_unchanged(app, echo_handler):
    """Another team's server receives WeChat's calls on its own URL and passes them on as they are."""
    from flask import Flask, Response, request

    configure(app)
    with serve(app) as service:
        gateway = Flask("gateway")

        @gateway.route("/their/wechat/endpoint", methods=["GET", "POST"])
        def forward():
            upstream = requests.request(request.method, service + URL, params=request.args, data=request.get_data(),
                                        headers={"Content-Type": request.content_type or "text/xml"}, timeout=5)
            return Response(upstream.content, upstream.status_code, content_type=upstream.headers["Content-Type"])

        with serve(gateway) as other:
            verified = requests.get(other + "/their/wechat/endpoint", params={**query(), "echostr": "42"}, timeout=5)
            params = query()
            encrypted = MessageCrypto(TOKEN, KEY, APPID).encrypt(event_xml("via gateway", msg_id=99))
            params.update(encrypt_type="aes", msg_signature=sign(TOKEN, params["timestamp"], params["nonce"], encrypted))
            replied = requests.post(other + "/their/wechat/endpoint", params=params,
                                    data=f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode(), timeout=5)
    assert verified.text == "42"
    assert replied.status_code == 200 and "Encrypt" in replied.text and len(echo_handler) == 1


def test_client_address_from_a_trusted_proxy(make_app):
    app = make_app(PROXY_COUNT=1)
    configure(app)
    client = app.test_client()
    client.get(URL, query_string={**query(), "echostr": "1"}, headers={"X-Forwarded-For": "203.0.113.9"})
    with app.app_context():
        assert last_verification().remote_addr == "203.0.113.9"
