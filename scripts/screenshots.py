"""Take the README's screenshots from a real run: the service with its simulator, driven in Chromium,
on a desktop and on a 390 px phone, in English and Chinese.

    .venv/bin/python -m scripts.screenshots        # writes docs/screenshots/*.png

Chinese text on the pages (the WeChat menu names, the "详情" link) needs a CJK font in Chromium:
on Debian, ``apt-get install fonts-wqy-microhei``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def wizard_screenshots(playwright, base: str, appid: str, secret: str) -> None:
    """The set-up wizard's main steps, as an administrator walks through them with the simulator."""
    browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
    page.goto(base + "/login?next=/setup/wizard/")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("correct-horse-9")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Choose the channel").wait_for()
    page.screenshot(path=str(OUT / "wizard-1-channel.png"), full_page=True)
    page.get_by_role("radio", name="WeChat Official Account (公众号)").check()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_label("AppID (开发者ID)").fill(appid)
    page.get_by_label("AppSecret (开发者密码)").fill("f" * 32)
    page.locator("[data-generate=token]").click()
    page.locator("[data-generate=aes_key]").click()
    page.get_by_role("button", name="Check the keys and continue").click()
    page.locator("#wx_secret ~ .invalid-feedback").wait_for()
    page.screenshot(path=str(OUT / "wizard-3-keys-wrong-secret.png"), full_page=True)
    page.get_by_label("AppSecret (开发者密码)").fill(secret)
    page.get_by_role("button", name="Check the keys and continue").click()
    page.wait_for_url(base + "/setup/wizard/template")
    page.get_by_text("Alert notice").click()
    page.locator("#preview-card").wait_for()
    page.wait_for_timeout(500)
    page.screenshot(path=str(OUT / "wizard-4-template.png"), full_page=True)
    page.get_by_role("button", name="Check the template and continue").click()
    page.get_by_role("button", name="Test the callback").click()
    page.locator("#now-submit").wait_for(timeout=15000)
    page.screenshot(path=str(OUT / "wizard-5-callback.png"), full_page=True)
    browser.close()


def signed_in(browser, base: str, user: str, password: str, next_path: str, **context):
    """A new tab of its own browser context (``context``: locale, viewport...) signed in as ``user`` at ``next_path``."""
    page = browser.new_context(**context).new_page()
    page.goto(base + "/login?next=" + next_path)
    page.locator("#username").fill(user)
    page.locator("#password").fill(password)
    page.locator("#submit").click()
    page.wait_for_load_state("networkidle")
    return page


def other_languages_and_phones(browser, base: str) -> None:
    """The console and the users page in Chinese on a desktop, and the main pages on a 390 px phone in both languages."""
    desktop = {"viewport": {"width": 1280, "height": 900}}
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
    admin_zh = signed_in(browser, base, "admin", "correct-horse-9", "/console/", locale="zh-CN", **desktop)
    admin_zh.screenshot(path=str(OUT / "console-zh.png"), full_page=True)
    admin_zh.goto(base + "/console/users/")
    admin_zh.screenshot(path=str(OUT / "users-zh.png"), full_page=True)
    for locale, suffix in (("en-US", ""), ("zh-CN", "-zh")):
        admin = signed_in(browser, base, "admin", "correct-horse-9", "/console/", locale=locale, **phone)
        admin.screenshot(path=str(OUT / f"phone-console{suffix}.png"))
        admin.goto(base + "/console/users/")
        admin.screenshot(path=str(OUT / f"phone-users{suffix}.png"))
        person = signed_in(browser, base, "alice", "tulip-meadow-42", "/console/user_center/weixin/", locale=locale, **phone)
        person.screenshot(path=str(OUT / f"phone-bind{suffix}.png"))


def main() -> None:
    from playwright.sync_api import sync_playwright

    from bench.common import free_port
    from webapp.simulator.world import MP_APPID, MP_SECRET, OPENID_NOT_FOLLOWING, TEMPLATE_NOTIFICATION_ID

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    folder = tempfile.mkdtemp(prefix="shots-")
    env = {**os.environ, "FLASK_DATABASE_URL": f"sqlite:///{folder}/db.sqlite3", "FLASK_SECRET_KEY": "screenshots",
           "FLASK_WEIXIN_SIMULATOR": "true", "FLASK_WEIXIN_MP_API_BASE": base + "/simulator/mp",
           "FLASK_WEIXIN_QY_API_BASE": base + "/simulator/qy", "FLASK_PUBLIC_URL": base, "FLASK_SCHEDULER_ENABLED": "true"}

    def flask(*args):
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env, check=True,
                              capture_output=True, text=True).stdout

    flask("init-db")
    flask("create-user", "admin", "--password", "correct-horse-9", "--admin")
    flask("create-user", "alice", "--password", "tulip-meadow-42")
    flask("create-user", "bob", "--password", "violet-orbit-61")
    secret = flask("create-api-app", "bk_monitor").strip().splitlines()[-1]
    server = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "run", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                requests.get(base + "/healthz", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            wizard_screenshots(playwright, base, MP_APPID, MP_SECRET)
        config = {"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": "DemoToken2026",
                  "wx_encoding_aes_key": "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", "wx_encrypt_mode": "safe",
                  "wx_template_id": TEMPLATE_NOTIFICATION_ID}
        path = Path(folder) / "weixin.json"
        path.write_text(json.dumps(config))
        flask("weixin-config", str(path))
        requests.post(base + "/simulator/_control/mp/server", json={"url": base + "/console/user_center/weixin/mp/callback/",
                      "token": config["wx_token"], "encoding_aes_key": config["wx_encoding_aes_key"], "mode": "safe"}, timeout=10)
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860}, locale="en-US")
            page.goto(base + "/login?next=/console/user_center/weixin/")
            page.get_by_label("User name").fill("alice")
            page.get_by_label("Password").fill("tulip-meadow-42")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="Show QR code").click()
            page.locator("#countdown").wait_for()
            page.wait_for_timeout(500)
            page.screenshot(path=str(OUT / "bind-qr.png"))
            content = page.locator("#qr").get_attribute("data-content")
            requests.post(base + "/simulator/_control/mp/scan", json={"openid": OPENID_NOT_FOLLOWING, "url": content}, timeout=20)
            page.get_by_role("heading", name="Your WeChat is bound").wait_for(timeout=15000)
            page.screenshot(path=str(OUT / "bind-bound.png"))
            headers = {"X-Bkapi-Authorization": json.dumps({"bk_app_code": "bk_monitor", "bk_app_secret": secret})}
            for heading, message in (("Disk alert", "disk /data on db1 is 91% full"),
                                     ("Backup finished", "nightly backup of db1 finished in 12 minutes")):
                requests.post(base + "/api/c/compapi/cmsi/send_weixin/", headers=headers, timeout=30,
                              json={"receiver__username": "alice", "data": {"heading": heading, "message": message}})
            page.goto(base + f"/simulator/phone/{OPENID_NOT_FOLLOWING}")
            page.screenshot(path=str(OUT / "simulator-phone.png"))
            admin = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
            admin.goto(base + "/login?next=/console/")
            admin.get_by_label("User name").fill("admin")
            admin.get_by_label("Password").fill("correct-horse-9")
            admin.get_by_role("button", name="Sign in").click()
            admin.screenshot(path=str(OUT / "console.png"), full_page=True)
            admin.goto(base + "/console/deliveries/")
            admin.screenshot(path=str(OUT / "deliveries.png"))
            admin.goto(base + "/console/users/")
            admin.screenshot(path=str(OUT / "users.png"), full_page=True)
            other_languages_and_phones(browser, base)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
    print("\n".join(sorted(str(p.relative_to(ROOT)) for p in OUT.glob("*.png"))))


if __name__ == "__main__":
    main()
