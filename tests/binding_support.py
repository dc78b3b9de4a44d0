"""Shared set-up for the binding tests: the service with its simulator, connected, and signed-in browsers."""
from __future__ import annotations

import re

import requests

from webapp import channel
from webapp.simulator.world import MP_APPID, MP_SECRET, QY_AGENTID, QY_CORPID, QY_CORPSECRET, TEMPLATE_NOTIFICATION_ID

TOKEN = "BindToken2026"
KEY = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
CALLBACK = "/console/user_center/weixin/mp/callback/"


def connect_mp(app, base: str, mode: str = "safe") -> None:
    """Configure the Official Account of the simulator, and point the simulator's pushes at the service."""
    with app.app_context():
        channel.save(channel.normalize({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET, "wx_token": TOKEN,
                                        "wx_encoding_aes_key": KEY, "wx_encrypt_mode": mode,
                                        "wx_template_id": TEMPLATE_NOTIFICATION_ID}), actor="test")
    answer = requests.post(base + "/simulator/_control/mp/server",
                           json={"url": base + CALLBACK, "token": TOKEN, "encoding_aes_key": KEY, "mode": mode}, timeout=10).json()
    assert answer["ok"], answer


def connect_qy(app) -> None:
    """Configure the WeCom application of the simulator."""
    with app.app_context():
        channel.save(channel.normalize({"wx_type": "qywx", "wx_qy_corpid": QY_CORPID, "wx_qy_corpsecret": QY_CORPSECRET,
                                        "wx_qy_agentid": QY_AGENTID}), actor="test")


def browser(base: str, username: str, password: str) -> requests.Session:
    """A requests session signed in through the real login form."""
    session = requests.Session()
    page = session.get(base + "/login", timeout=5)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    answer = session.post(base + "/login", data={"username": username, "password": password, "csrf_token": token},
                          allow_redirects=False, timeout=5)
    assert answer.status_code == 302 and not answer.headers["Location"].endswith("/setup/"), answer.text
    return session


def page_csrf(session: requests.Session, url: str) -> str:
    """The CSRF token on a page."""
    html = session.get(url, timeout=5).text
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
