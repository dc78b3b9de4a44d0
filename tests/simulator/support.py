"""Fixtures and a small HTTP client shared by the simulator tests.

The tests run with ``--noconftest`` (the project's conftest is written separately), so the
fixtures live here and each test module imports the ones it uses.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest
import requests

from tests.livesrv import serve
from webapp.simulator import create_standalone_app
from webapp.simulator.world import (
    MP_APPID,
    MP_SECRET,
    OPENID_ALICE,
    QY_AGENTID,
    QY_CORPID,
    QY_CORPSECRET,
    TEMPLATE_NOTIFICATION_ID,
)

TIMEOUT = 5


class SimClient:
    """Speaks to a running simulator the way the service and tests do: plain HTTP."""

    def __init__(self, base_url: str, app: Any) -> None:
        self.base = base_url
        self.app = app
        self.root = f"{base_url}/simulator"
        self.mp = f"{self.root}/mp/cgi-bin"
        self.qy = f"{self.root}/qy/cgi-bin"
        self.ctl = f"{self.root}/_control"
        self.http = requests.Session()

    def control(self, path: str, payload: dict[str, Any] | None = None,
                method: str = "POST", expect: int = 200) -> Any:
        """Call the control API and return its JSON, checking the HTTP status."""
        response = self.http.request(method, f"{self.ctl}/{path}", json=payload, timeout=TIMEOUT)
        assert response.status_code == expect, response.text
        return response.json()

    def reset(self) -> None:
        """Return the simulator to its seed."""
        self.control("reset")

    def settings(self, **changes: Any) -> dict[str, Any]:
        """Change settings."""
        return self.control("settings", changes)

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward."""
        self.control("clock/advance", {"seconds": seconds})

    def get(self, url: str, **params: Any) -> dict[str, Any]:
        """GET an API URL and return its JSON (WeChat answers errors with HTTP 200)."""
        response = self.http.get(url, params=params, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, url: str, body: Any, **params: Any) -> dict[str, Any]:
        """POST JSON to an API URL and return its JSON."""
        response = self.http.post(url, params=params, json=body, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        return response.json()

    def mp_token(self, appid: str = MP_APPID, secret: str = MP_SECRET) -> dict[str, Any]:
        """GET /cgi-bin/token."""
        return self.get(f"{self.mp}/token", grant_type="client_credential", appid=appid,
                        secret=secret)

    def stable_token(self, force_refresh: bool = False, appid: str = MP_APPID,
                     secret: str = MP_SECRET) -> dict[str, Any]:
        """POST /cgi-bin/stable_token."""
        return self.post(f"{self.mp}/stable_token", {
            "grant_type": "client_credential", "appid": appid, "secret": secret,
            "force_refresh": force_refresh})

    def send_template(self, token: str | None, **fields: Any) -> dict[str, Any]:
        """Send a template message (to Alice with the notification template unless told)."""
        body = {
            "touser": OPENID_ALICE,
            "template_id": TEMPLATE_NOTIFICATION_ID,
            "data": {"first": {"value": "Heads up"}, "keyword1": {"value": "Disk full"},
                     "keyword2": {"value": "2024-05-04 10:00"}, "remark": {"value": "Bye"}},
            **fields,
        }
        params = {} if token is None else {"access_token": token}
        return self.post(f"{self.mp}/message/template/send", body, **params)

    def qy_token(self, corpid: str = QY_CORPID, secret: str = QY_CORPSECRET) -> dict[str, Any]:
        """GET /cgi-bin/gettoken."""
        return self.get(f"{self.qy}/gettoken", corpid=corpid, corpsecret=secret)

    def qy_send(self, token: str | None, **fields: Any) -> dict[str, Any]:
        """Send a WeCom text message (to zhangsan unless told)."""
        body = {"touser": "zhangsan", "msgtype": "text", "agentid": QY_AGENTID,
                "text": {"content": "hello"}, **fields}
        params = {} if token is None else {"access_token": token}
        return self.post(f"{self.qy}/message/send", body, **params)

    def messages(self, channel: str | None = None, to: str | None = None) -> list[dict[str, Any]]:
        """Delivered messages, oldest first."""
        params = {k: v for k, v in {"channel": channel, "to": to}.items() if v}
        response = self.http.get(f"{self.ctl}/messages", params=params, timeout=TIMEOUT)
        assert response.status_code == 200
        return response.json()["messages"]

    def calls(self) -> dict[str, int]:
        """Call counts per endpoint."""
        return self.control("stats", method="GET")["calls"]


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SimClient]:
    """One standalone simulator served over HTTP for the whole session."""
    app = create_standalone_app({"TESTING": False})
    with serve(app) as base_url:
        yield SimClient(base_url, app)


@pytest.fixture
def sim(sim_server: SimClient) -> SimClient:
    """The simulator, freshly reset for this test."""
    sim_server.reset()
    return sim_server
