"""BlueKing's own client (PyPI ``bkapi-component-open`` on ``bkapi-client-core``) as a real caller.

A BlueKing SaaS sends WeChat notifications with::

    from bkapi_component.open.shortcuts import get_client_by_username
    client = get_client_by_username(username, endpoint=..., bk_app_code=..., bk_app_secret=...)
    client.cmsi.send_weixin({...})

The SDK builds ``{endpoint}/api/c/compapi{bk_api_ver}/cmsi/<operation>/`` with ``bk_api_ver``
"v2" by default, puts the credentials into ``X-Bkapi-Authorization`` as JSON, sends the body as
JSON (GET parameters in the query string), turns an HTTP error into ``HTTPResponseError`` and
returns the parsed JSON otherwise. Pointing its endpoint at this service must just work.
"""
import base64

import pytest
from bkapi_client_core.exceptions import BKAPIError, HTTPResponseError
from bkapi_component.open.client import Client
from bkapi_component.open.shortcuts import get_client_by_username

from tests.api_support import mp, qy, service, sim_messages  # noqa: F401  (fixtures)
from webapp.simulator.world import OPENID_ALICE, OPENID_BOB, OPENID_NOT_FOLLOWING

DATA = {"heading": "Disk alert", "message": "disk /data 91% full", "remark": "from bk_monitor"}


def sdk(base: str, api, secret: str | None = None, username: str = "admin", **kwargs):
    """The client a BlueKing SaaS gets from the shortcut, pointed at the service."""
    return get_client_by_username(username, endpoint=base, bk_app_code=api.code,
                                  bk_app_secret=secret if secret is not None else api.secret, **kwargs)


def test_the_sdk_builds_v2_paths_and_the_authorization_header(mp):
    app, base, api = mp
    client = sdk(base, api)
    assert client.session.path_params["bk_api_ver"] == "/v2"  # bk_api_ver "v2" is the SDK's default
    assert client.session.auth.auth["bk_app_code"] == api.code
    response = client.cmsi.send_weixin.request({"receiver__username": "alice", "data": DATA})
    assert response.request.url == base + "/api/c/compapi/v2/cmsi/send_weixin/"
    assert '"bk_app_secret"' in response.request.headers["X-Bkapi-Authorization"]
    assert response.status_code == 200 and response.json()["result"] is True


def test_send_weixin_by_username_answers_per_receiver(mp):
    app, base, api = mp
    answer = sdk(base, api).cmsi.send_weixin({"receiver__username": "alice,bob carol;nobody", "data": DATA})
    assert answer["result"] is False and answer["code"] == 1306201 and answer["request_id"]
    by_name = {d["username"]: d for d in answer["data"]["deliveries"]}
    assert set(by_name) == {"alice", "bob", "carol", "nobody"}
    assert by_name["alice"]["receiver"] == OPENID_ALICE and by_name["alice"]["status"] == "sent"
    assert by_name["bob"]["receiver"] == OPENID_BOB and by_name["bob"]["status"] == "sent"
    # carol is bound but does not follow: WeChat's 43004 is passed on
    assert by_name["carol"]["status"] == "failed" and by_name["carol"]["errcode"] == 43004
    assert by_name["nobody"]["status"] == "failed" and "no such user" in by_name["nobody"]["errmsg"]
    assert answer["data"]["username_check"]["invalid"] == ["nobody"]
    delivered = sorted(m["to"] for m in sim_messages(base))
    assert delivered == sorted([OPENID_ALICE, OPENID_BOB])
    first = sim_messages(base)[0]
    assert first["data"]["first"] == "Disk alert" and first["data"]["keyword1"] == "disk /data 91% full"


def test_send_weixin_by_openid_and_status_follow_up(mp):
    app, base, api = mp
    answer = sdk(base, api).cmsi.send_weixin({"receiver": [OPENID_ALICE, OPENID_NOT_FOLLOWING], "data": DATA})
    statuses = {d["receiver"]: (d["status"], d["username"]) for d in answer["data"]["deliveries"]}
    assert statuses == {OPENID_ALICE: ("sent", "alice"), OPENID_NOT_FOLLOWING: ("failed", "carol")}
    # the message id the answer carries is what the status endpoint knows
    status = api.status(answer["data"]["message_id"]).json()
    assert [d["status"] for d in status["data"]["deliveries"]] == ["sent", "failed"]


def test_the_sdk_without_api_version_uses_the_unversioned_path(mp):
    app, base, api = mp
    client = Client(endpoint=base)  # ESBClient defaults to bk_api_ver=""
    client.update_bkapi_authorization(bk_app_code=api.code, bk_app_secret=api.secret, bk_username="admin")
    response = client.cmsi.send_weixin.request({"receiver__username": "bob", "data": DATA})
    assert response.request.url == base + "/api/c/compapi/cmsi/send_weixin/"
    assert response.json()["result"] is True
    assert [m["to"] for m in sim_messages(base)] == [OPENID_BOB]


def test_send_msg_with_msg_type_weixin(mp):
    app, base, api = mp
    content = base64.b64encode("数据库主从延迟 ✓".encode()).decode()
    answer = sdk(base, api).cmsi.send_msg({"msg_type": "weixin", "receiver__username": "alice", "title": "DB",
                                           "content": content, "is_content_base64": True})
    assert answer["result"] is True and answer["data"]["deliveries"][0]["status"] == "sent"
    [sent] = sim_messages(base)
    assert sent["data"]["first"] == "DB" and sent["data"]["keyword1"] == "数据库主从延迟 ✓"
    refused = sdk(base, api).cmsi.send_msg({"msg_type": "mail", "receiver__username": "alice", "title": "t", "content": "c"})
    assert refused["result"] is False and refused["code"] == 1306000


def test_get_msg_type(mp):
    app, base, api = mp
    answer = sdk(base, api).cmsi.get_msg_type()
    assert answer["result"] is True
    weixin = next(t for t in answer["data"] if t["type"] == "weixin")
    assert weixin["is_active"] is True


def test_validation_errors_come_back_as_a_result_not_an_exception(mp):
    app, base, api = mp
    answer = sdk(base, api).cmsi.send_weixin({"receiver__username": "alice", "data": {"heading": "h"}})
    assert answer["result"] is False and answer["code"] == 1306000 and "data.message is required" in answer["message"]
    assert sim_messages(base) == []


def test_a_wrong_secret_is_the_sdks_http_error(mp):
    app, base, api = mp
    with pytest.raises(HTTPResponseError) as caught:
        sdk(base, api, secret="not-the-secret").cmsi.send_weixin({"receiver__username": "alice", "data": DATA})
    error = caught.value
    assert isinstance(error, BKAPIError)
    assert error.response_status_code == 401
    assert error.request_url == base + "/api/c/compapi/v2/cmsi/send_weixin/"
    body = error.response_json()
    assert body["result"] is False and body["code"] == 401 and "secret is wrong" in body["message"]
    assert sim_messages(base) == []
    with pytest.raises(HTTPResponseError) as caught:
        sdk(base, api, secret="not-the-secret").cmsi.get_msg_type()
    assert caught.value.response_status_code == 401


def test_an_unknown_app_code_is_the_sdks_http_error(mp):
    app, base, api = mp
    client = get_client_by_username("admin", endpoint=base, bk_app_code="nobody", bk_app_secret="x")
    with pytest.raises(HTTPResponseError) as caught:
        client.cmsi.send_weixin({"receiver__username": "alice", "data": DATA})
    assert caught.value.response_status_code == 401


def test_send_weixin_over_wecom(qy):
    app, base, api = qy
    answer = sdk(base, api).cmsi.send_weixin({"receiver__username": ["alice", "bob"], "data": DATA})
    assert answer["result"] is True
    assert [(d["username"], d["receiver"], d["status"]) for d in answer["data"]["deliveries"]] == [
        ("alice", "zhangsan", "sent"), ("bob", "lisi", "sent")]
    [sent] = sim_messages(base, "qy")
    assert sent["to"] == ["zhangsan", "lisi"] and "disk /data 91% full" in sent["content"]["content"]
