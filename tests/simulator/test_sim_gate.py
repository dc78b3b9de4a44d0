"""What every simulated API call goes through: IP whitelists, latency, injected faults, call
statistics; and the control API's own behaviour."""
from __future__ import annotations

import re
import time

import pytest
import requests

from webapp.simulator import create_standalone_app, get_world
from webapp.simulator.world import MP_APPID, OPENID_ALICE, World

from .support import SimClient, sim, sim_server  # noqa: F401  (fixtures)


# ---- IP whitelist -------------------------------------------------------------------------------

def test_mp_ip_refusal_names_the_caller(sim: SimClient):
    sim.settings(mp_ip_check=True)
    for answer in (sim.mp_token(), sim.stable_token(), sim.send_template("whatever")):
        assert answer["errcode"] == 40164
        assert re.fullmatch(
            r"invalid ip 127\.0\.0\.1 ipv6 ::ffff:127\.0\.0\.1, not in whitelist "
            r"rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}", answer["errmsg"]), answer["errmsg"]
    assert "access_token" in sim.qy_token()  # the other channel is unaffected


def test_mp_whitelist_lets_listed_callers_through(sim: SimClient):
    sim.settings(mp_ip_check=True, mp_ip_whitelist=["10.0.0.0/8", "127.0.0.1"])
    assert "access_token" in sim.mp_token()
    sim.settings(mp_ip_whitelist=["10.1.2.3"])
    assert sim.mp_token()["errcode"] == 40164


def test_qy_ip_refusal_names_the_caller(sim: SimClient):
    sim.settings(qy_ip_check=True)
    token_answer = sim.qy_token()
    assert token_answer["errcode"] == 60020
    assert re.fullmatch(
        r"not allow to access from your ip, hint: \[\d+\], from ip: 127\.0\.0\.1, "
        r"more info at https://open\.work\.weixin\.qq\.com/devtool/query\?e=60020",
        token_answer["errmsg"]), token_answer["errmsg"]
    assert sim.qy_send("x")["errcode"] == 60020
    sim.settings(qy_ip_whitelist="127.0.0.1, 192.168.1.1")  # a typed list is accepted too
    assert sim.qy_token()["errcode"] == 0
    assert sim.control("settings", method="GET")["qy_ip_whitelist"] == [
        "127.0.0.1", "192.168.1.1"]


def test_bad_whitelist_is_refused(sim: SimClient):
    sim.control("settings", {"mp_ip_whitelist": ["not-an-ip"]}, expect=400)
    sim.control("settings", {"nonsense": 1}, expect=400)
    sim.control("settings", {"latency_ms": -5}, expect=400)
    assert sim.control("settings", method="GET")["mp_ip_whitelist"] == []


# ---- latency and faults -------------------------------------------------------------------------

def test_latency_applies_to_every_api_call(sim: SimClient):
    sim.settings(latency_ms=200)
    started = time.monotonic()
    sim.mp_token()
    sim.qy_token()
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    sim.control("stats", method="GET")  # the control API itself is never slowed
    assert time.monotonic() - started < 0.2


def test_fault_errcode(sim: SimClient):
    sim.control("faults", {"endpoint": "template_send", "kind": "errcode", "errcode": -1,
                           "count": 2})
    token = sim.stable_token()["access_token"]  # other endpoints are unaffected
    for _ in range(2):
        answer = sim.send_template(token)
        assert answer["errcode"] == -1
        assert answer["errmsg"].startswith("system error rid: ")
    assert sim.send_template(token)["errcode"] == 0
    assert len(sim.messages("mp")) == 1
    assert sim.control("faults", method="GET")["faults"] == []


def test_fault_errcode_on_qy_uses_qy_shape(sim: SimClient):
    sim.control("faults", {"endpoint": "gettoken", "kind": "errcode", "errcode": 45009})
    answer = sim.qy_token()
    assert answer["errcode"] == 45009
    assert answer["errmsg"].startswith("api freq out of limit, hint: [")


def test_fault_http_status(sim: SimClient):
    sim.control("faults", {"endpoint": "stable_token", "kind": "http_status", "status": 503})
    response = sim.http.post(f"{sim.mp}/stable_token", json={}, timeout=5)
    assert response.status_code == 503
    assert "503" in response.text
    assert "access_token" in sim.stable_token()


def test_fault_drop_closes_the_connection(sim: SimClient):
    sim.control("faults", {"endpoint": "token", "kind": "drop"})
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{sim.mp}/token", params={"grant_type": "client_credential",
                                                 "appid": MP_APPID}, timeout=5)
    assert time.monotonic() - started < 2  # hung up at once, not a timeout
    assert "access_token" in sim.mp_token()  # the server is fine afterwards


def test_fault_delay(sim: SimClient):
    sim.control("faults", {"endpoint": "qy_send", "kind": "delay", "seconds": 0.3})
    token = sim.qy_token()["access_token"]
    started = time.monotonic()
    assert sim.qy_send(token)["errcode"] == 0  # slow, but answered normally
    assert time.monotonic() - started >= 0.3
    with pytest.raises(requests.Timeout):
        sim.control("faults", {"endpoint": "qy_send", "kind": "delay", "seconds": 1})
        requests.post(f"{sim.qy}/message/send", params={"access_token": token},
                      json={}, timeout=0.3)


def test_wildcard_fault_hits_the_next_call_of_any_endpoint(sim: SimClient):
    sim.control("faults", {"faults": [
        {"endpoint": "*", "kind": "errcode", "errcode": -1},
        {"endpoint": "gettoken", "kind": "http_status", "status": 502},
    ]})
    assert sim.mp_token()["errcode"] == -1
    assert sim.http.get(f"{sim.qy}/gettoken", timeout=5).status_code == 502
    assert sim.qy_token()["errcode"] == 0


def test_fault_validation_and_clearing(sim: SimClient):
    sim.control("faults", {"endpoint": "nope", "kind": "drop"}, expect=400)
    sim.control("faults", {"endpoint": "token", "kind": "explode"}, expect=400)
    sim.control("faults", {"endpoint": "token", "kind": "drop", "count": 0}, expect=400)
    sim.control("faults", {"endpoint": "token", "kind": "drop", "count": 3})
    assert sim.control("faults", method="GET")["faults"][0]["count"] == 3
    sim.control("faults", method="DELETE")
    assert "access_token" in sim.mp_token()


# ---- statistics, reset, clock -------------------------------------------------------------------

def test_call_counts(sim: SimClient):
    sim.mp_token()
    sim.mp_token(secret="wrong")  # refusals count too
    token = sim.stable_token()["access_token"]
    sim.send_template(token)
    sim.qy_token()
    calls = sim.calls()
    assert calls["token"] == 2
    assert calls["stable_token"] == 1
    assert calls["template_send"] == 1
    assert calls["gettoken"] == 1
    assert calls["qy_send"] == 0
    stats = sim.control("stats", method="GET")
    assert stats["messages"] == {"mp": 1, "qy": 0}
    assert stats["inbox"]["mp"] == {OPENID_ALICE: 1}


def test_reset_returns_to_the_seed(sim: SimClient):
    sim.settings(latency_ms=5, mp_ip_check=True)
    sim.control("mp/account", {"secret": "b" * 32})
    sim.advance(100)
    sim.control("faults", {"kind": "drop"})
    sim.reset()
    assert sim.control("settings", method="GET")["latency_ms"] == 0
    assert sim.control("clock", method="GET")["offset"] == 0
    assert sim.control("faults", method="GET")["faults"] == []
    assert "access_token" in sim.mp_token()
    assert sim.calls()["token"] == 1


def test_clock_only_moves_forward(sim: SimClient):
    before = sim.control("clock", method="GET")
    after = sim.control("clock/advance", {"seconds": 3600})
    assert after["offset"] == 3600
    assert after["now"] - before["now"] >= 3600
    sim.control("clock/advance", {"seconds": -1}, expect=400)


def test_control_rejects_non_object_bodies(sim: SimClient):
    response = sim.http.post(f"{sim.ctl}/settings", data="[1]",
                             headers={"Content-Type": "application/json"}, timeout=5)
    assert response.status_code == 400
    assert "error" in response.json()


def test_each_app_has_its_own_world():
    first, second = create_standalone_app(), create_standalone_app()
    assert isinstance(get_world(first), World)
    assert get_world(first) is not get_world(second)
    get_world(first).advance(10)
    assert get_world(second).clock()["offset"] == 0


def test_blueprint_inside_an_app_with_csrf_protection():
    """The main app protects forms with CSRF; WeChat's API and the local panel take no token."""
    from flask import Flask
    from flask_babel import Babel
    from flask_wtf.csrf import CSRFProtect

    from tests.livesrv import serve
    from webapp.simulator import bp

    app = Flask("host")
    app.config["SECRET_KEY"] = "test"
    CSRFProtect(app)
    Babel(app)
    app.register_blueprint(bp)
    with serve(app) as base_url:
        root = f"{base_url}/simulator"
        assert requests.post(f"{root}/_control/reset", timeout=5).status_code == 200
        answer = requests.post(f"{root}/mp/cgi-bin/stable_token", timeout=5, json={
            "grant_type": "client_credential", "appid": MP_APPID, "secret": "x"}).json()
        assert answer["errcode"] == 40125
        response = requests.post(f"{root}/panel/advance", data={"seconds": "60"},
                                 allow_redirects=False, timeout=5)
        assert response.status_code == 303
        assert requests.get(f"{root}/", timeout=5).status_code == 200
    assert get_world(app).clock()["offset"] == 60
