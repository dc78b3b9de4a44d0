"""Binding over real HTTP: the bind page's endpoints, the simulated WeChat scanning and signing in, the rules."""
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select, update

from tests.binding_support import browser, connect_mp, connect_qy, page_csrf
from tests.conftest import ADMIN, USER
from tests.livesrv import serve
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.models import AuditEntry, Binding, BindTicket, utcnow
from webapp.simulator.world import MP_APPID, OPENID_ALICE, OPENID_BOB, OPENID_NOT_FOLLOWING, QY_AGENTID, QY_CORPID

STATUS = "/console/user_center/weixin/get_bind_status/"
QRCODE = "/console/user_center/weixin/mp/get_qrcode/"
LOGIN_URL = "/console/user_center/weixin/qy/get_login_url/"
LOGIN_CALLBACK = "/console/user_center/weixin/qy/login_callback/"
UNBIND = "/console/user_center/weixin/unbind_wx_user_info/"
BOB = ("bob", "copper-kettle-3")


@pytest.fixture
def service(make_app):
    """The service with its simulator, served over HTTP, with an admin, alice and bob."""
    app = make_app(WEIXIN_SIMULATOR=True)
    with app.test_request_context():
        create_user(*ADMIN, is_admin=True)
        create_user(*USER)
        create_user(*BOB)
        db.session.remove()
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy",
                          PUBLIC_URL=base)
        yield app, base


def sim(base, path, payload=None, method="POST"):
    response = requests.request(method, f"{base}/simulator/_control/{path}", json=payload, timeout=20)
    return response


def new_code(session, base):
    answer = session.get(base + QRCODE, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def scan(base, openid, url):
    answer = sim(base, "mp/scan", {"openid": openid, "url": url})
    if answer.status_code == 404:  # older simulator without the scan endpoint: push the event WeChat would
        raise AssertionError("the simulator has no scan endpoint")
    return answer.json()


def status(session, base, scene=None):
    return session.get(base + STATUS, params={"scene": scene} if scene else None, timeout=5).json()


def bindings(app):
    with app.app_context():
        return list(db.session.scalars(select(Binding).order_by(Binding.id)))


# --- Official Account -------------------------------------------------------------------------------

def test_qrcode_is_drawn_here_with_a_fresh_random_scene(service):
    app, base = service
    connect_mp(app, base)
    alice = browser(base, *USER)
    first, second = new_code(alice, base), new_code(alice, base)
    assert first["qrcode"].startswith("data:image/svg+xml") and "weixin.qq.com/q/" in first["url"]
    assert first["expire_seconds"] == 600
    assert len(first["scene"]) == 32 and int(first["scene"], 16) >= 0 and first["scene"] != second["scene"]
    assert status(alice, base, first["scene"])["data"]["attempt"]["state"] == "pending"


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
def test_a_non_follower_scans_follows_and_is_bound(service, mode):
    app, base = service
    connect_mp(app, base, mode)
    alice = browser(base, *USER)
    code = new_code(alice, base)
    assert status(alice, base)["result"] is False
    push = scan(base, OPENID_NOT_FOLLOWING, code["url"])
    assert push["event"] == "subscribe" and "Bound" in push["shown"] and "绑定成功：alice 的通知" in push["shown"]
    answer = status(alice, base, code["scene"])
    assert answer["result"] is True and answer["data"]["attempt"]["state"] == "bound"
    assert answer["data"]["channel"] == "mp" and answer["data"]["wx_id"].startswith(OPENID_NOT_FOLLOWING[:4])
    [binding] = bindings(app)
    assert binding.wx_id == OPENID_NOT_FOLLOWING and binding.account == MP_APPID and binding.active


def test_a_follower_scans_and_is_bound(service):
    app, base = service
    connect_mp(app, base)
    alice = browser(base, *USER)
    push = scan(base, OPENID_ALICE, new_code(alice, base)["url"])
    assert push["event"] == "SCAN" and "Bound" in push["shown"]
    assert status(alice, base)["result"] is True


def test_a_code_binds_once(service):
    app, base = service
    connect_mp(app, base)
    alice = browser(base, *USER)
    code = new_code(alice, base)
    scan(base, OPENID_ALICE, code["url"])
    again = scan(base, OPENID_BOB, code["url"])  # someone else scans the same code afterwards
    assert "already used" in again["shown"]
    assert [b.wx_id for b in bindings(app)] == [OPENID_ALICE]


def test_an_expired_code_binds_nothing(service):
    app, base = service
    connect_mp(app, base)
    alice = browser(base, *USER)
    code = new_code(alice, base)
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(BindTicket).values(expires_at=utcnow() - timedelta(seconds=1)))
    push = scan(base, OPENID_ALICE, code["url"])
    assert "expired" in push["shown"]
    assert bindings(app) == [] and status(alice, base, code["scene"])["data"]["attempt"]["state"] == "refused"


def test_a_wechat_bound_to_someone_else_is_refused(service):
    app, base = service
    connect_mp(app, base)
    alice, bob = browser(base, *USER), browser(base, *BOB)
    scan(base, OPENID_ALICE, new_code(alice, base)["url"])
    bob_code = new_code(bob, base)
    push = scan(base, OPENID_ALICE, bob_code["url"])
    assert "bound to another account" in push["shown"]
    answer = status(bob, base, bob_code["scene"])
    assert answer["result"] is False and "already bound to another user" in answer["data"]["attempt"]["message"]
    with app.app_context():
        assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "binding.refused")).detail["reason"] == "taken"


def test_binding_another_wechat_replaces_the_first(service):
    app, base = service
    connect_mp(app, base)
    alice = browser(base, *USER)
    scan(base, OPENID_ALICE, new_code(alice, base)["url"])
    scan(base, OPENID_BOB, new_code(alice, base)["url"])
    rows = bindings(app)
    assert [(b.wx_id, b.active, b.deactivated_reason) for b in rows] == [(OPENID_ALICE, False, "replaced"), (OPENID_BOB, True, None)]
    with app.app_context():
        actions = list(db.session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("binding.%")).order_by(AuditEntry.id)))
    assert actions == ["binding.bind", "binding.replaced", "binding.bind"]


def test_unfollowing_deactivates_and_following_again_reactivates(service):
    app, base = service
    connect_mp(app, base)
    alice = browser(base, *USER)
    scan(base, OPENID_ALICE, new_code(alice, base)["url"])
    sim(base, "mp/phone/unsubscribe", {"openid": OPENID_ALICE})
    assert status(alice, base)["result"] is False
    assert bindings(app)[0].deactivated_reason == "unsubscribed"
    back = sim(base, "mp/phone/subscribe", {"openid": OPENID_ALICE}).json()
    assert "欢迎回来" in back["shown"] and "Welcome back" in back["shown"] and status(alice, base)["result"] is True


def test_a_plain_follow_is_welcomed_and_binds_nothing(service):
    app, base = service
    connect_mp(app, base)
    push = sim(base, "mp/phone/subscribe", {"openid": OPENID_NOT_FOLLOWING}).json()
    assert "Bind WeChat" in push["shown"] and bindings(app) == []


def test_unbind_needs_a_csrf_token_and_is_final(service):
    app, base = service
    connect_mp(app, base)
    alice = browser(base, *USER)
    scan(base, OPENID_ALICE, new_code(alice, base)["url"])
    assert alice.post(base + UNBIND, timeout=5).status_code == 400
    token = page_csrf(alice, base + "/console/user_center/weixin/")
    answer = alice.post(base + UNBIND, headers={"X-CSRFToken": token, "Accept": "application/json"}, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"result": True, "data": {"unbound": 1}}
    assert status(alice, base)["result"] is False
    # An explicit unbind is not undone by following again.
    sim(base, "mp/phone/unsubscribe", {"openid": OPENID_ALICE})
    sim(base, "mp/phone/subscribe", {"openid": OPENID_ALICE})
    assert status(alice, base)["result"] is False


def test_the_page_form_unbinds_and_comes_back(service):
    app, base = service
    connect_mp(app, base)
    alice = browser(base, *USER)
    scan(base, OPENID_ALICE, new_code(alice, base)["url"])
    page = alice.get(base + "/console/user_center/weixin/", timeout=5).text
    assert "Your WeChat is bound" in page
    token = page_csrf(alice, base + "/console/user_center/weixin/")
    answer = alice.post(base + UNBIND, data={"csrf_token": token, "from_page": "1"}, timeout=5)
    assert answer.url.endswith("/console/user_center/weixin/") and "Your WeChat is unbound" in answer.text


def test_endpoints_need_a_signed_in_user_and_answer_json(service):
    app, base = service
    connect_mp(app, base)
    for path in (QRCODE, LOGIN_URL, STATUS):
        answer = requests.get(base + path, timeout=5, allow_redirects=False)
        assert answer.status_code == 401 and answer.json()["result"] is False, path


def test_without_a_channel_the_page_and_endpoints_say_so(service):
    app, base = service
    alice = browser(base, *USER)
    assert "not connected to this service yet" in alice.get(base + "/console/user_center/weixin/", timeout=5).text
    answer = alice.get(base + QRCODE, timeout=5)
    assert answer.status_code == 409 and "administrator" in answer.json()["message"]


def test_wechat_failures_are_explained(service):
    app, base = service
    connect_mp(app, base)
    sim(base, "settings", {"mp_ip_check": True, "mp_ip_whitelist": []})
    answer = browser(base, *USER).get(base + QRCODE, timeout=5)
    assert answer.status_code == 424 and "127.0.0.1" in answer.json()["message"]


# --- WeCom -----------------------------------------------------------------------------------------------

def start_login(session, base):
    answer = session.get(base + LOGIN_URL, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_login_url_names_the_app_and_comes_back_to_the_public_url(service):
    app, base = service
    connect_qy(app)
    data = start_login(browser(base, *USER), base)
    url = urlsplit(data["url"])
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == app.config["WEIXIN_QY_LOGIN_URL"]
    assert query["login_type"] == ["CorpApp"] and query["appid"] == [QY_CORPID] and query["agentid"] == [str(QY_AGENTID)]
    assert query["redirect_uri"] == [base + LOGIN_CALLBACK] and query["state"] == [data["scene"]]
    assert data["qrcode"].startswith("data:image/svg+xml")
    assert data["oauth_url"].endswith("#wechat_redirect") and "response_type=code" in data["oauth_url"]


def test_a_member_signs_in_and_is_bound(service):
    app, base = service
    connect_qy(app)
    alice = browser(base, *USER)
    state = start_login(alice, base)["scene"]
    code = sim(base, "qy/codes", {"userid": "zhangsan"}).json()["code"]
    page = alice.get(base + LOGIN_CALLBACK, params={"code": code, "state": state}, timeout=10)
    assert page.status_code == 200 and "Your WeCom account is bound" in page.text
    answer = status(alice, base, state)
    assert answer["result"] is True and answer["data"]["channel"] == "qywx"
    assert [(b.channel, b.account, b.wx_id) for b in bindings(app)] == [("qywx", QY_CORPID, "zhangsan")]


def test_a_non_member_is_refused(service):
    app, base = service
    connect_qy(app)
    alice = browser(base, *USER)
    state = start_login(alice, base)["scene"]
    code = sim(base, "qy/codes", {"openid": "oPersonalWeChat000000000000"}).json()["code"]
    page = alice.get(base + LOGIN_CALLBACK, params={"code": code, "state": state}, timeout=10)
    assert page.status_code == 400 and "personal WeChat" in page.text and bindings(app) == []


def test_bad_states_are_refused_before_calling_wechat(service):
    app, base = service
    connect_qy(app)
    alice, bob = browser(base, *USER), browser(base, *BOB)
    bobs_state = start_login(bob, base)["scene"]
    used_state = start_login(alice, base)["scene"]
    code = sim(base, "qy/codes", {"userid": "lisi"}).json()["code"]
    assert alice.get(base + LOGIN_CALLBACK, params={"code": code, "state": used_state}, timeout=10).status_code == 200
    calls_before = sim(base, "stats", method="GET").json()["calls"].get("getuserinfo", 0)
    expired_state = start_login(alice, base)["scene"]
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(BindTicket).where(BindTicket.scene == expired_state).values(expires_at=utcnow() - timedelta(seconds=1)))
    cases = {
        "missing": ({"code": "x"}, 400, "not valid"),
        "unknown": ({"code": "x", "state": "nope"}, 400, "not valid"),
        "foreign": ({"code": "x", "state": bobs_state}, 403, "another user"),
        "reused": ({"code": "x", "state": used_state}, 400, "already been used"),
        "expired": ({"code": "x", "state": expired_state}, 400, "expired"),
    }
    for name, (params, status_code, words) in cases.items():
        page = alice.get(base + LOGIN_CALLBACK, params=params, timeout=10)
        assert page.status_code == status_code and words in page.text, name
    assert sim(base, "stats", method="GET").json()["calls"].get("getuserinfo", 0) == calls_before


def test_a_cancelled_login_binds_nothing(service):
    app, base = service
    connect_qy(app)
    alice = browser(base, *USER)
    state = start_login(alice, base)["scene"]
    page = alice.get(base + LOGIN_CALLBACK, params={"state": state}, timeout=10)
    assert "cancelled" in page.text and bindings(app) == []


def test_a_userid_bound_to_someone_else_is_refused(service):
    app, base = service
    connect_qy(app)
    alice, bob = browser(base, *USER), browser(base, *BOB)
    for session, expected in ((alice, 200), (bob, 400)):
        state = start_login(session, base)["scene"]
        code = sim(base, "qy/codes", {"userid": "wangwu"}).json()["code"]
        page = session.get(base + LOGIN_CALLBACK, params={"code": code, "state": state}, timeout=10)
        assert page.status_code == expected
    assert "already bound to another user" in page.text


def test_bindings_are_per_channel_and_account(service):
    """Switching the service to WeCom never reuses Official Account ids."""
    app, base = service
    connect_mp(app, base)
    alice = browser(base, *USER)
    scan(base, OPENID_ALICE, new_code(alice, base)["url"])
    connect_qy(app)
    assert status(alice, base)["result"] is False  # bound on the Official Account, not on WeCom


# --- the console --------------------------------------------------------------------------------------------

def test_administrators_search_and_unbind(service):
    app, base = service
    connect_mp(app, base)
    alice, bob = browser(base, *USER), browser(base, *BOB)
    scan(base, OPENID_ALICE, new_code(alice, base)["url"])
    scan(base, OPENID_BOB, new_code(bob, base)["url"])
    admin = browser(base, *ADMIN)
    page = admin.get(base + "/console/bindings/", params={"q": "ali"}, timeout=5).text
    assert OPENID_ALICE in page and OPENID_BOB not in page
    page = admin.get(base + "/console/bindings/", params={"q": OPENID_BOB[-6:]}, timeout=5).text
    assert "bob" in page and OPENID_ALICE not in page
    [bob_binding] = [b for b in bindings(app) if b.wx_id == OPENID_BOB]
    token = page_csrf(admin, base + "/console/bindings/")
    answer = admin.post(base + f"/console/bindings/{bob_binding.id}/unbind", data={"csrf_token": token}, timeout=5)
    assert answer.status_code == 200 and "is ended" in answer.text
    assert status(bob, base)["result"] is False
    inactive = admin.get(base + "/console/bindings/", params={"state": "inactive"}, timeout=5).text
    assert OPENID_BOB in inactive and "unbound by an administrator" in inactive and OPENID_ALICE not in inactive
    with app.app_context():
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "binding.unbind"))
        assert entry.actor == ADMIN[0] and entry.detail["user"] == "bob"
    assert alice.get(base + "/console/bindings/", timeout=5).status_code == 403


def test_the_wecom_app_on_a_phone_completes_the_attempt(service):
    """The in-app QR: the WeCom app's browser (not signed in here) comes back with the code and state."""
    app, base = service
    connect_qy(app)
    alice = browser(base, *USER)
    state = start_login(alice, base)["scene"]
    code = sim(base, "qy/codes", {"userid": "zhangsan"}).json()["code"]
    phone = requests.get(base + LOGIN_CALLBACK, params={"code": code, "state": state}, timeout=10)
    assert phone.status_code == 200 and "alice" in phone.text and "updates by itself" in phone.text
    assert status(alice, base, state)["data"]["attempt"]["state"] == "bound"
    # The same state cannot be used a second time, from anywhere.
    again = requests.get(base + LOGIN_CALLBACK, params={"code": code, "state": state}, timeout=10)
    assert again.status_code == 400
