"""The users page and the applications page in Chromium, as an administrator uses them.

Every change made on the users page is checked where it matters, in a second browser signed in as
the user concerned: signing in, the session already open, the console's doors. The applications
page's copy buttons are pressed and the clipboard read back; the curl command copied from it runs.
"""
import json
import re
import subprocess

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.api_support import bind
from tests.binding_support import connect_mp
from tests.browser.conftest import watch_csp
from tests.conftest import ADMIN, USER
from tests.livesrv import serve
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.models import AuditEntry, User
from webapp.simulator.world import MP_APPID, OPENID_ALICE, OPENID_DAVE

pytestmark = pytest.mark.browser
USERS = "/console/users/"
CAROL = ("carol", "lantern-harbour-73")
CAROL_NEW = "juniper-canyon-58"


@pytest.fixture
def service(make_app):
    """The service and its simulator over HTTP: the Official Account connected, the administrator and alice (bound)."""
    app = make_app(WEIXIN_SIMULATOR=True)
    with app.test_request_context():
        create_user(*ADMIN, is_admin=True)
        create_user(*USER)
        db.session.remove()
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy", PUBLIC_URL=base)
        connect_mp(app, base)
        bind(app, USER[0], "mp", MP_APPID, OPENID_ALICE)
        yield app, base


@pytest.fixture
def second_browser(browser):
    """Another person's browser (its own cookies), under the same watch for CSP violations."""
    context = browser.new_context(locale="en-US")
    violations = watch_csp(context)
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    yield tab
    context.close()
    assert not violations, violations


def sign_in(page, base: str, username: str, password: str, then: str | None = None) -> None:
    page.goto(base + "/login" + (f"?next={then}" if then else ""))
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def audited(app, action: str) -> list[tuple[str, str]]:
    with app.app_context():
        return [tuple(r) for r in db.session.execute(select(AuditEntry.actor, AuditEntry.target)
                                                     .where(AuditEntry.action == action).order_by(AuditEntry.id))]


def test_the_users_page_lists_and_creates(page, service, second_browser):
    app, base = service
    sign_in(page, base, *ADMIN)
    # The home page's card leads here, and the console's tab is there too.
    page.get_by_role("link", name="Manage users").click()
    expect(page).to_have_url(base + USERS)
    expect(page.locator(".nav-tabs .nav-link.active")).to_have_text("Users")
    alice = page.locator('tr[data-user="alice"]')
    expect(alice).to_contain_text("Official Account")
    expect(alice).to_contain_text("never")
    expect(page.locator('tr[data-user="admin"]')).to_contain_text("Administrator")
    expect(page.locator('tr[data-user="admin"]')).to_contain_text("not bound")
    # The last sign-in is a moment in the reader's time (just now: "today 14:16"), the full one in its tooltip.
    login = page.locator('tr[data-user="admin"] .user-login time')
    expect(login).to_have_text(re.compile(r"^today \d\d:\d\d$"))
    expect(login).to_have_attribute("title", re.compile(r"\d{4}.* \d{1,2}:\d\d:\d\d"))

    form = page.locator("#create-user")
    expect(form).to_contain_text("At least 10 characters")  # the password rules, next to the field
    form.get_by_label("User name").fill(CAROL[0])
    form.get_by_label("Password", exact=True).fill("short")
    form.get_by_label("Password again").fill("short")
    form.get_by_role("button", name="Create the user").click()
    expect(page.get_by_text("The password must be at least 10 characters long.")).to_be_visible()
    form.get_by_label("User name").fill("alice")
    form.get_by_label("Password", exact=True).fill(CAROL[1])
    form.get_by_label("Password again").fill(CAROL[1])
    form.get_by_role("button", name="Create the user").click()
    expect(page.get_by_text("The user name alice is already taken.")).to_be_visible()
    form.get_by_label("User name").fill(CAROL[0])
    form.get_by_label("Password", exact=True).fill(CAROL[1])
    form.get_by_label("Password again").fill(CAROL[1])
    form.get_by_role("button", name="Create the user").click()
    expect(page.get_by_text("The user carol is created.")).to_be_visible()
    expect(page).to_have_url(base + USERS)  # redirected after the post: a reload sends nothing again
    expect(form.get_by_label("User name")).to_have_value("")
    expect(page.locator('tr[data-user="carol"]')).to_contain_text("User")
    assert audited(app, "user.create")[-1] == ("admin", "carol")

    sign_in(second_browser, base, *CAROL)
    expect(second_browser.get_by_role("heading", name="Hello, carol")).to_be_visible()


def test_disable_enable_reset_and_roles_take_effect_at_once(page, service, second_browser):
    app, base = service
    with app.test_request_context():
        create_user(*CAROL)
        db.session.remove()
    carol = second_browser
    sign_in(carol, base, *CAROL)
    expect(carol.get_by_role("heading", name="Hello, carol")).to_be_visible()
    sign_in(page, base, *ADMIN, then=USERS)
    page.locator('tr[data-user="carol"]').get_by_role("link", name="Manage").click()
    expect(page.locator("#user-name")).to_have_text("carol")

    # Disabled: her open session ends, and she cannot sign in.
    page.get_by_role("button", name="Disable").click()
    expect(page.get_by_text("carol is disabled")).to_be_visible()
    expect(page.locator("#user-state")).to_have_text("disabled")
    carol.reload()
    expect(carol).to_have_url(re.compile(r"/login"))
    sign_in(carol, base, *CAROL)
    expect(carol.get_by_text("The user name or password is wrong.")).to_be_visible()
    # Enabled again: she can.
    page.get_by_role("button", name="Enable").click()
    expect(page.get_by_text("carol is enabled and can sign in.")).to_be_visible()
    sign_in(carol, base, *CAROL)
    expect(carol.get_by_role("heading", name="Hello, carol")).to_be_visible()

    # A new password: the rules stand beside it; the new one works, the old one no longer.
    reset = page.locator("#reset-password")
    expect(reset).to_contain_text("At least 10 characters")
    reset.get_by_label("New password", exact=True).fill("carol-lantern-9")
    reset.get_by_label("New password again").fill("carol-lantern-9")
    reset.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_text("The password must not contain the user name.")).to_be_visible()
    reset.get_by_label("New password", exact=True).fill(CAROL_NEW)
    reset.get_by_label("New password again").fill(CAROL_NEW)
    reset.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_text("carol has a new password.")).to_be_visible()
    carol.reload()
    expect(carol).to_have_url(re.compile(r"/login"))  # the session signed in with the old password ended
    sign_in(carol, base, *CAROL)
    expect(carol.get_by_text("The user name or password is wrong.")).to_be_visible()
    sign_in(carol, base, CAROL[0], CAROL_NEW)
    expect(carol.get_by_role("heading", name="Hello, carol")).to_be_visible()

    # The administrator role: granted, she opens the console; removed, she is refused.
    page.get_by_role("button", name="Make administrator").click()
    expect(page.get_by_text("carol is an administrator.")).to_be_visible()
    expect(page.locator("#user-role")).to_have_text("Administrator")
    carol.goto(base + USERS)
    expect(carol.get_by_role("heading", name="Create a user")).to_be_visible()
    page.get_by_role("button", name="Remove the administrator role").click()
    expect(page.get_by_text("carol is no longer an administrator.")).to_be_visible()
    answer = carol.goto(base + USERS)
    assert answer.status == 403
    expect(carol.get_by_role("heading", name="Not allowed")).to_be_visible()

    for action in ("user.disable", "user.enable", "user.password_reset", "user.admin_grant", "user.admin_revoke"):
        assert audited(app, action) == [("admin", "carol")], action


def test_the_last_administrator_is_protected_and_others_are_refused(page, service, second_browser):
    app, base = service
    sign_in(page, base, *ADMIN, then=USERS)
    page.locator('tr[data-user="admin"]').get_by_role("link", name="Manage").click()
    expect(page.locator("#self-note")).to_contain_text("You cannot disable it or remove its administrator role here")
    expect(page.locator("#only-admin-note")).to_contain_text("You are the only enabled administrator.")
    expect(page.get_by_role("button", name="Disable")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove the administrator role")).to_have_count(0)
    # A form posted anyway (from an old tab, say) is refused with the reason, and nothing changes.
    admin_id = re.search(r"/console/users/(\d+)/", page.url).group(1)
    page.evaluate("""([id]) => {
        const form = document.createElement("form");
        form.method = "post"; form.action = `/console/users/${id}/admin`;
        for (const [name, value] of [["admin", "0"], ["csrf_token", document.querySelector("[name=csrf_token]").value]]) {
            const input = document.createElement("input"); input.type = "hidden"; input.name = name; input.value = value;
            form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();
    }""", [admin_id])
    expect(page.locator("#refusal")).to_contain_text("admin is the only enabled administrator, so nothing was changed")
    with app.app_context():
        assert db.session.scalar(select(User.is_admin).where(User.username == ADMIN[0])) is True
    assert audited(app, "user.admin_revoke") == []

    # An ordinary user gets 403.
    sign_in(second_browser, base, *USER)
    answer = second_browser.goto(base + USERS)
    assert answer.status == 403
    expect(second_browser.get_by_text("Your account is not allowed to open this page.")).to_be_visible()


def test_the_users_page_in_chinese(page, service):
    app, base = service
    sign_in(page, base, *ADMIN, then=USERS)
    page.locator("#langMenu").click()
    page.get_by_role("link", name="中文").click()
    expect(page.locator(".nav-tabs .nav-link.active")).to_have_text("用户")
    expect(page.get_by_role("heading", name="创建用户")).to_be_visible()
    expect(page.locator('tr[data-user="alice"]')).to_contain_text("公众号")
    expect(page.locator('tr[data-user="alice"]')).to_contain_text("从未")
    page.locator('tr[data-user="admin"]').get_by_role("link", name="管理").click()
    expect(page.locator("#only-admin-note")).to_contain_text("你是唯一启用的管理员")


def test_the_applications_page_empties_the_form_and_copies_a_working_curl(page, service):
    app, base = service
    bind(app, ADMIN[0], "mp", MP_APPID, OPENID_DAVE)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    sign_in(page, base, *ADMIN, then="/console/apps/")
    page.get_by_label("App code").fill("job_center")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_text("job_center is registered")).to_be_visible()
    expect(page).to_have_url(base + "/console/apps/")
    expect(page.get_by_label("App code")).to_have_value("")  # redirected after the post: the form is empty

    secret = page.locator("#secret-value").inner_text()
    copy = page.locator("#copy-secret")
    expect(copy).to_have_text("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    examples = page.locator("#example-calls")
    expect(examples).to_contain_text(base)
    examples.locator("[data-copy-target=example-curl]").click()
    command = page.evaluate("navigator.clipboard.readText()")
    assert command == page.locator("#example-curl").inner_text() and secret in command
    ran = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
    answer = json.loads(ran.stdout)
    assert answer["result"] is True and answer["data"]["deliveries"][0]["username"] == ADMIN[0], answer
    examples.locator("[data-copy-target=example-python]").click()
    assert page.evaluate("navigator.clipboard.readText()").startswith("from bkapi_component.open.shortcuts import")

    # Shown once: after a reload the secret and its examples are gone.
    page.reload()
    expect(page.locator("#new-secret")).to_have_count(0)
    expect(page.locator("#example-calls")).to_have_count(0)


def test_the_pages_fit_a_phone_screen(page, service):
    app, base = service
    page.set_viewport_size({"width": 360, "height": 800})
    sign_in(page, base, *ADMIN, then="/console/apps/")
    page.get_by_label("App code").fill("phone_app")
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#example-calls")).to_be_visible()
    with app.app_context():
        alice = db.session.scalar(select(User.id).where(User.username == USER[0]))
    for path in (None, USERS, f"{USERS}{alice}/"):
        if path:
            page.goto(base + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{page.url} is {overflow}px wider than the screen"
