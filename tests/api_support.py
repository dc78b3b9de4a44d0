"""Set-up for the send API tests: the service with its simulator, a channel, bound users, a calling app."""
from __future__ import annotations

import json

import pytest
import requests

from tests.binding_support import connect_mp, connect_qy
from tests.livesrv import serve
from webapp.api.apps import create_app_credentials
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.models import Binding
from webapp.simulator.world import MP_APPID, OPENID_ALICE, OPENID_BOB, OPENID_NOT_FOLLOWING, QY_CORPID

SEND = "/api/c/compapi/cmsi/send_weixin/"
SEND_V2 = "/api/c/compapi/v2/cmsi/send_weixin/"


class Api:
    """A calling program: posts like BlueKing's SDK (JSON, credentials in X-Bkapi-Authorization)."""

    def __init__(self, base: str, code: str, secret: str):
        self.base, self.code, self.secret = base, code, secret

    def headers(self, **extra):
        return {"X-Bkapi-Authorization": json.dumps({"bk_app_code": self.code, "bk_app_secret": self.secret,
                                                      "bk_username": "admin"}), **extra}

    def send(self, body: dict, path: str = SEND) -> requests.Response:
        return requests.post(self.base + path, json=body, headers=self.headers(), timeout=60)

    def status(self, message_id: str) -> requests.Response:
        return requests.get(f"{self.base}/api/v1/messages/{message_id}", headers=self.headers(), timeout=10)


def bind(app, username: str, wx_type: str, account: str, wx_id: str, active=True, reason=None):
    """Give a user a binding (the binding flows themselves are tested elsewhere)."""
    from sqlalchemy import select

    from webapp.models import User

    with app.app_context():
        with db.transaction() as session:
            user = session.scalar(select(User).where(User.username == username))
            session.add(Binding(user_id=user.id, channel=wx_type, account=account, wx_id=wx_id, active=active,
                                deactivated_reason=reason))


@pytest.fixture
def service(make_app):
    """The service and simulator over HTTP, with users alice/bob/carol/dave/erin and an API application."""
    app = make_app(WEIXIN_SIMULATOR=True)
    with app.test_request_context():
        for name in ("alice", "bob", "carol", "dave", "erin"):
            create_user(name, "violet-orbit-61")
        _, secret = create_app_credentials("bk_monitor")
        db.session.remove()
    with serve(app) as base:
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy", PUBLIC_URL=base)
        yield app, base, Api(base, "bk_monitor", secret)


@pytest.fixture
def mp(service):
    """The Official Account connected; alice and bob bound and following, carol bound but not following."""
    app, base, api = service
    connect_mp(app, base)
    bind(app, "alice", "mp", MP_APPID, OPENID_ALICE)
    bind(app, "bob", "mp", MP_APPID, OPENID_BOB)
    bind(app, "carol", "mp", MP_APPID, OPENID_NOT_FOLLOWING)
    return service


@pytest.fixture
def qy(service):
    """WeCom connected; alice bound to zhangsan, bob to lisi."""
    app, base, api = service
    connect_qy(app)
    bind(app, "alice", "qywx", QY_CORPID, "zhangsan")
    bind(app, "bob", "qywx", QY_CORPID, "lisi")
    return service


def sim(base: str, path: str, payload=None, method="POST"):
    """Call the simulator's control API."""
    return requests.request(method, f"{base}/simulator/_control/{path}", json=payload, timeout=20).json()


def sim_messages(base: str, channel: str = "mp") -> list:
    """What the simulated WeChat delivered."""
    return requests.get(f"{base}/simulator/_control/messages", params={"channel": channel}, timeout=10).json()["messages"]
