"""The callback's guards over real HTTP, on SQLite and PostgreSQL: the configured mode is enforced,
a captured request cannot be reused, genuine pushes are never mistaken for replays or retries.

CONTRACT §4: "in compatible and safe mode a push must carry Encrypt with a valid msg_signature;
a plaintext push with only signature is refused with a 4xx". DESIGN: "reject a repeated
(timestamp, nonce) within that window (GET checks included)" and "deduplicate WeChat's retries
(FromUserName+CreateTime, or MsgId)".
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from tests.api_support import bind, mp, service  # noqa: F401  (fixtures)
from tests.conftest import USER, AuthActions
from tests.test_callback import APPID, OPENID, URL, configure, post, query
from tests.livesrv import serve
from webapp.callback.services import purge_old
from webapp.extensions import db
from webapp.models import Binding, CallbackAttempt, CallbackEvent, CallbackReplayGuard, Delivery, utcnow
from webapp.simulator.world import OPENID_ALICE


@pytest.fixture
def database_url(either_database_url):
    """Every test here runs on SQLite and on PostgreSQL."""
    return either_database_url


def unsubscribe_xml(create_time: int | None = None) -> str:
    return (f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[unsubscribe]]></Event></xml>")


def alice_bound(app) -> bool:
    with app.app_context():
        return bool(db.session.scalar(select(Binding.active).where(Binding.wx_id == OPENID)))


def attempts(app, outcome: str) -> list[CallbackAttempt]:
    with app.app_context():
        return list(db.session.scalars(select(CallbackAttempt).where(CallbackAttempt.outcome == outcome)))


def counter(base: str, outcome: str) -> float:
    """weixin_callback_requests_total for POSTs that ended with ``outcome``, read from /metrics."""
    for line in requests.get(base + "/metrics", timeout=5).text.splitlines():
        if line.startswith("weixin_callback_requests_total{") and f'outcome="{outcome}"' in line and 'method="POST"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def served(app, users):
    """Serve the app with alice bound to OPENID on the configured Official Account; yields ``(app, base)``."""
    bind(app, USER[0], "mp", APPID, OPENID)
    with serve(app) as base:
        yield app, base


@pytest.mark.parametrize("mode", ["compatible", "safe"])
def test_encrypted_modes_refuse_a_plaintext_push_signed_with_signature_only(served, mode):
    app, base = served
    configure(app, wx_encrypt_mode=mode)
    before = counter(base, "plaintext_refused")
    refused = post(base, unsubscribe_xml(), "plain")
    assert refused.status_code == 403 and "encrypted" in refused.text
    assert alice_bound(app), "a plaintext push changed state in an encrypted mode"
    [attempt] = attempts(app, "plaintext_refused")
    assert "安全模式" in attempt.detail and mode in attempt.detail
    assert counter(base, "plaintext_refused") == before + 1
    # The administrator sees why, in the console, in both languages.
    page = app.test_client()
    AuthActions(page).login()
    overview = page.get("/console/").text
    assert 'id="plaintext-refused"' in overview and "WeChat is sending plaintext" in overview
    chinese = page.get("/console/", headers={"Accept-Language": "zh-CN"}).text
    assert "明文" in chinese
    # The same event, encrypted as WeChat sends it in this mode, is accepted and acted upon.
    accepted = post(base, unsubscribe_xml(), mode)
    assert accepted.status_code == 200 and not alice_bound(app)


def test_plain_mode_accepts_plaintext_and_encrypted_pushes(served):
    app, base = served
    configure(app, wx_encrypt_mode="plain")
    assert post(base, unsubscribe_xml(), "plain").status_code == 200
    assert not alice_bound(app)


def test_a_captured_url_check_cannot_be_replayed_as_a_forged_push(served):
    """The signature of a URL check covers only the Token, timestamp and nonce: it is the signature a
    plaintext push carries. Using it once (GET) uses it up for both."""
    app, base = served
    configure(app, wx_encrypt_mode="plain")
    params = {**query(), "echostr": "8263114401557433013"}
    check = requests.get(base + URL, params=params, timeout=5)
    assert check.status_code == 200 and check.text == "8263114401557433013"
    forged = requests.post(base + URL, params={k: v for k, v in params.items() if k != "echostr"},
                           data=unsubscribe_xml().encode(), timeout=5)
    assert forged.status_code == 403 and "replay" in forged.text
    assert alice_bound(app), "the forged unsubscribe was acted upon"
    again = requests.get(base + URL, params=params, timeout=5)
    assert again.status_code == 403 and "8263114401557433013" not in again.text


def test_a_captured_push_cannot_be_replayed(served):
    app, base = served
    configure(app, wx_encrypt_mode="plain")
    params = query()
    body = unsubscribe_xml().encode()
    assert requests.post(base + URL, params=params, data=body, timeout=5).status_code == 200
    assert requests.post(base + URL, params=params, data=body, timeout=5).status_code == 403
    # Another body with the captured signature, timestamp and nonce is refused the same way.
    other = body.replace(b"unsubscribe", b"subscribe")
    assert requests.post(base + URL, params=params, data=other, timeout=5).status_code == 403


def test_genuine_pushes_sharing_a_nonce_at_different_timestamps_are_both_accepted(served):
    """WeChat's nonces are 9-10 random digits: over a day's pushes some repeat. Only the same
    (timestamp, nonce) pair is a replay."""
    app, base = served
    configure(app, wx_encrypt_mode="plain")
    now = int(time.time())
    for offset, msg_id in ((0, 9001), (-1, 9002), (-2, 9003)):
        text = (f"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
                f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content>"
                f"<MsgId>{msg_id}</MsgId></xml>")
        answer = post(base, text, "safe", nonce="1357924680", timestamp=now + offset)
        assert answer.status_code == 200, answer.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(CallbackEvent)) == 3


def test_every_delivery_report_of_one_person_within_a_second_is_recorded(mp):
    """TEMPLATESENDJOBFINISH carries MsgID (not MsgId); with the same sender and CreateTime, each report
    is still its own event. The simulator reports every delivery by itself, as WeChat does."""
    app, base, api = mp
    body = {"receiver__username": "alice", "data": {"heading": "Disk alert", "message": "disk full"}}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: api.send(body).json(), range(16)))
    assert all(a["result"] for a in answers), answers
    deadline = time.time() + 20
    while time.time() < deadline:
        with app.app_context():
            receipts = db.session.scalars(select(Delivery.receipt).where(Delivery.receiver == OPENID_ALICE)).all()
        if len(receipts) == 16 and all(receipts):
            break
        time.sleep(0.2)
    assert receipts == ["success"] * 16, f"{sum(1 for r in receipts if r)} of 16 receipts recorded"
    assert not attempts(app, "duplicate"), "genuine delivery reports were taken for WeChat's retries"


def test_wechat_retries_of_one_push_are_still_handled_once(served):
    """The retry guard keeps working: the same event with a fresh nonce is answered, not handled again."""
    app, base = served
    configure(app, wx_encrypt_mode="plain")
    create_time = int(time.time())
    assert post(base, unsubscribe_xml(create_time), "safe").status_code == 200
    assert not alice_bound(app)
    # alice binds again; a late retry of the old unsubscribe must not end the new binding.
    with app.app_context():
        with db.transaction() as session:
            session.execute(Binding.__table__.update().values(active=True))
    assert post(base, unsubscribe_xml(create_time), "safe").status_code == 200
    assert alice_bound(app)
    assert len(attempts(app, "duplicate")) == 1


def test_old_replay_keys_are_forgotten_after_the_timestamp_window(served):
    app, base = served
    configure(app, wx_encrypt_mode="plain")
    assert post(base, unsubscribe_xml(), "safe").status_code == 200
    with app.app_context():
        with db.transaction() as session:
            session.execute(CallbackReplayGuard.__table__.update().values(at=utcnow() - timedelta(seconds=601)))
        purge_old()
        assert db.session.scalar(select(func.count()).select_from(CallbackReplayGuard)) == 0
        # The event's identity stays for a day: WeChat's retries are still recognised.
        assert db.session.scalar(select(func.count()).select_from(CallbackEvent)) == 1


def test_the_url_check_is_answered_in_safe_mode(served):
    """WeChat's URL check is a GET signed with ``signature`` in every mode; safe mode still answers it."""
    app, base = served
    configure(app, wx_encrypt_mode="safe")
    check = requests.get(base + URL, params={**query(), "echostr": "42"}, timeout=5)
    assert check.status_code == 200 and check.text == "42"


def test_a_burst_of_delivery_reports_fits_in_a_small_pool(make_app):
    """WeChat pushes one delivery report per template message: many at once must not hold every pooled
    connection while each waits for a second (a handler's write on a connection of its own did that)."""
    app = make_app(DATABASE_POOL_SIZE=3, DATABASE_MAX_OVERFLOW=0)
    configure(app, wx_encrypt_mode="plain")
    now = int(time.time())

    def report(number: int):
        xml = (f"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
               f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
               f"<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{700000 + number}</MsgID>"
               f"<Status><![CDATA[success]]></Status></xml>")
        return post(base, xml, "plain", nonce=f"burst{number:05d}")

    with serve(app) as base, ThreadPoolExecutor(12) as pool:
        # One report first: the process reads the configuration once, on a connection of its own.
        assert report(0).status_code == 200
        started = time.monotonic()
        answers = list(pool.map(report, range(1, 25)))
        took = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * 24, [a.text[:80] for a in answers if a.status_code != 200]
    assert took < 8, f"24 reports took {took:.1f} s"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(CallbackEvent)) == 25
