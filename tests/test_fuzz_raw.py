"""Raw-byte fuzzing of every public POST endpoint, over real HTTP.

The service is served with ``tests.livesrv.serve``, its own WeChat simulator as its WeChat, the Official
Account channel configured and alice/bob/carol bound (as the ``mp`` fixture of ``tests/api_support.py``
sets up, but once per module so that the thousands of explicit cases below stay cheap). Every request
carries a body written byte by byte: invalid UTF-8, overlong encodings, encoded lone surrogates, JSON
with ``\\ud800`` escapes, truncated JSON, huge numbers, 100000-deep nesting, NUL bytes, odd receivers,
form bodies with percent-encoded invalid UTF-8 — under each Content-Type a client may send.

For every request (CONTRACT.md sections 4-5):

- never a 5xx;
- the API answers a JSON object with ``result``/``code``/``message``/``request_id``;
- a REFUSED request (a 4xx, or ``result`` false with code 1306000 or without a stored message) made the
  simulated WeChat receive ZERO calls (its control API's call counts) and stored nothing (no new rows
  in ``messages``/``deliveries``); a refused callback also recorded no event;
- WeChat is never asked to deliver to anything but an openid (``^[A-Za-z0-9_-]{1,64}$``): no U+FFFD
  or other replacement ever reaches it. A send that is accepted but has failed deliveries (an unknown
  or unfollowing openid is refused by WeChat itself; an id that cannot be an openid fails at once) is
  checked delivery by delivery: an id that cannot be an openid failed and WeChat was not asked for it;
- a body that is not valid UTF-8 (also once a form field is percent-decoded), or holding a lone
  surrogate escape in its text, truncated, over-deep or with unusable numbers, is a validation error:
  HTTP 200, ``result`` false, code 1306000, nothing stored, nothing sent;
- a JSON body is read as JSON whatever its Content-Type (multipart with a bogus boundary included);
- the callback never changes a binding here: no pushed FromUserName is a bound openid, byte for byte
  (so decoding that drops or replaces bad bytes and lands on alice's openid is caught).

POST routes under ``/api/`` are discovered from ``app.url_map``: any new one (the alert webhooks) is
fuzzed with the same bodies by ``test_discovered_api_post_route_survives_raw_bodies``.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import time
import urllib.parse
import uuid

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import create_engine, text, update

from tests.api_support import Api, bind, sim
from tests.binding_support import CALLBACK, KEY, TOKEN, connect_mp
from tests.conftest import base_config
from tests.livesrv import serve
from webapp import channel, create_app, migrate
from webapp.api.apps import create_app_credentials
from webapp.auth.services import create_user
from webapp.extensions import db
from webapp.models import ApiApp
from webapp.simulator.world import MP_APPID, MP_SECRET, OPENID_ALICE, OPENID_BOB, OPENID_NOT_FOLLOWING, \
    TEMPLATE_NOTIFICATION_ID, World
from webapp.wechat import MessageCrypto, sign

OPENID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
VALIDATION = 1306000

SEND_PATHS = ["/api/c/compapi/cmsi/send_weixin/", "/api/c/compapi/v2/cmsi/send_weixin/",
              "/api/c/compapi/cmsi/send_msg/", "/api/c/compapi/v2/cmsi/send_msg/"]
CONTENT_TYPES = {
    "json": "application/json",
    "form": "application/x-www-form-urlencoded",
    "multipart-bogus": "multipart/form-data; boundary=bogus-boundary-0000",
    "text": "text/plain",
    "xml": "application/xml",
    "none": None,
}
BOUND = {OPENID_ALICE, OPENID_BOB, OPENID_NOT_FOLLOWING}
SETTINGS = dict(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])


def _discover_api_post_routes() -> list[str]:
    """Every POST route under /api/ the application has (converters filled with a placeholder)."""
    app = create_app(base_config("sqlite:////nonexistent-test-fuzz-raw/unused.sqlite3", WEIXIN_SIMULATOR=True))
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and "POST" in rule.methods:
            routes.add(re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "x", rule.rule))
    return sorted(routes)


API_POST_ROUTES = _discover_api_post_routes()
OTHER_API_POST_ROUTES = [r for r in API_POST_ROUTES if r not in SEND_PATHS]


def _route_id(path: str) -> str:
    """A test id without slashes (so that node ids can be given on the command line)."""
    return path.removeprefix("/api/").strip("/").replace("c/compapi/", "").replace("/", ".")


# --- the service, once per module -----------------------------------------------------------------

class Live:
    """The served app, its credentials and a record of every id WeChat was asked to deliver to."""

    def __init__(self, app, base: str, api: Api):
        self.app, self.base, self.api = app, base, api
        self.asked: list[tuple[str, str]] = []  # (channel, receiver id) per send call the simulator got
        self.lock = threading.Lock()
        self.mode = "plain"

    def headers(self, content_type: str | None = None) -> dict:
        headers = self.api.headers()
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    def set_mode(self, mode: str) -> None:
        """The Official Account's message encryption mode (plain accepts all three formats; safe only encrypted)."""
        if mode != self.mode:
            with self.app.app_context():
                channel.save(channel.normalize({"wx_type": "mp", "wx_app_id": MP_APPID, "wx_secret": MP_SECRET,
                                                "wx_token": TOKEN, "wx_encoding_aes_key": KEY, "wx_encrypt_mode": mode,
                                                "wx_template_id": TEMPLATE_NOTIFICATION_ID}, current=channel.load()),
                             actor="test")
                db.session.remove()
            self.mode = mode


def _spy(live: Live, monkeypatch) -> None:
    """Record the receiver of every send call the simulated WeChat receives, whatever its outcome."""
    original_mp, original_qy = World.mp_send_template, World.qy_send

    def mp_send_template(self, access_token, body):
        with live.lock:
            live.asked.append(("mp", body.get("touser") if isinstance(body, dict) else repr(body)))
        return original_mp(self, access_token, body)

    def qy_send(self, access_token, body):
        touser = body.get("touser") if isinstance(body, dict) else repr(body)
        with live.lock:
            for part in (touser.split("|") if isinstance(touser, str) else [touser]):
                live.asked.append(("qy", part))
        return original_qy(self, access_token, body)

    monkeypatch.setattr(World, "mp_send_template", mp_send_template)
    monkeypatch.setattr(World, "qy_send", qy_send)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live(request, tmp_path_factory, migrated_template):
    """The service over HTTP with the simulator as its WeChat, the Official Account connected, users bound."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            path = tmp_path_factory.mktemp("fuzzraw") / "test.sqlite3"
            shutil.copyfile(migrated_template, path)
            url = f"sqlite:///{path}"
        else:
            postgres = os.environ.get("TEST_DATABASE_URL")
            if not postgres:
                pytest.skip("TEST_DATABASE_URL is not set (set by .ci/run)")
            from tests.crash_support import postgres_schema

            url = stack.enter_context(postgres_schema(postgres))
            engine = create_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
        app = create_app(base_config(url, WEIXIN_SIMULATOR=True))
        stack.callback(lambda: app.extensions["database"].engine.dispose())
        with app.test_request_context():
            for name in ("alice", "bob", "carol", "dave", "erin"):
                create_user(name, "violet-orbit-61")
            _, secret = create_app_credentials("bk_monitor")
            db.session.remove()
        base = stack.enter_context(serve(app))
        app.config.update(WEIXIN_MP_API_BASE=base + "/simulator/mp", WEIXIN_QY_API_BASE=base + "/simulator/qy",
                          PUBLIC_URL=base)
        connect_mp(app, base, mode="plain")  # plain with an EncodingAESKey: all three callback formats
        bind(app, "alice", "mp", MP_APPID, OPENID_ALICE)
        bind(app, "bob", "mp", MP_APPID, OPENID_BOB)
        bind(app, "carol", "mp", MP_APPID, OPENID_NOT_FOLLOWING)
        with app.app_context():  # the fuzzed sends must reach the send path, not the rate limiter
            with db.transaction() as session:
                session.execute(update(ApiApp).values(rate_limit_per_minute=10**7))
            db.session.remove()
        # No delivery reports pushed to the callback a second after each send: they would land in
        # the middle of a later case's before/after comparison.
        assert sim(base, "settings", {"mp_receipts": False})["mp_receipts"] is False
        live = Live(app, base, Api(base, "bk_monitor", secret))
        monkeypatch = stack.enter_context(pytest.MonkeyPatch.context())
        _spy(live, monkeypatch)
        yield live


# --- what changed ----------------------------------------------------------------------------------

def snapshot(live: Live) -> dict:
    """WeChat calls so far (simulator control API), send calls seen, stored rows, and the bindings."""
    stats = requests.get(live.base + "/simulator/_control/stats", timeout=10).json()
    with live.app.app_context():
        rows = {table: db.session.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()  # noqa: S608
                for table in ("messages", "deliveries", "callback_events")}
        bindings = tuple(db.session.execute(text(
            "SELECT id, user_id, channel, account, wx_id, active, deactivated_reason FROM bindings ORDER BY id")).all())
        db.session.remove()
    with live.lock:
        asked = len(live.asked)
    return {"calls": stats["calls"], "asked": asked, "rows": rows, "bindings": bindings}


def _delta_calls(before: dict, after: dict) -> dict:
    return {k: after["calls"].get(k, 0) - before["calls"].get(k, 0)
            for k in set(before["calls"]) | set(after["calls"]) if after["calls"].get(k, 0) != before["calls"].get(k, 0)}


def _delta_rows(before: dict, after: dict, tables=("messages", "deliveries")) -> dict:
    return {t: after["rows"][t] - before["rows"][t] for t in tables if after["rows"][t] != before["rows"][t]}


def _asked_since(live: Live, before: dict) -> list[tuple[str, str]]:
    with live.lock:
        return list(live.asked[before["asked"]:])


def _short(value, limit=160) -> str:
    value = repr(value)
    return value if len(value) <= limit else value[:limit] + f"...({len(value)} chars)"


def api_problems(live: Live, before: dict, response: requests.Response, expect: str = "any",
                 webhook: bool = False) -> list[str]:
    """Everything wrong with one API answer and its effects (empty when all is well).

    ``expect``: "refuse" (a validation error: 200, result false, code 1306000 — for a webhook any 4xx or
    result false — nothing stored or sent), "fail" (result false, WeChat not called), "accept" (result
    true, delivered), "any" (the invariants only).
    """
    problems: list[str] = []
    after = snapshot(live)
    asked = _asked_since(live, before)
    calls, rows = _delta_calls(before, after), _delta_rows(before, after)
    for wx_channel, receiver in asked:
        if not isinstance(receiver, str) or not OPENID_RE.fullmatch(receiver):
            problems.append(f"WeChat ({wx_channel}) was asked to deliver to {receiver!r}, which is no openid")
    if response.status_code >= 500:
        problems.append(f"HTTP {response.status_code}: {_short(response.text)}")
        return problems
    body = None
    if not response.headers.get("Content-Type", "").startswith("application/json"):
        problems.append(f"answer is not JSON: HTTP {response.status_code} {response.headers.get('Content-Type')!r} "
                        f"{_short(response.text)}")
    else:
        try:
            body = response.json()
        except ValueError:
            problems.append(f"answer does not parse as JSON: {_short(response.text)}")
    if body is not None:
        if not isinstance(body, dict):
            problems.append(f"answer is not a JSON object: {_short(body)}")
            body = None
        else:
            missing = {"result", "code", "message", "request_id"} - set(body)
            if missing:
                problems.append(f"answer lacks {sorted(missing)}: {_short(body)}")
            if not isinstance(body.get("result"), bool) or not isinstance(body.get("code"), int) \
                    or not isinstance(body.get("message"), str) or not isinstance(body.get("request_id"), str):
                problems.append(f"answer fields have wrong types: {_short(body)}")
    result = body.get("result") if body else None
    code = body.get("code") if body else None
    data = body.get("data") if body else None
    data = data if isinstance(data, dict) else {}
    summary = (f"HTTP {response.status_code} result={result!r} code={code!r} "
               f"message={_short(body.get('message') if body else None, 120)}")
    refused = response.status_code >= 400 or (result is False and (code == VALIDATION or not data.get("message_id")))
    if refused:
        if calls:
            problems.append(f"refused ({summary}) yet WeChat received calls {calls}")
        if rows:
            problems.append(f"refused ({summary}) yet rows were stored {rows}")
    elif result is False:  # accepted, some deliveries failed: check them one by one
        asked_ids = {r for _, r in asked}
        for delivery in data.get("deliveries") or []:
            receiver = delivery.get("receiver")
            if isinstance(receiver, str) and receiver and not OPENID_RE.fullmatch(receiver):
                if delivery.get("status") != "failed":
                    problems.append(f"delivery to non-openid {receiver!r} is {delivery.get('status')!r}, not failed")
                if receiver in asked_ids:
                    problems.append(f"WeChat was asked for non-openid {receiver!r}")
    if after["bindings"] != before["bindings"]:
        problems.append(f"bindings changed: {before['bindings']} -> {after['bindings']}")
    if expect == "refuse":
        if webhook:
            if not (response.status_code >= 400 or result is False):
                problems.append(f"expected a refusal, got {summary}")
        elif not (response.status_code == 200 and result is False and code == VALIDATION):
            problems.append(f"expected a validation refusal (200, result false, code {VALIDATION}), got {summary}"
                            + (f"; deliveries={_short(data.get('deliveries'), 300)}" if data.get("deliveries") else ""))
    elif expect == "fail":
        if result is not False and response.status_code < 400:
            problems.append(f"expected result false, got {summary}")
        if calls.get("template_send") or calls.get("qy_send"):
            problems.append(f"expected no send call to WeChat, got {calls} (asked for {asked})")
    elif expect == "accept":
        statuses = [d.get("status") for d in data.get("deliveries") or []]
        if not (response.status_code == 200 and result is True and code == 0 and statuses and set(statuses) == {"sent"}):
            problems.append(f"expected accepted and sent, got {summary} deliveries={_short(data.get('deliveries'), 300)}")
        elif {d.get("receiver") for d in data["deliveries"]} - {r for _, r in asked}:
            problems.append(f"deliveries reported sent that the simulator was not asked for: {data['deliveries']} vs {asked}")
        elif data.get("message_id"):
            status = requests.get(f"{live.base}/api/v1/messages/{data['message_id']}", headers=live.headers(), timeout=10)
            if status.status_code != 200 or status.json().get("result") is not True:
                problems.append(f"GET /api/v1/messages/<id> of the accepted message: {status.status_code} {_short(status.text)}")
    return problems


def post_api(live: Live, path: str, body: bytes, content_type: str | None, query: str = "") -> requests.Response:
    return requests.post(live.base + path + query, data=body, headers=live.headers(content_type), timeout=60)


# --- the explicit nasty bodies -----------------------------------------------------------------------

ALICE, BOB = OPENID_ALICE.encode(), OPENID_BOB.encode()
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
HUGE_INT = b"1" + b"0" * 5000


def obj(kind: str, receiver: bytes = b'"' + ALICE + b'"', heading: bytes = b'"disk full"', extra: bytes = b"") -> bytes:
    """A send body written by hand: ``receiver`` and ``heading`` are raw JSON values; ``extra`` more members
    (in ``data`` for send_weixin, top level for send_msg)."""
    if kind == "weixin":
        return b'{"receiver": %b, "data": {"heading": %b, "message": "on host-1"%b}}' % (receiver, heading, extra)
    return b'{"msg_type": "weixin", "receiver": %b, "title": %b, "content": "on host-1"%b}' % (receiver, heading, extra)


def flag(kind: str, value: bytes) -> bytes:
    return b', "%b": %b' % (b"is_message_base64" if kind == "weixin" else b"is_content_base64", value)


def form(kind: str, receiver: bytes, heading: bytes = b"disk+full") -> bytes:
    """A form body with already percent-encoded (or raw) values."""
    if kind == "weixin":
        return b"receiver=%b&heading=%b&message=m" % (receiver, heading)
    return b"msg_type=weixin&receiver=%b&title=%b&content=m" % (receiver, heading)


def multipart(kind: str, receiver: bytes) -> bytes:
    fields = [(b"receiver", receiver), (b"heading" if kind == "weixin" else b"title", b"h"),
              (b"message" if kind == "weixin" else b"content", b"m")] + ([(b"msg_type", b"weixin")] if kind == "msg" else [])
    parts = b"".join(b'--fuzzb\r\nContent-Disposition: form-data; name="%b"\r\n\r\n%b\r\n' % f for f in fields)
    return parts + b"--fuzzb--\r\n"


# name: (body for a kind ("weixin" or "msg"), expectation)
SEND_CASES = {
    # invalid UTF-8
    "invalid-utf8-in-receiver": (lambda k: obj(k, receiver=b'"' + ALICE + b'\xff"'), "refuse"),
    "invalid-utf8-in-heading": (lambda k: obj(k, heading=b'"disk \xfe full"'), "refuse"),
    "invalid-utf8-before-the-json": (lambda k: b"\xff\xfe" + obj(k), "refuse"),
    "lone-continuation-byte-in-receiver": (lambda k: obj(k, receiver=b'"\x80' + ALICE + b'"'), "refuse"),
    "latin1-heading": (lambda k: obj(k, heading=b'"caf\xe9"'), "refuse"),
    "utf16-json-with-bom": (lambda k: obj(k).decode().encode("utf-16"), "refuse"),
    "truncated-multibyte-at-end": (lambda k: b'{"receiver": "' + ALICE + b'", "data": {"heading": "\xe4\xb8', "refuse"),
    # overlong encodings
    "overlong-slash-2-bytes-in-receiver": (lambda k: obj(k, receiver=b'"o\xc0\xafx"'), "refuse"),
    "overlong-slash-3-bytes-in-receiver": (lambda k: obj(k, receiver=b'"o\xe0\x80\xafx"'), "refuse"),
    "overlong-slash-after-openid": (lambda k: obj(k, receiver=b'"' + ALICE + b'\xc0\xaf"'), "refuse"),
    "overlong-nul-in-heading": (lambda k: obj(k, heading=b'"a\xc0\x80b"'), "refuse"),
    "overlong-quote-in-receiver": (lambda k: obj(k, receiver=b'"' + ALICE + b'\xc0\xa2"'), "refuse"),
    "four-byte-overlong-in-receiver": (lambda k: obj(k, receiver=b'"' + ALICE + b'\xf0\x80\x80\xaf"'), "refuse"),
    "above-u10ffff-in-heading": (lambda k: obj(k, heading=b'"\xf4\x90\x80\x80"'), "refuse"),
    "five-byte-sequence-in-heading": (lambda k: obj(k, heading=b'"\xf8\x88\x80\x80\x80"'), "refuse"),
    # lone surrogates encoded as bytes (CESU-8 / WTF-8)
    "surrogate-bytes-in-receiver": (lambda k: obj(k, receiver=b'"' + ALICE + b'\xed\xa0\x80"'), "refuse"),
    "surrogate-bytes-alone-as-receiver": (lambda k: obj(k, receiver=b'"\xed\xa0\x80"'), "refuse"),
    "surrogate-bytes-in-heading": (lambda k: obj(k, heading=b'"disk \xed\xb2\x80 full"'), "refuse"),
    "cesu8-pair-in-heading": (lambda k: obj(k, heading=b'"\xed\xa0\xbd\xed\xb8\x80"'), "refuse"),
    # \ud800 escapes in valid UTF-8 JSON
    "escaped-lone-high-surrogate-in-receiver": (lambda k: obj(k, receiver=b'"' + ALICE + b'\\ud800"'), "fail"),
    "escaped-lone-low-surrogate-as-receiver": (lambda k: obj(k, receiver=b'"\\udc00"'), "fail"),
    "escaped-surrogate-in-receiver-list": (lambda k: obj(k, receiver=b'["\\ud800", "' + ALICE + b'\\udfff"]'), "fail"),
    "escaped-lone-surrogate-in-heading": (lambda k: obj(k, heading=b'"disk \\ud800 full"'), "refuse"),
    "escaped-reversed-pair-in-heading": (lambda k: obj(k, heading=b'"\\ude00\\ud83d"'), "refuse"),
    "escaped-surrogate-in-an-unknown-key": (lambda k: obj(k, extra=b', "\\ud800": "x"'), "any"),
    "escaped-surrogate-pair-in-heading-is-an-emoji": (lambda k: obj(k, heading=b'"disk \\ud83d\\ude00 full"'), "accept"),
    # truncated JSON
    "truncated-json-half": (lambda k: obj(k)[:len(obj(k)) // 2], "refuse"),
    "truncated-json-last-brace": (lambda k: obj(k)[:-1], "refuse"),
    "truncated-json-inside-an-escape": (lambda k: b'{"receiver": "' + ALICE + b'", "data": {"heading": "\\ud8', "refuse"),
    "truncated-json-after-a-key": (lambda k: b'{"receiver": ', "refuse"),
    # huge numbers
    "huge-exponent-as-heading": (lambda k: obj(k, heading=b"1e999999"), "refuse"),
    "huge-negative-exponent-as-heading": (lambda k: obj(k, heading=b"-1e999999"), "refuse"),
    "huge-exponent-as-base64-flag": (lambda k: obj(k, extra=flag(k, b"1e999999")), "refuse"),
    "huge-exponent-in-receiver-list": (lambda k: obj(k, receiver=b"[1e999999]"), "refuse"),
    "5000-digit-integer-as-heading": (lambda k: obj(k, heading=HUGE_INT), "refuse"),
    "5000-digit-integer-as-base64-flag": (lambda k: obj(k, extra=flag(k, HUGE_INT)), "refuse"),
    "5000-digit-integer-as-receiver": (lambda k: obj(k, receiver=HUGE_INT), "refuse"),
    "5000-digit-integer-as-agentid": (lambda k: obj(k, extra=b', "wx_qy_agentid": ' + HUGE_INT), "refuse"),
    # deep nesting
    "100000-deep-array-body": (lambda k: DEEP_ARRAY, "refuse"),
    "100000-deep-array-as-receiver": (lambda k: obj(k, receiver=DEEP_ARRAY), "refuse"),
    "100000-deep-object-as-heading": (lambda k: obj(k, heading=DEEP_OBJECT), "refuse"),
    # NUL bytes
    "nul-bytes-body": (lambda k: b"\x00" * 64, "refuse"),
    "nul-byte-before-the-json": (lambda k: b"\x00" + obj(k), "refuse"),
    "raw-nul-in-receiver": (lambda k: obj(k, receiver=b'"' + ALICE + b'\x00"'), "refuse"),
    "escaped-nul-in-receiver": (lambda k: obj(k, receiver=b'"' + ALICE + b'\\u0000"'), "refuse"),
    "escaped-nul-in-heading": (lambda k: obj(k, heading=b'"disk\\u0000full"'), "refuse"),
    # valid UTF-8 receivers that are no openid: they fail, WeChat is not called
    "replacement-char-in-receiver": (lambda k: obj(k, receiver=b'"' + ALICE + b'\xef\xbf\xbd"'), "fail"),
    "replacement-char-as-receiver": (lambda k: obj(k, receiver=b'"\xef\xbf\xbd"'), "fail"),
    "noncharacter-in-receiver": (lambda k: obj(k, receiver=b'"' + ALICE + b'\xef\xbf\xbe"'), "fail"),
    "zero-width-space-in-receiver": (lambda k: obj(k, receiver=b'"' + ALICE[:5] + b'\xe2\x80\x8b' + ALICE[5:] + b'"'), "fail"),
    "rtl-override-in-receiver": (lambda k: obj(k, receiver=b'"\xe2\x80\xae' + ALICE + b'"'), "fail"),
    "cjk-receiver": (lambda k: obj(k, receiver='"张三"'.encode()), "fail"),
    "emoji-receiver": (lambda k: obj(k, receiver=b'"' + ALICE + "😀".encode() + b'"'), "fail"),
    "dot-and-at-receiver-wecom-style": (lambda k: obj(k, receiver=b'"zhang.san@corp"'), "fail"),
    "65-character-receiver": (lambda k: obj(k, receiver=b'"' + b"o" * 65 + b'"'), "fail"),
    "fullwidth-openid": (lambda k: obj(k, receiver=b'"' + OPENID_ALICE.translate(
        {c: c + 0xFEE0 for c in range(0x21, 0x7F)}).encode() + b'"'), "any"),
    "bom-before-the-json": (lambda k: b"\xef\xbb\xbf" + obj(k), "any"),
    # form bodies
    "form-percent-invalid-utf8-receiver": (lambda k: form(k, b"o%FFx"), "refuse"),
    "form-percent-invalid-utf8-after-openid": (lambda k: form(k, ALICE + b"%FF"), "refuse"),
    "form-percent-overlong-receiver": (lambda k: form(k, b"o%C0%AFx"), "refuse"),
    "form-percent-surrogate-receiver": (lambda k: form(k, ALICE + b"%ED%A0%80"), "refuse"),
    "form-percent-invalid-utf8-heading": (lambda k: form(k, ALICE, heading=b"disk%FEfull"), "refuse"),
    "form-raw-invalid-utf8-receiver": (lambda k: form(k, b"o\xffx"), "refuse"),
    "form-percent-nul-receiver": (lambda k: form(k, ALICE + b"%00"), "refuse"),
    "form-percent-replacement-char-receiver": (lambda k: form(k, ALICE + b"%EF%BF%BD"), "fail"),
    "multipart-invalid-utf8-field": (lambda k: multipart(k, b"o\xffx"), "refuse"),
    # nothing at all
    "empty-body": (lambda k: b"", "refuse"),
    "whitespace-body": (lambda k: b" \r\n\t ", "refuse"),
    # controls: valid JSON is read as JSON whatever the Content-Type
    "valid-json": (lambda k: obj(k), "accept"),
    "valid-json-two-receivers": (lambda k: obj(k, receiver=b'["' + ALICE + b'", "' + BOB + b'"]'), "accept"),
}


def _kind(path: str) -> str:
    return "weixin" if "send_weixin" in path else "msg"


@pytest.mark.parametrize("content_type", list(CONTENT_TYPES))
@pytest.mark.parametrize("case", list(SEND_CASES))
@pytest.mark.parametrize("path", SEND_PATHS, ids=_route_id)
def test_send_api_raw_body(live, path, case, content_type):
    build, expect = SEND_CASES[case]
    body = build(_kind(path))
    before = snapshot(live)
    response = post_api(live, path, body, CONTENT_TYPES[content_type])
    problems = api_problems(live, before, response, expect)
    assert not problems, f"POST {path} [{case}] Content-Type {CONTENT_TYPES[content_type]!r}: " + "; ".join(problems)


# --- generated bodies ----------------------------------------------------------------------------

ODD = ["\ufffd", "\x00", "\x01", "\x1b", "\x1f", "\x7f", "\x85", "\xa0", "\u1680", "\u2028", "\u200b", "\u200d", "\u202e",
       "\u2066", "\ufeff", "\u3000", "\ufffe", "\uffff", "é", "e\u0301", "\u0301", "ß", "İ", "ı", "中", "😀", "\U0010ffff",
       "ｏ", "Ａ", "٣", "𝟗", "%", "%FF", "%00", "\\", '"', "'", "<", ">", "&", "#", "?", "/", "|", "+", "=", ",", ";",
       " ", "\t", "\n", "\r", ".", "@", "-", "_", "\ud800", "\udfff", "\udbff\udfff"]
RAW = [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xc0\x80", b"\xed\xa0\x80", b"\xed\xbf\xbf",
       b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xe4\xb8", b"\x00", b"\xef\xbf\xbd"]


@st.composite
def mutated_id(draw, base=st.sampled_from([OPENID_ALICE, OPENID_BOB, OPENID_NOT_FOLLOWING, "zhangsan", ""])):
    """A real id with odd characters put in, replacing, around it, or repeated past 64 characters."""
    value = draw(base)
    for _ in range(draw(st.integers(0, 3))):
        odd = draw(st.one_of(st.sampled_from(ODD), st.text(min_size=1, max_size=3)))
        at = draw(st.integers(0, len(value)))
        op = draw(st.sampled_from(["insert", "replace", "wrap", "repeat", "swapcase"]))
        if op == "insert":
            value = value[:at] + odd + value[at:]
        elif op == "replace":
            value = value[:at] + odd + value[at + 1:]
        elif op == "wrap":
            value = odd + value + odd
        elif op == "repeat":
            value = value * draw(st.integers(2, 4))
        else:
            value = value.swapcase()
    return value


def _utf8(text_value: str) -> bytes:
    return text_value.encode("utf-8", "surrogatepass")  # a lone surrogate becomes its (invalid) 3 bytes


@st.composite
def send_bodies(draw, kind: str):
    """A send body (bytes) with mutated receivers: JSON (escaped or raw UTF-8), JSON with raw bad bytes, or a form."""
    receivers = draw(st.one_of(mutated_id(), st.lists(mutated_id(), min_size=1, max_size=4)))
    heading = draw(st.one_of(st.just("disk full"), st.sampled_from(ODD).map(lambda c: "disk " + c + " full")))
    encoding = draw(st.sampled_from(["json-ascii", "json-utf8", "json-raw-bytes", "form"]))
    if encoding in ("json-ascii", "json-utf8"):
        document = ({"receiver": receivers, "data": {"heading": heading, "message": "m"}} if kind == "weixin" else
                    {"msg_type": "weixin", "receiver": receivers, "title": heading, "content": "m"})
        return _utf8(json.dumps(document, ensure_ascii=encoding == "json-ascii"))
    parts = receivers if isinstance(receivers, list) else [receivers]
    raw_parts = []
    for part in parts:
        raw = _utf8(part)
        if encoding == "json-raw-bytes" and draw(st.booleans()):
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + draw(st.sampled_from(RAW)) + raw[at:]
        raw_parts.append(raw)
    if encoding == "form":
        quoted = urllib.parse.quote_from_bytes(b",".join(raw_parts), safe="").encode()
        return form(kind, quoted, urllib.parse.quote_from_bytes(_utf8(heading), safe="").encode())
    escaped = [json.dumps(p.decode("utf-8", "surrogateescape"), ensure_ascii=False).encode("utf-8", "surrogateescape")
               for p in raw_parts]
    return obj(kind, receiver=b"[" + b", ".join(escaped) + b"]",
               heading=json.dumps(heading, ensure_ascii=True).encode())


def _readable(body: bytes) -> bool:
    """Whether the body is valid UTF-8 and, as a form, every field too once percent-decoded."""
    try:
        text_value = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if not text_value.lstrip().startswith("{"):
        try:
            urllib.parse.parse_qsl(text_value, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return False
    return True


@settings(max_examples=120, **SETTINGS)
@given(data=st.data(), path=st.sampled_from(SEND_PATHS), content_type=st.sampled_from(list(CONTENT_TYPES)))
def test_send_api_fuzzed_receivers(live, data, path, content_type):
    """Valid-looking sends whose receivers carry odd characters (as JSON escapes, raw UTF-8, raw bad bytes,
    or percent-encoded in a form): nothing but openids ever reaches WeChat."""
    body = data.draw(send_bodies(_kind(path)), label="body")
    before = snapshot(live)
    response = post_api(live, path, body, CONTENT_TYPES[content_type])
    problems = api_problems(live, before, response, "any" if _readable(body) else "refuse")
    assert not problems, f"POST {path} Content-Type {CONTENT_TYPES[content_type]!r} body {_short(body, 400)}: " + "; ".join(problems)


RAW_BODIES = st.one_of(
    st.binary(max_size=400),
    st.tuples(st.sampled_from([b"", b'{"receiver": "', b'{"receiver": "' + ALICE + b'", "data": {"heading": "',
                               b"receiver=", b"msg_type=weixin&receiver="]),
              st.binary(max_size=60),
              st.sampled_from([b"", b'"}', b'", "data": {"heading": "h", "message": "m"}}', b"&title=h&content=m"])
              ).map(b"".join),
    st.lists(st.sampled_from(RAW + [b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\u", b"d800", b"1e999", b"%FF", b"=", b"&"]),
             max_size=40).map(b"".join),
)


@settings(max_examples=100, **SETTINGS)
@given(body=RAW_BODIES, path=st.sampled_from(SEND_PATHS), content_type=st.sampled_from(list(CONTENT_TYPES)))
def test_send_api_fuzzed_raw_bytes(live, body, path, content_type):
    """Arbitrary bytes: never a 5xx, the API's shape, and an unreadable body is a validation refusal."""
    before = snapshot(live)
    response = post_api(live, path, body, CONTENT_TYPES[content_type])
    problems = api_problems(live, before, response, "any" if _readable(body) else "refuse")
    assert not problems, f"POST {path} Content-Type {CONTENT_TYPES[content_type]!r} body {_short(body, 400)}: " + "; ".join(problems)


# --- other POST routes under /api/ (the alert webhooks, when they exist) ----------------------------

WEBHOOK_CASES = [name for name in SEND_CASES if SEND_CASES[name][1] in ("refuse", "fail")]


def test_the_send_api_routes_are_discovered():
    assert set(SEND_PATHS) <= set(API_POST_ROUTES), API_POST_ROUTES


@pytest.mark.parametrize("content_type", ["json", "form", "none"])
def test_discovered_api_post_routes_survive_raw_bodies(live, content_type):
    """Any other POST route under /api/ (e.g. /api/v1/webhooks/alertmanager/), with receivers in the
    query, gets every refused or failing send body (none yet while no such route exists)."""
    for route in OTHER_API_POST_ROUTES:
        for case in WEBHOOK_CASES:
            build, expect = SEND_CASES[case]
            before = snapshot(live)
            response = post_api(live, route, build("weixin"), CONTENT_TYPES[content_type], query="?receiver__username=alice")
            problems = api_problems(live, before, response, "refuse", webhook=True)
            assert not problems, f"POST {route} [{case}] Content-Type {CONTENT_TYPES[content_type]!r}: " + "; ".join(problems)


@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_discovered_api_post_routes_fuzzed(live, data):
    if not OTHER_API_POST_ROUTES:
        return
    route = data.draw(st.sampled_from(OTHER_API_POST_ROUTES), label="route")
    body = data.draw(st.one_of(RAW_BODIES, send_bodies("weixin")), label="body")
    content_type = data.draw(st.sampled_from(list(CONTENT_TYPES)), label="content_type")
    before = snapshot(live)
    response = post_api(live, route, body, CONTENT_TYPES[content_type], query="?receiver__username=alice")
    problems = api_problems(live, before, response, "any" if _readable(body) else "refuse", webhook=True)
    assert not problems, f"POST {route} Content-Type {CONTENT_TYPES[content_type]!r} body {_short(body, 400)}: " + "; ".join(problems)


# --- GET /api/v1/messages/<id> ------------------------------------------------------------------------

MESSAGE_IDS = ["%FF", "%C0%AF", "%E0%80%AF", "%ED%A0%80", "%00", "%EF%BF%BD", "a%FFb", "x" * 5000, "..%2F..%2Fetc",
               "%25FF", "1e999999", "1" + "0" * 5000, "%5B" * 2000]


@pytest.mark.parametrize("message_id", MESSAGE_IDS, ids=[m[:30].replace("/", "-") for m in MESSAGE_IDS])
def test_message_status_with_raw_ids(live, message_id):
    before = snapshot(live)
    response = requests.get(f"{live.base}/api/v1/messages/{message_id}", headers=live.headers(), timeout=10)
    problems = api_problems(live, before, response)
    if response.status_code not in (400, 404):
        problems.append(f"expected 400 or 404, got {response.status_code}")
    assert not problems, f"GET /api/v1/messages/{message_id[:60]}: " + "; ".join(problems)


@pytest.mark.parametrize("case", ["invalid-utf8-in-receiver", "surrogate-bytes-in-heading", "100000-deep-array-body",
                                  "nul-bytes-body", "form-percent-invalid-utf8-receiver"])
@pytest.mark.parametrize("content_type", list(CONTENT_TYPES))
def test_message_status_ignores_raw_bodies(live, case, content_type):
    """A GET with a body (some proxies allow it): the message's status, or a refusal in the API's shape."""
    sent = live.api.send({"receiver": OPENID_ALICE, "data": {"heading": "h", "message": "m"}})
    message_id = sent.json()["data"]["message_id"]
    before = snapshot(live)
    response = requests.get(f"{live.base}/api/v1/messages/{message_id}", data=SEND_CASES[case][0]("weixin"),
                            headers=live.headers(CONTENT_TYPES[content_type]), timeout=10)
    problems = api_problems(live, before, response)
    if response.status_code == 200 and (response.json().get("data") or {}).get("message_id") != message_id:
        problems.append(f"expected the message's status, got {_short(response.text)}")
    elif response.status_code != 200 and not 400 <= response.status_code < 500:
        problems.append(f"expected the message's status or a 4xx refusal, got {response.status_code}")
    assert not problems, f"GET /api/v1/messages/<id> [{case}] Content-Type {CONTENT_TYPES[content_type]!r}: " + "; ".join(problems)


# --- the Official Account callback ---------------------------------------------------------------------

def message_xml(from_: bytes = ALICE + b"\xff", msg_type: bytes = b"text", content: bytes = b"hello", extra: bytes = b"",
                create_time: bytes | None = None, msg_id: bytes | None = None) -> bytes:
    create_time = create_time if create_time is not None else str(int(time.time())).encode()
    msg_id = msg_id if msg_id is not None else str(uuid.uuid4().int % 10**18).encode()
    body = b"<Content><![CDATA[%b]]></Content>" % content if msg_type == b"text" else b""
    return (b"<xml><ToUserName><![CDATA[gh_5130a0e1c2d3]]></ToUserName><FromUserName><![CDATA[%b]]></FromUserName>"
            b"<CreateTime>%b</CreateTime><MsgType><![CDATA[%b]]></MsgType>%b<MsgId>%b</MsgId>%b</xml>"
            % (from_, create_time, msg_type, body, msg_id, extra))


def event_xml(event: bytes, from_: bytes, extra: bytes = b"", create_time: bytes | None = None) -> bytes:
    return message_xml(from_, b"event", extra=b"<Event><![CDATA[%b]]></Event>%b" % (event, extra), create_time=create_time)


# Every FromUserName below differs from every bound openid byte for byte (checked by a test).
CALLBACK_CASES = {
    "invalid-utf8-in-content": lambda: message_xml(content=b"disk \xff\xfe full"),
    "invalid-utf8-after-alice": lambda: message_xml(from_=ALICE + b"\xff"),
    "overlong-slash-after-alice": lambda: message_xml(from_=ALICE + b"\xc0\xaf"),
    "overlong-lt-in-content": lambda: message_xml(from_=b"oX", content=b"\xc0\xbcscript\xc0\xbe"),
    "overlong-nul-after-alice": lambda: message_xml(from_=ALICE + b"\xc0\x80"),
    "surrogate-bytes-after-alice": lambda: message_xml(from_=ALICE + b"\xed\xa0\x80"),
    "surrogate-bytes-in-content": lambda: message_xml(from_=b"oX", content=b"\xed\xa0\x80"),
    "replacement-char-after-alice": lambda: message_xml(from_=ALICE + b"\xef\xbf\xbd"),
    "raw-nul-after-alice": lambda: message_xml(from_=ALICE + b"\x00"),
    "surrogate-charref-in-content": lambda: message_xml(from_=b"oX", content=b"]]>&#xD800;<![CDATA["),
    "nul-charref-in-content": lambda: message_xml(from_=b"oX", content=b"]]>&#0;<![CDATA["),
    "unsubscribe-from-alice-plus-invalid-byte": lambda: event_xml(b"unsubscribe", ALICE + b"\xff"),
    "unsubscribe-from-alice-plus-overlong-nul": lambda: event_xml(b"unsubscribe", ALICE + b"\xc0\x80"),
    "unsubscribe-from-alice-plus-surrogate-bytes": lambda: event_xml(b"unsubscribe", ALICE + b"\xed\xa0\x80"),
    "unsubscribe-from-alice-plus-replacement-char": lambda: event_xml(b"unsubscribe", ALICE + b"\xef\xbf\xbd"),
    "unsubscribe-from-alice-plus-nul": lambda: event_xml(b"unsubscribe", ALICE + b"\x00"),
    "unsubscribe-from-alice-plus-zero-width-space": lambda: event_xml(b"unsubscribe", ALICE + b"\xe2\x80\x8b"),
    "subscribe-with-invalid-utf8-scene": lambda: event_xml(b"subscribe", b"oNew\xff",
                                                           b"<EventKey><![CDATA[qrscene_\xff\xfe]]></EventKey>"),
    "scan-with-overlong-scene": lambda: event_xml(b"SCAN", b"oNew\xc0\xaf", b"<EventKey><![CDATA[\xc0\xaf]]></EventKey>"),
    "scan-with-huge-scene": lambda: event_xml(b"SCAN", b"oNew1", b"<EventKey>" + HUGE_INT + b"</EventKey>"),
    "delivery-report-with-huge-msgid": lambda: event_xml(b"TEMPLATESENDJOBFINISH", b"oNew1",
                                                         b"<MsgID>" + HUGE_INT + b"</MsgID><Status><![CDATA[success]]></Status>"),
    "delivery-report-with-exponent-msgid": lambda: event_xml(b"TEMPLATESENDJOBFINISH", b"oNew1",
                                                             b"<MsgID>1e999999</MsgID><Status><![CDATA[fail\xff]]></Status>"),
    "huge-create-time": lambda: message_xml(from_=b"oNew1", create_time=HUGE_INT),
    "exponent-create-time": lambda: message_xml(from_=b"oNew1", create_time=b"1e999999"),
    "negative-create-time": lambda: message_xml(from_=b"oNew1", create_time=b"-99999999999999999999"),
    "huge-msgid": lambda: message_xml(from_=b"oNew1", msg_id=HUGE_INT),
    "declared-utf16-but-utf8": lambda: b'<?xml version="1.0" encoding="UTF-16"?>' + message_xml(),
    "declared-latin1": lambda: b'<?xml version="1.0" encoding="ISO-8859-1"?>' + message_xml(from_=b"oNew\xe9"),
    "utf16-with-bom": lambda: message_xml(from_=b"oNew1").decode().encode("utf-16"),
    "bom-then-xml": lambda: b"\xef\xbb\xbf" + message_xml(from_=b"oNew1"),
    "deep-nesting-8000": lambda: b"<xml>" + b"<a>" * 8000 + b"</a>" * 8000 + b"</xml>",
    "deep-nesting-100000": lambda: b"<a>" * 100_000 + b"</a>" * 100_000,
    "truncated-xml": lambda: message_xml()[:60],
    "nul-bytes": lambda: b"\x00" * 64,
    "invalid-utf8-garbage": lambda: b"\xff\xfe\xfd" * 20,
    "json-body": lambda: b'{"FromUserName": "' + ALICE + b'\xff", "MsgType": "event", "Event": "unsubscribe"}',
    "empty": lambda: b"",
}
CALLBACK_CONTENT_TYPES = {"text-xml": "text/xml", **CONTENT_TYPES}


def callback_problems(live: Live, before: dict, response: requests.Response, must_refuse: bool) -> list[str]:
    problems: list[str] = []
    after = snapshot(live)
    summary = f"HTTP {response.status_code} {_short(response.text, 120)}"
    if response.status_code >= 500:
        problems.append(summary)
    mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()
    if mimetype not in ("text/plain", "application/xml", "text/xml"):
        problems.append(f"answer Content-Type {mimetype!r}")
    if after["bindings"] != before["bindings"]:
        problems.append(f"bindings changed: {before['bindings']} -> {after['bindings']}")
    for wx_channel, receiver in _asked_since(live, before):
        if not isinstance(receiver, str) or not OPENID_RE.fullmatch(receiver):
            problems.append(f"WeChat ({wx_channel}) was asked to deliver to {receiver!r}")
    if must_refuse and not 400 <= response.status_code < 500:
        problems.append(f"expected a 4xx, got {summary}")
    if 400 <= response.status_code < 500:
        calls = _delta_calls(before, after)
        rows = _delta_rows(before, after, ("messages", "deliveries", "callback_events"))
        if calls:
            problems.append(f"refused ({summary}) yet WeChat received calls {calls}")
        if rows:
            problems.append(f"refused ({summary}) yet rows were stored {rows}")
    return problems


def _query(signing: str, body: bytes) -> tuple[dict, bytes]:
    """The callback's query and the body to post for one way of signing (a fresh nonce each time)."""
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:16]
    if signing == "unsigned":
        return {}, body
    if signing == "bad-signature":
        return {"signature": "0" * 40, "timestamp": timestamp, "nonce": nonce, "openid": "oX"}, body
    query = {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "openid": "oX"}
    if signing == "signed":
        return query, body
    encrypted = MessageCrypto(TOKEN, KEY, MP_APPID).encrypt(body)  # the plaintext may be any bytes
    query.update(encrypt_type="aes", msg_signature=sign(TOKEN, timestamp, nonce, encrypted))
    envelope = b"<xml><ToUserName><![CDATA[gh_5130a0e1c2d3]]></ToUserName><Encrypt><![CDATA[%b]]></Encrypt></xml>"
    return query, envelope % encrypted.encode()


def test_no_callback_case_comes_from_a_bound_openid():
    for name, build in CALLBACK_CASES.items():
        found = re.search(rb"<FromUserName><!\[CDATA\[(.*?)\]\]></FromUserName>", build(), re.S)
        assert not found or found.group(1).decode("latin-1") not in BOUND, name


@pytest.mark.parametrize("signing", ["unsigned", "bad-signature", "signed", "encrypted"])
@pytest.mark.parametrize("case", list(CALLBACK_CASES))
@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_callback_post_raw_body(live, mode, case, signing):
    """In plain mode (with an EncodingAESKey) all three formats are accepted; in safe mode only encrypted ones."""
    live.set_mode(mode)
    query, body = _query(signing, CALLBACK_CASES[case]())
    before = snapshot(live)
    response = requests.post(live.base + CALLBACK, params=query, data=body, headers={"Content-Type": "text/xml"},
                             timeout=30)
    must_refuse = signing in ("unsigned", "bad-signature") or (mode == "safe" and signing == "signed")
    problems = callback_problems(live, before, response, must_refuse)
    assert not problems, f"POST callback ({mode} mode) [{case}] {signing}: " + "; ".join(problems)


@pytest.mark.parametrize("content_type", [c for c in CALLBACK_CONTENT_TYPES if c != "text-xml"])
@pytest.mark.parametrize("case", ["invalid-utf8-after-alice", "unsubscribe-from-alice-plus-invalid-byte",
                                  "surrogate-bytes-in-content", "deep-nesting-8000", "nul-bytes", "json-body"])
@pytest.mark.parametrize("signing", ["signed", "encrypted"])
def test_callback_post_raw_body_any_content_type(live, signing, case, content_type):
    live.set_mode("plain")
    query, body = _query(signing, CALLBACK_CASES[case]())
    before = snapshot(live)
    content = CALLBACK_CONTENT_TYPES[content_type]
    response = requests.post(live.base + CALLBACK, params=query, data=body, timeout=30,
                             headers={"Content-Type": content} if content else {})
    problems = callback_problems(live, before, response, False)
    assert not problems, f"POST callback [{case}] {signing} Content-Type {content!r}: " + "; ".join(problems)


ECHOSTRS = ["5927782489442352469", "%FF", "%C0%AF", "%ED%A0%80", "%00", "%EF%BF%BD", "a%FFb%FE", "<script>", "%0D%0AX-A:%20b",
            "x" * 3000]


@pytest.mark.parametrize("signing", ["unsigned", "bad-signature", "signed", "encrypted"])
@pytest.mark.parametrize("echostr", ECHOSTRS, ids=[e[:24] for e in ECHOSTRS])
@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_callback_get_raw_echostr(live, mode, echostr, signing):
    """The URL check with raw percent-encoded echostr (and a raw body): never a 5xx, unsigned refused, nothing changed."""
    live.set_mode(mode)
    query, _ = _query("signed" if signing == "encrypted" else signing, b"")
    if signing == "encrypted":  # a WeCom-style encrypted echostr holding bytes that are no UTF-8
        encrypted = MessageCrypto(TOKEN, KEY, MP_APPID).encrypt(urllib.parse.unquote_to_bytes(echostr))
        query.update(encrypt_type="aes", msg_signature=sign(TOKEN, query["timestamp"], query["nonce"], encrypted))
        raw_echostr = urllib.parse.quote(encrypted, safe="")
    else:
        raw_echostr = echostr
    url = f"{live.base}{CALLBACK}?{urllib.parse.urlencode(query)}&echostr={raw_echostr}"
    before = snapshot(live)
    response = requests.get(url, data=b"\xff\xfe" + b"[" * 1000, timeout=30)
    problems = callback_problems(live, before, response, signing in ("unsigned", "bad-signature"))
    if response.status_code == 200 and signing == "signed" and response.content != urllib.parse.unquote_to_bytes(echostr):
        problems.append(f"verified but echoed {_short(response.content)} for {echostr[:40]!r}")
    assert not problems, f"GET callback ({mode} mode) echostr={echostr[:40]!r} {signing}: " + "; ".join(problems)


XML_NAMES = st.sampled_from([b"ToUserName", b"FromUserName", b"CreateTime", b"MsgType", b"Content", b"MsgId", b"Event",
                             b"EventKey", b"Ticket", b"MsgID", b"Status", b"Encrypt"])
XML_VALUES = st.one_of(st.sampled_from([b"text", b"event", b"subscribe", b"unsubscribe", b"SCAN", b"TEMPLATESENDJOBFINISH",
                                        b"qrscene_1", HUGE_INT, b"1e999999", b"-1", b"success"]),
                       st.lists(st.sampled_from(RAW + [b"a", b"1", b"<", b"&", b"]]>", b"&#0;", b"&#xD800;", b"\r\n"]),
                                max_size=10).map(b"".join),
                       st.binary(max_size=20))
CALLBACK_BODIES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.tuples(XML_NAMES, XML_VALUES, st.booleans()), max_size=8).map(
        lambda items: b"<xml>" + b"".join((b"<%b><![CDATA[%b]]></%b>" if cdata else b"<%b>%b</%b>") % (k, v, k)
                                          for k, v, cdata in items) + b"</xml>"),
    st.tuples(st.sampled_from([b"unsubscribe", b"subscribe", b"SCAN"]), st.sampled_from(RAW)).map(
        lambda pair: event_xml(pair[0], ALICE + pair[1])),
)


@settings(max_examples=100, **SETTINGS)
@given(body=CALLBACK_BODIES, signing=st.sampled_from(["unsigned", "bad-signature", "signed", "encrypted"]),
       content_type=st.sampled_from(list(CALLBACK_CONTENT_TYPES)))
def test_callback_fuzzed(live, body, signing, content_type):
    live.set_mode("plain")
    from_user = re.search(rb"<FromUserName>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</FromUserName>", body, re.S)
    if from_user and from_user.group(1).decode("latin-1") in BOUND:
        return  # a genuine event from a bound follower may legitimately change the binding
    query, raw = _query(signing, body)
    content = CALLBACK_CONTENT_TYPES[content_type]
    before = snapshot(live)
    response = requests.post(live.base + CALLBACK, params=query, data=raw, timeout=30,
                             headers={"Content-Type": content} if content else {})
    problems = callback_problems(live, before, response, signing in ("unsigned", "bad-signature"))
    assert not problems, f"POST callback {signing} Content-Type {content!r} body {_short(body, 400)}: " + "; ".join(problems)
