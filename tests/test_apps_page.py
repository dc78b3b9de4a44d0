"""The applications page: Register redirects, the new secret is shown once, and its example calls work as pasted.

The curl command and the BlueKing SDK snippet are taken from the page exactly as an administrator
copies them, and run as they would run them: curl in a shell, Python in a fresh interpreter, against
the live service and its simulated WeChat.
"""
import html
import json
import logging
import re
import subprocess
import sys

from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import select

from tests.api_support import Api, bind, mp, service, sim_messages  # noqa: F401  (fixtures)
from tests.binding_support import browser, page_csrf
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.models import ApiApp
from webapp.simulator.world import MP_APPID, OPENID_DAVE

APPS = "/console/apps/"
ROOT_PASSWORD = "granite-peak-8"


def signed_in_admin(app, base):
    """The administrator root, bound to a WeChat that follows the account, signed in through the login page."""
    with app.test_request_context():
        create_user("root", ROOT_PASSWORD, is_admin=True)
        db.session.remove()
    bind(app, "root", "mp", MP_APPID, OPENID_DAVE)
    return browser(base, "root", ROOT_PASSWORD)


def register(admin, base: str, code: str):
    """Press Register on the applications page (without following the redirect)."""
    token = page_csrf(admin, base + APPS)
    return admin.post(base + APPS, data={"app_code": code, "rate_limit": "600", "csrf_token": token},
                      allow_redirects=False, timeout=10)


def shown(page_text: str, element_id: str) -> str:
    """The text of the element ``element_id`` as the browser shows it (and a copy button copies it)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</code>', page_text, re.S)
    assert match, f"no #{element_id} on the page"
    return html.unescape(match.group(1))


def test_register_redirects_and_shows_the_secret_once_with_an_empty_form(mp, caplog):
    app, base, api = mp
    caplog.set_level(logging.DEBUG)
    admin = signed_in_admin(app, base)
    answer = register(admin, base, "job_center")
    assert answer.status_code == 303 and answer.headers["Location"].endswith(APPS)
    # What the browser keeps between the two requests does not hold the secret readably.
    cookie = admin.cookies.get("session")
    kept = SecureCookieSessionInterface().get_signing_serializer(app).loads(cookie)
    page = admin.get(base + APPS, timeout=10)
    secret = shown(page.text, "secret-value")
    assert len(secret) >= 40 and secret not in json.dumps(kept) and secret not in cookie
    assert "job_center is registered" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    # The form is empty again: a second Register starts from scratch.
    field = re.search(r'<input[^>]*id="app_code"[^>]*>', page.text).group(0)
    assert 'value="' not in field or 'value=""' in field
    assert 'data-copy-target="secret-value"' in page.text and "js/copy.js" in page.text
    # Shown once: a reload no longer has it.
    again = admin.get(base + APPS, timeout=10)
    assert secret not in again.text and 'id="new-secret"' not in again.text and "Cache-Control" not in again.headers
    assert Api(base, "job_center", secret).send({"receiver__username": "alice", "data": {"heading": "h", "message": "m"}}).json()["result"]
    assert not [r for r in caplog.records if secret in r.getMessage()]


def test_the_curl_example_runs_as_pasted(mp):
    app, base, api = mp
    admin = signed_in_admin(app, base)
    register(admin, base, "ops_scripts")
    page = admin.get(base + APPS, timeout=10)
    secret = shown(page.text, "secret-value")
    command = shown(page.text, "example-curl")
    assert command.startswith(f"curl -s -X POST {base}/api/c/compapi/v2/cmsi/send_weixin/")
    assert "X-Bkapi-Authorization" in command and secret in command
    ran = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    assert answer["result"] is True and answer["code"] == 0, answer
    assert [(d["username"], d["status"]) for d in answer["data"]["deliveries"]] == [("root", "sent")]
    assert [m["to"] for m in sim_messages(base)] == [OPENID_DAVE]
    assert sim_messages(base)[0]["data"]["first"] == "Disk alert"


def test_the_blueking_sdk_example_runs_as_pasted(mp):
    app, base, api = mp
    admin = signed_in_admin(app, base)
    register(admin, base, "saas_app")
    snippet = shown(admin.get(base + APPS, timeout=10).text, "example-python")
    assert snippet.startswith("from bkapi_component.open.shortcuts import get_client_by_username")
    ran = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[0] == "True", ran.stdout
    assert [m["to"] for m in sim_messages(base)] == [OPENID_DAVE]


def test_the_examples_use_the_configured_public_address(mp):
    app, base, api = mp
    admin = signed_in_admin(app, base)
    app.config["PUBLIC_URL"] = "https://notify.example.com"
    register(admin, base, "public_one")
    page = admin.get(base + APPS, timeout=10).text
    assert shown(page, "example-curl").startswith("curl -s -X POST https://notify.example.com/api/c/compapi/v2/cmsi/send_weixin/")
    assert 'endpoint="https://notify.example.com"' in shown(page, "example-python")
    # Without one, the address the administrator's browser used.
    app.config["PUBLIC_URL"] = None
    register(admin, base, "public_two")
    assert f"-X POST {base}/api/" in shown(admin.get(base + APPS, timeout=10).text, "example-curl")


def test_a_new_secret_also_redirects_and_its_examples_work(mp):
    app, base, api = mp
    admin = signed_in_admin(app, base)
    with app.app_context():
        app_id = db.session.scalar(select(ApiApp.id).where(ApiApp.app_code == api.code))
    token = page_csrf(admin, base + APPS)
    answer = admin.post(f"{base}{APPS}{app_id}/rotate", data={"csrf_token": token}, allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    page = admin.get(base + APPS, timeout=10).text
    assert "The previous secret no longer works." in page
    command = shown(page, "example-curl")
    assert api.send({"receiver__username": "alice", "data": {"heading": "h", "message": "m"}}).status_code == 401
    ran = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
    assert json.loads(ran.stdout)["result"] is True


def test_a_refused_registration_keeps_what_was_typed_and_shows_no_secret(mp):
    app, base, api = mp
    admin = signed_in_admin(app, base)
    answer = register(admin, base, api.code)
    assert answer.status_code == 400
    assert f"The app code {api.code} is already registered." in answer.text
    assert f'value="{api.code}"' in answer.text and 'id="new-secret"' not in answer.text
    bad = register(admin, base, "no spaces")
    assert bad.status_code == 400 and "Letters, digits, _ and - only." in bad.text
    with app.app_context():
        assert db.session.scalars(select(ApiApp.app_code)).all() == [api.code]
