"""docs/first-ten-minutes.md, followed in Chromium against a service started with the document's own `make run`.

The document is read, not copied: its numbered steps are walked in order, every name it writes in
**bold** must be on the pages the step visits, every sentence it quotes must be shown there, the
buttons and links are found by the document's names, and its code blocks are the real commands
(the `make run` block is run; the curl block is the command the console shows). A renamed button, a
reworded page or a step added to the document without the test fails here. tests/test_doc_examples.py
delegates the document's code blocks to this file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "first-ten-minutes.md"
DOC_BASE = "http://127.0.0.1:5000"  # the address the document uses (make run's default)
PASSWORD = "a-good-password-7"  # the document leaves the passwords to the reader


def collapse(text: str) -> str:
    """Whitespace (line breaks of the document included) as single spaces."""
    return re.sub(r"\s+", " ", text).strip()


@dataclasses.dataclass
class Step:
    """One numbered step of the document: its title, its **bold** names, its quoted sentences, its code blocks."""

    number: int
    title: str
    text: str

    @property
    def prose(self) -> str:
        """The text without code blocks and code spans (commands and values are not page text)."""
        return re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", self.text, flags=re.S))

    @property
    def names(self) -> list[str]:
        return [collapse(name) for name in re.findall(r"\*\*(.+?)\*\*", self.prose, flags=re.S)]

    @property
    def quotes(self) -> list[str]:
        return [collapse(quote) for quote in re.findall(r'"([^"\n]+(?:\n[^"\n]+)*)"', self.prose)]

    @property
    def blocks(self) -> list[str]:
        return re.findall(r"```sh\n(.*?)```", self.text, flags=re.S)

    @property
    def spans(self) -> list[str]:
        """The `code spans` of the prose: the values the reader types."""
        return re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", self.text, flags=re.S))


def read_steps() -> list[Step]:
    """The document's ``## N. Title`` sections, in order."""
    parts = re.split(r"^## (\d+)\. (.+)$", DOC.read_text(encoding="utf-8"), flags=re.M)
    steps = [Step(int(parts[i]), parts[i + 1].strip(), parts[i + 2]) for i in range(1, len(parts), 3)]
    assert [step.number for step in steps] == list(range(1, len(steps) + 1)), "the steps are numbered 1, 2, 3, ..."
    return steps


# What a person sees on a page: its visible text, the labels of its submit buttons, the choices of its lists.
PAGE_TEXT = """() => [document.body.innerText,
  ...Array.from(document.querySelectorAll('input[type=submit], input[type=button]'), (input) => input.value),
  ...Array.from(document.querySelectorAll('option'), (option) => option.text)].join('\\n')"""


class Walk:
    """Follows the document step by step and holds each step to what it says.

    ``name()`` hands the test a name of the current step (so the test clicks what the document
    names), and every page the step looked at must show all of the step's bold names and quotes.
    """

    def __init__(self, base: str):
        self.base = base
        self.steps = read_steps()
        self.current: Step | None = None
        self.seen: list[str] = []
        self.walked = 0

    @contextlib.contextmanager
    def step(self, number: int, *pages):
        assert number == self.walked + 1, f"step {number} walked out of order"
        self.current, self.seen, self.pages = self.steps[number - 1], [], pages
        yield self.current
        self.look(*self.pages)
        missing = [name for name in self.current.names if not any(name in text for text in self.seen)]
        missing += [quote for quote in self.current.quotes if not any(
            quote.rstrip(" …") in text if quote.endswith("…") else quote in text for text in self.seen)]
        assert not missing, f"step {number} ({self.current.title}): not on the pages it visits: {missing}"
        self.walked = number

    def look(self, *pages) -> None:
        """Remember what these pages show now (bold names may appear only after an action)."""
        for page in pages or self.pages:
            page.wait_for_load_state()
            self.seen.append(collapse(page.evaluate(PAGE_TEXT)))

    def name(self, name: str) -> str:
        """A bold name of the current step: the test fails when the document no longer says it."""
        assert name in self.current.names, f"step {self.current.number} no longer names **{name}**: {self.current.names}"
        return name

    def url(self, path: str) -> str:
        """An address the current step gives, on the server under test."""
        assert DOC_BASE + path in collapse(self.current.prose), f"step {self.current.number} no longer gives {DOC_BASE + path}"
        return self.base + path

    def click(self, page, role: str, name: str, **options) -> None:
        self.look(page)
        page.get_by_role(role, name=self.name(name), **options).first.click()

    def fill(self, page, label: str, value: str, **options) -> None:
        page.get_by_label(self.name(label), **options).fill(value)

    def value(self, example: str) -> str:
        """A value the step tells the reader to type (a `code span` such as `admin`)."""
        assert example in self.current.spans, f"step {self.current.number} no longer suggests `{example}`"
        return example


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def made(tmp_path):
    """The document's `make run` block, run as written (on a free port, a throwaway database and key)."""
    blocks = read_steps()[0].blocks
    assert [collapse(block) for block in blocks] == ["make run"], blocks
    port = free_port()
    env = {**os.environ, "FLASK_DATABASE_URL": f"sqlite:///{tmp_path / 'first.sqlite3'}", "FLASK_SECRET_KEY": "first-ten-minutes"}
    for name in list(env):
        if name.startswith(("FLASK_WEIXIN_", "FLASK_SIMULATOR_")) or name == "FLASK_PUBLIC_URL":
            del env[name]  # make run's own defaults, as on a fresh machine
    log = open(tmp_path / "make-run.log", "w+", encoding="utf-8")
    process = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, "make run stopped:\n" + (tmp_path / "make-run.log").read_text()
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(base + "/healthz", timeout=5).status_code < 500:
                    break
            assert time.monotonic() < deadline, "make run did not serve:\n" + (tmp_path / "make-run.log").read_text()
            time.sleep(0.3)
        assert f"Open {base}/ in your browser" in (tmp_path / "make-run.log").read_text()
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()


def test_the_readme_links_to_the_walkthrough_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "docs/first-ten-minutes.md" in quick_start
    # GitHub's anchors: lower case, punctuation dropped, spaces as hyphens.
    anchors = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
               for heading in re.findall(r"^#+ (.+)$", readme, flags=re.M)}
    links = re.findall(r"\]\(\.\./README\.md#([^)]+)\)", DOC.read_text(encoding="utf-8"))
    assert links and set(links) <= anchors, f"links to README sections that do not exist: {set(links) - anchors}"


def test_the_first_ten_minutes_as_the_document_tells_them(page, made):
    base = made
    walk = Walk(base)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    admin = "admin"

    with walk.step(1, page):
        page.goto(walk.url("/"))
        expect(page).to_have_url(base + "/setup/")
        expect(page.get_by_role("heading", name=walk.name("Create the administrator"))).to_be_visible()

    with walk.step(2, page):
        walk.fill(page, "Administrator user name", walk.value(admin))
        walk.fill(page, "Password", PASSWORD, exact=True)
        walk.fill(page, "Password again", PASSWORD)
        walk.click(page, "button", "Create the administrator")
        expect(page).to_have_url(base + "/setup/wizard/channel")
        expect(page.get_by_role("heading", name=walk.name("Choose the channel"))).to_be_visible()

    with walk.step(3, page):
        page.get_by_role("radio", name=walk.name("WeChat Official Account (公众号)")).check()
        walk.click(page, "button", "Next")
        expect(page.get_by_role("heading", name=walk.name("Prerequisites"))).to_be_visible()
        expect(page.locator("#server-checks [data-probe-name=http]")).to_have_attribute("data-state", "ok")
        walk.click(page, "button", "Next")
        expect(page).to_have_url(base + "/setup/wizard/keys")

    simulator = page.context.new_page()
    with walk.step(4, page, simulator):
        expect(page.get_by_role("link", name=walk.name("open the simulator"))).to_have_attribute("href", re.compile("/simulator/"))
        simulator.goto(walk.url("/simulator/"))
        accounts = simulator.locator("details", has_text=walk.name("Accounts to enter in the setup wizard"))

        def shown(key: str) -> str:
            return accounts.locator(f"xpath=.//dt[normalize-space()='{walk.name(key)}']/following-sibling::dd[1]").first.inner_text()

        walk.fill(page, "AppID (开发者ID)", shown("AppID"))
        walk.fill(page, "AppSecret (开发者密码)", shown("AppSecret"))
        generate = page.get_by_role("button", name=walk.name("Generate"))
        expect(generate).to_have_count(2)
        generate.first.click()
        generate.last.click()
        expect(page.get_by_label(walk.name("Token"), exact=True)).to_have_value(re.compile(r"^[A-Za-z0-9]{32}$"))
        expect(page.get_by_label(walk.name("EncodingAESKey (消息加解密密钥)"))).to_have_value(re.compile(r"^[A-Za-z0-9]{43}$"))
        expect(page.get_by_label(walk.name("Safe (安全模式, recommended)"))).to_be_checked()
        walk.click(page, "button", "Check the keys and continue")
        expect(page).to_have_url(base + "/setup/wizard/template")

    with walk.step(5, page):
        expect(page.get_by_role("heading", name=walk.name("Message template"))).to_be_visible()
        page.get_by_text(walk.name("Alert notice")).click()
        expect(page.locator("#preview-card")).to_contain_text("Alert")
        walk.click(page, "button", "Check the template and continue")
        expect(page).to_have_url(base + "/setup/wizard/callback")

    with walk.step(6, page):
        expect(page.get_by_role("heading", name=walk.name("Callback (服务器配置)"))).to_be_visible()
        walk.click(page, "button", "Test the callback")
        expect(page.locator("#callback-results [data-target=public]")).to_have_attribute("data-kind", "ok")
        expect(page.locator("#now-submit")).to_contain_text("Now press Submit")
        with page.context.expect_page() as opened:
            walk.click(page, "button", "Fill in the simulator's form")
        form_tab = opened.value
        form_tab.wait_for_load_state()
        form = form_tab.locator("#server-config")
        expect(form.get_by_role("heading", name=walk.name("Server configuration"))).to_be_visible()
        expect(form.locator("input[name=url]")).to_have_value(base + "/console/user_center/weixin/mp/callback/")
        walk.look(form_tab)
        form.get_by_role("button", name=walk.name("Submit")).click()
        expect(form.get_by_text(walk.name("提交成功"))).to_be_visible()
        walk.look(form_tab)
        expect(page.locator("#wechat-verification")).to_contain_text("WeChat verified your server at", timeout=15_000)
        walk.click(page, "button", "Next")
        expect(page).to_have_url(base + "/setup/wizard/save")
        form_tab.close()

    with walk.step(7, page, simulator):
        expect(page.get_by_role("heading", name=walk.name("Save the configuration"))).to_be_visible()
        expect(page.locator("#summary")).to_contain_text("••••••••")
        walk.click(page, "button", "Save the configuration")
        expect(page.get_by_role("heading", name=walk.name("Test it on yourself"))).to_be_visible()
        walk.click(page, "button", "Show QR code")
        expect(page.locator("#qr")).to_be_visible()
        walk.click(simulator, "link", "Scan a QR code", exact=True)
        expect(simulator.get_by_label(walk.name("Who scans"))).to_have_value(re.compile("."))
        assert walk.name("Alice — following") in simulator.get_by_label("Who scans").locator("option:checked").inner_text()
        codes = simulator.locator("#qrcodes")
        expect(simulator.get_by_role("heading", name=walk.name("QR codes created recently"))).to_be_visible()
        expect(codes.get_by_role("button", name=walk.name("Scan"))).to_have_count(1)
        codes.get_by_role("button", name="Scan").click()
        expect(simulator.locator(".scan-outcome")).to_contain_text(f"Bound: notifications for {admin} will come to this WeChat.")
        walk.look(simulator)
        expect(page.get_by_role("heading", name=walk.name("Your WeChat is bound"))).to_be_visible(timeout=15_000)
        walk.click(page, "button", "Send me a test message")
        expect(page.locator("#test-result [data-status]")).to_have_attribute("data-status", "sent")
        walk.click(page, "button", "Finish")
        expect(page.get_by_role("heading", name=walk.name("Done"))).to_be_visible()

    with walk.step(8, page):
        walk.click(page, "link", "Console", exact=True)
        expect(page).to_have_url(base + "/console/")
        page.locator(".nav-tabs").get_by_role("link", name=walk.name("Users")).click()
        form = page.locator("#create-user")
        expect(page.get_by_role("heading", name=walk.name("Create a user"))).to_be_visible()
        form.get_by_label(walk.name("User name")).fill(walk.value("alice"))
        form.get_by_label(walk.name("Password"), exact=True).fill("violet-orbit-61")
        form.get_by_label(walk.name("Password again")).fill("violet-orbit-61")
        walk.look(page)
        form.get_by_role("button", name=walk.name("Create the user")).click()
        expect(page.locator('tr[data-user="alice"]')).to_be_visible()
        expect(page.get_by_role("link", name=walk.name("Bind WeChat"), exact=True)).to_be_visible()

    with walk.step(9, page) as step:
        page.locator(".nav-tabs").get_by_role("link", name=walk.name("Applications")).click()
        walk.fill(page, "App code", walk.value("my_app"))
        walk.click(page, "button", "Register")
        secret = page.locator("#secret-value").inner_text()
        examples = page.locator("#example-calls")
        expect(examples.get_by_role("heading", name=walk.name("Try it: send yourself a message"))).to_be_visible()
        expect(examples.get_by_role("heading", name=walk.name("curl"), exact=True)).to_be_visible()
        copy = examples.locator("[data-copy-target=example-curl]")
        expect(copy).to_have_text(walk.name("Copy"))
        copy.click()
        command = page.evaluate("navigator.clipboard.readText()")
        # The document's curl block is the console's command, with the document's address and SECRET.
        documented = [block for block in step.blocks if block.lstrip().startswith("curl")]
        assert len(documented) == 1, step.blocks
        assert collapse(documented[0].replace("\\\n", " ")) == collapse(
            command.replace("\\\n", " ").replace(base, DOC_BASE).replace(secret, "SECRET"))
        ran = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
        answer = json.loads(ran.stdout)
        # What the document says of the answer: "result":true, one delivery to admin, "status":"sent".
        walk.value('"result":true'), walk.value('"status":"sent"'), walk.value(admin)
        assert answer["result"] is True, answer
        assert [(d["username"], d["status"]) for d in answer["data"]["deliveries"]] == [(admin, "sent")], answer

    with walk.step(10, page, simulator):
        simulator.goto(base + "/simulator/scan")
        walk.click(simulator, "link", "Phones", exact=True)
        walk.click(simulator, "link", "Alice", exact=True)
        chat = simulator.locator("body")
        expect(chat).to_contain_text("disk /data 91% full")
        text = collapse(chat.inner_text())
        assert text.index("Set-up works") < text.index("disk /data 91% full")
        assert text.count(walk.name("Alert notice")) >= 2
        page.locator(".nav-tabs").get_by_role("link", name=walk.name("Deliveries")).click()
        rows = page.locator("table tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0)).to_contain_text(walk.name("my_app"))
        expect(rows.nth(0)).to_contain_text(walk.name("Send API"))
        expect(rows.nth(1)).to_contain_text(walk.name("Set-up wizard test"))
        for row in (rows.nth(0), rows.nth(1)):
            expect(row).to_contain_text(walk.name("sent"))

    assert walk.walked == len(walk.steps), f"the document has {len(walk.steps)} steps; the test walked {walk.walked}"
