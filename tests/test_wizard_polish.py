"""The set-up wizard as a newcomer meets it with the simulator, over real HTTP: the simulator's server form
filled from the draft, the new key visible until saved, refused secrets forgotten, one way on from the test
step, the template that shows a heading, WeCom's text card without a link, and the WeCom bind return page."""
from __future__ import annotations

import html as html_module
import json
import re

import requests
from sqlalchemy import select

from tests.api_support import Api, bind
from tests.conftest import ADMIN
from tests.test_wizard import (CALLBACK, CATEGORY_MAPPING, KEY, MP_KEYS, QY_KEYS, TOKEN, Wizard, service, sim,  # noqa: F401
                               step_of, to_callback, to_keys, to_template, unescape)
from webapp import channel
from webapp.api.apps import create_app_credentials
from webapp.extensions import db
from webapp.models import WizardDraft
from webapp.setup import drafts
from webapp.simulator.world import (MP_APPID, MP_SECRET, OPENID_ALICE, QY_CORPID, TEMPLATE_ALERT_ID,
                                    TEMPLATE_CATEGORY_ID)


def draft_secrets(app) -> dict:
    """The secrets the administrator's draft holds now."""
    with app.app_context():
        row = db.session.scalar(select(WizardDraft))
        values = drafts.read_secrets(row)
        db.session.remove()
        return values


def hidden_fields(page: str, form_id: str) -> tuple[str, dict[str, str]]:
    """The action and the hidden fields of the form ``form_id`` of a page."""
    form = re.search(rf'<form[^>]*id="{form_id}"[^>]*>(.*?)</form>', page, re.S)
    assert form, form_id
    action = html_module.unescape(re.search(r'action="([^"]+)"', form.group(0)).group(1))
    fields = {name: html_module.unescape(value) for name, value in
              re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(1))}
    return action, fields


# --- the callback step and the simulator's 服务器配置 form ---------------------------------------------

def test_one_button_fills_the_simulators_server_form_from_the_draft(service, capsys):
    app, base = service
    w = Wizard(base)
    page = to_callback(w).text
    # The key generated in this draft is shown in full until it is saved, with a Copy button.
    assert f'id="value-aes-key">{KEY}<' in page and 'data-copy-from-text="value-aes-key"' in page
    action, fields = hidden_fields(page, "simulator-fill")
    assert action == "/simulator/panel/server/fill"
    assert fields == {"url": base + CALLBACK, "token": TOKEN, "encoding_aes_key": KEY, "mode": "safe"}
    # The button posts the form (a new tab in a browser): the simulator's form holds the values, not submitted.
    filled = requests.post(base + action, data=fields, allow_redirects=False, timeout=10)
    assert filled.status_code == 303 and filled.headers["Location"].endswith("/simulator/#server-config")
    panel = requests.get(base + "/simulator/", timeout=10).text
    form = re.search(r'<form[^>]*id="server-form".*?</form>', panel, re.S).group(0)
    assert 'id="server-form-filled"' in form
    assert f'name="url" value="{base + CALLBACK}"' in form and f'name="token" value="{TOKEN}"' in form
    assert f'name="encoding_aes_key" value="{KEY}"' in form
    assert re.search(r'<input type="radio" name="mode" value="safe" checked>', form)
    assert not re.search(r'<input type="radio" name="mode" value="plain" checked>', form)
    # Filling in checks nothing and pushes nothing: WeChat's side has no configuration yet.
    state = sim(base, "mp/server", method="GET")
    assert state["server"]["url"] == "" and state["last_check"] is None
    assert w.json("callback/status")["data"] == {"state": "waiting"}
    # The key is in the page but never in a log line (the form's values travel in the POST body).
    logged = capsys.readouterr().err
    assert "/simulator/panel/server/fill" in logged and KEY not in logged and TOKEN not in logged
    # A bad mode is refused and changes nothing.
    assert requests.post(base + action, data={**fields, "mode": "loud"}, timeout=10).status_code == 400


def test_the_submit_instructions_go_once_wechat_verified_the_server(service):
    app, base = service
    w = Wizard(base)
    page = to_callback(w).text
    assert 'id="dont-submit-yet"' in page and 'id="now-submit"' not in page
    page = w.post("callback", {"public_url": base + CALLBACK, "test": "x"}).text
    # The self-test passed: "press Submit now" replaces "do not press Submit yet".
    assert 'id="now-submit"' in page and 'id="dont-submit-yet"' not in page
    action, fields = hidden_fields(page, "simulator-fill")
    requests.post(base + action, data=fields, timeout=10)
    # The administrator presses Submit in the simulator's form, as filled in.
    submitted = requests.post(base + "/simulator/panel/server", data={**fields, "enabled": "on"}, timeout=10)
    assert submitted.status_code == 200
    assert sim(base, "mp/server", method="GET")["server"]["encoding_aes_key"] == KEY
    assert 'id="server-form-filled"' not in submitted.text  # submitted: the form shows the configuration
    page = unescape(w.get("callback").text)
    assert "WeChat verified your server at" in page
    assert 'id="dont-submit-yet"' not in page and 'id="now-submit"' not in page


def test_a_refused_server_form_keeps_its_values_in_the_simulator(service):
    app, base = service
    fields = {"url": "http://127.0.0.1:9/nothing/", "token": "SomeToken1", "encoding_aes_key": KEY, "mode": "compatible"}
    requests.post(base + "/simulator/panel/server", data={**fields, "enabled": "on"}, timeout=10)
    assert sim(base, "mp/server", method="GET")["server"]["url"] == ""
    form = re.search(r'<form[^>]*id="server-form".*?</form>', requests.get(base + "/simulator/", timeout=10).text,
                     re.S).group(0)
    assert 'value="SomeToken1"' in form and re.search(r'name="mode" value="compatible" checked', form)


def test_the_saved_key_stays_masked_on_the_callback_step(service):
    app, base = service
    with app.app_context():
        channel.save(channel.normalize({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": TOKEN,
                                        "wx_encoding_aes_key": KEY, "wx_encrypt_mode": "safe",
                                        "wx_template_id": TEMPLATE_CATEGORY_ID}), actor="test")
    w = Wizard(base)
    to_keys(w)
    assert step_of(w.post("keys", {"wx_app_id": MP_APPID, "wx_token": TOKEN, "wx_encrypt_mode": "safe"})) == "template"
    page = unescape(w.post("template", {**CATEGORY_MAPPING, "submit": "x"}).text)
    assert step_of_text(page) == "callback"
    assert KEY not in page and "••••••••DEFG" in page and "the saved key (shown masked)" in page
    _action, fields = hidden_fields(page, "simulator-fill")
    assert "encoding_aes_key" not in fields and fields["token"] == TOKEN


def step_of_text(page: str) -> str:
    return re.search(r'id="wizard" data-step="([a-z]+)"', page).group(1)


# --- the keys step: a refused secret is not kept ------------------------------------------------------

def test_a_refused_appsecret_is_not_kept_in_the_draft(service):
    app, base = service
    w = Wizard(base)
    to_keys(w)
    page = unescape(w.post("keys", {**MP_KEYS, "wx_secret": "f" * 32}).text)
    assert "The AppSecret is wrong" in page
    assert "wx_secret" not in draft_secrets(app) and "Saved (ends in ffff)" not in page
    assert draft_secrets(app)["wx_token"] == TOKEN  # the other answers are kept for "Check again"
    assert "Saved (ends in ffff)" not in unescape(w.get("keys").text)
    # A right one is kept; a wrong one typed later gives way to it again.
    assert step_of(w.post("keys", MP_KEYS)) == "template"
    page = unescape(w.post("keys", {**MP_KEYS, "wx_secret": "e" * 32}).text)
    assert "The AppSecret is wrong" in page
    assert draft_secrets(app)["wx_secret"] == MP_SECRET and "Saved (ends in cdef)" in page
    # Refused for the IP address, the secret itself may be right: it is kept, so "Check again" needs no retyping.
    sim(base, "settings", {"mp_ip_check": True})
    w.post("keys", {**MP_KEYS, "wx_secret": "d" * 32})
    assert draft_secrets(app)["wx_secret"] == "d" * 32
    sim(base, "settings", {"mp_ip_check": False})


def test_a_refused_wecom_secret_is_not_kept_in_the_draft(service):
    app, base = service
    w = Wizard(base)
    to_keys(w, "qywx")
    page = unescape(w.post("keys", {**QY_KEYS, "wx_qy_corpsecret": "W" * 43}).text)
    assert "The app's Secret (corpsecret) is wrong" in page
    assert "wx_qy_corpsecret" not in draft_secrets(app) and "Saved (ends in WWWW)" not in page


# --- the template step ---------------------------------------------------------------------------------

def test_coming_back_to_the_template_step_shows_the_chosen_templates_preview(service):
    app, base = service
    w = Wizard(base)
    to_callback(w)
    page = w.get("template").text
    assert 'id="preview-card"' in page and 'id="preview-empty"' not in page


def test_the_alert_template_shows_the_readme_examples_heading_on_the_phone(service):
    """README's example (heading "Disk alert") through the simulator's Service alert template and the
    mapping the wizard suggests for it: the follower sees the heading and the message."""
    app, base = service
    w = Wizard(base)
    page = to_template(w).text
    radio = re.search(rf'<input[^>]*value="{TEMPLATE_ALERT_ID}"[^>]*>', page).group(0)
    suggested = json.loads(html_module.unescape(re.search(r'data-suggest="([^"]+)"', radio).group(1)))
    assert suggested == {"heading": "thing1", "message": "thing2", "date": "time3"}
    mapping = {f"map_{p}": suggested.get(p, "") for p in ("heading", "message", "date", "remark")}
    answer = w.post("template", {"wx_template_id": TEMPLATE_ALERT_ID, **mapping, "submit": "x"})
    assert step_of(answer) == "callback"
    w.post("callback", {"public_url": base + CALLBACK, "forwarded": "y", "submit": "Next"})
    assert step_of(w.post("save", {"submit": "Save"})) == "test"
    bind(app, ADMIN[0], "mp", MP_APPID, OPENID_ALICE)
    with app.app_context():
        _, secret = create_app_credentials("bk_monitor")
        db.session.remove()
    sent = Api(base, "bk_monitor", secret).send(
        {"receiver__username": ADMIN[0], "data": {"heading": "Disk alert", "message": "disk /data 91% full"}}).json()
    assert sent["result"] is True, sent
    phone = requests.get(f"{base}/simulator/phone/{OPENID_ALICE}", timeout=10).text
    card = re.search(r'<div class="card card-mp">.*?</dl>', phone, re.S).group(0)
    assert "<dd>Disk alert</dd>" in card and "<dd>disk /data 91% full</dd>" in card
    assert "field-hidden" not in card  # nothing of it on a line WeChat no longer shows


# --- the test step -------------------------------------------------------------------------------------

def test_the_test_step_has_one_way_on_and_says_saved_once(service):
    app, base = service
    w = Wizard(base)
    to_callback(w)
    w.post("callback", {"public_url": base + CALLBACK, "forwarded": "y", "submit": "Next"})
    page = unescape(w.post("save", {"submit": "Save"}).text)
    assert step_of_text(page) == "test"
    assert 'id="finish"' in page and 'id="wizard-next"' not in page
    assert page.count("The configuration is saved.") == 1


def test_a_text_card_without_a_link_is_said_to_arrive_as_text(service):
    app, base = service
    w = Wizard(base)
    to_keys(w, "qywx")
    keys = unescape(w.get("keys").text)
    assert 'id="textcard-note"' in keys and "goes out as plain text" in keys
    answer = w.post("keys", {**QY_KEYS, "wx_qy_msgtype": "textcard"})
    if step_of(answer) == "server":  # the application's 接收消息 server, which this test leaves out
        answer = w.post("server", {"left_out": "y", "submit": "Next"})
    assert step_of(answer) == "domain"
    assert step_of(w.post("domain", {"submit": "Next"})) == "save"
    page = unescape(w.post("save", {"submit": "Save"}).text)
    assert 'id="textcard-as-text"' in page
    bind(app, ADMIN[0], "qywx", QY_CORPID, "zhangsan")
    assert 'data-status="sent"' in w.post("test", {"submit": "Send"}).text
    [delivered] = sim(base, "messages?channel=qy&to=zhangsan", method="GET")["messages"]
    assert delivered["msgtype"] == "text"  # what the page said
    # With FLASK_PUBLIC_URL the card links to the message's detail page: no such note.
    app.config["PUBLIC_URL"] = base
    assert 'id="textcard-as-text"' not in w.get("test").text


# --- WeCom's bind return page --------------------------------------------------------------------------

def test_the_wecom_bind_return_page_says_wecom_and_bound_once(service):
    from tests.binding_support import connect_qy

    app, base = service
    connect_qy(app)
    w = Wizard(base)
    state = w.session.get(base + "/console/user_center/weixin/qy/get_login_url/", timeout=10).json()["data"]["scene"]
    code = sim(base, "qy/codes", {"userid": "zhangsan"})["code"]
    page = w.session.get(base + "/console/user_center/weixin/qy/login_callback/", params={"code": code, "state": state},
                         timeout=10)
    text = unescape(page.text)
    assert page.status_code == 200
    assert re.search(r'id="result-title">Your WeCom account is bound<', text)
    assert "Your WeChat is bound" not in text and text.count("is bound") == 1
    assert f"Notifications for the user {ADMIN[0]} of this service now come to you in WeCom." in text
