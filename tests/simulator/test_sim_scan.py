"""Scanning the Official Account's QR codes with a simulated phone (PROTOCOL.md section 3): the
control endpoint, the in-process function, expired codes, and the "Scan a QR code" page."""
from __future__ import annotations

import re

import pytest

from webapp.simulator import get_world
from webapp.simulator.push import ScanResult, UnknownQrCode, scan_qrcode
from webapp.simulator.world import (NOTICE_QR_EXPIRED, OPENID_ALICE, OPENID_BOB, OPENID_EVE,
                                    QR_DEFAULT_EXPIRE)

from .receiver import KEY, TOKEN, Receiver, receiver, receiver_server  # noqa: F401
from .support import SimClient, sim, sim_server  # noqa: F401  (fixtures)


def configure(sim: SimClient, receiver: Receiver, mode: str = "plain") -> None:
    """Point the simulated account at the receiver; the URL check must pass."""
    answer = sim.control("mp/server", {"url": receiver.url, "token": TOKEN,
                                       "encoding_aes_key": KEY, "mode": mode})
    assert answer["ok"] is True, answer


def create_qr(sim: SimClient, scene: str | int = "bind-4f2a9c", expire: int | None = 600,
              action: str | None = None) -> dict:
    """Create a QR code the way the service does; its answer (ticket, url, expire_seconds)."""
    token = sim.stable_token()["access_token"]
    if action is None:
        action = "QR_STR_SCENE" if isinstance(scene, str) else "QR_SCENE"
    key = "scene_str" if isinstance(scene, str) else "scene_id"
    body = {"action_name": action, "action_info": {"scene": {key: scene}}}
    if expire is not None:
        body["expire_seconds"] = expire
    answer = sim.post(f"{sim.mp}/qrcode/create", body, access_token=token)
    assert "ticket" in answer, answer
    return answer


def following(sim: SimClient, openid: str) -> bool:
    users = {u["openid"]: u for u in sim.control("world", method="GET")["mp"]["users"]}
    return users[openid]["following"]


def chat(sim: SimClient, openid: str) -> list[dict]:
    return sim.control(f"mp/chat/{openid}", method="GET")["chat"]


def page(sim: SimClient, path: str) -> str:
    response = sim.http.get(f"{sim.root}{path}", timeout=5)
    assert response.status_code == 200, response.text
    return response.text


# ---- the control endpoint -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_follower_scan_pushes_scan_with_the_bare_scene(
        sim: SimClient, receiver: Receiver, mode: str):
    configure(sim, receiver, mode)
    reply = receiver.text_reply if mode == "plain" else receiver.encrypted_reply
    receiver.answer = lambda record: reply(record, "Already bound")
    qr = create_qr(sim, "bind-4f2a9c")
    result = sim.control("mp/scan", {"openid": OPENID_ALICE, "ticket": qr["ticket"]})
    [record] = receiver.posts()
    fields = record["fields"]
    assert record["signature_ok"]
    assert fields["MsgType"] == "event" and fields["Event"] == "SCAN"
    assert fields["EventKey"] == "bind-4f2a9c"  # no qrscene_ prefix for a follower
    assert fields["Ticket"] == qr["ticket"]
    assert fields["FromUserName"] == OPENID_ALICE
    assert result["event"] == "SCAN" and result["by"] == "ticket"
    assert result["outcome"] == "reply" and result["shown"] == "Already bound"
    assert result["qrcode"]["scene"] == "bind-4f2a9c" and result["qrcode"]["expired"] is False
    assert following(sim, OPENID_ALICE) is True
    lines = chat(sim, OPENID_ALICE)
    assert [(e["kind"], e.get("event")) for e in lines] == [("event", "SCAN"), ("reply", None)]
    assert lines[1]["text"] == "Already bound"
    [scan] = sim.control("mp/scans", method="GET")["scans"]
    assert scan["id"] == result["scan_id"] and scan["event_key"] == "bind-4f2a9c"
    assert scan["push_id"] == result["id"] is not None


def test_non_follower_scan_subscribes_with_the_prefixed_scene(sim: SimClient, receiver: Receiver):
    configure(sim, receiver, "compatible")
    receiver.answer = lambda record: receiver.encrypted_reply(record, "Welcome, you are bound")
    qr = create_qr(sim, "bind-77")
    assert following(sim, OPENID_EVE) is False
    result = sim.control("mp/scan", {"openid": OPENID_EVE, "url": qr["url"]})
    [record] = receiver.posts()
    fields = record["fields"]
    assert fields["Event"] == "subscribe"
    assert fields["EventKey"] == "qrscene_bind-77"
    assert fields["Ticket"] == qr["ticket"]  # the ticket, even when scanned by its URL
    assert result["by"] == "url" and result["event"] == "subscribe"
    assert result["shown"] == "Welcome, you are bound" and result["encrypted_reply"] is True
    assert following(sim, OPENID_EVE) is True
    assert chat(sim, OPENID_EVE)[0] == {**chat(sim, OPENID_EVE)[0], "kind": "event",
                                        "event": "subscribe", "scene": "bind-77"}
    # Scanning again, now as a follower, is a SCAN.
    sim.control("mp/scan", {"openid": OPENID_EVE, "ticket": qr["ticket"]})
    again = receiver.posts()[1]["fields"]
    assert again["Event"] == "SCAN" and again["EventKey"] == "bind-77"


def test_integer_scenes_and_permanent_codes(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    temporary = create_qr(sim, 123456)
    permanent = create_qr(sim, 42, expire=None, action="QR_LIMIT_SCENE")
    sim.control("mp/scan", {"openid": OPENID_EVE, "ticket": temporary["ticket"]})
    sim.control("mp/scan", {"openid": OPENID_BOB, "url": permanent["url"]})
    first, second = (r["fields"] for r in receiver.posts())
    assert (first["Event"], first["EventKey"]) == ("subscribe", "qrscene_123456")
    assert (second["Event"], second["EventKey"]) == ("SCAN", "42")
    sim.advance(40 * 86400)  # a permanent code never expires
    result = sim.control("mp/scan", {"openid": OPENID_BOB, "ticket": permanent["ticket"]})
    assert result["outcome"] == "success" and result["qrcode"]["permanent"] is True


def test_the_content_url_is_found_however_the_camera_read_it(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    qr = create_qr(sim, "bind-url")
    world = get_world(sim.app)
    https = qr["url"].replace("http://", "https://", 1)
    image = ("https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="
             + qr["ticket"].replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"))
    for read in (f"  {qr['url']}\n", https, image):
        result = scan_qrcode(world, OPENID_ALICE, read)
        assert isinstance(result, ScanResult)
        assert result.qrcode["ticket"] == qr["ticket"] and result.by == "url"
    assert [r["fields"]["Ticket"] for r in receiver.posts()] == [qr["ticket"]] * 3


def test_unknown_codes_and_bad_requests_are_refused(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    qr = create_qr(sim)
    unknown = sim.control("mp/scan", {"openid": OPENID_ALICE,
                                      "url": "http://weixin.qq.com/q/NotACodeOfTheAccount"},
                          expect=400)
    assert "not a QR code of the account" in unknown["error"]
    sim.control("mp/scan", {"openid": OPENID_ALICE, "ticket": "gQNotATicket=="}, expect=400)
    sim.control("mp/scan", {"openid": OPENID_ALICE}, expect=400)  # neither
    sim.control("mp/scan", {"openid": OPENID_ALICE, "ticket": qr["ticket"], "url": qr["url"]},
                expect=400)  # both
    sim.control("mp/scan", {"openid": "oNobody", "ticket": qr["ticket"]}, expect=400)
    with pytest.raises(UnknownQrCode):
        scan_qrcode(get_world(sim.app), OPENID_ALICE, "http://weixin.qq.com/q/nope")
    assert receiver.posts() == []
    assert sim.control("mp/scans", method="GET")["scans"] == []


@pytest.mark.parametrize("openid", [OPENID_ALICE, OPENID_EVE])
def test_an_expired_code_shows_the_notice_and_pushes_nothing(
        sim: SimClient, receiver: Receiver, openid: str):
    configure(sim, receiver)
    qr = create_qr(sim, "bind-old", expire=QR_DEFAULT_EXPIRE)
    was_following = following(sim, openid)
    sim.advance(QR_DEFAULT_EXPIRE + 1)
    result = sim.control("mp/scan", {"openid": openid, "ticket": qr["ticket"]})
    assert result["outcome"] == "expired" and result["reason"] == "qr_expired"
    assert result["shown"] == NOTICE_QR_EXPIRED == "二维码已过期"
    assert result["tries"] == [] and result["id"] is None and result["qrcode"]["expired"] is True
    assert receiver.posts() == []
    assert sim.control("mp/pushes", method="GET")["pushes"] == []
    assert following(sim, openid) is was_following
    [notice] = chat(sim, openid)
    assert notice["kind"] == "notice" and notice["text"] == NOTICE_QR_EXPIRED
    [scan] = sim.control("mp/scans", method="GET")["scans"]
    assert scan["outcome"] == "expired" and scan["event"] == "" and scan["shown"] == "二维码已过期"
    html = page(sim, f"/phone/{openid}")
    assert "二维码已过期" in html


def test_without_a_server_configuration_the_scan_still_subscribes(sim: SimClient):
    qr = create_qr(sim)
    result = sim.control("mp/scan", {"openid": OPENID_EVE, "ticket": qr["ticket"]})
    assert result["outcome"] == "disabled" and result["event"] == "subscribe"
    assert following(sim, OPENID_EVE) is True


# ---- the page -----------------------------------------------------------------------------------

def test_scan_page_lists_codes_newest_first_and_the_people(sim: SimClient):
    older = create_qr(sim, "older-scene")
    sim.advance(5)
    long_scene = "bind:" + "a" * 50
    newer = create_qr(sim, long_scene, expire=60)
    expired = create_qr(sim, "short-lived", expire=1)
    sim.advance(2)
    html = page(sim, "/scan")
    assert "Scan a QR code" in html
    assert html.index("short-lived") < html.index("bind:aaa") < html.index("older-scene")
    assert long_scene not in html.replace(f'title="{long_scene}"', "")  # shortened in the list
    assert f'title="{long_scene}"' in html
    for qr in (older, newer, expired):
        assert f'name="ticket" value="{qr["ticket"]}"' in html
    assert re.search(r"expired [12] s ago", html) and re.search(r"in 5[6-8] s", html)
    assert "Alice — following" in html and "Eve — not following" in html
    assert 'action="/simulator/panel/scan"' in html and 'name="url"' in html
    # The text box comes before the codes' buttons, so Enter in it scans what was pasted.
    assert html.index('name="url"') < html.index('name="ticket"')
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert all('src="/simulator/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)


def test_scan_page_form_shows_what_the_person_saw(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    receiver.answer = lambda record: receiver.text_reply(record, "Bound to user 7")
    qr = create_qr(sim, "bind-page")
    response = sim.http.post(f"{sim.root}/panel/scan",
                             data={"openid": OPENID_EVE, "url": f" {qr['url']} "},
                             allow_redirects=False, timeout=5)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert "/simulator/scan?done=" in location
    html = sim.http.get(sim.base + location if location.startswith("/") else location,
                        timeout=5).text
    assert "Bound to user 7" in html and "qrscene_bind-page" in html
    assert f'<option value="{OPENID_EVE}" selected' in html
    # Pressing "Scan" next to a code sends its ticket (the pasted box may hold anything).
    sim.http.post(f"{sim.root}/panel/scan",
                  data={"openid": OPENID_ALICE, "ticket": qr["ticket"], "url": "junk"},
                  timeout=5)
    assert receiver.posts()[-1]["fields"]["Event"] == "SCAN"
    bad = sim.http.post(f"{sim.root}/panel/scan",
                        data={"openid": OPENID_ALICE, "url": "http://weixin.qq.com/q/zzz"},
                        timeout=5)
    assert bad.status_code == 400 and "does not know this code" in bad.text
    assert sim.http.post(f"{sim.root}/panel/scan", data={"openid": OPENID_ALICE, "url": ""},
                         timeout=5).status_code == 400
    assert sim.http.post(f"{sim.root}/panel/scan", data={"openid": "x", "ticket": qr["ticket"]},
                         timeout=5).status_code == 400


def test_expired_scan_through_the_page(sim: SimClient, receiver: Receiver):
    configure(sim, receiver)
    qr = create_qr(sim, "bind-late", expire=30)
    sim.advance(31)
    response = sim.http.post(f"{sim.root}/panel/scan",
                             data={"openid": OPENID_BOB, "ticket": qr["ticket"]}, timeout=5)
    assert response.status_code == 200  # after the redirect
    assert "二维码已过期" in response.text and "pushed nothing" in response.text
    assert receiver.posts() == []


def test_main_page_and_phone_pages_link_to_the_scan_pages(sim: SimClient):
    html = page(sim, "/")
    assert 'href="/simulator/scan"' in html and 'href="/simulator/qy/scan"' in html
    phone = page(sim, f"/phone/{OPENID_EVE}")
    assert f'href="/simulator/scan?openid={OPENID_EVE}"' in phone
    member = page(sim, "/phone/zhangsan")
    assert 'href="/simulator/qy/scan"' in member
