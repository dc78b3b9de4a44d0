"""Malformed and oversized input on every route that takes input: a clear refusal, never a 500, nothing stored.

Each case sends one bad request and checks three things: the status (a 4xx, or the contract's own
refusal shape), the kind of answer (JSON for programs, plain text for WeChat's callback, HTML for
people), and that no row was added, changed or removed in any table but the few that count
requests on purpose (named per case, with the reason).

The send API is the exception to "a 4xx" that CONTRACT.md fixes: validation errors answer HTTP 200
with ``result`` false and ``code`` 1306000; credentials errors 401; bodies over MAX_CONTENT_LENGTH 413.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.conftest import ADMIN, USER, AuthActions, csrf_token
from webapp import channel
from webapp.extensions import db
from webapp.wechat import MessageCrypto, sign

SEND = "/api/c/compapi/cmsi/send_weixin/"
CALLBACK = "/console/user_center/weixin/mp/callback/"
APPID = "wx2c2769f8efd9abc2"
TOKEN = "malformedtoken"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OPENID = "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
TABLES = ("users", "api_apps", "channel_config", "bindings", "bind_tickets", "access_tokens", "messages", "deliveries",
          "audit_log", "login_failures", "app_state", "callback_events", "callback_attempts", "rate_windows",
          "wizard_drafts")
# Tables some refusals write to on purpose:
RATE = {"rate_windows"}  # every authenticated send request counts in its application's minute, valid or not
ATTEMPTS = {"callback_attempts"}  # every callback request's outcome is kept for the wizard to show
FAILURES = {"login_failures"}  # a failed sign-in is counted, so password guessing is throttled
BIG = "x" * 100_000
NESTED = "[" * 100_000 + "]" * 100_000
XML_BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">'
            '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><xml><Content>&lol3;</Content></xml>')
XXE = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       '<xml><ToUserName>a</ToUserName><Content>&xxe;</Content></xml>')


@pytest.fixture
def world(app):
    """Users, a calling application and a configured Official Account; returns the app's secret."""
    from webapp.api.apps import create_app_credentials
    from webapp.auth.services import create_user

    with app.test_request_context():
        create_user(*ADMIN, is_admin=True)
        create_user(*USER)
        _, secret = create_app_credentials("job_center", actor="test")
        channel.save(channel.normalize({"wx_type": "mp", "wx_app_id": APPID, "wx_secret": "0" * 32, "wx_token": TOKEN,
                                        # plain mode with a key: plaintext and encrypted pushes are both accepted
                                        "wx_encoding_aes_key": KEY, "wx_encrypt_mode": "plain",
                                        "wx_template_id": "template-id-0001"}), actor="test")
        db.session.remove()
    return secret


def counts(app) -> dict[str, int]:
    """Rows per table, plus a digest of the rows that can change in place (so updates are seen too)."""
    with app.app_context():
        numbers = {t: db.session.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in TABLES}  # noqa: S608
        numbers["api_apps*"] = hash(tuple(db.session.execute(text(
            "SELECT app_code, enabled, rate_limit_per_minute, secret_hash FROM api_apps ORDER BY id")).all()))
        numbers["users*"] = hash(tuple(db.session.execute(text(
            "SELECT username, password_hash, enabled FROM users ORDER BY id")).all()))
        numbers["deliveries*"] = hash(tuple(db.session.execute(text("SELECT status FROM deliveries ORDER BY id")).all()))
        db.session.remove()
    return numbers


def changed(before: dict, after: dict) -> set[str]:
    """The tables whose rows differ."""
    return {name.rstrip("*") for name in before if before[name] != after[name]}


def auth_header(secret: str) -> dict:
    """The BlueKing credentials header of the test application."""
    return {"X-Bkapi-Authorization": json.dumps({"bk_app_code": "job_center", "bk_app_secret": secret})}


def signed(params: dict | None = None, timestamp: str | None = None, nonce: str | None = None) -> dict:
    """A correctly signed callback query (plain mode)."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or uuid.uuid4().hex[:10]
    return {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "openid": OPENID,
            **(params or {})}


def assert_json_refusal(response, status: int = 200, code: int = 1306000):
    """The send API's refusal: JSON, result false, the status and code given."""
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.is_json
    body = response.get_json()
    assert body["result"] is False and body["code"] == code and body["message"]


# --- the send API ----------------------------------------------------------------------------------

API_CASES = {
    # id: (request keyword arguments, expected status, expected code)
    "invalid-json": (dict(data='{"receiver": ', content_type="application/json"), 200, 1306000),
    "json-array": (dict(data="[1, 2, 3]", content_type="application/json"), 200, 1306000),
    "json-string": (dict(data='"receiver"', content_type="application/json"), 200, 1306000),
    "deeply-nested-json": (dict(data='{"receiver": "a", "data": ' + NESTED + "}", content_type="application/json"), 200, 1306000),
    "non-utf8-body": (dict(data=b'\xff\xfe{"receiver": "\xc3\x28"}', content_type="application/json"), 200, 1306000),
    "xml-content-type": (dict(data="<xml><receiver>a</receiver></xml>", content_type="application/xml"), 200, 1306000),
    "form-garbage": (dict(data={"receiver": "a", "data": "not an object"}), 200, 1306000),
    "wrong-types": (dict(json={"receiver": {"a": 1}, "data": [1]}), 200, 1306000),
    "data-not-object": (dict(json={"receiver": "a", "data": "heading"}), 200, 1306000),
    "huge-heading": (dict(json={"receiver": "a", "data": {"heading": BIG, "message": "m"}}), 200, 1306000),
    "huge-receiver": (dict(json={"receiver": BIG, "data": {"heading": "h", "message": "m"}}), 200, 1306000),
    "too-many-receivers": (dict(json={"receiver": [f"o{i}" for i in range(10001)], "data": {"heading": "h", "message": "m"}}), 200, 1306000),
    "nul-in-value": (dict(json={"receiver": "a\x00b", "data": {"heading": "h", "message": "m"}}), 200, 1306000),
    "bad-base64": (dict(json={"receiver": "a", "data": {"heading": "h", "message": "%%%", "is_message_base64": True}}), 200, 1306000),
    "bad-boolean": (dict(json={"receiver": "a", "data": {"heading": "h", "message": "m", "is_message_base64": "maybe"}}), 200, 1306000),
    "javascript-url": (dict(json={"receiver": "a", "data": {"heading": "h", "message": "m", "url": "javascript:alert(1)"}}), 200, 1306000),
    "bad-agentid": (dict(json={"receiver": "a", "data": {"heading": "h", "message": "m"}, "wx_qy_agentid": "12a"}), 200, 1306000),
    "empty-body": (dict(data=b""), 200, 1306000),
}


@pytest.mark.parametrize("case", list(API_CASES), ids=list(API_CASES))
def test_send_api_refuses_malformed_bodies(app, client, world, case):
    kwargs, status, code = API_CASES[case]
    before = counts(app)
    response = client.post(SEND, headers=auth_header(world), **kwargs)
    assert_json_refusal(response, status, code)
    assert changed(before, counts(app)) <= RATE


@pytest.mark.parametrize(("case", "headers", "path"), [
    ("header-not-json", {"X-Bkapi-Authorization": "{not json"}, SEND),
    ("header-array", {"X-Bkapi-Authorization": "[1]"}, SEND),
    ("header-deeply-nested", {"X-Bkapi-Authorization": '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}"}, SEND),
    ("huge-credential-in-query", {}, SEND + "?bk_app_code=" + BIG + "&bk_app_secret=x"),
    ("nul-credential-in-query", {}, SEND + "?bk_app_code=job%00center&bk_app_secret=x"),
    ("no-credentials", {}, SEND),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "")
def test_send_api_refuses_malformed_credentials_with_401_or_400(app, client, world, case, headers, path):
    before = counts(app)
    response = client.post(path, headers=headers, json={"receiver": "a", "data": {"heading": "h", "message": "m"}})
    assert response.status_code in (400, 401) and response.is_json and response.get_json()["result"] is False
    assert changed(before, counts(app)) == set()


def test_send_api_refuses_a_body_over_the_size_limit(app, client, world):
    before = counts(app)
    body = b'{"receiver": "a", "data": {"heading": "' + b"x" * (app.config["MAX_CONTENT_LENGTH"] + 10) + b'"}}'
    response = client.post(SEND, headers=auth_header(world), data=body, content_type="application/json")
    assert response.status_code == 413 and response.is_json and response.get_json()["result"] is False
    assert changed(before, counts(app)) <= RATE


@pytest.mark.parametrize("path", ["/api/v1/messages/" + "x" * 5000, "/api/v1/messages/%00", "/api/v1/messages/..%2F..%2Fetc"])
def test_message_status_with_garbage_ids(client, world, path):
    response = client.get(path, headers=auth_header(world))
    assert response.status_code in (400, 404) and response.is_json and response.get_json()["result"] is False


def test_send_api_wrong_method_answers_json(client, world):
    response = client.put(SEND, headers=auth_header(world), json={})
    assert response.status_code == 405 and response.is_json


# --- WeChat's callback -----------------------------------------------------------------------------

def _plain(response, statuses=(400, 403, 404, 405, 413)):
    assert response.status_code in statuses, (response.status_code, response.get_data(as_text=True)[:200])
    assert response.mimetype == "text/plain"


@pytest.mark.parametrize(("case", "query"), [
    ("no-parameters", {}),
    ("huge-signature", {"signature": BIG, "timestamp": "1", "nonce": "n", "echostr": "e"}),
    ("huge-everything", {"signature": BIG, "timestamp": BIG, "nonce": BIG, "echostr": BIG}),
    ("non-numeric-timestamp", {"signature": "s", "timestamp": "soon", "nonce": "n", "echostr": "e"}),
    ("huge-timestamp", {**signed(timestamp="9" * 400), "echostr": "e"}),
    ("non-utf8-query", {"signature": b"\xff\xfe".decode("latin-1"), "timestamp": "1", "nonce": "n", "echostr": "e"}),
])
def test_callback_get_refuses_garbage(app, client, world, case, query):
    before = counts(app)
    _plain(client.get(CALLBACK, query_string=query))
    assert changed(before, counts(app)) <= ATTEMPTS


@pytest.mark.parametrize(("case", "query", "body"), [
    ("unsigned-garbage", {}, b"garbage"),
    ("bad-signature", {"signature": "0" * 40, "timestamp": str(int(time.time())), "nonce": "n"}, b"<xml/>"),
    ("signed-non-utf8", None, b"\xff\xfe\x00<xml>\xc3\x28</xml>"),
    ("signed-not-xml", None, b"{\"json\": true}"),
    ("signed-empty", None, b""),
    ("signed-xml-bomb", None, XML_BOMB.encode()),
    ("signed-external-entity", None, XXE.encode()),
    ("signed-deeply-nested-xml", None, ("<a>" * 5000 + "</a>" * 5000).encode()),
    ("signed-too-large", None, b"<xml>" + b"x" * (64 * 1024 + 10) + b"</xml>"),
    ("signed-over-max-content-length", None, b"x" * (1024 * 1024 + 10)),
    ("aes-garbage-encrypt", "aes", b"<xml><Encrypt><![CDATA[not-base64!!]]></Encrypt></xml>"),
    ("aes-missing-encrypt", "aes", b"<xml><ToUserName>a</ToUserName></xml>"),
    ("aes-bad-msg-signature", "aes-bad", b"<xml><Encrypt><![CDATA[AAAA]]></Encrypt></xml>"),
])
def test_callback_post_refuses_garbage(app, client, world, case, query, body):
    if query is None:
        query = signed()
    elif query == "aes":
        query = signed({"encrypt_type": "aes"})
        encrypted = body.split(b"[CDATA[")[1].split(b"]]")[0].decode() if b"CDATA" in body else ""
        query["msg_signature"] = sign(TOKEN, query["timestamp"], query["nonce"], encrypted)
    elif query == "aes-bad":
        query = signed({"encrypt_type": "aes", "msg_signature": "0" * 40})
    before = counts(app)
    _plain(client.post(CALLBACK, query_string=query, data=body, content_type="text/xml"))
    assert changed(before, counts(app)) <= ATTEMPTS


def test_callback_wrong_method_answers_plain_text(client, world):
    _plain(client.put(CALLBACK, data=b"x"), statuses=(405,))


# A fuzzed XML body: WeChat-like elements with arbitrary text, or arbitrary text altogether.
_ELEMENT_NAMES = st.sampled_from(["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event",
                                  "EventKey", "Ticket", "Encrypt", "Status", "MsgID", "x"])
_XML_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
_XML_BODIES = st.one_of(
    st.binary(max_size=300),
    _XML_TEXT.map(str.encode),
    st.lists(st.tuples(_ELEMENT_NAMES, _XML_TEXT), max_size=8).map(
        lambda items: ("<xml>" + "".join(f"<{k}><![CDATA[{v.replace(']]>', '')}]]></{k}>" for k, v in items)
                       + "</xml>").encode()),
)
_QUERY_EXTRAS = st.dictionaries(st.sampled_from(["encrypt_type", "msg_signature", "openid", "echostr", "timestamp", "x"]),
                                st.text(max_size=40), max_size=3)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_XML_BODIES, extras=_QUERY_EXTRAS, good_signature=st.booleans())
def test_callback_fuzz_never_fails_and_accepts_only_signed_requests(app, client, world, body, extras, good_signature):
    """Signed or not, any body and query: never a 5xx; an unsigned request is refused (403) untouched."""
    query = signed() if good_signature else {"signature": "f" * 40, "timestamp": str(int(time.time())), "nonce": "n1"}
    query.update({k: v for k, v in extras.items() if k != "timestamp" or not good_signature})
    response = client.post(CALLBACK, query_string=query, data=body, content_type="text/xml")
    assert response.status_code < 500
    assert response.mimetype in ("text/plain", "application/xml")
    if not good_signature and query.get("encrypt_type", "").lower() != "aes":
        assert response.status_code in (400, 403)  # 400 when the fuzzed query also lost its timestamp
    if response.status_code == 200:
        # Accepted: a signed request whose body parsed as a WeChat message; the answer is WeChat's "success"
        # or an XML reply, never an echo of what was sent.
        assert good_signature or query.get("encrypt_type", "").lower() == "aes"
        assert response.get_data() in (b"success", b"") or response.mimetype == "application/xml"


# Characters XML 1.0 can carry (no control characters but tab and newlines, no surrogates or noncharacters):
# WeChat's messages are XML, so nothing else can arrive in them.
_XML_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Cn"), whitelist_characters="\t\n")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.text(alphabet=_XML_CHARS, max_size=200),
       safe=st.booleans())
def test_callback_fuzz_accepts_every_well_formed_signed_message(app, client, world, content, safe):
    """A properly signed (and, in safe mode, encrypted) text message with any content is accepted."""
    inner = (f"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
             f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
             f"<Content><![CDATA[{content.replace(']]>', '')}]]></Content><MsgId>{uuid.uuid4().int % 10**18}</MsgId></xml>")
    query = signed()
    body = inner
    if safe:
        encrypted = MessageCrypto(TOKEN, KEY, APPID).encrypt(inner)
        query.update(encrypt_type="aes", msg_signature=sign(TOKEN, query["timestamp"], query["nonce"], encrypted))
        body = f"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    response = client.post(CALLBACK, query_string=query, data=body.encode(), content_type="text/xml")
    assert response.status_code == 200, response.get_data(as_text=True)


# --- pages: sign-in, first-run set-up, change of password ------------------------------------------

def _html(response, statuses):
    assert response.status_code in statuses, (response.status_code, response.get_data(as_text=True)[:200])
    assert response.mimetype == "text/html"


def test_login_refuses_malformed_forms(app, client, world):
    page = client.get("/login")
    token = csrf_token(page.text)
    before = counts(app)
    _html(client.post("/login", data={"username": "a", "password": "b"}), (400,))  # no CSRF token
    _html(client.post("/login", data={"username": BIG, "password": "b", "csrf_token": token}), (400,))
    _html(client.post("/login", data={"username": "admin", "password": BIG, "csrf_token": token}), (400,))
    _html(client.post("/login", data={"csrf_token": token}), (400,))
    _html(client.post("/login", data=b"\xff\xfe" * 10, content_type="application/x-www-form-urlencoded"), (400,))
    _html(client.post("/login", data=json.dumps({"username": "a"}), content_type="application/json"), (400,))
    _html(client.post("/login", data=b"x" * (app.config["MAX_CONTENT_LENGTH"] + 10),
                      content_type="application/x-www-form-urlencoded"), (400, 413))
    _html(client.get("/login?next=" + BIG), (200,))  # a huge "next" is simply not followed
    assert changed(before, counts(app)) == set()


def test_first_run_setup_refuses_malformed_forms(app, client):
    page = client.get("/setup/")
    token = csrf_token(page.text)
    before = counts(app)
    _html(client.post("/setup/", data={"username": "root", "password": ADMIN[1], "confirm": ADMIN[1]}), (400,))
    _html(client.post("/setup/", data={"username": BIG, "password": ADMIN[1], "confirm": ADMIN[1], "csrf_token": token}), (400,))
    _html(client.post("/setup/", data={"username": "ro ot", "password": ADMIN[1], "confirm": ADMIN[1], "csrf_token": token}), (400,))
    _html(client.post("/setup/", data={"username": "root", "password": BIG, "confirm": BIG, "csrf_token": token}), (400,))
    _html(client.post("/setup/", data={"username": "root", "password": "a\x00" * 6, "confirm": "a\x00" * 6,
                                       "csrf_token": token}), (400,))
    _html(client.post("/setup/", data={"csrf_token": token}), (400,))
    assert changed(before, counts(app)) == set()


def test_change_password_refuses_malformed_forms(app, client, world):
    AuthActions(client).login(*USER)
    token = csrf_token(client.get("/account/password").text)
    before = counts(app)
    _html(client.post("/account/password", data={"current": USER[1], "password": BIG, "confirm": BIG, "csrf_token": token}), (400,))
    _html(client.post("/account/password", data={"csrf_token": token}), (400,))
    _html(client.post("/account/password", data={"current": USER[1], "password": "x", "confirm": "x"}), (400,))
    assert changed(before, counts(app)) == set()


# --- the console -----------------------------------------------------------------------------------

@pytest.fixture
def admin_client(client, world):
    """The test client signed in as the administrator, and a CSRF token for its forms."""
    AuthActions(client).login()
    return client, csrf_token(client.get("/console/apps/").text)


HUGE_ID = "9" * 30


@pytest.mark.parametrize(("case", "path", "data"), [
    ("rotate-unknown-huge-id", f"/console/apps/{HUGE_ID}/rotate", {}),
    ("enable-unknown-huge-id", f"/console/apps/{HUGE_ID}/enabled", {"enabled": "1"}),
    ("rate-unknown-huge-id", f"/console/apps/{HUGE_ID}/rate", {"rate_limit": "5"}),
    ("unbind-unknown-huge-id", f"/console/bindings/{HUGE_ID}/unbind", {}),
    ("retry-unknown-huge-id", f"/console/deliveries/{HUGE_ID}/retry", {}),
    ("retry-unknown-id", "/console/deliveries/12345/retry", {}),
    ("rate-not-a-number", "/console/apps/1/rate", {"rate_limit": "1e999"}),
    ("rate-negative", "/console/apps/1/rate", {"rate_limit": "-5"}),
    ("rate-huge", "/console/apps/1/rate", {"rate_limit": "9" * 40}),
    ("new-app-huge-code", "/console/apps/", {"app_code": BIG, "rate_limit": "5"}),
    ("new-app-bad-code", "/console/apps/", {"app_code": "a b<script>", "rate_limit": "5"}),
    ("new-app-bad-rate", "/console/apps/", {"app_code": "ok_code", "rate_limit": "lots"}),
])
def test_console_forms_refuse_malformed_input(app, admin_client, case, path, data):
    client, token = admin_client
    before = counts(app)
    response = client.post(path, data={**data, "csrf_token": token})
    # Unknown ids: 404. Bad values: the form again with its error (400) or, for the inline rate form,
    # back to the list with the error flashed (302).
    assert response.status_code in (302, 400, 404), (response.status_code, response.get_data(as_text=True)[:200])
    assert response.mimetype == "text/html"
    if response.status_code == 302:
        assert "must be a whole number" in client.get(response.headers["Location"]).text
    assert changed(before, counts(app)) == set()


@pytest.mark.parametrize("path", [
    "/console/deliveries/?page=" + HUGE_ID, "/console/audit/?page=" + HUGE_ID, "/console/bindings/?page=" + HUGE_ID,
    "/console/deliveries/?page=-3&since=yesterday&until=" + BIG + "&status=" + BIG + "&receiver=%25%25_",
    "/console/audit/?action=" + BIG, "/console/bindings/?q=" + BIG + "&channel=x&state=y",
    "/console/messages/" + "x" * 5000,
])
def test_console_pages_survive_garbage_queries(admin_client, path):
    client, _ = admin_client
    response = client.get(path)
    assert response.status_code in (200, 404) and response.mimetype == "text/html"


def test_console_forms_without_csrf_token_are_refused(app, admin_client):
    client, _ = admin_client
    before = counts(app)
    _html(client.post("/console/apps/", data={"app_code": "sneaky", "rate_limit": "5"}), (400,))
    _html(client.post("/console/apps/1/enabled", data={"enabled": "0"}), (400,))
    assert changed(before, counts(app)) == set()


# --- binding JSON routes, and message detail links -------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/console/user_center/weixin/get_bind_status/?scene=" + BIG),
    ("GET", "/console/user_center/weixin/get_bind_status/?scene=%FF%FE"),
    ("POST", "/console/user_center/weixin/unbind_wx_user_info/"),  # no CSRF token
])
def test_binding_json_routes_refuse_or_ignore_garbage(app, client, world, method, path):
    AuthActions(client).login(*USER)
    before = counts(app)
    response = client.open(path, method=method, data=b"\xff" * 10, content_type="application/json")
    assert response.status_code < 500 and response.is_json
    if method == "POST":
        assert response.status_code == 400 and response.get_json()["result"] is False
    assert changed(before, counts(app)) == set()


def test_wecom_login_callback_with_garbage(app, client, world):
    AuthActions(client).login(*USER)
    before = counts(app)
    response = client.get("/console/user_center/weixin/qy/login_callback/", query_string={"code": BIG, "state": "%FF" * 100})
    assert 400 <= response.status_code < 500 and response.mimetype == "text/html"
    assert changed(before, counts(app)) <= {"audit_log"}  # a refused bind attempt is audited, on purpose


@pytest.mark.parametrize("token", ["garbage", "x" * 5000, "..%2F..%2Fetc%2Fpasswd", "eyJhIjoxfQ.forged"])
def test_message_detail_link_with_garbage_tokens(client, world, token):
    response = client.get("/m/" + token)
    assert response.status_code == 404 and response.mimetype == "text/html"
