"""The simulated WeChat pushes events into the service's real callback, as after `make run`."""
import pytest
import requests

from tests.livesrv import serve
from webapp import channel
from webapp.callback import handlers
from webapp.callback.services import last_verification
from webapp.simulator.world import MP_APPID, MP_SECRET, OPENID_ALICE, OPENID_NOT_FOLLOWING, TEMPLATE_NOTIFICATION_ID

TOKEN = "SimToken2026"
KEY = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
CALLBACK = "/console/user_center/weixin/mp/callback/"


@pytest.fixture
def service(make_app):
    """The service with its simulator switched on, served over HTTP like `make run`."""
    app = make_app(WEIXIN_SIMULATOR=True)
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy")
        requests.post(base + "/simulator/_control/settings", json={"push_timeout": 2}, timeout=5)
        yield app, base


def connect(app, base, mode):
    config = {"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": TOKEN,
              "wx_encoding_aes_key": KEY, "wx_encrypt_mode": mode, "wx_template_id": TEMPLATE_NOTIFICATION_ID}
    with app.app_context():
        clean = channel.normalize(config)
        channel.check_live(clean)  # against the simulator, over HTTP
        channel.save(clean, actor="test")
    # WeChat's 服务器配置 page: submitting it makes WeChat verify the URL.
    answer = requests.post(base + "/simulator/_control/mp/server",
                           json={"url": base + CALLBACK, "token": TOKEN, "encoding_aes_key": KEY, "mode": mode}, timeout=10)
    return answer.json()


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
def test_wechat_verifies_the_server_and_pushes_messages(service, mode):
    app, base = service
    received = []
    handlers.table(app).add("text", "", lambda m, c: received.append(m) or f"got {m['Content']}")
    check = connect(app, base, mode)
    assert check["ok"] is True, check
    with app.app_context():
        assert last_verification().outcome == "verified"
    push = requests.post(base + "/simulator/_control/mp/phone/text", json={"openid": OPENID_ALICE, "content": "hello"},
                         timeout=20).json()
    assert push["outcome"] == "reply" and push["reply"]["Content"] == "got hello", push
    assert push["encrypted_reply"] is (mode != "plain")
    assert len(push["tries"]) == 1 and received[0]["FromUserName"] == OPENID_ALICE


def test_a_wrong_token_fails_wechats_verification(service):
    app, base = service
    connect(app, base, "plain")
    answer = requests.post(base + "/simulator/_control/mp/server",
                           json={"url": base + CALLBACK, "token": "SomeOtherToken", "mode": "plain"}, timeout=10).json()
    assert answer["ok"] is False and answer["reason"] == "http_status"
    with app.app_context():
        assert last_verification().outcome == "bad_signature"


def test_follow_and_unfollow_events_are_answered(service):
    app, base = service
    connect(app, base, "safe")
    follow = requests.post(base + "/simulator/_control/mp/phone/subscribe", json={"openid": OPENID_NOT_FOLLOWING}, timeout=20).json()
    unfollow = requests.post(base + "/simulator/_control/mp/phone/unsubscribe", json={"openid": OPENID_NOT_FOLLOWING}, timeout=20).json()
    assert follow["outcome"] == "reply" and "Bind WeChat" in follow["reply"]["Content"]  # a polite welcome
    assert unfollow["outcome"] == "success"


def test_a_slow_handler_gets_wechats_retries_and_runs_once(service):
    import time

    app, base = service
    calls = []

    def slow(message, configured):
        calls.append(message["MsgId"])
        time.sleep(2.5)  # longer than the simulated WeChat waits (2 s)
        return "finally"

    handlers.table(app).add("text", "", slow)
    connect(app, base, "safe")
    push = requests.post(base + "/simulator/_control/mp/phone/text", json={"openid": OPENID_ALICE, "content": "slow"},
                         timeout=30).json()
    assert len(push["tries"]) >= 2  # WeChat tried again
    assert len(calls) == 1  # but the handler ran once
