"""Handling of WeChat's callback requests: verify, decrypt, deduplicate, dispatch, reply.

Nothing here raises to the route: every outcome is an :class:`Answer` with a 2xx or 4xx status,
and every request's outcome is recorded for the set-up wizard to show.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from webapp import channel as channel_config
from webapp.callback import handlers
from webapp.extensions import db
from webapp.models import CHANNEL_MP, CallbackAttempt, CallbackEvent, CallbackNonce, utcnow
from webapp.wechat import MessageCrypto, check_signature, parse_message
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


def record(method: str, outcome: str, *, mode: str = "plain", remote_addr: str = "", detail: str = "") -> None:
    kind = "verification" if method == "GET" else "message"
    try:
        with db.transaction() as session:
            session.add(CallbackAttempt(method=method, kind=kind, outcome=outcome, mode=mode,
                                        remote_addr=remote_addr[:64], detail=detail[:500]))
    except Exception:  # bookkeeping must never turn an answer into an error
        log.exception("could not record a callback attempt")


def _fresh_timestamp(timestamp: str) -> bool:
    try:
        return abs(time.time() - int(timestamp)) <= current_app.config.get("CALLBACK_MAX_CLOCK_SKEW", MAX_CLOCK_SKEW)
    except (TypeError, ValueError):
        return False


def _remember_nonce(nonce: str) -> bool:
    """Store ``nonce``; False when it was already seen (a replayed request)."""
    try:
        with db.transaction() as session:
            session.add(CallbackNonce(nonce=nonce[:128]))
        return True
    except IntegrityError:
        return False


def verify_url(args: dict, remote_addr: str) -> Answer:
    """WeChat's URL check (GET): echo ``echostr`` exactly when the signature is right."""
    channel = channel_config.load()
    if channel is None or channel.wx_type != CHANNEL_MP or not channel.wx_token:
        record("GET", "not_configured", remote_addr=remote_addr)
        return Answer(404, "No WeChat Official Account is configured on this service yet: finish the set-up first.")
    signature, timestamp, nonce = args.get("signature", ""), args.get("timestamp", ""), args.get("nonce", "")
    echostr = args.get("echostr")
    if not (signature and timestamp and nonce and echostr is not None):
        record("GET", "missing_parameters", remote_addr=remote_addr)
        return Answer(400, "signature, timestamp, nonce and echostr are required")
    if not check_signature(channel.wx_token, signature, timestamp, nonce):
        record("GET", "bad_signature", remote_addr=remote_addr,
                detail="the signature does not match the Token configured here")
        return Answer(403, "signature mismatch: the Token on WeChat's server configuration page differs from this service's")
    if not _fresh_timestamp(timestamp):
        record("GET", "stale_timestamp", remote_addr=remote_addr, detail=f"timestamp {timestamp[:20]}")
        return Answer(403, "timestamp too far from the server's clock: check the server's time (NTP)")
    record("GET", "verified", remote_addr=remote_addr)
    return Answer(200, echostr)


def handle_message(args: dict, body: bytes, remote_addr: str) -> Answer:
    """A pushed event or message (POST): authenticate, decrypt, deduplicate, dispatch, reply."""
    channel = channel_config.load()
    if channel is None or channel.wx_type != CHANNEL_MP or not channel.wx_token:
        record("POST", "not_configured", remote_addr=remote_addr)
        return Answer(404, "No WeChat Official Account is configured on this service yet.")
    encrypted = args.get("encrypt_type", "raw").lower() == "aes"
    mode = "aes" if encrypted else "plain"
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")

    def refuse(status: int, outcome: str, text: str, detail: str = "") -> Answer:
        record("POST", outcome, mode=mode, remote_addr=remote_addr, detail=detail or text)
        return Answer(status, text)

    if not (timestamp and nonce):
        return refuse(400, "missing_parameters", "timestamp and nonce are required")
    # Plaintext requests are authenticated by `signature`; encrypted ones by `msg_signature` over
    # the ciphertext (checked while decrypting below). A plain signature alone never admits them.
    if not encrypted and not check_signature(channel.wx_token, args.get("signature", ""), timestamp, nonce):
        return refuse(403, "bad_signature", "signature mismatch: check the Token")
    try:
        outer = parse_message(body)
    except XMLMessageError:
        return refuse(400, "malformed", "the body is not a WeChat XML message")
    key_label = None
    crypto = None
    if encrypted:
        if not channel.wx_encoding_aes_key:
            return refuse(400, "no_aes_key", "an encrypted message arrived but no EncodingAESKey is configured here")
        try:
            crypto = MessageCrypto(channel.wx_token, channel.wx_encoding_aes_key, channel.wx_app_id,
                                   channel.wx_previous_encoding_aes_key)
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
    if not _fresh_timestamp(timestamp):
        return refuse(403, "stale_timestamp", "timestamp too far from the server's clock")
    if not _remember_nonce(nonce):
        return refuse(403, "replayed_nonce", "this nonce was already used: the request is a replay")

    reply = _dispatch(message, channel)
    record("POST", "ok", mode=mode, remote_addr=remote_addr,
            detail=f"{message.get('MsgType', '?')}/{message.get('Event', '')}".rstrip("/"))
    if not reply:
        return Answer(200, "success")
    if crypto is not None:
        return Answer(200, crypto.encrypt_reply(reply, str(int(time.time())), nonce, key=key_label), xml=True)
    return Answer(200, reply, xml=True)


def _dedupe_key(message: dict) -> str:
    if message.get("MsgId"):
        return "msg:" + message["MsgId"]
    return "evt:{}:{}:{}".format(message.get("FromUserName", ""), message.get("CreateTime", ""), message.get("Event", ""))


def _dispatch(message: dict, channel) -> str | None:
    """Run the message's handler once per WeChat event, even when WeChat retries it."""
    key = _dedupe_key(message)[:200]
    existing = db.session.scalar(select(CallbackEvent).where(CallbackEvent.dedupe_key == key))
    if existing is not None:
        return existing.reply
    try:
        with db.transaction() as session:
            session.add(CallbackEvent(dedupe_key=key))
    except IntegrityError:
        # A retry arriving while the first delivery is still being handled: answer it plainly.
        return None
    handler = handlers.find(message)
    if handler is None:
        return None
    try:
        content = handler(message, channel)
    except Exception:
        log.exception("callback handler for %s/%s failed", message.get("MsgType"), message.get("Event"))
        # Let WeChat's retry run the handler again.
        with db.transaction() as session:
            session.execute(delete(CallbackEvent).where(CallbackEvent.dedupe_key == key))
        return None
    if not content:
        return None
    reply = build_text_reply(message.get("FromUserName", ""), message.get("ToUserName", ""), content, int(time.time()))
    with db.transaction() as session:
        session.execute(CallbackEvent.__table__.update().where(CallbackEvent.dedupe_key == key).values(reply=reply))
    return reply


def recent_attempts(limit: int = 20) -> list[CallbackAttempt]:
    """The latest callback requests and their outcomes, newest first."""
    return list(db.session.scalars(select(CallbackAttempt).order_by(CallbackAttempt.at.desc(), CallbackAttempt.id.desc()).limit(limit)))


def last_verification() -> CallbackAttempt | None:
    """The latest URL verification request (GET), whatever its outcome."""
    return db.session.scalar(
        select(CallbackAttempt).where(CallbackAttempt.kind == "verification")
        .order_by(CallbackAttempt.at.desc(), CallbackAttempt.id.desc()).limit(1)
    )


def purge_old() -> None:
    """Forget nonces older than the clock-skew window, events older than a day, and old attempts."""
    now = utcnow()
    with db.transaction() as session:
        session.execute(delete(CallbackNonce).where(CallbackNonce.seen_at < now - timedelta(seconds=2 * MAX_CLOCK_SKEW)))
        session.execute(delete(CallbackEvent).where(CallbackEvent.received_at < now - timedelta(days=1)))
        keep = select(CallbackAttempt.id).order_by(CallbackAttempt.id.desc()).limit(ATTEMPTS_KEPT).subquery()
        session.execute(delete(CallbackAttempt).where(CallbackAttempt.id.not_in(select(keep.c.id))))
