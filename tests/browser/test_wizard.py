"""A newcomer walks the whole set-up wizard in Chromium against the simulator, for both channels,
and ends with a test message the simulated phone received."""
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.conftest import ADMIN
from tests.livesrv import serve
from tests.test_wizard import sim
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.simulator.world import MP_APPID, MP_SECRET, OPENID_ALICE, QY_AGENTID, QY_CORPID, QY_CORPSECRET
from webapp.wechat import validate_encoding_aes_key, validate_token

pytestmark = pytest.mark.browser
CALLBACK = "/console/user_center/weixin/mp/callback/"


@pytest.fixture
def service(make_app):
    """The service with its simulator, as ``make run`` serves it (no users yet)."""
    app = make_app(WEIXIN_SIMULATOR=True)
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy",
                          WEIXIN_QY_LOGIN_URL=base + "/simulator/qy/login",
                          WEIXIN_QY_OAUTH_URL=base + "/simulator/qy/oauth2/authorize")
        yield app, base


def add_admin(app):
    with app.test_request_context():
        create_user(*ADMIN, is_admin=True)
        db.session.remove()


def sign_in(page, base):
    page.goto(base + "/login?next=/setup/wizard/")
    page.get_by_label("User name").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + "/setup/wizard/channel")


def signed_in_at_keys_step(page, app, base, channel_name, prerequisites_ready):
    """An administrator signed in who chose ``channel_name`` and passed the prerequisites step
    (once ``prerequisites_ready()`` expects what must be on it first): the page is the keys step."""
    add_admin(app)
    sign_in(page, base)
    page.get_by_role("radio", name=channel_name).check()
    page.get_by_role("button", name="Next").click()
    prerequisites_ready()
    page.get_by_role("button", name="Next").click()
    expect(page).to_have_url(base + "/setup/wizard/keys")


def test_official_account_from_first_run_to_a_delivered_test_message(page, service):
    app, base = service
    # First run: the new administrator lands in the wizard, not in an empty console.
    page.goto(base + "/")
    page.get_by_label("Administrator user name").fill("root")
    page.get_by_label("Password", exact=True).fill("a-good-password")
    page.get_by_label("Password again").fill("a-good-password")
    page.get_by_role("button", name="Create the administrator").click()
    expect(page).to_have_url(base + "/setup/wizard/channel")
    expect(page.get_by_role("heading", name="Choose the channel")).to_be_visible()
    expect(page.locator("#comparison")).to_contain_text("IP白名单")

    # 1. Channel.
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text("Choose the Official Account or WeCom.")).to_be_visible()
    page.get_by_role("radio", name="WeChat Official Account (公众号)").check()
    page.get_by_role("button", name="Next").click()

    # 2. Prerequisites: this server reaches the (simulated) API; the browser tries WeChat's sites.
    expect(page).to_have_url(base + "/setup/wizard/prerequisites")
    expect(page.locator("#server-checks [data-probe-name=http]")).to_have_attribute("data-state", "ok")
    expect(page.locator("#browser-checks [data-probe-url]")).to_have_attribute("data-state", "failed", timeout=15_000)
    expect(page.locator("#browser-checks-note")).to_contain_text("only for a real account")
    page.get_by_role("button", name="Next").click()

    # 3. Keys: a wrong AppSecret first, then the right one; Token and EncodingAESKey generated.
    expect(page).to_have_url(base + "/setup/wizard/keys")
    page.get_by_label("AppID (开发者ID)").fill(MP_APPID)
    page.get_by_label("AppSecret (开发者密码)").fill("f" * 32)
    page.locator("[data-generate=token]").click()
    page.locator("[data-generate=aes_key]").click()
    expect(page.locator("#wx_encoding_aes_key")).to_have_value(lambda_length(43))
    token, key = page.locator("#wx_token").input_value(), page.locator("#wx_encoding_aes_key").input_value()
    assert validate_token(token) and len(token) == 32 and validate_encoding_aes_key(key)
    page.get_by_role("button", name="Check the keys and continue").click()
    expect(page.locator("#wx_secret ~ .invalid-feedback")).to_contain_text("The AppSecret is wrong")
    page.get_by_label("AppSecret (开发者密码)").fill(MP_SECRET)
    page.get_by_label("EncodingAESKey (消息加解密密钥)").fill(key)
    page.get_by_role("button", name="Check the keys and continue").click()

    # 4. Template: the category template, its suggested mapping, and the live preview.
    expect(page).to_have_url(base + "/setup/wizard/template")
    page.get_by_text("Alert notice").click()
    expect(page.locator("#map_message")).to_have_value("thing1")
    expect(page.locator("#map_date")).to_have_value("time2")
    expect(page.locator("#preview-card")).to_contain_text("The disk /data on w…")
    page.locator("#map_message").select_option("character_string3")
    expect(page.locator("#preview-warnings")).to_contain_text("only accepts character string")
    page.locator("#map_message").select_option("thing1")
    expect(page.locator("#preview-warnings")).not_to_contain_text("only accepts character string")
    page.get_by_text("Try it with your own text").click()
    page.locator("#sample_message").fill("Backup finished")
    expect(page.locator("#preview-card")).to_contain_text("Backup finished")
    page.get_by_role("button", name="Check the template and continue").click()

    # 5. Callback: the values to enter, the self-test, then WeChat's own check, shown live.
    expect(page).to_have_url(base + "/setup/wizard/callback")
    expect(page.locator("#dont-submit-yet")).to_be_visible()
    expect(page.locator("#value-url")).to_have_text(base + CALLBACK)
    expect(page.locator("#value-token")).to_have_text(token)
    expect(page.locator("#value-aes-key")).to_have_text(key)  # shown in full until the configuration is saved
    page.get_by_role("button", name="Test the callback").click()
    expect(page.locator("#callback-results [data-target=public]")).to_have_attribute("data-kind", "ok")
    expect(page.locator("#now-submit")).to_contain_text("Now press Submit")
    expect(page.locator("#wechat-verification")).to_contain_text("Waiting for WeChat's check")
    # The administrator presses Submit on WeChat's 服务器配置 page (the simulator's).
    check = sim(base, "mp/server", {"url": base + CALLBACK, "token": token, "encoding_aes_key": key, "mode": "safe"})
    assert check["ok"], check
    expect(page.locator("#wechat-verification")).to_contain_text("WeChat verified your server at", timeout=15_000)
    page.get_by_role("button", name="Next").click()

    # 6. Save, then bind yourself and send yourself a test message.
    expect(page).to_have_url(base + "/setup/wizard/save")
    expect(page.locator("#summary")).to_contain_text(MP_APPID)
    expect(page.locator("#summary")).to_contain_text("••••••••" + MP_SECRET[-4:])
    page.get_by_role("button", name="Save the configuration").click()
    expect(page).to_have_url(base + "/setup/wizard/test")
    expect(page.get_by_text("The configuration is saved.")).to_have_count(1)
    page.get_by_role("button", name="Show QR code").click()
    qr = page.locator("#qr")
    expect(qr).to_be_visible()
    pushed = sim(base, "mp/scan", {"openid": OPENID_ALICE, "url": qr.get_attribute("data-content")})
    assert "Bound" in pushed["shown"]
    expect(page.get_by_role("heading", name="Your WeChat is bound")).to_be_visible(timeout=15_000)
    page.get_by_role("button", name="Send me a test message").click()
    expect(page.locator("#test-result [data-status]")).to_have_attribute("data-status", "sent")
    delivered = [m for m in sim(base, "messages", method="GET")["messages"] if m["to"] == OPENID_ALICE]
    assert len(delivered) == 1 and delivered[0]["data"]["thing1"] == "Set-up works"
    expect(page.locator("#receipt")).to_contain_text("Waiting for WeChat's delivery receipt")
    sim(base, "mp/push", {"openid": OPENID_ALICE, "fields": {"MsgType": "event", "Event": "TEMPLATESENDJOBFINISH",
                                                            "MsgID": str(delivered[0]["msgid"]), "Status": "success"}})
    expect(page.locator("#receipt")).to_contain_text("WeChat reports it delivered", timeout=15_000)

    # 7. Done: the summary with secrets masked, the audit entry, the way to the console.
    page.get_by_role("button", name="Finish").click()
    expect(page).to_have_url(base + "/setup/wizard/done")
    expect(page.locator("#done")).to_contain_text("WeChat is connected.")
    expect(page.locator("#audit-entry")).to_contain_text("channel.configure")
    assert MP_SECRET not in page.content() and key not in page.content()
    page.locator("#to-console").click()
    expect(page).to_have_url(base + "/console/")
    # Re-entry: the console offers the wizard again, pre-filled from the configuration.
    page.get_by_role("link", name="Run the set-up wizard").click()
    expect(page).to_have_url(base + "/setup/wizard/channel")
    expect(page.locator("#prefilled")).to_be_visible()
    expect(page.get_by_role("radio", name="WeChat Official Account (公众号)")).to_be_checked()


def lambda_length(n):
    import re

    return re.compile("^[A-Za-z0-9]{%d}$" % n)


def test_wecom_with_a_wrong_trusted_domain_fixed_then_a_delivered_test_message(page, service):
    app, base = service
    signed_in_at_keys_step(page, app, base, "WeCom (企业微信)",
                           lambda: expect(page.locator("#browser-checks [data-probe-url]")).to_have_count(3))
    page.get_by_label("CorpID (企业ID)").fill(QY_CORPID)
    page.get_by_label("Secret of the application").fill(QY_CORPSECRET)
    page.get_by_label("AgentId of the application").fill("12")
    page.get_by_role("button", name="Check the keys and continue").click()
    expect(page.locator("#check-failure")).to_be_visible()
    page.get_by_label("AgentId of the application").fill(str(QY_AGENTID))
    page.get_by_label("Secret of the application").fill(QY_CORPSECRET)
    # WeCom's side was set up for another address (the simulator trusts its own by default).
    sim(base, "qy/apps", {"agentid": QY_AGENTID, "redirect_domain": "notify.example.com"})
    page.get_by_role("button", name="Check the keys and continue").click()

    # 4. The application's 接收消息 server: tested here first, then WeCom's own check (the simulator's Save).
    expect(page).to_have_url(base + "/setup/wizard/server")
    expect(page.locator("#dont-save-yet")).to_be_visible()
    page.get_by_role("button", name="Test the URL").click()
    expect(page.locator('#server-results [data-target="public"]')).to_have_attribute("data-kind", "ok")
    expect(page.locator("#now-save")).to_be_visible()
    token = page.locator("#wx_qy_token").input_value()
    key = page.locator("#wx_qy_encoding_aes_key").input_value()
    url = page.locator("#value-url").inner_text()
    assert sim(base, "qy/server", {"url": url, "token": token, "encoding_aes_key": key})["ok"]
    expect(page.locator("#wechat-verification")).to_have_attribute("data-state", "verified", timeout=15_000)
    page.get_by_role("button", name="Next").click()

    # 5. The trusted domain: the simulator's application trusts another one; the page says what to set.
    expect(page).to_have_url(base + "/setup/wizard/domain")
    domain = urlsplit(base).netloc
    expect(page.locator("#expected-domain")).to_have_text(domain)
    expect(page.locator("#domain-mismatch")).to_contain_text(f"Change the trusted domain to exactly {domain}")
    expect(page.locator("#visible-members")).to_contain_text("3 members can see the application")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#domain-mismatch")).to_be_visible()
    sim(base, "qy/apps", {"agentid": QY_AGENTID, "redirect_domain": domain})
    page.get_by_role("button", name="Check again").click()
    expect(page.locator("#domain-ok")).to_be_visible()
    page.get_by_role("button", name="Next").click()

    expect(page).to_have_url(base + "/setup/wizard/save")
    page.get_by_role("button", name="Save the configuration").click()
    expect(page).to_have_url(base + "/setup/wizard/test")

    # Bind through WeCom's (simulated) sign-in in a new tab; this page flips to "bound" by itself.
    page.get_by_role("button", name="Start").click()
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Sign in with WeCom in this browser").click()
    login = opened.value
    login.get_by_role("button", name="Zhang San — zhangsan").click()
    expect(login.get_by_role("heading", name="Your WeCom account is bound")).to_be_visible()
    login.close()
    expect(page.get_by_role("heading", name="Your WeChat is bound")).to_be_visible(timeout=15_000)
    expect(page.locator("#bound-id")).to_have_text("zhangsan")

    page.get_by_role("button", name="Send me a test message").click()
    expect(page.locator("#test-result [data-status]")).to_have_attribute("data-status", "sent")
    delivered = sim(base, "messages?channel=qy&to=zhangsan", method="GET")["messages"]
    assert len(delivered) == 1 and "Set-up works" in str(delivered[0])
    page.get_by_role("button", name="Finish").click()
    expect(page.locator("#done")).to_contain_text("WeChat is connected.")
    expect(page.locator("#summary")).to_contain_text(QY_CORPID)
    assert QY_CORPSECRET not in page.content()


def test_the_wizard_on_a_phone_and_in_chinese(browser, service):
    app, base = service
    add_admin(app)
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(base + "/login?next=/setup/wizard/")
        page.locator("#username").fill(ADMIN[0])
        page.locator("#password").fill(ADMIN[1])
        page.locator("#submit").click()
        expect(page).to_have_url(base + "/setup/wizard/channel")
        # The compact progress indicator, and nothing wider than the screen.
        expect(page.locator("#wizard-progress .progress")).to_be_visible()
        expect(page.locator("#comparison")).to_be_hidden()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator("#wx_type-0").check()
        page.locator("#submit").click()
        page.locator("#submit").click()
        page.locator("#wx_app_id").fill(MP_APPID)
        page.locator("#wx_secret").fill("f" * 32)
        page.locator("#wx_token").fill("Token123")
        page.locator("#wx_encrypt_mode-0").check()
        page.locator("#submit").click()
        # The catalogue's Chinese sentence for a Chinese page.
        expect(page.locator("#wx_secret ~ .invalid-feedback")).to_contain_text("AppSecret 错误")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_generate_waits_for_its_script(page, service):
    app, base = service
    signed_in_at_keys_step(page, app, base, "WeChat Official Account (公众号)", lambda: expect(
        page.locator("#server-checks [data-probe-name=http]")).to_have_attribute("data-state", "ok"))
    page.route("**/static/js/wizard.js", lambda route: route.abort())
    page.reload()
    # The script has not arrived: the buttons it drives cannot be pressed into nothing.
    expect(page.locator("[data-generate=token]")).to_be_disabled()
    page.unroute("**/static/js/wizard.js")
    page.reload()
    page.locator("[data-generate=token]").click()
    expect(page.locator("#wx_token")).to_have_value(lambda_length(32))
