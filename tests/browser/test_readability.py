"""Readability in Chromium: moments in the reader's own time zone, the audit log in sentences, and a
status page for people behind the footer's "Service status" (the JSON stays at /healthz).

The browser runs in Asia/Shanghai (UTC+8, no daylight saving) so that a page still showing the
server's UTC text, or converting to the wrong zone, cannot pass by accident.
"""
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.api_support import Api, bind
from tests.binding_support import connect_mp
from tests.browser.conftest import watch_csp
from tests.browser.test_users_page import sign_in
from tests.conftest import ADMIN
from tests.livesrv import serve
from webapp.api.apps import create_app_credentials
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.simulator.world import MP_APPID, OPENID_ALICE

pytestmark = pytest.mark.browser
ZONE = "Asia/Shanghai"
BODY = {"receiver__username": ADMIN[0], "data": {"heading": "Disk full", "message": "db1 /var is 97% full"}}
# Audit entries the set-up below writes, with what the log says of each, in both languages.
SENTENCES = {
    "user.create": ("Created a user", "创建了一个用户"),
    "channel.configure": ("Saved the WeChat channel configuration", "保存了微信渠道配置"),
    "api_app.create": ("Registered an application that may send messages", "注册了一个可以发送消息的应用"),
}


@pytest.fixture
def service(make_app):
    """The service with its simulator over HTTP: an administrator (bound), the Official Account, a calling
    application. The test's own address is kept out of the metrics networks, so that only an
    administrator sees the details of the service's health, as on a real server."""
    app = make_app(WEIXIN_SIMULATOR=True, METRICS_ALLOW_FROM="203.0.113.0/24")
    with app.test_request_context():
        create_user(*ADMIN, is_admin=True)
        _, secret = create_app_credentials("bk_monitor")
        db.session.remove()
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy", PUBLIC_URL=base)
        connect_mp(app, base)
        bind(app, ADMIN[0], "mp", MP_APPID, OPENID_ALICE)
        yield app, base, Api(base, "bk_monitor", secret)


@pytest.fixture
def shanghai(browser, request):
    """A tab whose browser believes it is in Shanghai (its clock and Intl time zone), English first."""
    context = browser.new_context(locale="en-US", timezone_id=ZONE, viewport={"width": 1280, "height": 800})
    violations = watch_csp(context)
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        tab.screenshot(path=f"test-artifacts/{request.node.name}.png", full_page=True)
    context.close()
    assert not violations, violations


def utc_moment(time_element) -> datetime:
    return datetime.fromisoformat(time_element.get_attribute("datetime").replace("Z", "+00:00"))


def test_moments_are_shown_in_the_readers_time_zone(shanghai, service):
    app, base, api = service
    page = shanghai
    sign_in(page, base, *ADMIN)
    assert api.send(BODY).json()["result"] is True

    # The audit log: each moment as "today 14:16:09" in the reader's zone, the full moment in its tooltip.
    page.goto(base + "/console/audit/")
    moment = page.locator("#audit-table tbody tr time").first
    expect(moment).not_to_contain_text("UTC")
    served = re.search(r"<time[^>]*>([^<]*)</time>", page.request.get(base + "/console/audit/").text()).group(1)
    assert served.endswith(" UTC")  # without the script, the page says which zone it means
    at = utc_moment(moment).astimezone(ZoneInfo(ZONE))
    assert at.utcoffset().total_seconds() == 8 * 3600
    assert moment.inner_text() == f"today {at:%H:%M:%S}", (moment.inner_text(), served)
    assert moment.inner_text() != served
    assert f"{at:%B} {at.day}, {at.year}" in moment.get_attribute("title") and "GMT+8" in moment.get_attribute("title")

    # The delivery log, the same way.
    page.goto(base + "/console/deliveries/")
    moment = page.locator("time[data-local]").first
    at = utc_moment(moment).astimezone(ZoneInfo(ZONE))
    expect(moment).to_have_text(f"today {at:%H:%M:%S}")

    # The overview's chart labels each hour by its start on the reader's clock: the last bar is this hour.
    page.goto(base + "/console/")
    label = page.locator(".chart text[data-time]").last
    start = datetime.fromisoformat(label.get_attribute("data-time").replace("Z", "+00:00")).astimezone(ZoneInfo(ZONE))
    expect(label).to_have_text(f"{start:%H}:00")
    assert f"{start:%H}" != f"{start.astimezone(ZoneInfo('UTC')):%H}"

    # In Chinese, the same moment reads 今天.
    page.goto(base + "/language/zh?next=/console/audit/")
    expect(page.locator("#audit-table tbody tr time").first).to_contain_text("今天")


def test_the_audit_log_speaks_in_sentences_in_both_languages(shanghai, service):
    app, base, api = service
    page = shanghai
    sign_in(page, base, *ADMIN)
    for language, index in (("en", 0), ("zh", 1)):
        page.goto(f"{base}/language/{language}?next=/console/audit/")
        rows = page.locator("#audit-table tbody tr")
        expect(rows.first).to_be_visible()
        seen = set()
        for i in range(rows.count()):
            row = rows.nth(i)
            action = row.get_attribute("data-action")
            said = row.locator(".audit-sentence")
            expect(said).to_have_count(1)  # every code written has a sentence, none shows as a bare code
            if action in SENTENCES:
                expect(said).to_have_text(SENTENCES[action][index])
                seen.add(action)
        assert seen == set(SENTENCES), (language, seen)
        # The overview's "Recent changes" says the same sentences.
        page.goto(base + "/console/")
        recent = page.get_by_text(SENTENCES["channel.configure"][index])
        expect(recent).to_be_visible()


def test_the_footer_opens_the_status_page_and_healthz_stays_json(shanghai, service):
    app, base, api = service
    page = shanghai
    health = page.request.get(base + "/healthz")
    assert health.headers["content-type"].startswith("application/json") and "status" in health.json()
    assert "database" not in health.json()  # the details are for administrators

    # Someone not signed in: the overall state in words, and where administrators see more.
    page.goto(base + "/login")
    page.locator("footer #status-link").click()
    expect(page).to_have_url(base + "/status")
    expect(page.get_by_role("heading", name="Service status", level=1)).to_be_visible()
    expect(page.locator("#overall")).to_have_attribute("data-status", health.json()["status"])
    expect(page.locator("#details-hint")).to_be_visible()
    assert not page.locator("body").inner_text().lstrip().startswith("{")

    # An administrator: each part, with its state; the checked time on the reader's clock.
    sign_in(page, base, *ADMIN)
    page.locator("footer #status-link").click()
    expect(page).to_have_url(base + "/status")
    parts = page.locator("#status-parts [data-part]")
    expect(parts.first).to_be_visible()
    assert {"database", "scheduler", "token-mp"} <= {parts.nth(i).get_attribute("data-part") for i in range(parts.count())}
    expect(page.locator('[data-part="database"] .status-badge')).to_have_text("OK")
    checked = page.locator("#overall time")
    expect(checked).not_to_contain_text("UTC")
    at = utc_moment(checked).astimezone(ZoneInfo(ZONE))
    expect(checked).to_have_text(f"today {at:%H:%M:%S}")
    expect(page.get_by_text("/healthz")).to_be_visible()
    # The same page in Chinese.
    page.goto(base + "/language/zh?next=/status")
    expect(page.get_by_role("heading", name="服务状态", level=1)).to_be_visible()
    # And the JSON is still there for monitoring, now with the details an administrator may see.
    answer = page.request.get(base + "/healthz")
    assert answer.status == health.status and "database" in answer.json()
