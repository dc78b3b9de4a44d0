"""The wizard and the simulator as a newcomer meets them, in Chromium: the simulator's server form filled
with one button, instructions that go once they no longer apply, the template preview on coming back,
the simulated phone read top to bottom, the scan page without protocol words, WeCom on any port."""
from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from tests.conftest import ADMIN
from tests.test_wizard import CALLBACK, KEY, TOKEN, Wizard, service, sim, to_callback, to_keys  # noqa: F401
from webapp.simulator.world import (OPENID_ALICE, QY_AGENTID, QY_CORPID, QY_CORPSECRET, TEMPLATE_CATEGORY_ID)

pytestmark = pytest.mark.browser


def sign_in(page, base: str, then: str) -> None:
    """Sign in as the administrator, then open ``then``."""
    page.goto(base + "/login")
    page.get_by_label("User name").fill(ADMIN[0])
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(base + "/login")
    page.goto(base + then)


def test_the_callback_step_fills_the_simulators_form_and_its_instructions_follow_wechat(page, service):
    app, base = service
    to_callback(Wizard(base))  # the administrator's draft (one per administrator, whichever browser)
    sign_in(page, base, "/setup/wizard/callback")
    expect(page.locator("#dont-submit-yet")).to_be_visible()
    expect(page.locator("#value-aes-key")).to_have_text(KEY)
    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Fill in the simulator's form").click()
    simulator = opened.value
    expect(simulator.locator("#server-form-filled")).to_be_visible()
    form = simulator.locator("#server-form")
    expect(form.locator("input[name=url]")).to_have_value(base + CALLBACK)
    expect(form.locator("input[name=token]")).to_have_value(TOKEN)
    expect(form.locator("input[name=encoding_aes_key]")).to_have_value(KEY)
    expect(form.locator("input[name=mode][value=safe]")).to_be_checked()

    page.get_by_role("button", name="Test the callback").click()
    expect(page.locator("#now-submit")).to_be_visible()
    expect(page.locator("#dont-submit-yet")).to_have_count(0)
    # Submit in the simulator (WeChat's 服务器配置 page), as filled in: the wizard sees WeChat's check live.
    form.get_by_role("button", name="Submit").click()
    expect(simulator.locator("#server-state")).to_contain_text("enabled")
    expect(page.locator("#wechat-verification")).to_contain_text("WeChat verified your server at", timeout=15_000)
    expect(page.locator("#now-submit")).to_be_hidden()


def test_bind_first_goes_once_the_qr_code_shows_and_finish_is_the_one_way_on(page, service):
    app, base = service
    w = Wizard(base)
    to_callback(w)
    w.post("callback", {"public_url": base + CALLBACK, "forwarded": "y", "submit": "Next"})
    w.post("save", {"submit": "Save"})
    sign_in(page, base, "/setup/wizard/test")
    expect(page.get_by_text("The configuration is saved.")).to_have_count(1)
    expect(page.locator("#wizard-next")).to_have_count(0)
    expect(page.get_by_role("button", name="Finish")).to_be_visible()
    page.get_by_role("button", name="Send me a test message").click()
    expect(page.locator("#test-error")).to_contain_text("Bind your WeChat first")
    page.get_by_role("button", name="Show QR code").click()
    expect(page.locator("#qr")).to_be_visible()
    expect(page.locator("#test-error")).to_be_hidden()


def test_the_template_step_shows_the_chosen_preview_and_the_heading_template(page, service):
    app, base = service
    to_callback(Wizard(base))
    sign_in(page, base, "/setup/wizard/template")
    expect(page.locator("#preview-card")).to_be_visible()
    expect(page.locator("#preview-empty")).to_have_count(0)
    page.get_by_text("Service alert").click()
    expect(page.locator("#map_heading")).to_have_value("thing1")
    expect(page.locator("#map_message")).to_have_value("thing2")
    expect(page.locator("#map_date")).to_have_value("time3")
    page.get_by_text("Try it with your own text").click()
    page.locator("#sample_heading").fill("Disk alert")
    expect(page.locator("#preview-card [data-key=thing1]")).to_contain_text("Disk alert")


def test_wecom_passes_the_trusted_domain_on_any_port_and_says_what_a_text_card_needs(page, service):
    app, base = service
    to_keys(Wizard(base), "qywx")
    sign_in(page, base, "/setup/wizard/keys")
    expect(page.locator("#textcard-note")).to_contain_text("goes out as plain text")
    page.get_by_label("CorpID (企业ID)").fill(QY_CORPID)
    page.get_by_label("Secret of the application").fill(QY_CORPSECRET)
    page.get_by_label("AgentId of the application").fill(str(QY_AGENTID))
    page.get_by_role("button", name="Check the keys and continue").click()
    expect(page).not_to_have_url(base + "/setup/wizard/keys")
    if page.url.endswith("/setup/wizard/server"):  # the application's 接收消息 server, left out here
        page.locator("#left_out").check()
        page.get_by_role("button", name="Next").click()
    expect(page).to_have_url(base + "/setup/wizard/domain")
    expect(page.locator("#domain-ok")).to_be_visible()  # nothing set on WeCom's (the simulator's) side


def send_alerts(base: str, texts: list[str]) -> None:
    """Template messages to Alice straight through the simulated API (the category template, no Alert ID)."""
    token = requests.post(f"{base}/simulator/mp/cgi-bin/stable_token", json={
        "grant_type": "client_credential", "appid": "wx0123456789abcdef",
        "secret": "0123456789abcdef0123456789abcdef"}, timeout=10).json()["access_token"]
    for text in texts:
        answer = requests.post(f"{base}/simulator/mp/cgi-bin/message/template/send", params={"access_token": token},
                               json={"touser": OPENID_ALICE, "template_id": TEMPLATE_CATEGORY_ID,
                                     "data": {"thing1": {"value": text}, "time2": {"value": "2026-12-05 10:00"}}},
                               timeout=10).json()
        assert answer["errcode"] == 0, answer


def test_the_simulated_phone_shows_the_newest_message_at_the_bottom(page, service):
    app, base = service
    send_alerts(base, [f"Alert number {n}" for n in range(1, 13)])
    page.goto(f"{base}/simulator/phone/{OPENID_ALICE}")
    cards = page.locator("#feed .card-mp")
    expect(cards).to_have_count(12)
    expect(cards.first).to_contain_text("Alert number 1")
    expect(cards.last).to_contain_text("Alert number 12")
    expect(page.locator("#feed")).not_to_contain_text("Alert ID")  # an empty row is not shown
    at_bottom = "el => el.scrollHeight - el.scrollTop - el.clientHeight < 24"
    feed = page.locator("#feed")
    assert feed.evaluate("el => el.scrollHeight > el.clientHeight")  # long enough to scroll
    assert feed.evaluate(at_bottom)
    # A new message arrives while the page is open: it appears at the bottom, still in view.
    send_alerts(base, ["Alert number 13"])
    expect(page.locator("#feed .card-mp").last).to_contain_text("Alert number 13", timeout=15_000)
    page.wait_for_function(f"({at_bottom})(document.getElementById('feed'))")


def test_the_scan_page_explains_itself_and_keeps_the_protocol_in_details(page, service):
    app, base = service
    page.goto(base + "/simulator/scan")
    intro = page.locator(".sim-page > p.muted").first
    expect(intro).to_contain_text("Choose who scans")
    details = page.locator(".sim-page > details.scan-details")
    expect(details.locator("p")).to_be_hidden()
    for word in ("EventKey", "qrscene_", "Ticket"):
        assert word not in intro.inner_text()
    details.get_by_text("Technical details").click()
    expect(details.locator("p")).to_contain_text("qrscene_")
