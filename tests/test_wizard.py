"""The set-up wizard over real HTTP: each step's validation and diagnosis, drafts, re-entry, saving and testing.

The service runs with its WeChat simulator (served by the same app, as with ``make run``); the
callback self-test is also tried against tiny local servers that refuse, answer 404, echo the wrong
value, redirect, or are right.
"""
from __future__ import annotations

import re
import socket
import time
import uuid

import pytest
import requests
from sqlalchemy import func, select, text

from tests.conftest import ADMIN, USER
from tests.livesrv import serve
from webapp import channel
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.models import AuditEntry, CallbackAttempt, ChannelConfig, Delivery, User, WizardDraft
from webapp.setup import wizard_services as services
from webapp.simulator.world import (MP_APPID, MP_SECRET, OPENID_ALICE, QY_AGENTID, QY_CORPID, QY_CORPSECRET,
                                    TEMPLATE_CATEGORY_ID, TEMPLATE_NOTIFICATION_ID)
from webapp.wechat import sign, validate_encoding_aes_key, validate_token

TOKEN = "WizardToken2026"
KEY = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
CALLBACK = "/console/user_center/weixin/mp/callback/"
MP_KEYS = {"wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": TOKEN, "wx_encoding_aes_key": KEY,
           "wx_encrypt_mode": "safe"}
QY_KEYS = {"wx_qy_corpid": QY_CORPID, "wx_qy_corpsecret": QY_CORPSECRET, "wx_qy_agentid": str(QY_AGENTID),
           "wx_qy_msgtype": "text"}
CATEGORY_MAPPING = {"wx_template_id": TEMPLATE_CATEGORY_ID, "map_heading": "", "map_message": "thing1",
                    "map_date": "time2", "map_remark": ""}


@pytest.fixture
def service(make_app):
    """The service with its simulator over real HTTP; an administrator and an ordinary user exist."""
    app = make_app(WEIXIN_SIMULATOR=True)
    with app.test_request_context():
        create_user(*ADMIN, is_admin=True)
        create_user(*USER)
        db.session.remove()
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy",
                          WEIXIN_QY_LOGIN_URL=base + "/simulator/qy/login",
                          WEIXIN_QY_OAUTH_URL=base + "/simulator/qy/oauth2/authorize")
        yield app, base


def sim(base, path, payload=None, method="POST"):
    answer = requests.request(method, f"{base}/simulator/_control/{path}", json=payload, timeout=20)
    assert answer.status_code == 200, answer.text
    return answer.json()


class Wizard:
    """An administrator's browser (a requests session signed in through the login form)."""

    def __init__(self, base: str, username: str = ADMIN[0], password: str = ADMIN[1]):
        self.base = base
        self.session = requests.Session()
        page = self.session.get(base + "/login", timeout=10)
        answer = self.session.post(base + "/login", data={"username": username, "password": password,
                                                          "csrf_token": self.token(page.text)}, timeout=10)
        assert answer.status_code == 200, answer.text

    @staticmethod
    def token(html: str) -> str:
        return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)

    def get(self, path: str = "", **kwargs) -> requests.Response:
        return self.session.get(f"{self.base}/setup/wizard/{path}", timeout=30, **kwargs)

    def post(self, step: str, data: dict | None = None) -> requests.Response:
        page = self.session.get(f"{self.base}/setup/wizard/", timeout=30)
        return self.session.post(f"{self.base}/setup/wizard/{step}",
                                 data={**(data or {}), "csrf_token": self.token(page.text)}, timeout=30)

    def json(self, path: str, **params) -> dict:
        return self.session.get(f"{self.base}/setup/wizard/{path}", params=params,
                                headers={"Accept": "application/json"}, timeout=30).json()


def step_of(response: requests.Response) -> str:
    return response.url.rstrip("/").rsplit("/", 1)[-1]


def draft_row(app) -> WizardDraft | None:
    with app.app_context():
        draft = db.session.scalar(select(WizardDraft))
        db.session.expunge_all()
        return draft


def to_keys(w: Wizard, wx_type: str = "mp") -> requests.Response:
    assert step_of(w.post("channel", {"wx_type": wx_type})) == "prerequisites"
    answer = w.post("prerequisites", {"submit": "Next"})
    assert step_of(answer) == "keys", answer.text
    return answer


def to_template(w: Wizard) -> requests.Response:
    to_keys(w)
    answer = w.post("keys", MP_KEYS)
    assert step_of(answer) == "template", answer.text
    return answer


def to_callback(w: Wizard) -> requests.Response:
    to_template(w)
    answer = w.post("template", {**CATEGORY_MAPPING, "submit": "x"})
    assert step_of(answer) == "callback", answer.text
    return answer


def qy_past_keys(w: Wizard, keys: dict | None = None) -> requests.Response:
    """Post the WeCom keys, then leave the 接收消息 server out (the server step's own tests are in
    tests/test_wizard_server.py): the answer is the trusted domain step."""
    page = w.post("keys", keys or QY_KEYS)
    assert step_of(page) == "server", page.text
    return w.post("server", {"left_out": "y", "submit": "Next"})


def field_error(html: str, field: str) -> str:
    """The error sentence shown at a field (the invalid-feedback after the input)."""
    match = re.search(rf'id="{field}"[^>]*>.*?<div class="invalid-feedback[^"]*">(.*?)</div>', html, re.S)
    return match.group(1) if match else ""


def unescape(html: str) -> str:
    import html as h

    return h.unescape(html)


# --- access, entry, drafts --------------------------------------------------------------------------

def test_only_administrators_may_use_the_wizard(service):
    app, base = service
    anonymous = requests.get(base + "/setup/wizard/", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    user = Wizard(base, *USER)
    assert user.get("").status_code == 403
    assert user.get("keys").status_code == 403
    assert user.json("callback/status") == {"result": False, "code": 403, "message": user.json("callback/status")["message"]}


def test_the_first_administrator_is_sent_to_the_wizard(client):
    from tests.conftest import csrf_token

    page = client.get("/setup/")
    answer = client.post("/setup/", data={"username": "root", "password": ADMIN[1], "confirm": ADMIN[1],
                                          "csrf_token": csrf_token(page.text)})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/setup/wizard/")
    assert client.get("/setup/wizard/").headers["Location"].endswith("/setup/wizard/channel")


def test_the_wizard_starts_a_draft_and_steps_cannot_be_skipped(service):
    app, base = service
    w = Wizard(base)
    first = w.get("")
    assert step_of(first) == "channel"
    assert "Choose the channel" in first.text and 'id="comparison"' in first.text
    # Seven steps in the progress indicator, and no way around the order.
    assert first.text.count('class="flex-fill"') == 7
    for later in ("prerequisites", "keys", "template", "callback", "domain", "save", "test", "done"):
        assert step_of(w.get(later)) == "channel", later
    # Looking stores nothing; the first answer stores the draft.
    assert draft_row(app) is None
    assert step_of(w.post("channel", {"wx_type": "mp"})) == "prerequisites"
    draft = draft_row(app)
    assert draft.state == "open" and draft.wx_type == "mp" and draft.step == "prerequisites"


def test_the_channel_step_needs_a_choice(service):
    app, base = service
    w = Wizard(base)
    answer = w.post("channel", {"wx_type": "sms"})
    assert step_of(answer) == "channel" and "Choose the Official Account or WeCom." in answer.text
    assert draft_row(app) is None  # a refused answer stores nothing, not even a draft


def test_the_draft_is_resumed_at_its_step(service):
    app, base = service
    w = Wizard(base)
    to_template(w)
    assert step_of(w.get("")) == "template"
    # Another browser of the same administrator resumes the same draft.
    other = Wizard(base)
    assert step_of(other.get("")) == "template"
    # Back links work, and going back does not lose the answers.
    keys = other.get("keys")
    assert f'value="{MP_APPID}"' in keys.text and f'value="{TOKEN}"' in keys.text
    assert re.search(r'href="[^"]*/setup/wizard/prerequisites"[^>]*id="wizard-back"', keys.text)
    assert re.search(r'href="[^"]*/setup/wizard/template"[^>]*id="wizard-next"', keys.text)


def test_each_administrator_has_one_draft_and_start_over_replaces_it(service):
    app, base = service
    with app.test_request_context():
        create_user("root2", "silver-fjord-4", is_admin=True)
        db.session.remove()
    first, second = Wizard(base), Wizard(base, "root2", "silver-fjord-4")
    to_keys(first, "mp")
    to_keys(second, "qywx")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(WizardDraft)) == 2
    page = first.get("keys")
    token = re.search(r'name="restart-csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    answer = first.session.post(base + "/setup/wizard/restart", data={"restart-csrf_token": token}, timeout=10)
    assert step_of(answer) == "channel" and "The wizard starts again." in answer.text
    with app.app_context():
        drafts = {d.user_id: d for d in db.session.scalars(select(WizardDraft))}
        assert len(drafts) == 2 and sorted(d.wx_type or "" for d in drafts.values()) == ["", "qywx"]


def test_generate_gives_a_valid_token_and_key(service):
    app, base = service
    w = Wizard(base)
    token = w.json("generate/token")["value"]
    key = w.json("generate/aes_key")["value"]
    assert validate_token(token) and len(token) == 32
    assert validate_encoding_aes_key(key) and len(key) == 43
    assert w.json("generate/other")["result"] is False


# --- step 2: prerequisites ---------------------------------------------------------------------------

def check_prerequisites(w: Wizard) -> requests.Response:
    """Press "Check now" on the prerequisites page (what wizard.js does as the page opens)."""
    return w.post("prerequisites", {"recheck": "Check again"})


def test_prerequisites_report_dns_tls_and_http(service):
    app, base = service
    w = Wizard(base)
    w.post("channel", {"wx_type": "mp"})
    # Opening the page checks nothing: it asks its script to press "Check now".
    unchecked = w.get("prerequisites")
    assert 'data-probe-name' not in unchecked.text and 'data-autocheck="recheck"' in unchecked.text
    assert 'id="server-checks-pending"' in unchecked.text and 'value="Check now"' in unchecked.text
    page = check_prerequisites(w)
    assert re.findall(r'data-probe-name="(\w+)" data-state="(\w+)"', page.text) == [("dns", "ok"), ("tls", "skipped"),
                                                                                    ("http", "ok")]
    assert "Not used: the API base is plain http://." in page.text
    # The browser's checks of WeChat's sites, and why they do not matter with the simulator.
    assert 'data-probe-url="https://mp.weixin.qq.com/favicon.ico"' in page.text
    assert "You are using the WeChat simulator" in page.text
    # The last outcome is shown again, without checking again.
    again = w.get("prerequisites")
    assert re.findall(r'data-probe-name="(\w+)" data-state="(\w+)"', again.text) == [("dns", "ok"), ("tls", "skipped"),
                                                                                     ("http", "ok")]
    assert "data-autocheck" not in again.text
    w.post("channel", {"wx_type": "qywx"})
    page = w.get("prerequisites")
    for site in ("open.work.weixin.qq.com", "rescdn.qqmail.com", "js.aq.qq.com"):
        assert f'data-probe-url="https://{site}/favicon.ico"' in page.text


def test_prerequisites_diagnose_an_unreachable_api_and_block_the_way(service):
    app, base = service
    w = Wizard(base)
    w.post("channel", {"wx_type": "mp"})
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    app.config["WEIXIN_MP_API_BASE"] = f"http://127.0.0.1:{closed}/simulator/mp"
    page = w.post("prerequisites", {"submit": "Next"})
    assert step_of(page) == "prerequisites"
    assert 'data-failure="refused"' in page.text and "The connection was refused." in page.text
    assert "This server cannot reach the WeChat API yet" in page.text
    app.config["WEIXIN_MP_API_BASE"] = "http://api.weixin.invalid/simulator/mp"
    page = check_prerequisites(w)
    assert 'data-probe-name="dns" data-state="failed"' in page.text and "cannot resolve the API host name" in page.text
    app.config["WEIXIN_MP_API_BASE"] = base + "/simulator/mp"
    sim(base, "settings", {"mp_ip_check": True})
    page = check_prerequisites(w)
    assert 'data-failure="ip"' in page.text and "127.0.0.1" in page.text and "IP白名单" in page.text
    # The stored outcome is told in the page's language.
    chinese = w.get("prerequisites", headers={"Accept-Language": "zh-CN"})
    assert 'data-failure="ip"' in chinese.text and "127.0.0.1" in chinese.text
    assert unescape(chinese.text) != unescape(w.get("prerequisites").text)


def test_prerequisites_through_a_page_that_is_not_wechat(service):
    app, base = service

    def not_wechat(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html>Please sign in to the corporate proxy</html>"]

    w = Wizard(base)
    w.post("channel", {"wx_type": "qywx"})
    with serve(not_wechat) as other:
        app.config["WEIXIN_QY_API_BASE"] = other
        page = check_prerequisites(w)
    assert 'data-failure="bad_response"' in page.text and "not the WeChat API" in page.text


# --- step 3: keys ------------------------------------------------------------------------------------

def test_badly_formed_keys_are_refused_at_the_field_and_nothing_is_saved(service):
    app, base = service
    w = Wizard(base)
    to_keys(w)
    page = w.post("keys", {"wx_app_id": "wx123", "wx_secret": "not-hex", "wx_token": "a b", "wx_encoding_aes_key": "short",
                           "wx_encrypt_mode": "safe"})
    assert step_of(page) == "keys"
    html = unescape(page.text)
    assert "16 lower-case letters and digits" in field_error(html, "wx_app_id")
    assert "32 letters a-f and digits" in field_error(html, "wx_secret")
    assert "3 to 32 letters or digits" in field_error(html, "wx_token")
    assert "exactly 43 letters and digits" in field_error(html, "wx_encoding_aes_key")
    # Safe mode without a key, and no secret at all.
    page = w.post("keys", {"wx_app_id": MP_APPID, "wx_token": TOKEN, "wx_encrypt_mode": "safe"})
    html = unescape(page.text)
    assert "Enter the AppSecret" in field_error(html, "wx_secret")
    assert "need the EncodingAESKey" in field_error(html, "wx_encoding_aes_key")
    draft = draft_row(app)
    assert draft.answers == {} and "keys" not in draft.checks["done"]
    with app.app_context():
        assert services.read_secrets(draft) == {}


def test_wecom_keys_are_validated_at_the_field(service):
    app, base = service
    w = Wizard(base)
    to_keys(w, "qywx")
    page = w.post("keys", {"wx_qy_corpid": "corp", "wx_qy_corpsecret": "x", "wx_qy_agentid": "abc", "wx_qy_msgtype": "text"})
    html = unescape(page.text)
    assert "18 characters starting with ww" in field_error(html, "wx_qy_corpid")
    assert "20 to 64 letters" in field_error(html, "wx_qy_corpsecret")
    assert "a number such as 1000002" in field_error(html, "wx_qy_agentid")
    assert draft_row(app).answers == {}


def test_a_wrong_appsecret_or_appid_is_diagnosed_live(service):
    app, base = service
    w = Wizard(base)
    to_keys(w)
    page = w.post("keys", {**MP_KEYS, "wx_secret": "f" * 32})
    assert step_of(page) == "keys"
    html = unescape(page.text)
    assert "The AppSecret is wrong" in field_error(html, "wx_secret") and "errcode 40125" in html
    page = w.post("keys", {**MP_KEYS, "wx_app_id": "wx" + "1" * 16})
    assert "The AppID is wrong" in field_error(unescape(page.text), "wx_app_id")
    # Chinese pages get the catalogue's Chinese sentence.
    page = w.session.post(base + "/setup/wizard/keys", data={**MP_KEYS, "wx_secret": "f" * 32,
                          "csrf_token": w.token(w.get("keys").text)}, headers={"Accept-Language": "zh-CN"}, timeout=30)
    assert "AppSecret 错误" in unescape(page.text)


def test_an_ip_refusal_names_the_ip_and_the_page_and_check_again_needs_no_retyping(service):
    app, base = service
    w = Wizard(base)
    to_keys(w)
    sim(base, "settings", {"mp_ip_check": True})
    page = w.post("keys", MP_KEYS)
    html = unescape(page.text)
    assert step_of(page) == "keys"
    assert re.search(r'id="refused-ip">127\.0\.0\.1<', html)
    assert "IP whitelist" in html and "开发 → 基本配置 → IP白名单" in html
    assert 'id="recheck"' in html
    # The administrator whitelists the address on WeChat's side, then checks again without retyping secrets.
    sim(base, "settings", {"mp_ip_whitelist": ["127.0.0.1"]})
    again = w.post("keys", {"wx_app_id": MP_APPID, "wx_token": TOKEN, "wx_encrypt_mode": "safe", "recheck": "Check again"})
    assert step_of(again) == "template", again.text


def test_wecom_keys_are_checked_live(service):
    app, base = service
    w = Wizard(base)
    to_keys(w, "qywx")
    page = w.post("keys", {**QY_KEYS, "wx_qy_corpsecret": "W" * 43})
    assert "The app's Secret (corpsecret) is wrong" in field_error(unescape(page.text), "wx_qy_corpsecret")
    assert step_of(page) == "keys"
    sim(base, "settings", {"qy_ip_check": True})
    page = w.post("keys", QY_KEYS)
    html = unescape(page.text)
    assert re.search(r'id="refused-ip">127\.0\.0\.1<', html) and "企业可信IP" in html
    sim(base, "settings", {"qy_ip_check": False})
    sim(base, "qy/apps", {"agentid": QY_AGENTID, "allow_users": []})
    page = w.post("keys", QY_KEYS)
    assert "Nobody can see this WeCom application" in field_error(unescape(page.text), "wx_qy_agentid")
    sim(base, "qy/apps", {"agentid": QY_AGENTID, "allow_users": ["zhangsan"]})
    assert step_of(qy_past_keys(w)) == "domain"


def test_secrets_are_kept_encrypted_in_the_draft_and_never_shown_in_full(service):
    app, base = service
    w = Wizard(base)
    to_template(w)
    with app.app_context():
        raw = db.session.execute(text("SELECT answers, secrets_enc FROM wizard_drafts")).one()
    assert MP_SECRET not in str(raw) and KEY not in str(raw) and TOKEN not in str(raw)
    for step in ("keys", "template"):
        page = w.get(step).text
        assert MP_SECRET not in page and KEY not in page, step
    keys = w.get("keys").text
    assert "Saved (ends in cdef): leave blank to keep it" in unescape(keys)
    # Secrets left blank keep their values.
    assert step_of(w.post("keys", {"wx_app_id": MP_APPID, "wx_token": TOKEN, "wx_encrypt_mode": "safe"})) == "template"


# --- step 4: template --------------------------------------------------------------------------------

def test_the_template_step_lists_the_accounts_templates_and_suggests_a_mapping(service):
    app, base = service
    w = Wizard(base)
    page = to_template(w)
    assert TEMPLATE_NOTIFICATION_ID in page.text and TEMPLATE_CATEGORY_ID in page.text
    assert "Alert notice" in page.text
    assert '"message": "thing1"' in unescape(page.text)  # the suggestion for the category template


def test_the_mapping_is_validated_on_the_server(service):
    app, base = service
    w = Wizard(base)
    to_template(w)
    page = w.post("template", {**CATEGORY_MAPPING, "map_message": "keyword1", "submit": "x"})
    assert "keyword1 is not a key of this template" in unescape(page.text)
    page = w.post("template", {**CATEGORY_MAPPING, "map_message": "", "submit": "x"})
    assert "The message must be shown" in field_error(unescape(page.text), "map_message")
    page = w.post("template", {"wx_template_id": TEMPLATE_NOTIFICATION_ID, "map_message": "first", "submit": "x"})
    assert "WeChat no longer shows first" in field_error(unescape(page.text), "map_message")
    page = w.post("template", {**CATEGORY_MAPPING, "wx_template_id": "TM00015", "submit": "x"})
    assert "not among the account's templates" in unescape(page.text)
    page = w.post("template", {"submit": "x"})
    assert "Choose the template" in unescape(page.text)
    assert step_of(page) == "template" and draft_row(app).answers.get("wx_template_id") is None
    # A template deleted on WeChat's side since the list was fetched: the live check says so.
    sim(base, f"mp/templates/{TEMPLATE_CATEGORY_ID}", method="DELETE")
    page = w.post("template", {**CATEGORY_MAPPING, "submit": "x"})
    assert step_of(page) == "template" and "is not among this account's templates" in unescape(page.text)
    page = w.post("template", {"refresh": "x"})
    assert TEMPLATE_CATEGORY_ID not in page.text and "2 found" in page.text  # the other two seed templates


def test_the_preview_follows_wechats_rules_and_warns_about_lost_text(service):
    app, base = service
    w = Wizard(base)
    to_template(w)
    legacy = w.json("template/preview", wx_template_id=TEMPLATE_NOTIFICATION_ID, map_heading="first",
                    map_message="keyword1", map_date="keyword2", map_remark="remark")["data"]
    assert any("no longer shows" in warning for warning in legacy["warnings"]) and legacy["lost"]
    html = unescape(legacy["html"])
    assert "WeChat hides this key" in html and "cut at 20 characters" in html
    assert "The disk /data on w…" in html  # 20 characters, with the marker
    good = w.json("template/preview", wx_template_id=TEMPLATE_CATEGORY_ID, map_message="thing1", map_date="time2",
                  map_heading="character_string3", sample_message="Short text", sample_heading="ID-42",
                  sample_remark="")["data"]
    assert "Short text" in good["html"] and 'data-key="thing1"' in good["html"]
    assert any("only accepts character string" in warning for warning in good["warnings"])
    assert w.json("template/preview", wx_template_id="nope")["result"] is False


def test_a_valid_template_goes_on_to_the_callback(service):
    app, base = service
    w = Wizard(base)
    to_callback(w)
    draft = draft_row(app)
    assert draft.answers["wx_template_id"] == TEMPLATE_CATEGORY_ID
    assert draft.answers["wx_template_fields"] == {"message": "thing1", "date": "time2"}


# --- step 5: the callback self-test against tiny servers ---------------------------------------------

def _echo_app(transform):
    def app(environ, start_response):
        from urllib.parse import parse_qs

        query = parse_qs(environ.get("QUERY_STRING", ""))
        body = transform(query.get("echostr", [""])[0])
        status, payload = body if isinstance(body, tuple) else ("200 OK", body)
        start_response(status, [("Content-Type", "text/plain")])
        return [payload.encode()]

    return app


@pytest.mark.parametrize("behaviour, kind", [
    (lambda echo: echo, "ok"),
    (lambda echo: ("404 NOT FOUND", "<h1>Not Found</h1>"), "not_found"),
    (lambda echo: ("502 BAD GATEWAY", "<h1>Bad Gateway</h1>"), "proxy"),
    (lambda echo: "success", "wrong_echo"),
    (lambda echo: f'"{echo}"', "wrong_echo"),
    (lambda echo: echo + "\n", "wrong_echo"),
    (lambda echo: ("403 FORBIDDEN", "signature mismatch: check the Token"), "signature"),
    (lambda echo: ("500 INTERNAL SERVER ERROR", "oops"), "http"),
])
def test_the_callback_test_tells_servers_apart(behaviour, kind):
    with serve(_echo_app(behaviour)) as other:
        result = services.probe_callback_url(other + CALLBACK, TOKEN)
    assert result["kind"] == kind and result["ok"] == (kind == "ok"), result


def test_the_callback_test_sends_what_wechat_sends():
    seen = {}

    def recorder(environ, start_response):
        from urllib.parse import parse_qs

        seen.update({k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}, method=environ["REQUEST_METHOD"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [seen["echostr"].encode()]

    with serve(recorder) as other:
        assert services.probe_callback_url(other + CALLBACK, TOKEN)["ok"]
    assert seen["method"] == "GET" and seen["signature"] == sign(TOKEN, seen["timestamp"], seen["nonce"])
    assert seen["nonce"].isdigit() and seen["echostr"].isdigit() and abs(int(seen["timestamp"]) - time.time()) < 60


def test_the_callback_test_diagnoses_connections():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    assert services.probe_callback_url(f"http://127.0.0.1:{closed}{CALLBACK}", TOKEN)["kind"] == "refused"
    assert services.probe_callback_url(f"http://wechat-callback.invalid{CALLBACK}", TOKEN)["kind"] == "dns"
    assert services.probe_callback_url("ftp://example.com/", TOKEN)["kind"] == "url"
    with serve(_echo_app(lambda echo: echo)) as plain:
        # https:// to a port that speaks plain HTTP: the scheme is wrong.
        assert services.probe_callback_url(plain.replace("http://", "https://") + CALLBACK, TOKEN)["kind"] == "tls_plain"

    def redirector(environ, start_response):
        start_response("301 MOVED PERMANENTLY", [("Location", "https://paas.example.com" + CALLBACK)])
        return [b""]

    with serve(redirector) as other:
        result = services.probe_callback_url(other + CALLBACK, TOKEN)
    assert result["kind"] == "redirect" and result["location"] == "https://paas.example.com" + CALLBACK


def test_the_callback_sentences_say_what_to_do(app):
    with app.test_request_context("/setup/wizard/callback", base_url="http://127.0.0.1:5000"):
        service_url = "http://127.0.0.1:5000" + CALLBACK
        refused = services.callback_sentence({"kind": "refused", "url": "http://paas.example.com" + CALLBACK}, service_url)
        assert "port 80" in refused and "paas.example.com:5000" in refused  # the port missing from the domain
        assert "forward /wx/ to " + service_url in services.callback_sentence(
            {"kind": "not_found", "url": "https://paas.example.com/wx/"}, service_url)
        assert "Token" in services.callback_sentence({"kind": "wrong_echo", "url": "http://x/", "answer": "success"},
                                                     service_url)
        assert "DNS record" in services.callback_sentence({"kind": "dns", "url": "http://x.invalid/"}, service_url)
        assert "use http://" in services.callback_sentence({"kind": "tls_plain", "url": "https://x/"}, service_url)
        assert "does not follow redirects" in services.callback_sentence(
            {"kind": "redirect", "url": "http://x/", "status": 301, "location": "https://x/"}, service_url)
        assert services.port_warning("http://paas.example.com:8080/cb/")
        assert not services.port_warning("https://paas.example.com/cb/")


# --- step 5: the callback page, and WeChat's own verification ------------------------------------------

def test_the_callback_page_shows_what_to_enter_and_blocks_next_until_tested(service):
    app, base = service
    w = Wizard(base)
    page = to_callback(w)
    html = unescape(page.text)
    assert base + CALLBACK in html and TOKEN in html
    assert "Do not press Submit (提交) on WeChat yet." in html
    # The EncodingAESKey generated in this draft is shown in full until it is saved: it must be entered on WeChat.
    assert f'id="value-aes-key">{KEY}<' in html and "••••••••DEFG" not in html
    assert "安全模式" in html
    answer = w.post("callback", {"public_url": base + CALLBACK, "submit": "Next"})
    assert step_of(answer) == "callback" and "Test the callback first" in unescape(answer.text)
    assert "now-submit" not in answer.text
    # Another server forwards WeChat's messages here: the administrator says so and goes on.
    assert step_of(w.post("callback", {"public_url": base + CALLBACK, "forwarded": "y", "submit": "Next"})) == "save"


def test_a_failing_callback_test_is_explained(service):
    app, base = service
    w = Wizard(base)
    to_callback(w)
    with serve(_echo_app(lambda echo: ("404 NOT FOUND", "nope"))) as proxy:
        page = w.post("callback", {"public_url": proxy + "/wechat/", "test": "x"})
    html = unescape(page.text)
    assert 'data-target="public" data-kind="not_found"' in html and 'data-target="service" data-kind="ok"' in html
    assert f"must forward /wechat/ to {base}{CALLBACK}" in html
    assert "now-submit" not in html
    assert step_of(w.post("callback", {"public_url": proxy + "/wechat/", "submit": "Next"})) == "callback"


def test_the_self_test_passes_with_the_drafts_token_and_wechats_check_is_shown_live(service):
    app, base = service
    w = Wizard(base)
    to_callback(w)
    page = w.post("callback", {"public_url": base + CALLBACK, "test": "x"})
    html = unescape(page.text)
    assert 'data-target="public" data-kind="ok"' in html and "Now press Submit (提交)" in html
    # Nothing from WeChat yet: the self-test's own request does not count.
    assert w.json("callback/status")["data"] == {"state": "waiting"}
    # The administrator presses Submit on WeChat's 服务器配置 page (the simulator's), with a wrong Token first.
    failed = sim(base, "mp/server", {"url": base + CALLBACK, "token": "SomethingElse1", "encoding_aes_key": KEY,
                                     "mode": "safe"})
    assert not failed["ok"]
    state = w.json("callback/status")["data"]
    assert state["state"] == "failed" and "must be exactly the one shown above" in state["message"]
    passed = sim(base, "mp/server", {"url": base + CALLBACK, "token": TOKEN, "encoding_aes_key": KEY, "mode": "safe"})
    assert passed["ok"], passed
    state = w.json("callback/status")["data"]
    assert state["state"] == "verified" and state["at"]
    assert "WeChat verified your server at" in w.get("callback").text
    assert step_of(w.post("callback", {"public_url": base + CALLBACK, "submit": "Next"})) == "save"
    # Nothing was saved as the configuration meanwhile.
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ChannelConfig)) == 0


def test_the_callback_accepts_the_token_of_an_open_draft_only(service):
    app, base = service

    def check(token):
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
        return requests.get(base + CALLBACK, params={"signature": sign(token, timestamp, nonce), "timestamp": timestamp,
                                                     "nonce": nonce, "echostr": "4242"}, timeout=10)

    assert check(TOKEN).status_code == 404  # nothing configured, no draft
    w = Wizard(base)
    to_template(w)
    answer = check(TOKEN)
    assert answer.status_code == 200 and answer.text == "4242"
    assert check("OtherToken1").status_code == 403
    with app.app_context():
        outcomes = [(a.outcome, a.detail) for a in db.session.scalars(select(CallbackAttempt).order_by(CallbackAttempt.id))]
    assert outcomes[-2] == ("verified", "signed with the Token of the set-up wizard's draft")
    assert outcomes[-1][0] == "bad_signature" and "draft" in outcomes[-1][1]
    # With a configuration saved, both its Token and the open draft's are accepted.
    with app.app_context():
        channel.save(channel.normalize({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET,
                                        "wx_token": "ConfiguredToken1", "wx_template_id": TEMPLATE_NOTIFICATION_ID}),
                     actor="test")
    assert check("ConfiguredToken1").text == "4242" and check(TOKEN).text == "4242"
    # A WeCom draft's or a finished draft's Token is not.
    with app.app_context():
        with db.transaction() as session:
            session.scalar(select(WizardDraft)).state = "saved"
    assert check(TOKEN).status_code == 403


# --- step 5: the trusted domain (WeCom) -----------------------------------------------------------------

def test_the_trusted_domain_is_checked_against_the_application(service):
    from urllib.parse import urlsplit

    app, base = service
    w = Wizard(base)
    to_keys(w, "qywx")
    distrust(base)
    page = qy_past_keys(w)
    assert step_of(page) == "domain"
    html = unescape(page.text)
    expected = urlsplit(base).netloc
    assert f'id="expected-domain">{expected}<' in html
    assert "The application's trusted domain is notify.example.com, but people reach this service at " + expected in html
    assert "3 members can see the application" in html
    assert step_of(w.post("domain", {"submit": "Next"})) == "domain"
    sim(base, "qy/apps", {"agentid": QY_AGENTID, "redirect_domain": expected})
    page = w.post("domain", {"recheck": "Check again"})
    assert 'id="domain-ok"' in page.text
    assert step_of(w.post("domain", {"submit": "Next"})) == "save"


def distrust(base: str) -> None:
    """The simulated WeCom application trusts another domain than the one this service is reached at."""
    sim(base, "qy/apps", {"agentid": QY_AGENTID, "redirect_domain": "notify.example.com"})


def test_the_wecom_route_passes_the_trusted_domain_on_any_port_with_the_simulator(service):
    """The simulator's application trusts the address the simulator is served at (here a random port, as
    with `make run PORT=...`): the domain step passes with nothing changed on WeCom's side."""
    from urllib.parse import urlsplit

    app, base = service
    assert urlsplit(base).port != 5000
    w = Wizard(base)
    to_keys(w, "qywx")
    page = w.post("keys", QY_KEYS)
    if step_of(page) == "server":  # the application's 接收消息 server, which this test leaves out
        page = w.post("server", {"left_out": "y", "submit": "Next"})
    assert step_of(page) == "domain" and 'id="domain-ok"' in page.text
    assert f"The application trusts {urlsplit(base).netloc}" in unescape(page.text)
    assert step_of(w.post("domain", {"submit": "Next"})) == "save"


def test_the_trusted_domain_follows_flask_public_url(service):
    app, base = service
    app.config["PUBLIC_URL"] = "https://paas.example.com"
    w = Wizard(base)
    to_keys(w, "qywx")
    page = qy_past_keys(w)
    assert 'id="expected-domain">paas.example.com<' in page.text and "domain-port" not in page.text


# --- step 6: save, re-entry ------------------------------------------------------------------------

def walk_mp_to_save(w: Wizard, base: str) -> None:
    to_callback(w)
    assert step_of(w.post("callback", {"public_url": base + CALLBACK, "test": "x"})) == "callback"
    assert step_of(w.post("callback", {"public_url": base + CALLBACK, "submit": "Next"})) == "save"


def test_saving_writes_the_configuration_once_with_an_audit_entry(service):
    app, base = service
    w = Wizard(base)
    walk_mp_to_save(w, base)
    summary = unescape(w.get("save").text)
    assert MP_APPID in summary and "••••••••cdef" in summary and MP_SECRET not in summary
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ChannelConfig)) == 0
    answer = w.post("save", {"submit": "Save"})
    assert step_of(answer) == "test" and "The configuration is saved." in answer.text
    with app.app_context():
        saved = channel.load()
        assert (saved.wx_type, saved.wx_app_id, saved.wx_secret, saved.wx_token) == ("mp", MP_APPID, MP_SECRET, TOKEN)
        assert (saved.wx_encoding_aes_key, saved.wx_encrypt_mode) == (KEY, "safe")
        assert saved.wx_template_id == TEMPLATE_CATEGORY_ID
        assert saved.wx_template_fields == {"message": "thing1", "date": "time2"}
        audit = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "channel.configure")).all()
        assert len(audit) == 1 and audit[0].actor == ADMIN[0] and MP_SECRET not in str(audit[0].detail)
    draft = draft_row(app)
    assert draft.state == "saved" and draft.checks["audit_id"] == audit[0].id
    # The draft steps are closed now; the wizard resumes at the test.
    assert step_of(w.get("keys")) == "test" and step_of(w.get("")) == "test"


def test_a_failing_final_check_saves_nothing(service):
    app, base = service
    w = Wizard(base)
    walk_mp_to_save(w, base)
    sim(base, "mp/account", {"secret": "f" * 32})  # the AppSecret was reset on WeChat's side meanwhile
    answer = w.post("save", {"submit": "Save"})
    assert step_of(answer) == "save" and "The AppSecret is wrong" in unescape(answer.text)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ChannelConfig)) == 0
    assert draft_row(app).state == "open"


def test_the_wizard_is_re_entrant_and_blank_secrets_keep_their_values(service):
    app, base = service
    with app.app_context():
        channel.save(channel.normalize({"wx_type": "qywx", **QY_KEYS}), actor="cli")
    w = Wizard(base)
    page = w.get("")
    assert step_of(page) == "channel" and 'id="prefilled"' in page.text
    assert re.search(r'<input checked[^>]*value="qywx"', page.text)
    to_keys(w, "qywx")
    keys = unescape(w.get("keys").text)
    assert f'value="{QY_CORPID}"' in keys and f'value="{QY_AGENTID}"' in keys and QY_CORPSECRET not in keys
    assert "Saved (ends in " + QY_CORPSECRET[-4:] + ")" in keys
    # Change only the message type; the Secret is left blank.
    sim(base, "qy/apps", {"agentid": QY_AGENTID, "redirect_domain": base.split("//")[1]})
    assert step_of(qy_past_keys(w, {**QY_KEYS, "wx_qy_corpsecret": "", "wx_qy_msgtype": "markdown"})) == "domain"
    assert step_of(w.post("domain", {"submit": "Next"})) == "save"
    assert "replaces the saved configuration of the same account" in unescape(w.get("save").text)
    assert step_of(w.post("save", {"submit": "Save"})) == "test"
    with app.app_context():
        saved = channel.load()
        assert saved.wx_qy_corpsecret == QY_CORPSECRET and saved.wx_qy_msgtype == "markdown"


def test_after_done_the_wizard_starts_again_from_the_configuration(service):
    app, base = service
    w = Wizard(base)
    walk_mp_to_save(w, base)
    w.post("save", {"submit": "Save"})
    # Opening the summary does not finish the wizard; the Finish button of the test step does.
    assert "WeChat is connected." in w.get("done").text and draft_row(app).state == "saved"
    done = unescape(finish(w).text)
    assert "WeChat is connected." in done and 'id="audit-entry"' in done and "channel.configure" in done
    assert MP_SECRET not in done and KEY not in done and "••••••••cdef" in done
    assert draft_row(app).state == "done"
    again = w.get("")
    assert step_of(again) == "channel" and 'id="prefilled"' in again.text
    assert draft_row(app).state == "done"  # still: looking stores nothing
    assert step_of(w.post("channel", {"wx_type": "mp"})) == "prerequisites"
    draft = draft_row(app)
    assert draft.state == "open" and draft.prefilled and draft.wx_type == "mp"
    assert draft.answers["wx_template_id"] == TEMPLATE_CATEGORY_ID


# --- step 6: bind yourself and send yourself a test message ------------------------------------------------

def finish(w: Wizard) -> requests.Response:
    """Press Finish on the test step."""
    page = w.get("test")
    assert 'id="finish"' in page.text
    token = re.search(r'name="finish-csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    answer = w.session.post(w.base + "/setup/wizard/done", data={"finish-csrf_token": token}, timeout=30)
    assert step_of(answer) == "done", answer.text
    return answer


def test_the_test_message_needs_a_binding_and_is_delivered_with_its_receipt(service):
    app, base = service
    w = Wizard(base)
    walk_mp_to_save(w, base)
    sim(base, "mp/server", {"url": base + CALLBACK, "token": TOKEN, "encoding_aes_key": KEY, "mode": "safe"})
    test_page = w.post("save", {"submit": "Save"})
    assert 'id="bind"' in test_page.text and 'data-start-url="/console/user_center/weixin/mp/get_qrcode/"' in test_page.text
    answer = w.post("test", {"submit": "Send"})
    assert "Bind your WeChat first" in answer.text
    # The administrator binds through the real flow: the QR code, scanned by the simulated phone.
    code = w.session.get(base + "/console/user_center/weixin/mp/get_qrcode/", timeout=10).json()["data"]
    assert sim(base, "mp/scan", {"openid": OPENID_ALICE, "url": code["url"]})["outcome"] == "reply"
    answer = w.post("test", {"submit": "Send"})
    assert step_of(answer) == "test" and 'data-status="sent"' in answer.text
    assert "Waiting for WeChat" in unescape(answer.text)
    delivered = [m for m in sim(base, "messages", method="GET")["messages"] if m["to"] == OPENID_ALICE]
    assert len(delivered) == 1 and delivered[0]["data"]["thing1"] == "Set-up works"
    status = w.json("test/status")["data"]
    assert status["finished"] is False
    # WeChat's delivery report arrives through the callback.
    sim(base, "mp/push", {"openid": OPENID_ALICE, "fields": {"MsgType": "event", "Event": "TEMPLATESENDJOBFINISH",
                                                            "MsgID": str(delivered[0]["msgid"]), "Status": "success"}})
    status = w.json("test/status")["data"]
    assert status["finished"] is True and "WeChat reports it delivered" in unescape(status["html"])


def test_a_failed_test_message_says_why(service):
    app, base = service
    with app.app_context():
        channel.save(channel.normalize({"wx_type": "qywx", **QY_KEYS}), actor="cli")
        with db.transaction() as session:
            user = session.scalar(select(User).where(User.username == ADMIN[0]))
            from webapp.models import Binding

            session.add(Binding(user_id=user.id, channel="qywx", account=QY_CORPID, wx_id="zhaoliu"))  # not visible
    w = Wizard(base)
    to_keys(w, "qywx")
    sim(base, "qy/apps", {"agentid": QY_AGENTID, "redirect_domain": base.split("//")[1]})
    qy_past_keys(w)
    w.post("domain", {"submit": "Next"})
    w.post("save", {"submit": "Save"})
    answer = w.post("test", {"submit": "Send"})
    html = unescape(answer.text)
    assert 'data-status="failed"' in html and "outside the app's visible range" in html and "errcode 81013" in html


def test_every_step_has_back_and_the_progress_indicator(service):
    app, base = service
    w = Wizard(base)
    walk_mp_to_save(w, base)
    for step in ("prerequisites", "keys", "template", "callback", "save"):
        page = w.get(step)
        assert step_of(page) == step
        assert 'id="wizard-back"' in page.text and 'id="wizard-progress"' in page.text, step
        assert 'aria-current="step"' in page.text
    assert "<script>" not in w.get("template").text  # no inline script: behaviour lives in static/js/wizard.js


# --- opening a page changes nothing ------------------------------------------------------------------

#: Every page and JSON view of the wizard a browser may GET.
PAGES = ("", "channel", "prerequisites", "keys", "template", "callback", "server", "domain", "save", "test", "done",
         f"template/preview?wx_template_id={TEMPLATE_CATEGORY_ID}&map_message=thing1", "callback/status",
         "test/status", "server/status", "generate/token", "generate/aes_key")


def database_dump(app) -> dict[str, list[str]]:
    """Every row of every table (sorted), to compare the database before and after."""
    from sqlalchemy import inspect

    with app.app_context():
        with app.extensions["database"].engine.connect() as connection:
            names = inspect(connection).get_table_names()
            return {name: sorted(repr(tuple(row)) for row in connection.execute(text(f'SELECT * FROM "{name}"')))
                    for name in names}


def assert_looking_changes_nothing(app, base: str, w: Wizard, state: str) -> None:
    """GET every page of the wizard (following redirects): no row changes, and WeChat is not called."""
    before, calls = database_dump(app), sim(base, "stats", method="GET")["calls"]
    for path in PAGES:
        for language in ("en", "zh-CN"):
            answer = w.session.get(f"{base}/setup/wizard/{path}", headers={"Accept-Language": language}, timeout=30)
            assert answer.status_code < 500, (state, path, answer.status_code)
    assert database_dump(app) == before, state
    assert sim(base, "stats", method="GET")["calls"] == calls, state


def wait_for_delivery_report(app, seconds: float = 15.0) -> None:
    """Wait until the simulated WeChat's delivery report (TEMPLATESENDJOBFINISH) has been stored."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with app.app_context():
            receipts = db.session.scalars(select(Delivery.receipt)).all()
        if receipts and all(receipts):
            return
        time.sleep(0.1)
    raise AssertionError(("the delivery report never reached the callback", receipts))


def test_no_page_of_the_official_account_flow_changes_anything(service):
    app, base = service
    w = Wizard(base)
    assert_looking_changes_nothing(app, base, w, "no draft")
    w.post("channel", {"wx_type": "mp"})
    assert_looking_changes_nothing(app, base, w, "channel chosen")
    calls = sim(base, "stats", method="GET")["calls"]
    check_prerequisites(w)
    assert sim(base, "stats", method="GET")["calls"] != calls  # the check's call to WeChat is counted
    assert_looking_changes_nothing(app, base, w, "prerequisites checked")
    assert step_of(w.post("prerequisites", {"submit": "Next"})) == "keys"
    assert_looking_changes_nothing(app, base, w, "at the keys")
    w.post("keys", {**MP_KEYS, "wx_secret": "f" * 32})
    assert_looking_changes_nothing(app, base, w, "keys refused")
    assert step_of(w.post("keys", MP_KEYS)) == "template"
    assert_looking_changes_nothing(app, base, w, "at the template")
    assert step_of(w.post("template", {**CATEGORY_MAPPING, "submit": "x"})) == "callback"
    assert_looking_changes_nothing(app, base, w, "at the callback")
    w.post("callback", {"public_url": base + CALLBACK, "test": "x"})
    sim(base, "mp/server", {"url": base + CALLBACK, "token": TOKEN, "encoding_aes_key": KEY, "mode": "safe"})
    assert_looking_changes_nothing(app, base, w, "callback tested and verified")
    assert step_of(w.post("callback", {"public_url": base + CALLBACK, "submit": "Next"})) == "save"
    assert_looking_changes_nothing(app, base, w, "at the save")
    assert step_of(w.post("save", {"submit": "Save"})) == "test"
    assert_looking_changes_nothing(app, base, w, "saved")
    code = w.session.get(base + "/console/user_center/weixin/mp/get_qrcode/", timeout=10).json()["data"]
    sim(base, "mp/scan", {"openid": OPENID_ALICE, "url": code["url"]})
    assert 'data-status="sent"' in w.post("test", {"submit": "Send"}).text
    # WeChat reports the delivery to the callback about a second later; that push is a write of its
    # own, so it must land before the pages are looked at.
    wait_for_delivery_report(app)
    assert_looking_changes_nothing(app, base, w, "test message sent")
    finish(w)
    assert_looking_changes_nothing(app, base, w, "done")
    # The configuration removed behind the wizard's back (by the CLI, say) while the draft is saved.
    assert step_of(w.post("channel", {"wx_type": "mp"})) == "prerequisites"
    with app.app_context():
        with db.transaction() as session:
            session.scalar(select(WizardDraft)).state = "saved"
            session.execute(text("DELETE FROM channel_config"))
    assert_looking_changes_nothing(app, base, w, "saved, configuration removed")


def test_no_page_of_the_wecom_flow_changes_anything(service):
    app, base = service
    w = Wizard(base)
    assert_looking_changes_nothing(app, base, w, "no draft")
    w.post("channel", {"wx_type": "qywx"})
    assert_looking_changes_nothing(app, base, w, "channel chosen")
    assert step_of(w.post("prerequisites", {"submit": "Next"})) == "keys"
    assert_looking_changes_nothing(app, base, w, "at the keys")
    assert step_of(qy_past_keys(w)) == "domain"
    assert_looking_changes_nothing(app, base, w, "trusted domain differs")
    sim(base, "qy/apps", {"agentid": QY_AGENTID, "redirect_domain": base.split("//")[1]})
    assert step_of(w.post("domain", {"submit": "Next"})) == "save"
    assert_looking_changes_nothing(app, base, w, "at the save")
    assert step_of(w.post("save", {"submit": "Save"})) == "test"
    assert_looking_changes_nothing(app, base, w, "saved")
    with app.app_context():
        with db.transaction() as session:
            from webapp.models import Binding

            user = session.scalar(select(User).where(User.username == ADMIN[0]))
            session.add(Binding(user_id=user.id, channel="qywx", account=QY_CORPID, wx_id="zhangsan"))
    assert 'data-status="sent"' in w.post("test", {"submit": "Send"}).text
    assert_looking_changes_nothing(app, base, w, "test message sent")
    finish(w)
    assert_looking_changes_nothing(app, base, w, "done")


def test_the_trusted_domain_page_shows_what_wecom_said_last(service):
    app, base = service
    w = Wizard(base)
    to_keys(w, "qywx")
    distrust(base)
    qy_past_keys(w)
    calls = sim(base, "stats", method="GET")["calls"]
    page = w.get("domain")
    assert 'id="domain-mismatch"' in page.text and "data-autocheck" not in page.text
    # WeCom's side changes: the page says so only once checked again (a POST).
    sim(base, "qy/apps", {"agentid": QY_AGENTID, "redirect_domain": base.split("//")[1]})
    assert 'id="domain-mismatch"' in w.get("domain").text
    assert sim(base, "stats", method="GET")["calls"] == calls
    assert 'id="domain-ok"' in w.post("domain", {"recheck": "Check again"}).text
    assert 'id="domain-ok"' in w.get("domain").text


def test_saving_writes_the_configuration_the_audit_entry_and_the_draft_or_nothing(service, monkeypatch):
    from webapp.setup import drafts

    app, base = service
    w = Wizard(base)
    walk_mp_to_save(w, base)

    def fails(*args, **kwargs):
        raise RuntimeError("the draft cannot be written")

    # The draft's update fails after the configuration and its audit entry were written in the transaction.
    monkeypatch.setattr(drafts, "record", fails)
    assert w.post("save", {"submit": "Save"}).status_code == 500
    monkeypatch.undo()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ChannelConfig)) == 0
        assert db.session.scalar(select(func.count()).select_from(AuditEntry)
                                 .where(AuditEntry.action == "channel.configure")) == 0
        assert channel.load() is None
    assert draft_row(app).state == "open"
    assert step_of(w.post("save", {"submit": "Save"})) == "test"
    with app.app_context():
        audit = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "channel.configure")).all()
        assert len(audit) == 1
    assert draft_row(app).checks["audit_id"] == audit[0].id
