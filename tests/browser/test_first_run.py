"""A newcomer opens the service, creates the administrator on the first-run page and signs out."""
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_first_run_creates_the_administrator_and_logs_out(page, live_server):
    page.goto(live_server + "/")
    expect(page).to_have_url(live_server + "/setup/")
    expect(page.get_by_role("heading", name="Create the administrator")).to_be_visible()
    # Bootstrap and our stylesheet are served (by the service itself) even before set-up.
    expect(page.locator("nav.navbar")).to_have_css("background-color", "rgb(31, 45, 58)")
    expect(page.get_by_role("button", name="Create the administrator")).to_have_css("background-color", "rgb(7, 193, 96)")

    page.get_by_label("Administrator user name").fill("root-admin")
    page.get_by_label("Password", exact=True).fill("a-good-password")
    page.get_by_label("Password again").fill("a-typo-password")
    page.get_by_role("button", name="Create the administrator").click()
    expect(page.get_by_text("The two passwords differ.")).to_be_visible()

    page.get_by_label("Password", exact=True).fill("a-good-password")
    page.get_by_label("Password again").fill("a-good-password")
    page.get_by_role("button", name="Create the administrator").click()
    expect(page).to_have_url(live_server + "/setup/wizard/channel")
    expect(page.get_by_text("Your administrator account root-admin is ready.")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(live_server + "/login")
    expect(page.get_by_text("You are signed out.")).to_be_visible()

    # Set-up is done for good: the first-run page now sends people to sign in.
    page.goto(live_server + "/setup/")
    expect(page).to_have_url(live_server + "/login")


def test_phone_sized_screen_shows_the_menu_button(page, live_server):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_server + "/setup/")
    expect(page.get_by_role("button", name="Menu")).to_be_visible()
    expect(page.get_by_role("button", name="Create the administrator")).to_be_visible()
