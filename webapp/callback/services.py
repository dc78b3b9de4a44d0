"""Handling of WeChat's callback requests: verify, decrypt, deduplicate, dispatch, reply.

Nothing here raises to the route: every outcome is an :class:`Answer` with a 2xx or 4xx status,
and every request's outcome is recorded for the set-up wizard to show.

Three guards, each on what identifies its threat:

- the configured mode: in compatible and safe mode a push must be encrypted and carry a valid
  ``msg_signature`` (the plain ``signature`` covers only timestamp and nonce, not the body);
- replays: what WeChat signs, the (timestamp, nonce) pair, is used once, by a URL check (GET) or
  a push (POST) alike, and remembered for the timestamp window (older timestamps are refused anyway);
- WeChat's retries of one event (same body, fresh nonce): the event's identity, MsgId (MsgID in
  delivery reports) or else sender, time, event and key, is handled once.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, select

from webapp import channel as channel_config
from webapp import metrics
from webapp.callback import handlers, store
from webapp.extensions import db
from webapp.models import CHANNEL_MP, CallbackAttempt, CallbackEvent, CallbackReplayGuard, utcnow
from webapp.wechat import check_signature, parse_message
from webapp.wechat.errors import CryptoError, InvalidSignature, ReceiveIdMismatch, XMLMessageError
from webapp.wechat.xmlmsg import build_text_reply

log = logging.getLogger(__name__)

#: Requests whose timestamp is further than this from the server's clock are refused.
MAX_CLOCK_SKEW = 300
#: How many recent request outcomes are kept for the wizard and the console.
ATTEMPTS_KEPT = 200


@dataclass
class Answer:
    """What the route sends back: a status and a plain-text or XML body."""

    status: int
    body: str
    xml: bool = False


def record(method: str, outcome: str, *, mode: str = "plain", remote_addr: str = "", detail: str = "",
           channel: str = CHANNEL_MP) -> None:
    """Count a callback request and keep its outcome for the wizard and the console (``channel``:
    the Official Account's callback, or the WeCom application's "qywx")."""
    kind = "verification" if method == "GET" else "message"
    metrics.callback_request(method, outcome, channel)
    try:
        with db.transaction() as session:
            session.add(CallbackAttempt(method=method, kind=kind, outcome=outcome, mode=mode, channel=channel,
                                        remote_addr=remote_addr[:64], detail=detail[:500]))
    except Exception:  # bookkeeping must never turn an answer into an error
        log.exception("could not record a callback attempt")


def _max_skew() -> int:
    return int(current_app.config.get("CALLBACK_MAX_CLOCK_SKEW", MAX_CLOCK_SKEW))


def fresh_timestamp(timestamp: str) -> bool:
    """Whether a request's timestamp is within the allowed distance of the server's clock."""
    try:
        return abs(time.time() - int(timestamp)) <= _max_skew()
    except (TypeError, ValueError, OverflowError):  # OverflowError: a timestamp of hundreds of digits
        return False


def replay_key(timestamp: str, nonce: str) -> str:
    """The replay guard's key: what every WeChat signature covers, the timestamp and the nonce."""
    return f"{timestamp[:20]}:{nonce[:128]}"


def _draft_tokens() -> list[str]:
    """Tokens of open set-up wizard drafts (the configuration is still being written)."""
    from webapp.setup.drafts import open_draft_tokens

    try:
        return open_draft_tokens()
    except Exception:  # the wizard's bookkeeping must never break WeChat's check of the saved configuration
        log.exception("could not read the set-up wizard's drafts")
        return []


def verify_url(args: dict, remote_addr: str) -> Answer:
    """WeChat's URL check (GET): echo ``echostr`` exactly when the signature is right.

    The signature may be made with the configured Token or with the Token of an administrator's
    open set-up wizard draft: WeChat checks the URL when the administrator presses Submit on its
    服务器配置 page, which the wizard asks for before its answers are saved as the configuration.
    """
    channel = channel_config.load()
    token = channel.wx_token if channel is not None and channel.wx_type == CHANNEL_MP and channel.wx_token else None
    # Drafts are read only when the configured Token does not do (never on the usual path).
    drafts = None if token else _draft_tokens()
    if token is None and not drafts:
        record("GET", "not_configured", remote_addr=remote_addr)
        return Answer(404, "No WeChat Official Account is configured on this service yet: finish the set-up first.")
    signature, timestamp, nonce = args.get("signature", ""), args.get("timestamp", ""), args.get("nonce", "")
    echostr = args.get("echostr")
    if not (signature and timestamp and nonce and echostr is not None):
        record("GET", "missing_parameters", remote_addr=remote_addr)
        return Answer(400, "signature, timestamp, nonce and echostr are required")
    via_draft = False
    if not (token and check_signature(token, signature, timestamp, nonce)):
        if drafts is None:
            drafts = _draft_tokens()
        via_draft = any(check_signature(t, signature, timestamp, nonce) for t in drafts)
        if not via_draft:
            record("GET", "bad_signature", remote_addr=remote_addr,
                    detail="the signature does not match the Token configured here"
                           + (" nor the Token of the set-up wizard's draft" if drafts else ""))
            return Answer(403, "signature mismatch: the Token on WeChat's server configuration page differs from this service's")
    if not fresh_timestamp(timestamp):
        record("GET", "stale_timestamp", remote_addr=remote_addr, detail=f"timestamp {timestamp[:20]}")
        return Answer(403, "timestamp too far from the server's clock: check the server's time (NTP)")
    # A URL check uses up its timestamp and nonce like a push does: its signature is the one a
    # plaintext push carries, so a captured check must not be reusable as a forged push.
    with store.ledger() as ledger:
        fresh = ledger.consume(replay_key(timestamp, nonce), utcnow())
    if not fresh:
        record("GET", "replayed_nonce", remote_addr=remote_addr, detail="this timestamp and nonce were already used")
        return Answer(403, "this timestamp and nonce were already used: the request is a replay")
    record("GET", "verified", remote_addr=remote_addr,
           detail="signed with the Token of the set-up wizard's draft" if via_draft else "")
    return Answer(200, echostr)


def handle_message(args: dict, body: bytes, remote_addr: str) -> Answer:
    """A pushed event or message (POST): authenticate, decrypt, deduplicate, dispatch, reply.

    Its database work, the configuration's version, the replay key, the event and (when there is
    one) its reply, runs on one connection of its own (:mod:`webapp.callback.store`).
    """
    with store.ledger() as ledger:
        return with_channel(ledger, lambda checked: _handle_message(ledger, checked, args, body, remote_addr))


class StaleChannel(Exception):
    """The configuration this process holds is no longer the stored one: the request starts over."""


class CheckedChannel:
    """The configuration a push is checked with, and the stored version it must still be when admitted.

    The process's decrypted copy is used without reading the database; the admission statement
    checks its version (:meth:`store.Ledger.admit`), and a refusal reads it first (:meth:`confirm`),
    so that a stale copy never admits nor refuses a push: :class:`StaleChannel` starts it over.
    """

    def __init__(self, ledger: store.Ledger, held: tuple | None) -> None:
        self._ledger = ledger
        if held is None:
            self.version = ledger.read(channel_config.CONFIG_VERSION_SQL)
            self.channel = channel_config.for_version(self.version)
            self._confirmed = True
        else:
            self.version, self.channel = held
            self._confirmed = False

    def confirm(self) -> None:
        """Before a refusal: make sure the held configuration is the stored one, else raise StaleChannel."""
        if not self._confirmed:
            if self._ledger.read(channel_config.CONFIG_VERSION_SQL) != tuple(self.version):
                raise StaleChannel
            self._confirmed = True


#: How many times a push starts over when the configuration changes while it is handled.
_STARTS = 3


def with_channel(ledger: store.Ledger, handle) -> Answer:
    """``handle(CheckedChannel)`` with the process's copy of the configuration, again with the stored one if stale."""
    held = channel_config.held()
    for _ in range(_STARTS):
        try:
            return handle(CheckedChannel(ledger, held))
        except StaleChannel:
            held = None
    return Answer(503, "the configuration is being changed: WeChat's retry of this push will be handled")


def _handle_message(ledger: store.Ledger, checked: CheckedChannel, args: dict, body: bytes, remote_addr: str) -> Answer:
    channel = checked.channel
    encrypted = args.get("encrypt_type", "raw").lower() == "aes"
    mode = "aes" if encrypted else "plain"
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")

    def refuse(status: int, outcome: str, text: str, detail: str = "") -> Answer:
        checked.confirm()
        record("POST", outcome, mode=mode, remote_addr=remote_addr, detail=detail or text)
        return Answer(status, text)

    if channel is None or channel.wx_type != CHANNEL_MP or not channel.wx_token:
        checked.confirm()
        record("POST", "not_configured", remote_addr=remote_addr)
        return Answer(404, "No WeChat Official Account is configured on this service yet.")

    if not (timestamp and nonce):
        return refuse(400, "missing_parameters", "timestamp and nonce are required")
    # Plaintext requests are authenticated by `signature`; encrypted ones by `msg_signature` over
    # the ciphertext (checked while decrypting below). A plain signature alone never admits them.
    if not encrypted and not check_signature(channel.wx_token, args.get("signature", ""), timestamp, nonce):
        return refuse(403, "bad_signature", "signature mismatch: check the Token")
    if not encrypted and channel.wx_encrypt_mode in ("compatible", "safe"):
        # `signature` covers the timestamp and nonce only, never the body: in these modes only a
        # msg_signature over the encrypted body proves the message comes from WeChat.
        return refuse(403, "plaintext_refused",
                      f"this service expects {channel.wx_encrypt_mode} mode: pushes must be encrypted (encrypt_type=aes)",
                      detail=PLAINTEXT_REFUSED_DETAIL.format(mode=channel.wx_encrypt_mode))
    try:
        outer = parse_message(body)
    except XMLMessageError:
        return refuse(400, "malformed", "the body is not a WeChat XML message")
    key_label = None
    crypto = None
    if encrypted:
        crypto = channel.crypto
        if crypto is None:
            return refuse(400, "no_aes_key", "an encrypted message arrived but no EncodingAESKey is configured here")
        try:
            plain, key_label = crypto.decrypt_message(args.get("msg_signature", ""), timestamp, nonce, outer.get("Encrypt", ""))
            message = parse_message(plain.encode("utf-8"))
        except InvalidSignature:
            return refuse(403, "bad_signature", "msg_signature mismatch: check the Token")
        except ReceiveIdMismatch:
            return refuse(403, "wrong_appid", "the message was encrypted for another AppID")
        except (CryptoError, XMLMessageError):
            return refuse(400, "decrypt_failed", "the message cannot be decrypted: check the EncodingAESKey")
    else:
        message = outer
    if not fresh_timestamp(timestamp):
        return refuse(403, "stale_timestamp", "timestamp too far from the server's clock")
    summary = f"{message.get('MsgType', '?')}/{message.get('Event', '')}".rstrip("/")
    key = _dedupe_key(message)
    admission, stored_reply = admit(ledger, checked, timestamp, nonce, key, mode, remote_addr, summary)
    metrics.callback_request("POST", {store.NEW: "ok", store.REPLAY: "replayed_nonce"}.get(admission, admission))
    if admission == store.REPLAY:
        return Answer(403, "this timestamp and nonce were already used: the request is a replay")
    reply = stored_reply if admission == store.DUPLICATE else dispatch(ledger, message, channel, key)
    if not reply:
        return Answer(200, "success")
    if crypto is not None:
        return Answer(200, crypto.encrypt_reply(reply, str(int(time.time())), nonce, key=key_label), xml=True)
    return Answer(200, reply, xml=True)


#: What the attempt log keeps when WeChat pushes plaintext in compatible or safe mode (the console
#: shows the administrator a translated sentence for it, see :func:`plaintext_refusals`).
PLAINTEXT_REFUSED_DETAIL = (
    "WeChat is sending plaintext while this service expects {mode} mode: set 消息加解密方式 to 安全模式 "
    "on WeChat (开发 → 基本配置 → 服务器配置), or change the mode here"
)


def _dedupe_key(message: dict) -> str:
    """What identifies one event across WeChat's retries of it.

    Messages carry MsgId; delivery reports (TEMPLATESENDJOBFINISH) spell it MsgID, one per template
    message, so several reports to one person within a second stay apart.
    """
    msg_id = message.get("MsgId") or message.get("MsgID")
    if msg_id:
        key = "msg:" + msg_id
    else:
        # WeChat's rule is sender + time; the event and its key are added so that two different events
        # of one person within the same second (two scans, say) are not taken for a retry.
        key = "evt:{}:{}:{}:{}".format(message.get("FromUserName", ""), message.get("CreateTime", ""),
                                       message.get("Event", ""), message.get("EventKey", ""))
    return key[:200]


#: Accepted messages are logged at most this often per process (refusals always): enough for the
#: wizard's "WeChat's messages arrive" without a write per message.
OK_LOG_INTERVAL = 10.0


def admit(ledger: store.Ledger, checked: CheckedChannel, timestamp: str, nonce: str, key: str, mode: str,
          remote_addr: str, summary: str, channel: str = CHANNEL_MP) -> tuple[str, str | None]:
    """Use up the request's (timestamp, nonce) and record the event (see :meth:`store.Ledger.admit`).

    Returns (REPLAY, None) for a timestamp and nonce used before, (DUPLICATE, reply) for an event
    WeChat already delivered (its reply is sent again), or (NEW, None); raises :class:`StaleChannel`
    (nothing written) when the configuration ``checked`` holds is no longer the stored one. Replays
    and duplicates are logged as attempts; accepted messages at most every :data:`OK_LOG_INTERVAL` seconds.
    """
    now = utcnow()
    admission, reply = ledger.admit(replay_key(timestamp, nonce), key, now, checked.version)
    if admission == store.STALE:
        raise StaleChannel
    if admission == store.NEW:
        logged = current_app.extensions.setdefault(f"callback_ok_logged_{channel}", [0.0])
        if time.monotonic() - logged[0] < OK_LOG_INTERVAL:
            return admission, None
        logged[0] = time.monotonic()
    outcome = {store.NEW: "ok", store.REPLAY: "replayed_nonce"}.get(admission, admission)
    ledger.attempt(now, "POST", "message", outcome, mode, remote_addr, summary, channel)
    return admission, reply


def dispatch(ledger: store.Ledger, message: dict, channel, key: str) -> str | None:
    """Run the message's handler (once per WeChat event: the caller admitted it as new)."""
    handler = handlers.table().find(message, channel.wx_type)
    if handler is None:
        return None
    try:
        content = handler(message, channel)
    except Exception:
        log.exception("callback handler for %s/%s failed", message.get("MsgType"), message.get("Event"))
        # Let WeChat's retry run the handler again.
        ledger.forget(key)
        return None
    if not content:
        return None
    reply = build_text_reply(message.get("FromUserName", ""), message.get("ToUserName", ""), content, int(time.time()))
    ledger.save_reply(key, reply)
    return reply


def recent_attempts(limit: int = 20, channel: str | None = None) -> list[CallbackAttempt]:
    """The latest callback requests and their outcomes, newest first (of one channel's callback, or all)."""
    query = select(CallbackAttempt)
    if channel is not None:
        query = query.where(CallbackAttempt.channel == channel)
    return list(db.session.scalars(query.order_by(CallbackAttempt.at.desc(), CallbackAttempt.id.desc()).limit(limit)))


def plaintext_refusals(hours: int = 24) -> tuple[int, CallbackAttempt | None]:
    """Plaintext pushes refused in compatible or safe mode in the last ``hours``: how many, and the latest."""
    since = utcnow() - timedelta(hours=hours)
    where = (CallbackAttempt.outcome == "plaintext_refused", CallbackAttempt.at >= since)
    count = db.session.scalar(select(func.count()).select_from(CallbackAttempt).where(*where)) or 0
    latest = db.session.scalar(select(CallbackAttempt).where(*where).order_by(CallbackAttempt.id.desc()).limit(1))
    return count, latest


def last_verification(channel: str | None = None) -> CallbackAttempt | None:
    """The latest URL verification request (GET), whatever its outcome (of one channel's callback, or any)."""
    query = select(CallbackAttempt).where(CallbackAttempt.kind == "verification")
    if channel is not None:
        query = query.where(CallbackAttempt.channel == channel)
    return db.session.scalar(query.order_by(CallbackAttempt.at.desc(), CallbackAttempt.id.desc()).limit(1))


def purge_old() -> None:
    """Forget events older than a day, replay keys older than the timestamp window, and all but the latest attempts."""
    now = utcnow()
    with db.transaction() as session:
        session.execute(delete(CallbackEvent).where(CallbackEvent.received_at < now - timedelta(days=1)))
        # A timestamp is accepted within MAX_CLOCK_SKEW either side of now; its key is needed that long.
        session.execute(delete(CallbackReplayGuard).where(CallbackReplayGuard.at < now - timedelta(seconds=2 * _max_skew())))
        keep = select(CallbackAttempt.id).order_by(CallbackAttempt.id.desc()).limit(ATTEMPTS_KEPT).subquery()
        session.execute(delete(CallbackAttempt).where(CallbackAttempt.id.not_in(select(keep.c.id))))
