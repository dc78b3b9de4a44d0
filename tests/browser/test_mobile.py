"""Every page works on a phone: at 360 and 390 px wide, in English and Chinese, nothing runs off the
screen sideways and no label is squeezed into a column of single characters; and every page speaks
one visual language (the service's green, never Bootstrap's default blue).

One walk through the service as its people meet it (first run, the set-up wizard, the console with a
few real deliveries sent through the send API, the bind page, the simulator's pages) checks each page
at both widths in both languages. A page passes when the document is no wider than the window and
every visible element lies inside the window, unless it sits in a box that scrolls (or clips) on its
own, as a wide table in its own scrolling frame does.
"""
from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
import requests
from playwright.sync_api import expect

from tests.api_support import Api, bind
from tests.binding_support import CALLBACK, KEY, TOKEN, connect_mp
from tests.conftest import ADMIN, USER
from tests.livesrv import serve
from webapp.api.apps import create_app_credentials
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.simulator.world import MP_APPID, MP_SECRET, OPENID_ALICE, OPENID_BOB, OPENID_NOT_FOLLOWING

pytestmark = pytest.mark.browser

WIDTHS = (360, 390)
LANGUAGES = ("en", "zh")

# What runs off the screen, and what is squeezed into stacked characters, on the page as it is now.
# An element counts as contained when an ancestor scrolls or clips its own content (overflow-x other
# than "visible"): a wide table in its own scrolling frame is fine, a table that widens the page is not.
LAYOUT_PROBLEMS = r"""
(width) => {
  const found = [];
  const root = document.documentElement;
  const describe = (el) => {
    let name = el.tagName.toLowerCase();
    if (el.id) name += "#" + el.id;
    if (typeof el.className === "string" && el.className.trim()) name += "." + el.className.trim().split(/\s+/).slice(0, 3).join(".");
    const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 40);
    return text ? `${name} "${text}"` : name;
  };
  // Whether ``el`` (or, with ``self``, el itself) sits in a box that scrolls or clips sideways on its own.
  const contained = (el, self) => {
    for (let up = self ? el : el.parentElement; up && up !== document.body; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== "visible") return true;
    }
    return false;
  };
  const shown = (el) => {
    const style = getComputedStyle(el);
    return style.display !== "none" && style.visibility !== "hidden";
  };
  // The window as the page was asked to fit it: a phone browser widens its layout to fit what overflows.
  if (root.scrollWidth > width) found.push(`the page is ${root.scrollWidth}px wide`);
  for (const el of document.body.querySelectorAll("*")) {
    if (!shown(el)) continue;
    const box = el.getBoundingClientRect();
    if (box.width < 2 || box.height < 2) continue;  // visually hidden helpers (1 px, clipped)
    if (box.right <= width + 0.5 && box.left >= -0.5) continue;
    if (contained(el, false)) continue;
    found.push(`${describe(el)} spans ${Math.round(box.left)}..${Math.round(box.right)} px`);
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim();
    const parent = node.parentElement;
    if (!text || !parent || !shown(parent)) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const lines = new Map();
    let outside = false;
    for (const rect of range.getClientRects()) {
      if (rect.width < 1) continue;
      if (rect.right > width + 0.5 || rect.left < -0.5) outside = true;
      const top = Math.round(rect.top);
      lines.set(top, Math.max(lines.get(top) || 0, rect.width));
    }
    // Text running out of its box (a long address that does not break) widens the page too.
    if (outside && !contained(parent, true)) found.push(`the text "${text.slice(0, 40)}" in ${describe(parent)} runs off the screen`);
    // Squeezed: broken onto lines of a character or two (a Chinese label may break after any character).
    const size = parseFloat(getComputedStyle(parent).fontSize);
    const widest = lines.size ? Math.max(...lines.values()) : 0;
    if (text.length >= 2 && ((lines.size >= 2 && widest < 1.6 * size) || (lines.size >= 3 && widest < 3.5 * size))) {
      found.push(`"${text.slice(0, 20)}" in ${describe(parent)} is squeezed onto ${lines.size} lines of a few characters`);
    }
  }
  // Tabs and pills keep each label on one line.
  for (const link of document.querySelectorAll(".nav-tabs .nav-link, .nav-pills .nav-link")) {
    const box = link.getBoundingClientRect();
    if (box.width < 2) continue;
    const style = getComputedStyle(link);
    const line = parseFloat(style.lineHeight) || 1.5 * parseFloat(style.fontSize);
    const inner = box.height - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom)
                  - parseFloat(style.borderTopWidth) - parseFloat(style.borderBottomWidth);
    if (inner > 1.5 * line) found.push(`the tab ${describe(link)} takes ${Math.round(inner / line)} lines`);
  }
  return found;
}
"""

# Bootstrap's own blue (its "primary": links, tabs, outlined buttons, checked radios, focus rings, the
# primary text and backgrounds) anywhere on the page: the service's colour is WeChat green.
BOOTSTRAP_BLUES = ["rgb(13, 110, 253)", "rgb(10, 88, 202)", "rgb(49, 132, 253)", "rgba(13, 110, 253, 0.25)",
                   "rgb(207, 226, 255)", "rgb(158, 197, 254)", "rgb(5, 44, 101)", "rgb(110, 168, 254)"]
FOREIGN_COLOURS = r"""
(blues) => {
  const found = new Set();
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (typeof el.className === "string" && el.className.trim() ? "." + el.className.trim().split(/\s+/).slice(0, 2).join(".") : "");
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width < 1 || box.height < 1) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden") continue;
    const borders = style.borderTopWidth !== "0px" || style.borderLeftWidth !== "0px"
      ? [style.borderTopColor, style.borderLeftColor] : [];
    for (const colour of [style.color, style.backgroundColor, style.boxShadow, ...borders]) {
      const blue = blues.find((b) => colour.includes(b));
      if (blue) found.add(`${describe(el)} is Bootstrap blue (${blue})`);
    }
  }
  return [...found];
}
"""

# The chart's labels at their rendered size, and whether two of them overlap.
CHART_LABELS = r"""
() => [...document.querySelectorAll(".chart text")].filter((t) => t.getBoundingClientRect().width > 0).map((t) => {
  const box = t.getBoundingClientRect();
  return {text: t.textContent, left: box.left, right: box.right, top: box.top, bottom: box.bottom,
          size: parseFloat(getComputedStyle(t).fontSize) * (box.height / t.getBBox().height)};
})
"""


class Walk:
    """Checks pages as a phone shows them and collects every problem with the page it was seen on."""

    def __init__(self, page, base: str):
        self.page, self.base = page, base
        self.problems: list[str] = []
        self.checked: list[str] = []

    def language(self, code: str) -> None:
        """Switch the page language the way a person does (the language menu), staying on this page."""
        parts = urlsplit(self.page.url)
        here = parts.path + (f"?{parts.query}" if parts.query else "")
        self.page.goto(f"{self.base}/language/{code}?next={quote(here, safe='')}")
        self.page.wait_for_load_state("networkidle")

    def check(self, label: str | None = None) -> None:
        """The page now open, at each width and in each language (it is left in English)."""
        label = label or urlsplit(self.page.url).path
        self.page.wait_for_load_state("networkidle")
        for code in LANGUAGES:
            if code != "en":
                self.language(code)
            for width in WIDTHS:
                self.page.set_viewport_size({"width": width, "height": 800})
                self.page.wait_for_timeout(50)  # one layout after the resize
                for problem in self.page.evaluate(LAYOUT_PROBLEMS, width):
                    self.problems.append(f"{label} [{code}, {width} px]: {problem}")
            for problem in self.page.evaluate(FOREIGN_COLOURS, BOOTSTRAP_BLUES):
                self.problems.append(f"{label} [{code}]: {problem}")
        self.language("en")
        self.checked.append(label)

    def open(self, path: str, label: str | None = None) -> None:
        """Open ``path`` and check it."""
        response = self.page.goto(self.base + path)
        if response is None or response.status >= 500:
            self.problems.append(f"{label or path}: HTTP {response.status if response else 'no answer'}")
            return
        self.check(label or path)


@pytest.fixture
def service(make_app):
    """The service with its simulator (as ``make run`` serves it), before first-run set-up."""
    app = make_app(WEIXIN_SIMULATOR=True)
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy",
                          WEIXIN_QY_LOGIN_URL=base + "/simulator/qy/login",
                          WEIXIN_QY_OAUTH_URL=base + "/simulator/qy/oauth2/authorize", PUBLIC_URL=base)
        yield app, base


@pytest.fixture
def phone(browser):
    """A tab with a phone's screen (resized to each width by the walk), touch and a high-density display."""
    context = browser.new_context(locale="en-US", viewport={"width": 390, "height": 800}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True)
    tab = context.new_page()
    tab.set_default_timeout(45_000)  # as in the page fixture: two test processes share two cores
    yield tab
    context.close()


def sign_in(page, base: str, username: str, password: str) -> None:
    page.goto(base + "/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("#submit").click()
    expect(page.locator("#logout")).to_be_attached()  # signed in: the answer arrived, not just the POST
    page.wait_for_load_state("networkidle")


def sign_out(page, base: str) -> None:
    """Sign out through the menu, as a person on a phone does (the button sits in the collapsed menu)."""
    page.goto(base + "/")
    page.locator(".navbar-toggler").click()
    page.locator("#logout").click()
    # Wait for the signed-out page itself: a page opened before the POST's answer would cancel it.
    expect(page.get_by_text("You are signed out.")).to_be_visible()


def test_every_page_fits_a_phone(phone, service):
    app, base = service
    page = phone
    walk = Walk(page, base)

    # First run: the administrator account, then the wizard's first steps as a newcomer meets them.
    walk.open("/setup/", "first run")
    page.locator("#username").fill(ADMIN[0])
    page.locator("#password").fill(ADMIN[1])
    page.locator("#confirm").fill(ADMIN[1])
    page.locator("#submit").click()
    expect(page).to_have_url(base + "/setup/wizard/channel")
    walk.check("wizard: channel")
    page.get_by_role("radio", name="WeChat Official Account (公众号)").check()
    page.get_by_role("button", name="Next").click()
    expect(page).to_have_url(base + "/setup/wizard/prerequisites")
    expect(page.locator("#server-checks [data-probe-name=http]")).to_have_attribute("data-state", "ok")
    walk.check("wizard: prerequisites")
    page.get_by_role("button", name="Next").click()
    expect(page).to_have_url(base + "/setup/wizard/keys")
    walk.check("wizard: keys")
    page.locator("#wx_app_id").fill(MP_APPID)
    page.locator("#wx_secret").fill(MP_SECRET)
    page.locator("#wx_token").fill(TOKEN)
    page.locator("#wx_encoding_aes_key").fill(KEY)
    page.get_by_role("button", name="Check the keys and continue").click()
    expect(page).to_have_url(base + "/setup/wizard/template")
    walk.check("wizard: template")
    page.get_by_text("Alert notice").click()
    page.get_by_role("button", name="Check the template and continue").click()
    expect(page).to_have_url(base + "/setup/wizard/callback")
    walk.check("wizard: callback")
    page.get_by_role("button", name="Test the callback").click()
    expect(page.locator("#callback-results [data-target=public]")).to_have_attribute("data-kind", "ok")
    check = requests.post(base + "/simulator/_control/mp/server",
                          json={"url": base + CALLBACK, "token": TOKEN, "encoding_aes_key": KEY, "mode": "safe"},
                          timeout=20).json()
    assert check["ok"], check
    expect(page.locator("#wechat-verification")).to_contain_text("WeChat verified your server at", timeout=15_000)
    walk.check("wizard: callback verified")
    page.get_by_role("button", name="Next").click()
    expect(page).to_have_url(base + "/setup/wizard/save")
    walk.check("wizard: save")
    page.get_by_role("button", name="Save the configuration").click()
    expect(page).to_have_url(base + "/setup/wizard/test")
    walk.check("wizard: test")

    # Realistic data: users, bindings, a calling application and messages sent through the send API
    # (delivered, and one refused by WeChat because its receiver does not follow the account).
    with app.test_request_context():
        create_user(*USER)
        create_user("bob", "violet-orbit-61")
        create_user("carol", "violet-orbit-61")
        _, secret = create_app_credentials("bk_monitor", actor=ADMIN[0])
        db.session.remove()
    bind(app, USER[0], "mp", MP_APPID, OPENID_ALICE)
    bind(app, "bob", "mp", MP_APPID, OPENID_BOB)
    bind(app, "carol", "mp", MP_APPID, OPENID_NOT_FOLLOWING)
    api = Api(base, "bk_monitor", secret)
    for heading, message in (("Disk alert", "db1: /var is 97% full"),
                             ("CPU load on the payment gateway cluster is above 95% for 10 minutes",
                              "gw-prod-03.example.internal load average 31.2 / 16 cores\nsecond line")):
        answer = api.send({"receiver__username": f"{USER[0]},bob,carol", "data": {"heading": heading, "message": message}})
        assert answer.status_code == 200, answer.text
    message_id = answer.json()["data"]["message_id"]

    page.goto(base + "/setup/wizard/test")
    walk.check("wizard: test, bound")
    walk.open("/setup/wizard/done", "wizard: done")

    # The console, every page.
    for path in ("/", "/console/", "/console/deliveries/", f"/console/messages/{message_id}", "/console/bindings/",
                 "/console/apps/", "/console/audit/", "/status"):
        walk.open(path)
    if page.goto(base + "/console/apps/").status == 200:
        page.locator("#app_code").fill("grafana_alerts")
        page.locator("#app_code").press("Enter")
        page.wait_for_load_state("networkidle")
        walk.check("applications: a new secret shown")
    users = page.goto(base + "/console/users/")
    if users.status == 200:
        walk.check("users")

    # The simulator: its panel, a phone with messages, the scan pages, WeCom's sign-in page.
    for path in ("/simulator/", f"/simulator/phone/{OPENID_ALICE}", f"/simulator/phone/{OPENID_NOT_FOLLOWING}",
                 "/simulator/scan", "/simulator/qy/scan",
                 "/simulator/qy/login?login_type=CorpApp&appid=nobody&agentid=1&redirect_uri=x"):
        walk.open(path)
    sign_out(page, base)

    # An ordinary user: home, the bind page (with its QR code), the password page; the sign-in page,
    # a message's detail page behind its signed link, an error page.
    walk.open("/login")
    sign_in(page, base, *USER)
    walk.open("/", "home (user)")
    walk.open("/console/user_center/weixin/")
    walk.open("/account/password")
    sign_out(page, base)
    sign_in(page, base, "bob", "violet-orbit-61")
    page.goto(base + "/console/user_center/weixin/")
    walk.open("/no/such/page", "error page")

    assert not walk.problems, "\n".join(walk.problems)
