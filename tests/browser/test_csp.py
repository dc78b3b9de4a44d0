"""Every page works under the Content-Security-Policy: no inline script, handler or style is blocked.

The ``page`` fixture (tests/browser/conftest.py) records violations reported by Chromium, both the
``securitypolicyviolation`` DOM events and the console messages; this test visits each main page,
lets its scripts run, and checks the record after each one, so the failure names the page.
"""
import pytest
from playwright.sync_api import expect

from tests.binding_support import connect_mp
from tests.browser.test_wizard import service  # noqa: F401  (the service with its simulator, no users yet)
from tests.conftest import ADMIN, USER
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.models import Delivery, Message
from webapp.simulator.world import MP_APPID, OPENID_ALICE

pytestmark = pytest.mark.browser


def visit(page, url: str, *, settle: str | None = None) -> None:
    """Open ``url``, wait for its scripts (and ``settle``, a selector, when given), and check the record."""
    response = page.goto(url)
    assert response is not None and response.status < 500, url
    assert "script-src 'self'" in response.headers["content-security-policy"], url
    page.wait_for_load_state("networkidle")
    if settle:
        expect(page.locator(settle).first).to_be_visible()
    assert not page.csp_violations, f"{url}: {page.csp_violations}"


def sign_in(page, base: str, username: str, password: str) -> None:
    """Sign in through the login page (itself checked)."""
    visit(page, base + "/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#logout")).to_be_attached()  # signed in: the answer arrived, not just the POST
    page.wait_for_load_state("networkidle")
    assert not page.csp_violations, page.csp_violations


def test_first_run_and_wizard_pages_keep_the_policy(page, service):
    _, base = service
    visit(page, base + "/setup/", settle="#username")
    page.get_by_label("Administrator user name").fill(ADMIN[0])
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password again").fill("short")
    page.get_by_role("button", name="Create the administrator").click()
    expect(page.get_by_text("at least 10 characters").first).to_be_visible()  # the error page state too
    page.get_by_label("Password", exact=True).fill(ADMIN[1])
    page.get_by_label("Password again").fill(ADMIN[1])
    page.get_by_role("button", name="Create the administrator").click()
    expect(page).to_have_url(base + "/setup/wizard/channel")
    assert not page.csp_violations, page.csp_violations
    # The wizard's first steps (the whole walk is tests/browser/test_wizard.py, under the same watch).
    page.get_by_role("radio", name="WeChat Official Account (公众号)").check()
    page.get_by_role("button", name="Next").click()
    page.wait_for_load_state("networkidle")
    visit(page, page.url)
    for step in ("channel", "prerequisites"):
        visit(page, f"{base}/setup/wizard/{step}")
    # Only the prerequisites step may reach beyond this service: its script probes WeChat's sites.
    policy = page.goto(f"{base}/setup/wizard/prerequisites").headers["content-security-policy"]
    assert policy.endswith("connect-src 'self' https://mp.weixin.qq.com")
    assert "connect-src" not in page.goto(f"{base}/setup/wizard/channel").headers["content-security-policy"]


def test_signed_in_pages_keep_the_policy(page, service):
    app, base = service
    app.config["PUBLIC_URL"] = base  # message detail links are made only with a public URL
    with app.test_request_context():
        create_user(*ADMIN, is_admin=True)
        create_user(*USER)
        message = Message(request_id="csp", channel="mp", account=MP_APPID, heading="Disk full",
                          body="db1: /var is 97% full\nsecond line")
        message.deliveries.append(Delivery(receiver=OPENID_ALICE, status="failed", errcode=43004, errmsg="require subscribe"))
        db.session.add(message)
        db.session.commit()
        from webapp.delivery.links import detail_url

        detail, public_id = detail_url(message), message.public_id
        db.session.remove()
    connect_mp(app, base, "safe")

    # An ordinary user: home, the bind page with its QR code (a data: image), the password page.
    sign_in(page, base, *USER)
    visit(page, base + "/")
    visit(page, base + "/console/user_center/weixin/")
    page.get_by_role("button", name="Show QR code").click()
    expect(page.locator("#qr")).to_be_visible()
    assert page.locator("#qr").get_attribute("src").startswith("data:image/svg+xml")
    page.wait_for_timeout(500)
    assert not page.csp_violations, page.csp_violations
    visit(page, base + "/account/password", settle="#current")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()  # the POST answered, not just sent

    # The message detail page behind its signed link, and an error page.
    visit(page, detail, settle=".message-body")
    visit(page, base + "/no/such/page")

    # The administrator: every console page, and the simulator's pages.
    sign_in(page, base, *ADMIN)
    for path in ("/console/", "/console/apps/", "/console/deliveries/", "/console/bindings/", "/console/audit/",
                 f"/console/messages/{public_id}"):
        visit(page, base + path)
    visit(page, base + "/simulator/")
    visit(page, f"{base}/simulator/phone/{OPENID_ALICE}")
    visit(page, f"{base}/simulator/qy/login?login_type=CorpApp&appid=nobody&agentid=1&redirect_uri=x")


def test_the_watch_sees_inline_script_and_style(page):
    """The detector itself: a page under the policy with an inline script and style is reported."""
    from webapp.security import CONTENT_SECURITY_POLICY

    html = '<!doctype html><p style="color: red" onclick="x()">hi</p><script>document.title = "ran"</script>'
    page.route("http://csp.test/", lambda route: route.fulfill(
        body=html, content_type="text/html", headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY}))
    page.goto("http://csp.test/")
    page.wait_for_timeout(300)
    assert page.title() != "ran"
    seen = " ".join(page.csp_violations)
    assert "script-src" in seen and "style-src" in seen
    page.csp_violations.clear()  # expected here: the fixture must not fail this test for them
