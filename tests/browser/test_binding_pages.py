"""People bind their WeChat through the real page in Chromium; the page flips to "bound" by itself."""
import re

import pytest
import requests
from playwright.sync_api import expect

from tests.binding_support import connect_mp, connect_qy
from tests.conftest import USER
from tests.livesrv import serve
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.simulator.world import OPENID_NOT_FOLLOWING

pytestmark = pytest.mark.browser
BIND_PAGE = "/console/user_center/weixin/"


@pytest.fixture
def service(make_app):
    app = make_app(WEIXIN_SIMULATOR=True)
    with app.test_request_context():
        create_user(*USER)
        create_user("root", "granite-peak-8", is_admin=True)
        db.session.remove()
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy",
                          WEIXIN_QY_LOGIN_URL=base + "/simulator/qy/login",
                          WEIXIN_QY_OAUTH_URL=base + "/simulator/qy/oauth2/authorize", PUBLIC_URL=base)
        yield app, base


def sign_in(page, base):
    page.goto(base + "/login?next=" + BIND_PAGE)
    page.get_by_label("User name").fill(USER[0])
    page.get_by_label("Password").fill(USER[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(base + BIND_PAGE)


def test_official_account_binding_flips_to_bound_and_unbinds(page, service):
    app, base = service
    connect_mp(app, base, "safe")
    sign_in(page, base)
    expect(page.get_by_role("heading", name="How it works")).to_be_visible()
    page.get_by_role("button", name="Show QR code").click()
    qr = page.locator("#qr")
    expect(qr).to_be_visible()
    assert qr.get_attribute("src").startswith("data:image/svg+xml")
    expect(page.locator("#countdown")).to_contain_text("Valid for 9:5")
    # The person scans the code with WeChat (the simulated phone), and follows the account.
    content = qr.get_attribute("data-content")
    pushed = requests.post(base + "/simulator/_control/mp/scan", json={"openid": OPENID_NOT_FOLLOWING, "url": content}, timeout=20).json()
    assert "Bound" in pushed["shown"]
    # No reload: the page learns it by itself.
    expect(page.get_by_role("heading", name="Your WeChat is bound")).to_be_visible(timeout=15_000)
    expect(page.locator("#bound-id")).to_have_text(OPENID_NOT_FOLLOWING[:4] + "…" + OPENID_NOT_FOLLOWING[-4:])

    page.get_by_role("button", name="Unbind").click()
    expect(page.get_by_text("Your WeChat is unbound")).to_be_visible()
    expect(page.get_by_role("button", name="Show QR code")).to_be_visible()


def test_an_expired_code_offers_a_new_one(page, service):
    app, base = service
    app.config["BIND_QR_EXPIRE_SECONDS"] = 2
    connect_mp(app, base)
    sign_in(page, base)
    page.get_by_role("button", name="Show QR code").click()
    expect(page.get_by_role("button", name="Get a new code")).to_be_visible(timeout=10_000)
    expect(page.locator("#attempt-status")).to_contain_text("expired")
    page.get_by_role("button", name="Get a new code").click()
    expect(page.locator("#attempt-status")).to_contain_text("Waiting for your scan")


def test_the_page_in_chinese_on_a_phone(browser, service):
    app, base = service
    connect_mp(app, base)
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto(base + "/login?next=" + BIND_PAGE)
        page.locator("#username").fill(USER[0])
        page.locator("#password").fill(USER[1])
        page.locator("#submit").click()
        expect(page.get_by_role("heading", name="绑定微信")).to_be_visible()
        page.locator("#start").click()
        expect(page.locator("#qr")).to_be_visible()
        box = page.locator("#qr").bounding_box()
        assert box["width"] <= 390
    finally:
        context.close()


def trust_domain(base):
    from urllib.parse import urlsplit

    from webapp.simulator.world import QY_AGENTID

    requests.post(base + "/simulator/_control/qy/apps", json={"agentid": QY_AGENTID, "redirect_domain": urlsplit(base).netloc},
                  timeout=5).raise_for_status()


def test_wecom_sign_in_in_this_browser_binds(page, service):
    app, base = service
    connect_qy(app)
    trust_domain(base)
    sign_in(page, base)
    page.get_by_role("button", name="Start").click()
    page.get_by_role("link", name="Sign in with WeCom in this browser").click()
    # WeCom's (simulated) sign-in: choose who you are.
    page.get_by_role("button", name="Zhang San — zhangsan").click()
    expect(page.get_by_role("heading", name="Your WeCom account is bound")).to_be_visible()
    page.get_by_role("link", name="Back to Bind WeChat").click()
    expect(page.locator("#bound-id")).to_have_text("zhangsan")
    expect(page.get_by_role("button", name="Unbind")).to_be_visible()
    page.get_by_role("button", name="Unbind").click()
    expect(page.get_by_text("Your WeChat is unbound")).to_be_visible()


def test_wecom_app_on_the_phone_and_the_page_flips_by_itself(browser, page, service):
    app, base = service
    connect_qy(app)
    trust_domain(base)
    sign_in(page, base)
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#qr")).to_have_attribute("data-content", re.compile("wechat_redirect"))
    in_app_url = page.locator("#qr").get_attribute("data-content")
    assert "#wechat_redirect" in in_app_url
    # The phone: the WeCom app opens the code's address in its own browser, not signed in here.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US").new_page()
    try:
        phone.goto(in_app_url)
        phone.get_by_role("button", name="Li Si — lisi").click()
        expect(phone.get_by_text("updates by itself")).to_be_visible()
    finally:
        phone.context.close()
    expect(page.get_by_role("heading", name="Your WeChat is bound")).to_be_visible(timeout=15_000)
    expect(page.locator("#bound-id")).to_have_text("lisi")


def test_wecom_refuses_a_personal_wechat(page, service):
    app, base = service
    connect_qy(app)
    trust_domain(base)
    sign_in(page, base)
    page.get_by_role("button", name="Start").click()
    page.get_by_role("link", name="Sign in with WeCom in this browser").click()
    page.get_by_role("button", name="personal WeChat user").click()
    expect(page.get_by_role("heading", name="Nothing was bound")).to_be_visible()
    expect(page.get_by_text("personal WeChat")).to_be_visible()


def test_start_cannot_be_pressed_before_its_script_runs(browser, page, service):
    app, base = service
    connect_qy(app)
    trust_domain(base)
    # A slow network: the page is drawn, its script has not arrived. A press now would be lost.
    page.route("**/static/js/bind.js", lambda route: route.abort())
    sign_in(page, base)
    expect(page.get_by_role("button", name="Start")).to_be_disabled()
    page.unroute("**/static/js/bind.js")
    page.reload()
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("link", name="Sign in with WeCom in this browser")).to_be_visible()
    # Without JavaScript the page says what to do instead of offering a button that does nothing.
    context = browser.new_context(java_script_enabled=False, locale="en-US")
    try:
        no_script = context.new_page()
        sign_in(no_script, base)
        expect(no_script.get_by_role("button", name="Start")).to_be_disabled()
        # (Chromium driven with scripts off keeps <noscript> as text rather than drawing it.)
        assert "This page needs JavaScript to draw the code" in no_script.locator("#unbound-view noscript").text_content()
    finally:
        context.close()
