"""The simulated WeCom sign-in pages (PROTOCOL.md section 6): web QR login, in-app OAuth2, their
WeCom-style refusals, the member choice with its redirect, and "Scan with the WeCom app"."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from webapp.simulator.qylogin import QY_OUTSIDER_OPENID
from webapp.simulator.world import QY_AGENTID, QY_CORPID

from .support import TIMEOUT, SimClient, sim, sim_server  # noqa: F401  (fixtures)

#: The trusted domain these tests give the application (by default it is the simulator's address).
TRUSTED = "127.0.0.1:5000"
CALLBACK = f"http://{TRUSTED}/auth/wecom/callback"


@pytest.fixture(autouse=True)
def trusted(sim: SimClient) -> None:
    """The application trusts TRUSTED, as an administrator would have set it."""
    sim.control("qy/apps", {"agentid": QY_AGENTID, "redirect_domain": TRUSTED})


def login_query(**changes: str | None) -> dict[str, str]:
    """The query of a valid web login request, with some parameters changed (None drops one)."""
    query = {"login_type": "CorpApp", "appid": QY_CORPID, "agentid": str(QY_AGENTID),
             "redirect_uri": CALLBACK, "state": "St4te"}
    query.update(changes)
    return {k: v for k, v in query.items() if v is not None}


def oauth_query(**changes: str | None) -> dict[str, str]:
    """The query of a valid in-app OAuth2 request, with some parameters changed."""
    query = {"appid": QY_CORPID, "redirect_uri": CALLBACK, "response_type": "code",
             "scope": "snsapi_base", "state": "Bind0042", "agentid": str(QY_AGENTID)}
    query.update(changes)
    return {k: v for k, v in query.items() if v is not None}


PATHS = {"login": ("/qy/login", login_query), "oauth": ("/qy/oauth2/authorize", oauth_query)}


def open_page(sim: SimClient, kind: str, expect: int = 200, **changes: str | None
              ) -> requests.Response:
    path, build = PATHS[kind]
    response = sim.http.get(f"{sim.root}{path}", params=build(**changes), timeout=TIMEOUT)
    assert response.status_code == expect, response.text
    assert response.headers["Content-Type"].startswith("text/html")
    return response


def choose(sim: SimClient, kind: str, form: dict[str, str], **changes: str | None
           ) -> requests.Response:
    """POST a choice to the page (same query), without following the redirect."""
    path, build = PATHS[kind]
    return sim.http.post(f"{sim.root}{path}", params=build(**changes), data=form,
                         allow_redirects=False, timeout=TIMEOUT)


def redirected(response: requests.Response) -> tuple[str, dict[str, list[str]]]:
    """Where a 302 sends the browser: the address without its query, and the query."""
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    parts = urlsplit(location)
    return location.split("?")[0], parse_qs(parts.query, keep_blank_values=True)


def exchange(sim: SimClient, code: str) -> dict:
    token = sim.qy_token()["access_token"]
    return sim.get(f"{sim.qy}/auth/getuserinfo", access_token=token, code=code)


def refusal(response: requests.Response, errcode: int) -> str:
    """The text of a WeCom error page, checked to name ``errcode``."""
    text = re.sub(r"<[^>]+>", " ", response.text)
    assert re.search(rf"Error code:\s*{errcode}\b", text), text
    return text


# ---- the pages and their checks -----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["login", "oauth"])
def test_the_choice_page_lists_members_and_a_non_member(sim: SimClient, kind: str):
    html = open_page(sim, kind).text
    for label in ("Zhang San — zhangsan", "Li Si — lisi", "Sun Qi — sunqi"):
        assert label in html
    assert "personal WeChat user (not a member)" in html
    assert html.count("can see Notifications") == 3  # zhangsan, lisi, wangwu
    assert html.count("cannot see Notifications") == 2
    assert 'name="cancel"' in html
    assert "<script" not in html and not re.search(r'(?:src|href)="(?:https?:)?//', html)
    assert CALLBACK in html


@pytest.mark.parametrize("kind", ["login", "oauth"])
@pytest.mark.parametrize("change, errcode", [
    ({"appid": None}, 41002),
    ({"appid": "ww0000000000000000"}, 40013),
    ({"agentid": "1000099"}, 40056),
    ({"agentid": "abc"}, 40056),
    ({"redirect_uri": None}, 41010),
    ({"redirect_uri": "/relative/path"}, 40058),
])
def test_wrong_corp_agent_or_redirect_gives_an_error_page(
        sim: SimClient, kind: str, change: dict, errcode: int):
    response = open_page(sim, kind, expect=400, **change)
    refusal(response, errcode)
    assert "企业微信" in response.text or "WeCom" in response.text
    # Choosing on a refused request issues nothing either.
    assert choose(sim, kind, {"userid": "zhangsan"}, **change).status_code == 400


def test_web_login_needs_login_type_corpapp_and_an_agentid(sim: SimClient):
    for login_type in (None, "ServiceApp", "corpapp"):
        text = refusal(open_page(sim, "login", expect=400, login_type=login_type), 40058)
        assert "login_type" in text
    refusal(open_page(sim, "login", expect=400, agentid=None), 41011)


def test_a_closed_application_refuses_sign_in(sim: SimClient):
    sim.control("qy/apps", {"agentid": QY_AGENTID, "close": True})
    refusal(open_page(sim, "login", expect=400), 50003)
    refusal(open_page(sim, "oauth", expect=400), 50003)


@pytest.mark.parametrize("kind", ["login", "oauth"])
@pytest.mark.parametrize("uri", ["http://localhost:5000/cb", "http://127.0.0.1:5001/cb",
                                 "http://127.0.0.1/cb", "https://evil.example.com/127.0.0.1:5000"])
def test_redirect_uri_outside_the_trusted_domain_gives_50001(sim: SimClient, kind: str, uri: str):
    response = open_page(sim, kind, expect=400, redirect_uri=uri)
    text = refusal(response, 50001)
    assert "redirect_uri 与配置的授权完成回调域名不一致" in text
    assert "does not match the app" in text
    host = urlsplit(uri).netloc
    assert host in text and TRUSTED in text  # both values, to know what to fix


def test_the_trusted_domain_is_adjustable(sim: SimClient):
    uri = "http://wecom.example.test:8080/auth/callback?next=%2Fme"
    open_page(sim, "login", expect=400, redirect_uri=uri)
    sim.control("qy/apps", {"agentid": QY_AGENTID, "redirect_domain": "wecom.example.test:8080"})
    open_page(sim, "login", redirect_uri=uri)
    open_page(sim, "login", expect=400)  # the old domain no longer matches
    base, query = redirected(choose(sim, "login", {"userid": "lisi"}, redirect_uri=uri))
    assert base == "http://wecom.example.test:8080/auth/callback"
    assert query["next"] == ["/me"] and query["state"] == ["St4te"] and query["code"]


def test_the_error_page_offers_to_trust_the_domain(sim: SimClient):
    uri = "http://localhost:5000/cb"
    response = open_page(sim, "login", expect=400, redirect_uri=uri)
    [here] = re.findall(r'name="next" value="([^"]+)"', response.text)
    here = here.replace("&amp;", "&")
    assert here.startswith("/simulator/qy/login?")
    fix = sim.http.post(f"{sim.root}/panel/qy/redirect-domain", data={
        "agentid": str(QY_AGENTID), "redirect_domain": "localhost:5000", "next": here},
        allow_redirects=False, timeout=TIMEOUT)
    assert fix.status_code == 303 and fix.headers["Location"].endswith(here)
    again = sim.http.get(sim.base + here, timeout=TIMEOUT)
    assert again.status_code == 200 and "Zhang San — zhangsan" in again.text


# ---- choosing, codes and redirects --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["login", "oauth"])
def test_member_choice_redirects_with_a_single_use_code(sim: SimClient, kind: str):
    base, query = redirected(choose(sim, kind, {"userid": "zhangsan"}))
    assert base == CALLBACK
    state = "St4te" if kind == "login" else "Bind0042"
    assert query["state"] == [state]
    [code] = query["code"]
    assert exchange(sim, code) == {"errcode": 0, "errmsg": "ok", "userid": "zhangsan"}
    second = exchange(sim, code)
    assert second["errcode"] == 40029


def test_a_member_who_cannot_see_the_app_can_still_sign_in_on_the_web(sim: SimClient):
    _, query = redirected(choose(sim, "login", {"userid": "SunQi"}))
    assert exchange(sim, query["code"][0])["userid"] == "sunqi"


@pytest.mark.parametrize("kind", ["login", "oauth"])
def test_non_member_choice_gives_an_openid(sim: SimClient, kind: str):
    _, query = redirected(choose(sim, kind, {"outsider": "1"}))
    answer = exchange(sim, query["code"][0])
    assert answer["errcode"] == 0 and answer["openid"] == QY_OUTSIDER_OPENID
    assert "userid" not in answer


@pytest.mark.parametrize("kind", ["login", "oauth"])
def test_cancel_returns_without_a_code(sim: SimClient, kind: str):
    response = choose(sim, kind, {"cancel": "1"})
    base, query = redirected(response)
    assert base == CALLBACK and "code" not in query
    assert query["state"] == ["St4te" if kind == "login" else "Bind0042"]


def test_redirect_uri_with_a_query_gets_the_code_appended(sim: SimClient):
    uri = CALLBACK + "?next=%2Fconsole&lang=zh"
    response = choose(sim, "login", {"userid": "wangwu"}, redirect_uri=uri)
    location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?next=%2Fconsole&lang=zh&code=")
    assert location.endswith("&state=St4te")
    # Without a state, only the code is added.
    _, query = redirected(choose(sim, "login", {"userid": "wangwu"}, state=None))
    assert set(query) == {"code"}


def test_choosing_someone_who_is_not_a_member_is_refused(sim: SimClient):
    response = choose(sim, "login", {"userid": "nobody"})
    assert response.status_code == 400


def test_lang_chooses_the_page_language(sim: SimClient):
    assert '<html lang="zh">' in open_page(sim, "login", lang="zh").text
    assert '<html lang="en">' in open_page(sim, "login", lang="en").text


# ---- OAuth2 specifics ---------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["bind-42", "bind_42", "状态", "a b", "x" * 129])
def test_oauth_state_must_be_letters_and_digits_up_to_128_bytes(sim: SimClient, state: str):
    text = refusal(open_page(sim, "oauth", expect=400, state=state), 40058)
    assert "state" in text


def test_oauth_state_of_128_letters_is_fine(sim: SimClient):
    state = "Ab1" * 42 + "xy"
    assert len(state) == 128
    _, query = redirected(choose(sim, "oauth", {"userid": "lisi"}, state=state))
    assert query["state"] == [state]


@pytest.mark.parametrize("change, word", [
    ({"response_type": "token"}, "response_type"),
    ({"response_type": None}, "response_type"),
    ({"scope": "snsapi_userinfo"}, "scope"),
    ({"scope": None}, "scope"),
])
def test_oauth_response_type_and_scope(sim: SimClient, change: dict, word: str):
    assert word in refusal(open_page(sim, "oauth", expect=400, **change), 40058)


def test_oauth_snsapi_base_works_without_agentid(sim: SimClient):
    open_page(sim, "oauth", agentid=None)
    _, query = redirected(choose(sim, "oauth", {"userid": "sunqi"}, agentid=None))
    assert exchange(sim, query["code"][0])["userid"] == "sunqi"
    open_page(sim, "oauth", expect=400, agentid=None, redirect_uri="http://localhost:9/cb")


def test_oauth_privateinfo_needs_agentid_and_a_visible_member(sim: SimClient):
    refusal(open_page(sim, "oauth", expect=400, scope="snsapi_privateinfo", agentid=None), 41011)
    html = open_page(sim, "oauth", scope="snsapi_privateinfo").text
    assert re.search(r'value="sunqi"\s+disabled', html)
    refusal(choose(sim, "oauth", {"userid": "sunqi"}, scope="snsapi_privateinfo"), 50002)
    refusal(choose(sim, "oauth", {"outsider": "1"}, scope="snsapi_privateinfo"), 50002)
    _, query = redirected(choose(sim, "oauth", {"userid": "zhangsan"},
                                 scope="snsapi_privateinfo"))
    assert exchange(sim, query["code"][0])["userid"] == "zhangsan"


# ---- scanning with the WeCom app ----------------------------------------------------------------

def test_qy_scan_page_opens_a_pasted_oauth_or_login_url(sim: SimClient):
    html = sim.http.get(f"{sim.root}/qy/scan", timeout=TIMEOUT).text
    assert "Scan with the WeCom app" in html and 'action="/simulator/panel/qy/scan"' in html
    assert f"{sim.root}/qy/login" in html and f"{sim.root}/qy/oauth2/authorize" in html
    oauth = ("https://open.weixin.qq.com/connect/oauth2/authorize?" + urlencode(oauth_query())
             + "#wechat_redirect")
    response = sim.http.post(f"{sim.root}/panel/qy/scan", data={"url": oauth},
                             allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("/simulator/qy/oauth2/authorize?")
    assert "wechat_redirect" not in location
    assert parse_qs(urlsplit(location).query) == {k: [v] for k, v in oauth_query().items()}
    page = sim.http.get(sim.base + location, timeout=TIMEOUT)
    assert page.status_code == 200 and "Zhang San — zhangsan" in page.text
    login = ("https://login.work.weixin.qq.com/wwlogin/sso/login?" + urlencode(login_query()))
    response = sim.http.post(f"{sim.root}/panel/qy/scan", data={"url": login},
                             allow_redirects=False, timeout=TIMEOUT)
    assert response.headers["Location"].startswith("/simulator/qy/login?")
    # The simulator's own addresses work too (what `make run` configures).
    own = f"{sim.root}/qy/oauth2/authorize?" + urlencode(oauth_query()).replace("&", "&amp;")
    response = sim.http.post(f"{sim.root}/panel/qy/scan", data={"url": own},
                             allow_redirects=False, timeout=TIMEOUT)
    assert parse_qs(urlsplit(response.headers["Location"]).query)["state"] == ["Bind0042"]


def test_qy_scan_page_refuses_other_urls(sim: SimClient):
    for junk in ("", "hello", "https://example.com/somewhere?appid=x"):
        response = sim.http.post(f"{sim.root}/panel/qy/scan", data={"url": junk},
                                 allow_redirects=False, timeout=TIMEOUT)
        assert response.status_code == 400
        assert "not a WeCom sign-in URL" in response.text
