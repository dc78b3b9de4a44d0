"""The wizard's WeCom server step over real HTTP: the application's 接收消息 server (Token, EncodingAESKey,
URL) tested through a reverse proxy before the administrator presses Save on WeCom's side, WeCom's own
check (the simulator's) shown live, the 企业可信IP rule explained, and the server saved (or left out)."""
from __future__ import annotations

import requests
from sqlalchemy import func, select

from tests.livesrv import serve
from tests.test_wizard import QY_KEYS, Wizard, service, sim, step_of, to_keys, unescape  # noqa: F401  (fixture)
from webapp import channel
from webapp.extensions import db
from webapp.models import Binding, ChannelConfig, User
from webapp.simulator.world import QY_AGENTID, QY_CORPID, QY_CORPSECRET
from webapp.wechat import validate_encoding_aes_key, validate_token

PATH = "/console/user_center/weixin/qy/callback/"


def forwarding_proxy(target: str, keep_query: bool = True):
    """A reverse proxy in front of the service: forwards every request to ``target`` (optionally
    dropping the query string, as a misconfigured one does)."""
    def app(environ, start_response):
        query = environ.get("QUERY_STRING", "") if keep_query else ""
        url = target + environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        answer = requests.request(environ["REQUEST_METHOD"], url, data=environ["wsgi.input"].read(length) or None,
                                  timeout=10, allow_redirects=False)
        start_response(f"{answer.status_code} PROXIED", [("Content-Type", answer.headers.get("Content-Type", "text/plain"))])
        return [answer.content]

    return app


def to_server(w: Wizard):
    to_keys(w, "qywx")
    page = w.post("keys", QY_KEYS)
    assert step_of(page) == "server", page.text
    return page


def field_value(html: str, name: str) -> str:
    import re

    match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html) or re.search(rf'value="([^"]*)"[^>]*name="{name}"', html)
    return match.group(1) if match else ""


def test_the_page_says_what_to_enter_and_explains_the_trusted_ip_rule_in_both_languages(service):
    app, base = service
    w = Wizard(base)
    html = unescape(to_server(w).text)
    assert base + PATH in html
    assert validate_token(field_value(html, "wx_qy_token"))
    assert validate_encoding_aes_key(field_value(html, "wx_qy_encoding_aes_key"))
    assert "应用管理 → 应用 → the application → 接收消息 → 设置API接收" in html and "企业可信IP" in html
    assert "60020" in html and "Do not press Save (保存) on WeCom's page yet." in html
    chinese = unescape(w.get("server", headers={"Accept-Language": "zh-CN"}).text)
    assert "应用管理 → 应用 → 该应用 → 接收消息 → 设置API接收" in chinese and "企业可信IP" in chinese
    assert "先不要在企业微信页面点“保存”" in chinese
    # Going on needs a passed test (or the server left out).
    answer = w.post("server", {"wx_qy_token": "Tok12345", "wx_qy_encoding_aes_key": "a" * 43,
                               "public_url": base + PATH, "submit": "Next"})
    assert step_of(answer) == "server" and "Test the URL first" in unescape(answer.text)


def test_tested_through_the_proxy_then_wecoms_own_check_then_saved_and_pushing(service):
    app, base = service
    w = Wizard(base)
    html = unescape(to_server(w).text)
    token, key = field_value(html, "wx_qy_token"), field_value(html, "wx_qy_encoding_aes_key")
    with serve(forwarding_proxy(base)) as proxy:
        public = proxy + PATH
        page = w.post("server", {"wx_qy_token": token, "wx_qy_encoding_aes_key": key, "public_url": public, "test": "x"})
        html = unescape(page.text)
        assert 'data-target="public" data-kind="ok"' in html and 'data-target="service" data-kind="ok"' in html
        assert "Now press Save (保存) on WeCom's 设置API接收 page." in html and "dont-save-yet" not in html
        # The key generated in this draft is still shown in full: it must be entered on WeCom's page.
        assert field_value(html, "wx_qy_encoding_aes_key") == key
        assert w.json("server/status")["data"] == {"state": "waiting"}
        # The administrator presses Save on WeCom's page (the simulator's), first with another Token.
        failed = sim(base, "qy/server", {"url": public, "token": "SomethingElse1", "encoding_aes_key": key})
        assert not failed["ok"]
        state = w.json("server/status")["data"]
        assert state["state"] == "failed" and "Token on WeCom's 设置API接收 page" in state["message"]
        passed = sim(base, "qy/server", {"url": public, "token": token, "encoding_aes_key": key})
        assert passed["ok"], passed
    assert w.json("server/status")["data"]["state"] == "verified"
    assert "WeCom verified your server at" in w.get("server").text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ChannelConfig)) == 0  # WeCom checked a draft
    # A Token changed after the test is not what WeCom checked: it needs a test of its own.
    changed = w.post("server", {"wx_qy_token": "Changed12345", "public_url": public, "submit": "Next"})
    assert step_of(changed) == "server" and "Test the URL first" in unescape(changed.text)
    assert step_of(w.post("server", {"wx_qy_token": token, "public_url": public, "submit": "Next"})) == "domain"
    assert step_of(w.post("domain", {"submit": "Next"})) == "save"
    assert step_of(w.post("save", {"submit": "Save"})) == "test"
    with app.app_context():
        configured = channel.load()
        row = db.session.scalar(select(ChannelConfig))
        assert configured.wx_qy_token == token and configured.wx_qy_encoding_aes_key == key
        assert token not in (row.wx_qy_token_enc or "") and key not in (row.wx_qy_encoding_aes_key_enc or "")
        # The saved key is shown masked from now on.
    sim(base, "qy/server", {"url": base + PATH, "token": token, "encoding_aes_key": key})
    with app.app_context():
        with db.transaction() as session:
            admin = session.scalar(select(User).where(User.username == "admin"))
            session.add(Binding(user_id=admin.id, channel="qywx", account=QY_CORPID, wx_id="lisi"))
    pushed = sim(base, "qy/contact/delete", {"userid": "lisi"})
    assert pushed["outcome"] == "success", pushed
    with app.app_context():
        assert not db.session.scalar(select(Binding.active).where(Binding.wx_id == "lisi"))


def test_a_proxy_that_drops_the_query_string_is_diagnosed(service):
    app, base = service
    w = Wizard(base)
    html = unescape(to_server(w).text)
    data = {"wx_qy_token": field_value(html, "wx_qy_token"),
            "wx_qy_encoding_aes_key": field_value(html, "wx_qy_encoding_aes_key")}
    with serve(forwarding_proxy(base, keep_query=False)) as proxy:
        page = w.post("server", {**data, "public_url": proxy + PATH, "test": "x"})
        html = unescape(page.text)
        assert 'data-target="public" data-kind="http"' in html and 'data-target="service" data-kind="ok"' in html
        assert "query string" in html and "now-save" not in html
        assert step_of(w.post("server", {**data, "public_url": proxy + PATH, "submit": "Next"})) == "server"


def test_the_server_may_be_left_out_and_a_saved_one_removed(service):
    app, base = service
    with app.app_context():
        channel.save(channel.normalize({"wx_type": "qywx", "wx_qy_corpid": QY_CORPID, "wx_qy_corpsecret": QY_CORPSECRET,
                                        "wx_qy_agentid": QY_AGENTID, "wx_qy_token": "Saved1234",
                                        "wx_qy_encoding_aes_key": "b" * 43}), actor="cli")
    w = Wizard(base)
    html = unescape(to_server(w).text)
    # Pre-filled from the configuration: the Token in full, the saved key masked only.
    assert field_value(html, "wx_qy_token") == "Saved1234" and "b" * 43 not in html and "bbbb" in html
    assert step_of(w.post("server", {"left_out": "y", "submit": "Next"})) == "domain"
    assert step_of(w.post("domain", {"submit": "Next"})) == "save"
    assert step_of(w.post("save", {"submit": "Save"})) == "test"
    with app.app_context():
        configured = channel.load()
        assert configured.wx_qy_token is None and configured.qy_crypto is None


def test_an_ip_refusal_at_the_keys_leads_to_the_server_first(service):
    """A new application without a trusted IP: WeCom refuses the keys check (60020), and accepts a trusted
    IP only after a verified 接收消息 server, so the keys page offers that step first."""
    app, base = service
    w = Wizard(base)
    to_keys(w, "qywx")
    assert w.post("server/first").url.endswith("/setup/wizard/keys")  # not while the keys pass or are unchecked
    sim(base, "settings", {"qy_ip_check": True})
    page = w.post("keys", QY_KEYS)
    assert step_of(page) == "keys" and 'id="server-first"' in page.text
    assert "verified 接收消息 server" in unescape(page.text)
    assert step_of(w.post("server/first")) == "server"
    sim(base, "settings", {"qy_ip_check": False})
