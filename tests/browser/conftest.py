"""Browser fixtures: Debian's Chromium driven by Playwright, against the app served over real HTTP."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.livesrv import serve

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# As root, and on machines without a network beyond package registries, Chromium needs these.
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    """One Chromium for the whole session (a fresh context per test keeps tests apart)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        # Playwright's launch() gives Chromium a fresh temporary profile (--user-data-dir) each time.
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


# Runs in every document before its own scripts: reports each Content-Security-Policy violation to the
# test through an exposed function (a page-level variable would be lost at each navigation).
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolation(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile || document.URL}:${e.lineNumber}`);
});
"""


def watch_csp(context) -> list[str]:
    """Collect every CSP violation in ``context``: the DOM events, and Chromium's console messages about them."""
    violations: list[str] = []

    def report(text: str) -> None:
        violations.append(text)

    context.expose_function("__cspViolation", report)
    context.add_init_script(CSP_LISTENER)

    def on_console(message):
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            violations.append(f"console: {message.text}")

    context.on("console", on_console)
    return violations


@pytest.fixture
def page(browser, request):
    """A new browser tab in a fresh context (no cookies), with a screenshot kept when the test fails.

    Every browser test also checks the Content-Security-Policy: a page that breaks it (an inline
    script or style the policy blocks) fails the test that visited it.
    """
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    violations = watch_csp(context)
    tab = context.new_page()
    tab.csp_violations = violations
    # Generous: CI shares two cores between two test processes, the servers and Chromium.
    tab.set_default_timeout(45_000)
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        os.makedirs("test-artifacts", exist_ok=True)
        tab.screenshot(path=f"test-artifacts/{request.node.name}.png", full_page=True)
    context.close()
    if violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(violations), pytrace=False)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's outcome on the test item, so ``page`` can keep a failure screenshot."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def live_server(app):
    """The test app served over real HTTP on a free local port; yields its base URL."""
    with serve(app) as base_url:
        yield base_url
