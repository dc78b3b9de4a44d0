"""The BlueKing-compatible send API over real HTTP against the simulated WeChat."""
import base64
import json
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from tests.api_support import SEND, SEND_V2, mp, qy, service, sim, sim_messages  # noqa: F401  (fixtures)
from webapp.extensions import db
from webapp.models import ApiApp, Delivery, Message, utcnow
from webapp.simulator.world import OPENID_ALICE, OPENID_BOB

BODY = {"receiver__username": "alice", "data": {"heading": "Disk alert", "message": "disk /data 91% full"}}


def messages_stored(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Message))


def test_send_to_a_bound_user(mp):
    app, base, api = mp
    answer = api.send(BODY)
    assert answer.status_code == 200
    body = answer.json()
    assert body["result"] is True and body["code"] == 0 and body["request_id"]
    [delivery] = body["data"]["deliveries"]
    assert delivery == {"receiver": OPENID_ALICE, "username": "alice", "status": "sent", "errcode": None, "errmsg": None,
                        "receipt": None}
    assert body["data"]["username_check"] == {"invalid": []}
    [sent] = sim_messages(base)
    assert sent["to"] == OPENID_ALICE and sent["data"]["keyword1"] == "disk /data 91% full" and sent["data"]["first"] == "Disk alert"
    assert sent["client_msg_id"] and len(sent["data"]["keyword2"]) == 16  # default date "YYYY-mm-dd HH:MM"


def test_both_paths_and_every_way_of_giving_credentials(mp):
    app, base, api = mp
    assert api.send(BODY, SEND_V2).json()["result"] is True
    creds = {"bk_app_code": api.code, "bk_app_secret": api.secret}
    assert requests.post(base + SEND, json={**BODY, **creds}, timeout=20).json()["result"] is True
    assert requests.post(base + SEND, params={"app_code": api.code, "app_secret": api.secret}, json=BODY, timeout=20).json()["result"]
    # BlueKing's embedded SDK: json.dumps(...) with no Content-Type at all.
    raw = requests.post(base + SEND, data=json.dumps({**BODY, **creds}).encode(), headers={"Content-Type": ""}, timeout=20)
    assert raw.json()["result"] is True
    assert len(sim_messages(base)) == 4


@pytest.mark.parametrize("creds", [{}, {"bk_app_code": "bk_monitor", "bk_app_secret": "wrong"}, {"bk_app_code": "nobody", "bk_app_secret": "x"}])
def test_bad_credentials_get_401_in_the_same_shape(mp, creds):
    app, base, api = mp
    answer = requests.post(base + SEND, json={**BODY, **creds}, timeout=10)
    assert answer.status_code == 401
    assert set(answer.json()) == {"result", "code", "message", "request_id", "data"} and answer.json()["result"] is False
    assert messages_stored(app) == 0


def test_a_disabled_application_is_refused(mp):
    app, base, api = mp
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(ApiApp).values(enabled=False))
    answer = api.send(BODY)
    assert answer.status_code == 401 and "disabled" in answer.json()["message"]


def test_receivers_are_split_like_blueking_does(mp):
    app, base, api = mp
    answer = api.send({"receiver": f"{OPENID_ALICE},{OPENID_BOB};{OPENID_ALICE}\n", "data": BODY["data"]}).json()
    assert [d["receiver"] for d in answer["data"]["deliveries"]] == [OPENID_ALICE, OPENID_BOB]
    assert [d["username"] for d in answer["data"]["deliveries"]] == ["alice", "bob"]
    answer = api.send({"receiver__username": ["alice bob", "alice"], "data": BODY["data"]}).json()
    assert [d["username"] for d in answer["data"]["deliveries"]] == ["alice", "bob"]


@pytest.mark.parametrize("body, words", [
    ({"data": BODY["data"]}, "receiver or receiver__username is required"),
    ({"receiver__username": 5, "data": BODY["data"]}, "receiver__username must be"),
    ({"receiver__username": "alice"}, "data must be an object"),
    ({"receiver__username": "alice", "data": {"message": "x"}}, "data.heading is required"),
    ({"receiver__username": "alice", "data": {"heading": "x"}}, "data.message is required"),
    ({"receiver__username": "alice", "data": {"heading": 1, "message": "x"}}, "data.heading must be a string"),
    ({"receiver__username": "alice", "data": {"heading": "h", "message": "m", "url": "javascript:x"}}, "data.url"),
    ({"receiver__username": "alice", "data": {"heading": "h", "message": "%%%", "is_message_base64": True}}, "not valid base64"),
    ({"receiver__username": "alice", "data": {"heading": "h" * 1001, "message": "m"}}, "longer than 1000"),
    ({"receiver__username": "alice", "data": {"heading": "h", "message": "m"}, "wx_qy_agentid": "abc"}, "wx_qy_agentid"),
    ({"receiver__username": " ".join(f"u{i}" for i in range(10001)), "data": {"heading": "h", "message": "m"}}, "at most 10000"),
])
def test_invalid_requests_name_the_field_and_store_and_send_nothing(mp, body, words):
    app, base, api = mp
    answer = api.send(body).json()
    assert answer["result"] is False and answer["code"] == 1306000 and words in answer["message"]
    assert messages_stored(app) == 0 and sim_messages(base) == []


def test_body_that_is_not_json(mp):
    app, base, api = mp
    answer = requests.post(base + SEND, data=b"{not json", headers=api.headers(), timeout=10).json()
    assert answer["code"] == 1306000 and "not valid JSON" in answer["message"]


def test_users_that_cannot_receive_are_reported_and_the_others_delivered(mp):
    from tests.api_support import bind
    from webapp.models import User
    from webapp.simulator.world import MP_APPID

    app, base, api = mp
    bind(app, "dave", "mp", MP_APPID, "oSimDave_left_the_account_0001", active=False, reason="unsubscribed")
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(User).where(User.username == "bob").values(enabled=False))
    answer = api.send({"receiver__username": "alice bob dave erin nobody", "data": BODY["data"]}).json()
    assert answer["result"] is False and answer["code"] == 1306201
    assert answer["data"]["username_check"]["invalid"] == ["bob", "dave", "erin", "nobody"]
    by_name = {d["username"]: d for d in answer["data"]["deliveries"]}
    assert by_name["alice"]["status"] == "sent"
    assert "disabled" in by_name["bob"]["errmsg"] and "unfollowed" in by_name["dave"]["errmsg"]
    assert "not bound" in by_name["erin"]["errmsg"] and "no such user" in by_name["nobody"]["errmsg"]
    assert [m["to"] for m in sim_messages(base)] == [OPENID_ALICE]


def test_a_person_who_does_not_follow_fails_with_43004(mp):
    app, base, api = mp
    answer = api.send({"receiver__username": "carol", "data": BODY["data"]}).json()
    [delivery] = answer["data"]["deliveries"]
    assert delivery["status"] == "failed" and delivery["errcode"] == 43004 and answer["result"] is False


def test_base64_messages_and_send_msg(mp):
    app, base, api = mp
    encoded = base64.b64encode("磁盘告警 ✓".encode()).decode()
    api.send({"receiver__username": "alice", "data": {"heading": "h", "message": encoded, "is_message_base64": True}})
    answer = requests.post(base + "/api/c/compapi/cmsi/send_msg/", headers=api.headers(), timeout=20, json={
        "msg_type": "weixin", "receiver__username": "bob", "title": "Title", "content": encoded, "is_content_base64": True}).json()
    assert answer["result"] is True
    first, second = sim_messages(base)
    assert first["data"]["keyword1"] == "磁盘告警 ✓" and second["data"]["first"] == "Title" and second["data"]["keyword1"] == "磁盘告警 ✓"
    refused = requests.post(base + "/api/c/compapi/cmsi/send_msg/", headers=api.headers(), timeout=20,
                            json={"msg_type": "mail", "receiver__username": "bob", "title": "t", "content": "c"}).json()
    assert refused["code"] == 1306000 and "msg_type" in refused["message"]


def test_get_msg_type(mp):
    app, base, api = mp
    answer = requests.get(base + "/api/c/compapi/cmsi/get_msg_type/", headers=api.headers(), timeout=10).json()
    assert answer["result"] is True and {"type": "weixin", "label": "WeChat", "label_en": "WeChat", "is_active": True} in answer["data"]


def test_status_endpoint_is_for_the_sending_application_only(mp):
    from webapp.api.apps import create_app_credentials
    from tests.api_support import Api

    app, base, api = mp
    message_id = api.send(BODY).json()["data"]["message_id"]
    answer = api.status(message_id).json()
    assert answer["result"] is True and answer["data"]["deliveries"][0]["status"] == "sent"
    with app.test_request_context():
        _, other_secret = create_app_credentials("other_app")
    other = Api(base, "other_app", other_secret)
    assert other.status(message_id).status_code == 404
    assert api.status("0" * 32).status_code == 404


def test_transient_failures_are_queued_and_retried_once(mp):
    from webapp.delivery.engine import deliver_due

    app, base, api = mp
    sim(base, "faults", {"endpoint": "template_send", "kind": "errcode", "errcode": -1, "count": 1})
    answer = api.send(BODY).json()
    [delivery] = answer["data"]["deliveries"]
    assert answer["result"] is True and delivery["status"] == "queued" and delivery["errcode"] == -1
    with app.app_context():
        assert deliver_due() == 0  # not due yet: it waits for its backoff
        with db.transaction() as session:
            session.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        assert deliver_due() == 1
        assert deliver_due() == 0
    status = api.status(answer["data"]["message_id"]).json()["data"]["deliveries"][0]
    assert status["status"] == "sent" and status["errcode"] is None
    assert len(sim_messages(base)) == 1


def test_the_time_budget_answers_queued_and_the_rest_is_delivered_later(make_app, mp):
    from webapp.delivery.engine import deliver_due

    app, base, api = mp
    app.config.update(DELIVERY_TIME_BUDGET=0.5, DELIVERY_POOL_SIZE=1)
    sim(base, "settings", {"latency_ms": 400})
    answer = api.send({"receiver__username": "alice bob", "data": BODY["data"]}).json()
    statuses = [d["status"] for d in answer["data"]["deliveries"]]
    assert "queued" in statuses and answer["result"] is True
    time.sleep(1.0)  # a call already running finishes and records itself
    with app.app_context():
        deliver_due()
    final = [d["status"] for d in api.status(answer["data"]["message_id"]).json()["data"]["deliveries"]]
    assert final == ["sent", "sent"]
    assert sorted(m["to"] for m in sim_messages(base)) == sorted([OPENID_ALICE, OPENID_BOB])


def test_one_retry_run_keeps_to_one_budget_and_hands_back_what_it_could_not_send(mp):
    """The retry job's claim covers its whole run: past the budget it releases the rest unsent."""
    from webapp.delivery.engine import deliver_due

    app, base, api = mp
    sim(base, "faults", {"endpoint": "template_send", "kind": "errcode", "errcode": -1, "count": 6})
    for _ in range(6):
        assert api.send(BODY).json()["data"]["deliveries"][0]["status"] == "queued"
    app.config.update(DELIVERY_TIME_BUDGET=0.2, DELIVERY_POOL_SIZE=1)
    sim(base, "settings", {"latency_ms": 300})
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        started = time.monotonic()
        assert deliver_due() == 6
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # the call running when the budget ended records its outcome
        db.session.remove()
        rows = db.session.scalars(select(Delivery)).all()
    # Six messages at 0.3 s each would take 1.8 s; the run stops near its 0.6 s budget.
    assert elapsed < 1.5
    unsent = [d for d in rows if d.status == "queued"]
    assert unsent and all(d.claimed_until is None for d in unsent)
    assert len(sim_messages(base)) == 6 - len(unsent)


def test_permanent_failures_are_not_retried(mp):
    from webapp.delivery.engine import deliver_due

    app, base, api = mp
    sim(base, "faults", {"endpoint": "template_send", "kind": "errcode", "errcode": 40037, "count": 1})
    answer = api.send(BODY).json()
    assert answer["data"]["deliveries"][0]["status"] == "failed" and answer["data"]["deliveries"][0]["errcode"] == 40037
    with app.app_context():
        assert deliver_due() == 0


def test_rate_limit_per_application(mp):
    app, base, api = mp
    with app.app_context():
        with db.transaction() as session:
            session.execute(update(ApiApp).values(rate_limit_per_minute=2))
    assert api.send(BODY).status_code == 200 and api.send(BODY).status_code == 200
    refused = api.send(BODY)
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["result"] is False and "rate limit" in refused.json()["message"]


def test_receipts_from_wechat_reach_the_status_endpoint(mp):
    app, base, api = mp
    sim(base, "settings", {"mp_receipts": False})  # this test sends WeChat's report itself
    answer = api.send(BODY).json()
    msgid = sim_messages(base)[0]["msgid"]
    sim(base, "mp/push", {"openid": OPENID_ALICE, "fields": {"MsgType": "event", "Event": "TEMPLATESENDJOBFINISH",
                                                             "MsgID": str(msgid), "Status": "failed:user block"}})
    status = api.status(answer["data"]["message_id"]).json()["data"]["deliveries"][0]
    assert status["receipt"] == "failed:user block"


def test_long_messages_link_to_a_signed_detail_page(mp):
    app, base, api = mp
    long_text = "数据库主库 CPU 使用率连续十分钟超过百分之九十五，请立即检查慢查询与连接数"
    api.send({"receiver__username": "alice", "data": {"heading": "告警", "message": long_text, "remark": "由监控平台发送"}})
    [sent] = sim_messages(base)
    assert len(sent["data"]["keyword1"]) <= 20 and sent["data"]["keyword1"].endswith("…")
    assert sent["url"].startswith(base + "/m/")
    page = requests.get(sent["url"], timeout=10)
    assert page.status_code == 200 and long_text in page.text and "由监控平台发送" in page.text
    assert requests.get(sent["url"][:-3] + "xyz", timeout=10).status_code == 404


def test_wecom_sends_in_batches_of_1000(qy):
    from webapp.simulator import get_world

    app, base, api = qy
    world = get_world(app)
    for i in range(1500):
        world.upsert_qy_member(f"member{i:04d}", f"Member {i}", True, 1000002)
    receivers = [f"member{i:04d}" for i in range(1500)]
    answer = api.send({"receiver": receivers, "data": BODY["data"]}).json()
    assert answer["result"] is True and all(d["status"] == "sent" for d in answer["data"]["deliveries"])
    assert sim(base, "stats", method="GET")["calls"]["qy_send"] == 2
    assert sum(len(m["to"]) for m in sim_messages(base, "qy")) == 1500


def test_wecom_invalid_users_fail_the_others_are_sent(qy):
    app, base, api = qy
    answer = api.send({"receiver": "zhangsan|nobody".replace("|", ","), "data": BODY["data"]}).json()
    by = {d["receiver"]: d for d in answer["data"]["deliveries"]}
    assert by["zhangsan"]["status"] == "sent" and by["nobody"]["status"] == "failed" and "invaliduser" in by["nobody"]["errmsg"]


def test_wecom_overrides_choose_another_application(qy):
    app, base, api = qy
    sim(base, "qy/apps", {"agentid": 1000003, "secret": "OtherAppSecret0123456789abcdefghijklmnopqrs", "allow_users": ["zhangsan"]})
    answer = api.send({"receiver__username": "alice", "data": BODY["data"], "wx_qy_agentid": 1000003,
                       "wx_qy_corpsecret": "OtherAppSecret0123456789abcdefghijklmnopqrs"}).json()
    assert answer["result"] is True
    assert sim_messages(base, "qy")[0]["agentid"] == 1000003


def test_no_channel_configured(service):
    app, base, api = service
    answer = api.send(BODY).json()
    assert answer["result"] is False and answer["code"] == 1306202 and "set-up" in answer["message"]


def test_openapi_document(service):
    app, base, api = service
    document = requests.get(base + "/api/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.") and "/api/c/compapi/cmsi/send_weixin/" in document["paths"]
    for sender in ("alertmanager", "grafana"):
        post = document["paths"][f"/api/v1/webhooks/{sender}/"]["post"]
        assert {"basicAuth": []} in post["security"], post.get("security")
        assert {"200", "400", "401", "413"} <= set(post["responses"]), post["responses"].keys()
        assert {p["name"] for p in post["parameters"]} >= {"receiver__username", "receiver"}


def test_the_simulated_wechat_reports_deliveries_by_itself(mp):
    app, base, api = mp
    answer = api.send(BODY).json()
    deadline = time.time() + 10
    while time.time() < deadline:
        receipt = api.status(answer["data"]["message_id"]).json()["data"]["deliveries"][0]["receipt"]
        if receipt:
            break
        time.sleep(0.2)
    assert receipt == "success"
