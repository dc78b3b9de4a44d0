"""The WeCom application's callback: WeCom's URL check and its encrypted pushes.

WeCom encrypts everything its 接收消息 server receives (there is no plaintext mode), with the
application's Token and EncodingAESKey and the CorpID as receiveid (PROTOCOL.md section 5):

- the URL check (GET) carries ``msg_signature`` over (Token, timestamp, nonce, echostr) and an
  encrypted ``echostr``; the answer is its plaintext and nothing else;
- a push (POST) is ``<xml><ToUserName/><Encrypt/><AgentID/></xml>`` with ``msg_signature`` over the
  ``Encrypt`` payload.

The guards are the Official Account callback's (:mod:`webapp.callback.services`): the timestamp
window, each (timestamp, nonce) used once, GET or POST, WeCom's retries of one event handled once,
and every outcome recorded for the set-up wizard (``channel`` "qywx" in the attempt log). Nothing
here raises to the route.
"""
from __future__ import annotations

import logging
import time

from webapp import channel as channel_config
from webapp import metrics
from webapp.callback import store
from webapp.callback.services import (Answer, CheckedChannel, admit, dispatch, fresh_timestamp, record, replay_key,
                                      with_channel)
from webapp.models import CHANNEL_QYWX, utcnow
from webapp.wechat import MessageCrypto, check_msg_signature, parse_message
from webapp.wechat.errors import CryptoError, InvalidSignature, ReceiveIdMismatch, XMLMessageError

log = logging.getLogger(__name__)

#: The attempt log's mode for WeCom requests: always encrypted.
MODE = "aes"
#: Events counted under their own name in ``weixin_qy_callback_events_total``; any other event is "event".
COUNTED_EVENTS = frozenset({"enter_agent", "subscribe", "unsubscribe", "click", "view", "location"})
CONTACT_CHANGES = frozenset({"create_user", "update_user", "delete_user"})

NOT_CONFIGURED = ("No WeCom application with a 接收消息 server (Token and EncodingAESKey) is configured on this "
                  "service yet: finish the set-up first.")


def _record(method: str, outcome: str, remote_addr: str, detail: str = "") -> None:
    record(method, outcome, mode=MODE, remote_addr=remote_addr, detail=detail, channel=CHANNEL_QYWX)


def draft_cryptos() -> list[MessageCrypto]:
    """The crypto of each open WeCom wizard draft with a Token, an EncodingAESKey and a CorpID.

    WeCom checks the URL when the administrator presses Save on its 设置API接收 page, which the wizard
    asks for before its answers are written as the configuration.
    """
    from webapp.setup.drafts import open_qy_servers

    found = []
    try:
        servers = open_qy_servers()
    except Exception:  # the wizard's bookkeeping must never break WeCom's check of the saved configuration
        log.exception("could not read the set-up wizard's drafts")
        return []
    for token, key, corpid in servers:
        try:
            found.append(MessageCrypto(token, key, corpid))
        except CryptoError:
            continue  # a malformed draft answer: the wizard refuses it before the URL is tested anyway
    return found


def _configured_crypto(configured) -> MessageCrypto | None:
    return configured.qy_crypto if configured is not None and configured.wx_type == CHANNEL_QYWX else None


def _signed_echostr(crypto: MessageCrypto, signature: str, timestamp: str, nonce: str, echostr: str) -> str | None:
    """The echostr as WeCom signed it, or None when the signature is not this application's.

    A ``+`` of the Base64 echostr sent without percent-encoding arrives as a blank: it is read back.
    """
    for candidate in dict.fromkeys((echostr, echostr.replace(" ", "+"))):
        if check_msg_signature(crypto.token, signature, timestamp, nonce, candidate):
            return candidate
    return None


def verify_url(args, remote_addr: str) -> Answer:
    """WeCom's URL check (GET): the decrypted ``echostr``, exactly, when the signature is right.

    The signature may be made with the configured Token or with the Token of an administrator's open
    WeCom wizard draft (see :func:`draft_cryptos`).
    """
    crypto = _configured_crypto(channel_config.load())
    drafts = None if crypto else draft_cryptos()
    if crypto is None and not drafts:
        _record("GET", "not_configured", remote_addr)
        return Answer(404, NOT_CONFIGURED)
    signature, timestamp, nonce = args.get("msg_signature", ""), args.get("timestamp", ""), args.get("nonce", "")
    echostr = args.get("echostr", "")
    if not (signature and timestamp and nonce and echostr):
        _record("GET", "missing_parameters", remote_addr)
        return Answer(400, "msg_signature, timestamp, nonce and echostr are required")
    matched, signed = None, None
    for candidate in [crypto] if crypto else []:
        signed = _signed_echostr(candidate, signature, timestamp, nonce, echostr)
        matched = candidate if signed else None
    via_draft = False
    if matched is None:
        for candidate in drafts if drafts is not None else draft_cryptos():
            signed = _signed_echostr(candidate, signature, timestamp, nonce, echostr)
            if signed:
                matched, via_draft = candidate, True
                break
    if matched is None:
        _record("GET", "bad_signature", remote_addr,
                "the msg_signature does not match the Token configured here"
                + (" nor the Token of the set-up wizard's draft" if drafts or via_draft else ""))
        return Answer(403, "msg_signature mismatch: the Token on WeCom's 设置API接收 page differs from this service's")
    if not fresh_timestamp(timestamp):
        _record("GET", "stale_timestamp", remote_addr, f"timestamp {timestamp[:20]}")
        return Answer(403, "timestamp too far from the server's clock: check the server's time (NTP)")
    try:
        plaintext, _label = matched.decrypt(signed)
    except ReceiveIdMismatch:
        _record("GET", "wrong_corpid", remote_addr, "the echostr was encrypted for another CorpID")
        return Answer(403, "the echostr was encrypted for another CorpID: check the CorpID")
    except CryptoError:
        _record("GET", "decrypt_failed", remote_addr, "the echostr does not decrypt with the EncodingAESKey")
        return Answer(400, "the echostr cannot be decrypted: check the EncodingAESKey")
    with store.ledger() as ledger:
        fresh = ledger.consume(replay_key(timestamp, nonce), utcnow())
    if not fresh:
        _record("GET", "replayed_nonce", remote_addr, "this timestamp and nonce were already used")
        return Answer(403, "this timestamp and nonce were already used: the request is a replay")
    _record("GET", "verified", remote_addr, "signed with the Token of the set-up wizard's draft" if via_draft else "")
    return Answer(200, plaintext)


def handle_message(args, body: bytes, remote_addr: str) -> Answer:
    """An encrypted push (POST): authenticate, decrypt, deduplicate, dispatch, answer ``success``.

    Its database work runs on one connection of its own, as the Official Account's does.
    """
    with store.ledger() as ledger:
        return with_channel(ledger, lambda checked: _handle_message(ledger, checked, args, body, remote_addr))


def _handle_message(ledger: store.Ledger, checked: CheckedChannel, args, body: bytes, remote_addr: str) -> Answer:
    configured = checked.channel
    crypto = _configured_crypto(configured)
    if crypto is None:
        checked.confirm()
        _record("POST", "not_configured", remote_addr)
        return Answer(404, NOT_CONFIGURED)

    def refuse(status: int, outcome: str, text: str) -> Answer:
        checked.confirm()
        _record("POST", outcome, remote_addr, text)
        return Answer(status, text)

    signature, timestamp, nonce = args.get("msg_signature", ""), args.get("timestamp", ""), args.get("nonce", "")
    if not (signature and timestamp and nonce):
        return refuse(400, "missing_parameters", "msg_signature, timestamp and nonce are required")
    try:
        outer = parse_message(body)
    except XMLMessageError:
        return refuse(400, "malformed", "the body is not a WeCom XML message")
    if not outer.get("Encrypt"):
        return refuse(400, "malformed", "the body has no Encrypt element: WeCom encrypts every message")
    try:
        plain, key_label = crypto.decrypt_message(signature, timestamp, nonce, outer["Encrypt"])
        message = parse_message(plain.encode("utf-8"))
    except InvalidSignature:
        return refuse(403, "bad_signature", "msg_signature mismatch: check the Token")
    except ReceiveIdMismatch:
        return refuse(403, "wrong_corpid", "the message was encrypted for another CorpID")
    except (CryptoError, XMLMessageError):
        return refuse(400, "decrypt_failed", "the message cannot be decrypted: check the EncodingAESKey")
    if not fresh_timestamp(timestamp):
        return refuse(403, "stale_timestamp", "timestamp too far from the server's clock")
    kind, key = event_kind(message), dedupe_key(message)
    admission, stored_reply = admit(ledger, checked, timestamp, nonce, key, MODE, remote_addr, kind, CHANNEL_QYWX)
    metrics.callback_request("POST", {store.NEW: "ok", store.REPLAY: "replayed_nonce"}.get(admission, admission),
                             CHANNEL_QYWX)
    if admission == store.REPLAY:
        return Answer(403, "this timestamp and nonce were already used: the request is a replay")
    if admission == store.NEW:
        metrics.qy_callback_event(kind)
    reply = stored_reply if admission == store.DUPLICATE else dispatch(ledger, message, configured, key)
    if not reply:
        return Answer(200, "success")
    # WeCom takes encrypted replies only, under the key that decrypted the message.
    return Answer(200, crypto.encrypt_reply(reply, str(int(time.time())), nonce, key=key_label), xml=True)


def event_kind(message: dict) -> str:
    """What a push is, from a fixed set (a metric label): a contact change, a named event, "event" or "message"."""
    if message.get("MsgType", "").lower() != "event":
        return "message"
    event = message.get("Event", "").lower()
    if event == "change_contact":
        change = message.get("ChangeType", "").lower()
        return change if change in CONTACT_CHANGES else "change_contact"
    return event if event in COUNTED_EVENTS else "event"


def dedupe_key(message: dict) -> str:
    """What identifies one WeCom event across WeCom's retries of it (kept apart from the Official Account's).

    Messages carry MsgId. Contact changes all come from ``sys``: the change and the member it is about
    keep two changes of one second apart.
    """
    msg_id = message.get("MsgId")
    if msg_id:
        key = f"qy:msg:{message.get('AgentID', '')}:{msg_id}"
    else:
        key = "qy:evt:" + ":".join(message.get(name, "") for name in (
            "AgentID", "FromUserName", "CreateTime", "Event", "ChangeType", "UserID", "NewUserID", "EventKey"))
    return key[:200]
