"""The simulated phone pages and the control panel's forms."""
from __future__ import annotations

import re

from webapp.simulator.world import OPENID_ALICE, OPENID_NOT_FOLLOWING

from .support import SimClient, sim, sim_server  # noqa: F401  (fixtures)


def page(sim: SimClient, path: str = "/") -> str:
    response = sim.http.get(f"{sim.root}{path}", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/html")
    return response.text


def test_overview_lists_people_and_their_messages_newest_last(sim: SimClient):
    token = sim.stable_token()["access_token"]
    sim.send_template(token, data={"keyword1": {"value": "Older alert"}})
    sim.advance(60)
    sim.send_template(token, data={"keyword1": {"value": "Newer alert"},
                                   "first": {"value": "A first line"}},
                      url="https://example.com/alerts/9")
    qy_token = sim.qy_token()["access_token"]
    sim.qy_send(qy_token, msgtype="textcard", textcard={
        "title": "Build failed", "description": "<div class=\"gray\">main</div>job 42",
        "url": "https://ci.example.com/42"})
    sim.qy_send(qy_token, touser="lisi", msgtype="markdown",
                markdown={"content": "**bold** <script>alert(1)</script>"})
    html = page(sim)
    for name in ("Alice", "Bob", "Eve", "Zhang San", "Sun Qi"):
        assert name in html
    assert html.index("Older alert") < html.index("Newer alert")  # as in WeChat: the newest at the bottom
    assert "Notification" in html
    assert "A first line" in html and "field-hidden" in html
    assert 'href="https://example.com/alerts/9"' in html
    assert "Build failed" in html and "job 42" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # message text is escaped
    assert "not following" in html


def test_phone_page_for_one_follower_and_one_member(sim: SimClient):
    token = sim.stable_token()["access_token"]
    sim.send_template(token, data={"keyword1": {"value": "Only for Alice"}})
    html = page(sim, f"/phone/{OPENID_ALICE}")
    assert "Only for Alice" in html and "Bob" not in html
    qy_token = sim.qy_token()["access_token"]
    sim.qy_send(qy_token, text={"content": "Only for Zhang San"})
    html = page(sim, "/phone/zhangsan")
    assert "Only for Zhang San" in html and "Alice" not in html
    assert sim.http.get(f"{sim.root}/phone/nobody", timeout=5).status_code == 404


def test_pages_load_nothing_from_outside_and_have_no_inline_script(sim: SimClient):
    html = page(sim)
    scripts = re.findall(r"<script\b([^>]*)>", html)
    assert scripts and all('src="/simulator/static/' in attrs for attrs in scripts)
    bodies = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert all(not body.strip() for body in bodies)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)
    for asset in ("simulator.css", "refresh.js"):
        assert sim.http.get(f"{sim.root}/static/{asset}", timeout=5).status_code == 200
    assert re.search(r'<meta name="viewport"', html)


def test_standalone_root_redirects_to_the_phone(sim: SimClient):
    response = sim.http.get(sim.base + "/", allow_redirects=False, timeout=5)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/simulator/")


def test_panel_settings_form(sim: SimClient):
    response = sim.http.post(f"{sim.root}/panel/settings", data={
        "latency_ms": "25", "token_lifetime": "600", "mp_ip_check": "on",
        "mp_ip_whitelist": "127.0.0.1\n10.0.0.0/8", "qy_ip_whitelist": "",
        "qy_strict_limits": "on", "next": "/simulator/phone/zhangsan"},
        allow_redirects=False, timeout=5)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/simulator/phone/zhangsan")
    settings = sim.control("settings", method="GET")
    assert settings["latency_ms"] == 25
    assert settings["token_lifetime"] == 600
    assert settings["mp_ip_check"] is True and settings["qy_ip_check"] is False
    assert settings["mp_ip_whitelist"] == ["127.0.0.1", "10.0.0.0/8"]
    html = page(sim)
    assert 'name="mp_ip_check" checked' in html
    bad = sim.http.post(f"{sim.root}/panel/settings", data={"latency_ms": "x"}, timeout=5)
    assert bad.status_code == 400


def test_panel_redirect_stays_inside_the_simulator(sim: SimClient):
    response = sim.http.post(f"{sim.root}/panel/invalidate",
                             data={"next": "//evil.example.com/"}, allow_redirects=False,
                             timeout=5)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/simulator/")


def test_panel_invalidate_advance_reset_and_follow(sim: SimClient):
    token = sim.stable_token()["access_token"]
    sim.http.post(f"{sim.root}/panel/invalidate", data={}, timeout=5)
    assert sim.send_template(token)["errcode"] == 40001
    sim.http.post(f"{sim.root}/panel/advance", data={"seconds": "300"}, timeout=5)
    assert sim.control("clock", method="GET")["offset"] == 300
    sim.http.post(f"{sim.root}/panel/follow",
                  data={"openid": OPENID_NOT_FOLLOWING, "following": "1"}, timeout=5)
    fresh = sim.stable_token()["access_token"]
    assert sim.send_template(fresh, touser=OPENID_NOT_FOLLOWING)["errcode"] == 0
    sim.http.post(f"{sim.root}/panel/faults", data={
        "endpoint": "token", "kind": "errcode", "errcode": "-1", "status": "503",
        "seconds": "6", "count": "2"}, timeout=5)
    assert sim.control("faults", method="GET")["faults"][0]["count"] == 2
    sim.http.post(f"{sim.root}/panel/faults/clear", data={}, timeout=5)
    assert sim.control("faults", method="GET")["faults"] == []
    response = sim.http.post(f"{sim.root}/panel/reset", data={}, timeout=5)
    assert response.status_code == 200  # followed the redirect to the overview
    assert sim.control("clock", method="GET")["offset"] == 0
    assert sim.messages() == []


def test_version_moves_when_something_happens(sim: SimClient):
    before = sim.control("version", method="GET")["version"]
    html = page(sim)
    assert f'data-version="{before}"' in html
    sim.qy_send(sim.qy_token()["access_token"])
    assert sim.control("version", method="GET")["version"] > before
