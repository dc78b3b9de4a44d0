"""The simulated WeCom API: tokens, application messages, login codes, agent details."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import requests

from webapp.simulator.world import (
    QY_AGENTID,
    QY_CORPID,
    QY_CORPSECRET,
    QY_MEMBERS,
    QY_VISIBLE,
)

from .support import SimClient, sim, sim_server  # noqa: F401  (fixtures)

HINT = re.compile(r", hint: \[\d+\], from ip: 127\.0\.0\.1, more info at "
                  r"https://open\.work\.weixin\.qq\.com/devtool/query\?e=(\d+)$")


def ok(answer: dict) -> None:
    assert answer["errcode"] == 0, answer
    assert answer["errmsg"] == "ok"


def refused(answer: dict, errcode: int) -> None:
    assert answer["errcode"] == errcode, answer
    match = HINT.search(answer["errmsg"])
    assert match and match.group(1) == str(errcode), answer["errmsg"]


def test_seed():
    assert len(QY_CORPSECRET) == 43
    assert len(QY_MEMBERS) == 5
    assert set(QY_VISIBLE) < {u for u, _ in QY_MEMBERS}


# ---- gettoken -----------------------------------------------------------------------------------

def test_gettoken(sim: SimClient):
    answer = sim.qy_token()
    ok(answer)
    assert answer["expires_in"] == 7200
    assert len(answer["access_token"]) > 100
    refused(sim.qy_token(corpid="ww9999999999999999"), 40013)
    refused(sim.qy_token(secret="x" * 43), 40001)
    refused(sim.get(f"{sim.qy}/gettoken", corpid=QY_CORPID), 41004)


def test_token_checks_on_send(sim: SimClient):
    refused(sim.qy_send(None), 41001)
    refused(sim.qy_send("bogus"), 40014)
    mp_token = sim.stable_token()["access_token"]
    refused(sim.qy_send(mp_token), 40014)
    token = sim.qy_token()["access_token"]
    sim.advance(7201)
    expired = sim.qy_send(token)
    refused(expired, 42001)
    assert expired["errmsg"].startswith("access_token expired, hint: [")


def test_invalidation_gives_40014(sim: SimClient):
    token = sim.qy_token()["access_token"]
    ok(sim.qy_send(token))
    sim.control("tokens/invalidate", {})
    refused(sim.qy_send(token), 40014)
    ok(sim.qy_send(sim.qy_token()["access_token"]))


def test_agentid_must_match_the_token(sim: SimClient):
    sim.control("qy/apps", {"agentid": 1000003, "secret": "S" * 43, "name": "Other",
                            "allow_users": ["zhangsan"]})
    other = sim.qy_token(secret="S" * 43)["access_token"]
    refused(sim.qy_send(other), 301002)
    ok(sim.qy_send(other, agentid=1000003))
    token = sim.qy_token()["access_token"]
    refused(sim.qy_send(token, agentid=None), 41011)
    refused(sim.qy_send(token, agentid="abc"), 40056)


# ---- message/send -------------------------------------------------------------------------------

def test_send_text_records_it(sim: SimClient):
    token = sim.qy_token()["access_token"]
    answer = sim.qy_send(token, touser="zhangsan|lisi", text={"content": "Disk full on db1"})
    ok(answer)
    assert answer["msgid"]
    assert "invaliduser" not in answer
    [message] = sim.messages("qy", "lisi")
    assert message["msgtype"] == "text"
    assert message["content"] == {"content": "Disk full on db1"}
    assert message["to"] == ["zhangsan", "lisi"]
    assert message["msgid"] == answer["msgid"]
    assert len(sim.messages("qy", "zhangsan")) == 1
    assert sim.messages("qy", "wangwu") == []


def test_invalid_users_are_reported_lowercased(sim: SimClient):
    token = sim.qy_token()["access_token"]
    answer = sim.qy_send(token, touser="ZhangSan|ZhaoLiu|Nobody", toparty="7", totag="3")
    ok(answer)
    assert answer["invaliduser"] == "zhaoliu|nobody"  # zhaoliu exists but cannot see the app
    assert answer["invalidparty"] == "7"
    assert answer["invalidtag"] == "3"
    assert len(sim.messages("qy", "zhangsan")) == 1
    assert sim.messages("qy", "zhaoliu") == []


def test_all_invalid_gives_81013(sim: SimClient):
    token = sim.qy_token()["access_token"]
    answer = sim.qy_send(token, touser="zhaoliu|ghost")
    refused(answer, 81013)
    assert answer["errmsg"].startswith("user & party & tag all invalid, hint: [")
    assert answer["invaliduser"] == "zhaoliu|ghost"
    assert sim.messages("qy") == []


def test_empty_recipients_give_82001(sim: SimClient):
    token = sim.qy_token()["access_token"]
    refused(sim.qy_send(token, touser=""), 82001)
    refused(sim.qy_send(token, touser="|"), 82001)


def test_more_than_1000_users_gives_40032(sim: SimClient):
    token = sim.qy_token()["access_token"]
    many = "|".join(f"user{i}" for i in range(1001))
    refused(sim.qy_send(token, touser=many), 40032)
    exactly = "zhangsan|" + "|".join(f"user{i}" for i in range(999))
    answer = sim.qy_send(token, touser=exactly)
    ok(answer)
    assert len(answer["invaliduser"].split("|")) == 999


def test_at_all_reaches_every_visible_member(sim: SimClient):
    token = sim.qy_token()["access_token"]
    ok(sim.qy_send(token, touser="@all"))
    [message] = sim.messages("qy")
    assert message["to"] == list(QY_VISIBLE)


def test_visibility_and_members_are_adjustable(sim: SimClient):
    token = sim.qy_token()["access_token"]
    sim.control("qy/members", {"userid": "zhaoliu", "visible": True})
    ok(sim.qy_send(token, touser="zhaoliu"))
    sim.control("qy/members", {"userid": "newbie", "name": "New Bie", "visible": True})
    ok(sim.qy_send(token, touser="newbie"))
    sim.control("qy/members/zhangsan", method="DELETE")
    refused(sim.qy_send(token, touser="zhangsan"), 81013)


def test_text_byte_limit(sim: SimClient):
    token = sim.qy_token()["access_token"]
    ok(sim.qy_send(token, text={"content": "a" * 2048}))
    refused(sim.qy_send(token, text={"content": "a" * 2049}), 45002)
    refused(sim.qy_send(token, text={"content": "中" * 683}), 45002)  # 2049 bytes
    refused(sim.qy_send(token, text={"content": ""}), 44004)
    refused(sim.qy_send(token, msgtype="markdown", markdown={"content": "a" * 2049}), 45002)


def test_textcard_rules(sim: SimClient):
    token = sim.qy_token()["access_token"]
    card = {"title": "Alert", "description": "<div class=\"gray\">2024-05-04</div>db1 down",
            "url": "https://example.com/a/1", "btntxt": "More details"}
    ok(sim.qy_send(token, msgtype="textcard", textcard=card))
    [message] = sim.messages("qy", "zhangsan")
    assert message["content"]["title"] == "Alert"
    assert message["content"]["btntxt"] == "More"
    refused(sim.qy_send(token, msgtype="textcard", textcard={**card, "title": "t" * 129}), 40058)
    refused(sim.qy_send(token, msgtype="textcard",
                        textcard={**card, "description": "d" * 513}), 40058)
    no_description = {k: v for k, v in card.items() if k != "description"}
    refused(sim.qy_send(token, msgtype="textcard", textcard=no_description), 41033)
    no_url = {k: v for k, v in card.items() if k != "url"}
    refused(sim.qy_send(token, msgtype="textcard", textcard=no_url), 41010)
    refused(sim.qy_send(token, msgtype="news", news={}), 40008)


def test_lenient_limits_cut_on_a_character_boundary(sim: SimClient):
    sim.settings(qy_strict_limits=False)
    token = sim.qy_token()["access_token"]
    ok(sim.qy_send(token, text={"content": "中" * 700}))
    [message] = sim.messages("qy", "zhangsan")
    assert message["content"]["content"] == "中" * 682


def test_duplicate_check(sim: SimClient):
    token = sim.qy_token()["access_token"]
    fields = {"text": {"content": "same alert"}, "enable_duplicate_check": 1,
              "duplicate_check_interval": 600}
    first = sim.qy_send(token, **fields)
    ok(first)
    again = sim.qy_send(sim.qy_token()["access_token"], **fields)  # a retry with a new token
    assert again == first
    assert len(sim.messages("qy", "zhangsan")) == 1
    ok(sim.qy_send(token, **{**fields, "text": {"content": "other alert"}}))
    assert len(sim.messages("qy", "zhangsan")) == 2
    ok(sim.qy_send(token, text={"content": "same alert"}))  # no check asked: delivered
    assert len(sim.messages("qy", "zhangsan")) == 3
    sim.advance(601)
    later = sim.qy_send(token, **fields)
    assert later["msgid"] != first["msgid"]
    assert len(sim.messages("qy", "zhangsan")) == 4


def test_duplicate_check_interval_defaults_and_cap(sim: SimClient):
    token = sim.qy_token()["access_token"]
    default = {"text": {"content": "default interval"}, "enable_duplicate_check": 1}
    ok(sim.qy_send(token, **default))
    sim.advance(1799)
    ok(sim.qy_send(token, **default))
    assert len(sim.messages("qy", "zhangsan")) == 1
    sim.advance(2)
    ok(sim.qy_send(token, **default))
    assert len(sim.messages("qy", "zhangsan")) == 2
    capped = {"text": {"content": "long interval"}, "enable_duplicate_check": 1,
              "duplicate_check_interval": 86400}
    token = sim.qy_token()["access_token"]
    ok(sim.qy_send(token, **capped))
    sim.advance(14401)
    ok(sim.qy_send(sim.qy_token()["access_token"], **capped))
    assert len(sim.messages("qy", "zhangsan")) == 4


# ---- login codes --------------------------------------------------------------------------------

def test_member_code_is_single_use(sim: SimClient):
    token = sim.qy_token()["access_token"]
    issued = sim.control("qy/codes", {"userid": "zhangsan"})
    assert issued["expires_in"] == 300
    answer = sim.get(f"{sim.qy}/auth/getuserinfo", access_token=token, code=issued["code"])
    ok(answer)
    assert answer["userid"] == "zhangsan"
    assert "openid" not in answer
    refused(sim.get(f"{sim.qy}/auth/getuserinfo", access_token=token, code=issued["code"]), 40029)


def test_non_member_code_gives_openid(sim: SimClient):
    token = sim.qy_token()["access_token"]
    code = sim.control("qy/codes", {"openid": "oGuest0000000000000000000001"})["code"]
    answer = sim.get(f"{sim.qy}/auth/getuserinfo", access_token=token, code=code)
    ok(answer)
    assert answer["openid"] == "oGuest0000000000000000000001"
    assert "userid" not in answer


def test_codes_expire_and_unknown_codes_fail(sim: SimClient):
    token = sim.qy_token()["access_token"]
    code = sim.control("qy/codes", {"userid": "lisi"})["code"]
    sim.advance(301)
    refused(sim.get(f"{sim.qy}/auth/getuserinfo", access_token=token, code=code), 40029)
    refused(sim.get(f"{sim.qy}/auth/getuserinfo", access_token=token, code="nope"), 40029)
    refused(sim.get(f"{sim.qy}/auth/getuserinfo", access_token=token), 41008)
    refused(sim.get(f"{sim.qy}/auth/getuserinfo", code="x"), 41001)


def test_code_issue_validation(sim: SimClient):
    sim.control("qy/codes", {"userid": "nobody"}, expect=400)
    sim.control("qy/codes", {}, expect=400)
    sim.control("qy/codes", {"userid": "lisi", "openid": "o1"}, expect=400)


# ---- agent/get ----------------------------------------------------------------------------------

def test_agent_get(sim: SimClient):
    token = sim.qy_token()["access_token"]
    answer = sim.get(f"{sim.qy}/agent/get", access_token=token, agentid=QY_AGENTID)
    ok(answer)
    assert answer["agentid"] == QY_AGENTID
    assert [u["userid"] for u in answer["allow_userinfos"]["user"]] == list(QY_VISIBLE)
    assert answer["redirect_domain"] == urlsplit(sim.base).netloc
    assert answer["close"] == 0
    assert answer["name"]


def test_agent_get_follows_changes_and_is_limited_to_its_app(sim: SimClient):
    sim.control("qy/apps", {"agentid": QY_AGENTID, "redirect_domain": "notify.example.com",
                            "close": False, "allow_users": ["lisi"]})
    token = sim.qy_token()["access_token"]
    answer = sim.get(f"{sim.qy}/agent/get", access_token=token, agentid=QY_AGENTID)
    assert answer["redirect_domain"] == "notify.example.com"
    assert answer["allow_userinfos"] == {"user": [{"userid": "lisi"}]}
    refused(sim.get(f"{sim.qy}/agent/get", access_token=token, agentid=1000009), 301002)
    refused(sim.get(f"{sim.qy}/agent/get", access_token=token), 41011)


def test_the_trusted_domain_follows_the_address_the_simulator_is_served_at(sim: SimClient):
    """Until one is set, the application trusts whatever address the simulator answers at: the
    port of `make run PORT=...`, and the name a browser used (WeCom compares host and port)."""
    served = urlsplit(sim.base).netloc
    port = urlsplit(sim.base).port
    token = sim.qy_token()["access_token"]
    for host in (served, f"localhost:{port}"):
        answer = requests.get(f"http://{host}/simulator/qy/cgi-bin/agent/get",
                              params={"access_token": token, "agentid": QY_AGENTID}, timeout=5).json()
        assert answer["redirect_domain"] == host
        login = requests.get(f"http://{host}/simulator/qy/login", params={
            "login_type": "CorpApp", "appid": QY_CORPID, "agentid": str(QY_AGENTID),
            "redirect_uri": f"http://{host}/console/user_center/weixin/qy/login_callback/",
            "state": "S1"}, timeout=5)
        assert login.status_code == 200 and "Zhang San — zhangsan" in login.text
    assert sim.control("world", method="GET")["qy"]["apps"][0]["redirect_domain"] == served
    # A domain set explicitly stays; null follows the address again.
    sim.control("qy/apps", {"agentid": QY_AGENTID, "redirect_domain": "notify.example.com"})
    assert sim.get(f"{sim.qy}/agent/get", access_token=token, agentid=QY_AGENTID)["redirect_domain"] == \
        "notify.example.com"
    sim.control("qy/apps", {"agentid": QY_AGENTID, "redirect_domain": None})
    assert sim.get(f"{sim.qy}/agent/get", access_token=token, agentid=QY_AGENTID)["redirect_domain"] == served


def test_closed_app_cannot_get_a_token(sim: SimClient):
    sim.control("qy/apps", {"agentid": QY_AGENTID, "close": True})
    refused(sim.qy_token(), 40001)
    sim.control("qy/apps", {"agentid": 1, "name": "no secret"}, expect=400)
