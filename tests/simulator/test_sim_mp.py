"""The simulated Official Account API: tokens, template messages, QR codes, template list."""
from __future__ import annotations

import base64
import re

import pytest

from webapp.simulator.world import (
    MP_APPID,
    MP_USERS,
    OPENID_ALICE,
    OPENID_BOB,
    OPENID_NOT_FOLLOWING,
    TEMPLATE_CATEGORY_ID,
    TEMPLATE_NOTIFICATION_ID,
)

from .support import SimClient, sim, sim_server  # noqa: F401  (fixtures)

RID = re.compile(r" rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$")


def ok(answer: dict) -> None:
    assert answer["errcode"] == 0, answer
    assert answer["errmsg"] == "ok"


# ---- /cgi-bin/token -----------------------------------------------------------------------------

def test_seed_users_look_like_real_openids():
    assert len(MP_USERS) == 5
    assert all(len(openid) == 28 and openid.startswith("o") for openid, _, _ in MP_USERS)
    assert [f for _, _, f in MP_USERS].count(False) == 1


def test_token_is_new_each_call_and_previous_stays_valid_five_minutes(sim: SimClient):
    first = sim.mp_token()
    assert first["expires_in"] == 7200 and "errcode" not in first
    second = sim.mp_token()
    assert second["access_token"] != first["access_token"]
    ok(sim.send_template(first["access_token"]))
    sim.advance(299)
    ok(sim.send_template(first["access_token"]))
    sim.advance(2)
    stale = sim.send_template(first["access_token"])
    assert stale["errcode"] == 40001
    assert stale["errmsg"].startswith("invalid credential, access_token is invalid or not latest")
    assert RID.search(stale["errmsg"])
    ok(sim.send_template(second["access_token"]))


def test_token_expires(sim: SimClient):
    token = sim.mp_token()["access_token"]
    sim.advance(7199)
    ok(sim.send_template(token))
    sim.advance(2)
    answer = sim.send_template(token)
    assert answer["errcode"] == 42001
    assert answer["errmsg"].startswith("access_token expired rid: ")


def test_token_lifetime_setting(sim: SimClient):
    sim.settings(token_lifetime=60)
    token = sim.mp_token()
    assert token["expires_in"] == 60
    sim.advance(61)
    assert sim.send_template(token["access_token"])["errcode"] == 42001


def test_token_credentials_are_checked(sim: SimClient):
    wrong_appid = sim.mp_token(appid="wx0000000000000000")
    assert wrong_appid["errcode"] == 40013 and RID.search(wrong_appid["errmsg"])
    wrong_secret = sim.mp_token(secret="f" * 32)
    assert wrong_secret["errcode"] == 40125
    assert wrong_secret["errmsg"].startswith("invalid appsecret rid: ")
    assert sim.get(f"{sim.mp}/token", appid=MP_APPID)["errcode"] == 40002


def test_account_secret_can_be_changed(sim: SimClient):
    sim.control("mp/account", {"secret": "a" * 32})
    assert sim.mp_token()["errcode"] == 40125
    assert "access_token" in sim.mp_token(secret="a" * 32)
    assert sim.control("world", method="GET")["mp"]["secret"] == "a" * 32


def test_missing_and_unknown_tokens(sim: SimClient):
    assert sim.send_template(None)["errcode"] == 41001
    assert sim.send_template("not-a-token")["errcode"] == 40001
    qy_token = sim.qy_token()["access_token"]
    assert sim.send_template(qy_token)["errcode"] == 40001


def test_invalidated_tokens_give_40001(sim: SimClient):
    token = sim.mp_token()["access_token"]
    stable = sim.stable_token()["access_token"]
    assert sim.control("tokens/invalidate", {"channel": "mp"})["revoked"] == 2
    assert sim.send_template(token)["errcode"] == 40001
    assert sim.send_template(stable)["errcode"] == 40001
    fresh = sim.stable_token()["access_token"]
    assert fresh != stable
    ok(sim.send_template(fresh))


# ---- /cgi-bin/stable_token ----------------------------------------------------------------------

def test_stable_token_is_the_same_while_valid(sim: SimClient):
    first = sim.stable_token()
    assert first["expires_in"] == 7200
    sim.advance(1000)
    again = sim.stable_token()
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == pytest.approx(6200, abs=2)
    assert sim.calls()["stable_token"] == 2


def test_stable_token_rolls_over_in_the_last_five_minutes(sim: SimClient):
    first = sim.stable_token()["access_token"]
    sim.advance(7200 - 301)
    assert sim.stable_token()["access_token"] == first
    sim.advance(2)  # now inside the last 5 minutes
    second = sim.stable_token()
    assert second["access_token"] != first
    assert second["expires_in"] == 7200
    ok(sim.send_template(first))  # the old one lives until its own expiry
    sim.advance(300)
    assert sim.send_template(first)["errcode"] == 42001
    ok(sim.send_template(second["access_token"]))


def test_stable_token_force_refresh_invalidates_previous(sim: SimClient):
    first = sim.stable_token()["access_token"]
    forced = sim.stable_token(force_refresh=True)["access_token"]
    assert forced != first
    assert sim.send_template(first)["errcode"] == 40001
    ok(sim.send_template(forced))
    assert sim.stable_token()["access_token"] == forced


def test_stable_and_plain_tokens_are_isolated(sim: SimClient):
    stable = sim.stable_token()["access_token"]
    sim.mp_token()
    sim.mp_token()
    sim.advance(600)
    ok(sim.send_template(stable))
    assert sim.stable_token()["access_token"] == stable


def test_stable_token_checks_credentials(sim: SimClient):
    assert sim.stable_token(appid="wx1111111111111111")["errcode"] == 40013
    assert sim.stable_token(secret="0" * 32)["errcode"] == 40125


# ---- template messages --------------------------------------------------------------------------

def test_template_send_records_the_message(sim: SimClient):
    token = sim.stable_token()["access_token"]
    answer = sim.send_template(token, url="https://example.com/alert/1", client_msg_id="m-1")
    ok(answer)
    assert isinstance(answer["msgid"], int)
    [message] = sim.messages("mp", OPENID_ALICE)
    assert message["msgid"] == answer["msgid"]
    assert message["template_id"] == TEMPLATE_NOTIFICATION_ID
    assert message["title"] == "Notification"
    assert message["data"]["keyword1"] == "Disk full"
    assert message["client_msg_id"] == "m-1"
    assert message["url"] == "https://example.com/alert/1"
    assert message["time"] > 0
    assert sim.messages("mp", OPENID_BOB) == []


def test_client_msg_id_dedupes_within_ten_minutes(sim: SimClient):
    token = sim.stable_token()["access_token"]
    first = sim.send_template(token, client_msg_id="delivery-7")
    ok(first)
    again = sim.send_template(token, client_msg_id="delivery-7",
                              data={"keyword1": {"value": "changed"}})
    assert again == first
    other_user = sim.send_template(token, client_msg_id="delivery-7", touser=OPENID_BOB)
    ok(other_user)
    assert other_user["msgid"] != first["msgid"]
    assert len(sim.messages("mp", OPENID_ALICE)) == 1
    sim.advance(601)
    later = sim.send_template(token, client_msg_id="delivery-7")
    ok(later)
    assert later["msgid"] != first["msgid"]
    assert len(sim.messages("mp", OPENID_ALICE)) == 2


def test_a_failed_send_is_not_remembered_by_client_msg_id(sim: SimClient):
    token = sim.stable_token()["access_token"]
    assert sim.send_template(token, template_id="TM00015", client_msg_id="x")["errcode"] == 40037
    ok(sim.send_template(token, client_msg_id="x"))


def test_template_send_refusals(sim: SimClient):
    token = sim.stable_token()["access_token"]
    not_following = sim.send_template(token, touser=OPENID_NOT_FOLLOWING)
    assert not_following["errcode"] == 43004
    assert not_following["errmsg"].startswith("require subscribe rid: ")
    unknown_user = sim.send_template(token, touser="o" + "x" * 27)
    assert unknown_user["errcode"] == 40003
    assert sim.send_template(token, template_id="TM00015")["errcode"] == 40037
    assert sim.send_template(token, template_id="")["errcode"] == 40036
    assert sim.messages("mp") == []


def test_category_template_values_follow_keyword_rules(sim: SimClient):
    token = sim.stable_token()["access_token"]
    good = {"thing1": {"value": "Disk usage above 90%"}, "time2": {"value": "2024-05-04 10:00"},
            "character_string3": {"value": "ALERT-1"}}
    ok(sim.send_template(token, template_id=TEMPLATE_CATEGORY_ID, data=good))
    too_long = {**good, "thing1": {"value": "x" * 21}}
    answer = sim.send_template(token, template_id=TEMPLATE_CATEGORY_ID, data=too_long)
    assert answer["errcode"] == 47003
    assert answer["errmsg"].startswith("argument invalid! data.thing1.value invalid rid: ")
    chinese = {**good, "character_string3": {"value": "告警"}}
    answer = sim.send_template(token, template_id=TEMPLATE_CATEGORY_ID, data=chinese)
    assert answer["errcode"] == 47003


def test_follow_and_add_users_through_control(sim: SimClient):
    token = sim.stable_token()["access_token"]
    sim.control("mp/users", {"openid": OPENID_NOT_FOLLOWING, "following": True})
    ok(sim.send_template(token, touser=OPENID_NOT_FOLLOWING))
    sim.control("mp/users", {"openid": OPENID_BOB, "following": False})
    assert sim.send_template(token, touser=OPENID_BOB)["errcode"] == 43004
    newcomer = "oSimNewUser000000000000000001"[:28]
    sim.control("mp/users", {"openid": newcomer, "nickname": "Frank"})
    ok(sim.send_template(token, touser=newcomer))
    assert sim.control(f"mp/users/{newcomer}", method="DELETE")["removed"] is True
    assert sim.send_template(token, touser=newcomer)["errcode"] == 40003


def test_invalid_json_body(sim: SimClient):
    token = sim.stable_token()["access_token"]
    response = sim.http.post(f"{sim.mp}/message/template/send", params={"access_token": token},
                             data=b"{not json", timeout=5)
    assert response.json()["errcode"] == 47001


# ---- QR codes and templates --------------------------------------------------------------------

def test_qrcode_create_temporary_string_scene(sim: SimClient):
    token = sim.stable_token()["access_token"]
    answer = sim.post(f"{sim.mp}/qrcode/create", {
        "expire_seconds": 600, "action_name": "QR_STR_SCENE",
        "action_info": {"scene": {"scene_str": "bind-abc123"}}}, access_token=token)
    assert answer["expire_seconds"] == 600
    assert re.fullmatch(r"http://weixin\.qq\.com/q/[\w-]{22}", answer["url"])
    base64.b64decode(answer["ticket"], validate=True)
    [stored] = sim.control("mp/qrcodes", method="GET")["qrcodes"]
    assert stored["ticket"] == answer["ticket"]
    assert stored["scene"] == "bind-abc123"
    found = sim.app.extensions["weixin_simulator"].find_ticket(answer["ticket"])
    assert found["scene"] == "bind-abc123" and found["expired"] is False
    sim.advance(601)
    assert sim.app.extensions["weixin_simulator"].find_ticket(answer["url"])["expired"] is True


def test_qrcode_create_integer_scene_and_defaults(sim: SimClient):
    token = sim.stable_token()["access_token"]
    answer = sim.post(f"{sim.mp}/qrcode/create", {
        "action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 123}}},
        access_token=token)
    assert answer["expire_seconds"] == 60
    capped = sim.post(f"{sim.mp}/qrcode/create", {
        "expire_seconds": 9999999, "action_name": "QR_SCENE",
        "action_info": {"scene": {"scene_id": 5}}}, access_token=token)
    assert capped["expire_seconds"] == 2592000


def test_qrcode_create_refusals(sim: SimClient):
    token = sim.stable_token()["access_token"]
    url = f"{sim.mp}/qrcode/create"
    assert sim.post(url, {"action_name": "QR_NOPE"}, access_token=token)["errcode"] == 40052
    wrapped_wrong = {"action_name": "QR_SCENE", "action_info": {"scene_id": 5}}
    assert sim.post(url, wrapped_wrong, access_token=token)["errcode"] == 40053
    too_long = {"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": "x" * 65}}}
    assert sim.post(url, too_long, access_token=token)["errcode"] == 40053
    assert sim.post(url, {"action_name": "QR_SCENE"})["errcode"] == 41001


def test_template_list(sim: SimClient):
    token = sim.stable_token()["access_token"]
    templates = sim.get(f"{sim.mp}/template/get_all_private_template",
                        access_token=token)["template_list"]
    by_id = {t["template_id"]: t for t in templates}
    notification = by_id[TEMPLATE_NOTIFICATION_ID]
    assert notification["title"] == "Notification"
    keys = re.findall(r"\{\{\s*(\w+)\.DATA\s*\}\}", notification["content"])
    assert keys == ["first", "keyword1", "keyword2", "remark"]
    category = by_id[TEMPLATE_CATEGORY_ID]
    assert re.findall(r"\{\{(\w+)\.DATA\}\}", category["content"]) == [
        "thing1", "time2", "character_string3"]
    assert all(len(t["template_id"]) == 43 for t in templates)
    assert sim.get(f"{sim.mp}/template/get_all_private_template")["errcode"] == 41001


def test_templates_can_be_added_and_removed(sim: SimClient):
    token = sim.stable_token()["access_token"]
    sim.control("mp/templates", {"template_id": "T" * 43, "title": "Extra",
                                 "content": "Name:{{name1.DATA}}"})
    ok(sim.send_template(token, template_id="T" * 43, data={"name1": {"value": "Ann"}}))
    sim.control(f"mp/templates/{TEMPLATE_NOTIFICATION_ID}", method="DELETE")
    assert sim.send_template(token)["errcode"] == 40037
