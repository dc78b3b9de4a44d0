"""The simulated WeChat calling the service: the URL check of the server configuration, and
pushing events and messages to the callback URL the way WeChat does (PROTOCOL.md sections 3-4).

**Server configuration** (开发 → 基本配置 → 服务器配置): URL, Token, EncodingAESKey, mode
(``plain`` 明文, ``compatible`` 兼容, ``safe`` 安全) and an enabled flag. Submitting it sends the
signed GET check (``signature``, ``timestamp``, ``nonce``, ``echostr``, with
``signature = sign(token, timestamp, nonce)``) and keeps the new configuration only when the
answer is HTTP 200 with a body equal to ``echostr``, byte for byte; otherwise the previous
configuration stays and the outcome says why, in WeChat's words where they are known
(:data:`CHECK_MESSAGES`). The simulator does not require port 80/443 as WeChat does: tests serve
the service on ephemeral ports.

**Pushes** (:func:`push_event`): ``<xml>`` with ToUserName = the account's original id,
FromUserName = the openid, CreateTime = the simulated clock, then the event's fields. The query
carries ``signature``, ``timestamp``, ``nonce``, ``openid`` and, in compatible/safe mode,
``encrypt_type=aes`` and ``msg_signature = sign(token, timestamp, nonce, Encrypt)``. The body is
the plain XML (plain mode), the plain fields plus ``<Encrypt>`` (compatible) or only
``<ToUserName>`` and ``<Encrypt>`` (safe), with ``Encrypt = MessageCrypto(token, key,
appid).encrypt(plain XML)``.

Each try waits at most the ``push_timeout`` setting (5 s, like WeChat); up to
:data:`PUSH_TRIES` tries in all, stopping at the first 2xx answer. Every try POSTs the **same
body** (same CreateTime, MsgId and Encrypt), so the service can deduplicate, but carries a
**fresh nonce and timestamp** with signatures computed for them: the service remembers nonces
to refuse replays, and a retry of WeChat's is not a replay. The query ``timestamp`` follows the
real clock rather than the simulated one, so that moving the simulated clock forward (to age
tokens) does not make the service refuse pushes as stale; CreateTime follows the simulated clock.

The answer is read as WeChat reads it: empty or ``success`` shows nothing; a passive reply (plain
XML, or in compatible/safe mode an ``<Encrypt>`` envelope whose MsgSignature verifies and which
decrypts with the key) shows its content in the chat as a message from the account; anything else,
or no 2xx answer after the last try, shows :data:`~webapp.simulator.world.NOTICE_UNAVAILABLE`.
Replies to events nobody is looking at (unsubscribe, TEMPLATESENDJOBFINISH, ...) are judged and
logged but shown to no one, as on a real phone.

**Threads.** The HTTP calls are made with ``requests`` from the thread handling the simulator's
own request, and the world's lock is not held meanwhile. When the simulator is served by the very
app it calls back into (the main app with the simulator enabled), the server must handle requests
in several threads, as ``flask run`` and werkzeug's threaded server do: a single-threaded server
would deadlock, the push waiting for an answer the same thread would have to give.
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass, field, fields as dataclass_fields
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

import requests

from webapp.wechat import (CryptoError, MessageCrypto, XMLMessageError, build_xml,
                           check_msg_signature, parse_message, sign,
                           validate_encoding_aes_key, validate_token)
from webapp.simulator.world import NOTICE_QR_EXPIRED, NOTICE_UNAVAILABLE, SERVER_MODES, World

#: Tries of one push in all (the first one and two retries), as WeChat makes them.
PUSH_TRIES = 3
#: Answers longer than this are cut when read (WeChat's replies are a few kilobytes at most).
MAX_ANSWER_BYTES = 64 * 1024
#: How much of an answer the push log keeps.
EXCERPT_CHARS = 600
#: The User-Agent WeChat's callback requests carry.
USER_AGENT = "Mozilla/4.0"
#: Events whose replies no one sees: the person left, or nobody was in the chat.
SILENT_EVENTS = frozenset({"unsubscribe", "TEMPLATESENDJOBFINISH", "MASSSENDJOBFINISH",
                           "LOCATION", "VIEW"})
#: What the MP console says for each outcome of the URL check. The timeout and Token wordings
#: are WeChat's; the others are close paraphrases of its console.
CHECK_MESSAGES = {
    "ok": "提交成功",
    "timeout": "请求URL超时",
    "connect_error": "系统发生错误，请稍后重试（无法连接URL）",
    "http_status": "Token验证失败",
    "wrong_echo": "Token验证失败",
    "invalid_url": "URL必须以http://或https://开头",
    "invalid_token": "Token必须为英文或数字，长度为3-32字符",
    "invalid_key": "EncodingAESKey长度必须为43位（英文或数字）",
    "invalid_mode": "请选择消息加解密方式",
}
#: How long a text a person can send is (WeChat's input box takes about this much).
TEXT_MAX_CHARS = 2000

class InvalidServer(ValueError):
    """A server form the console (MP or WeCom) would not save: ``reason`` is a key of its CHECK_MESSAGES."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class PushTry:
    """One HTTP POST of a push and what came back."""

    number: int
    timestamp: str
    nonce: str
    query: dict[str, str]
    at: float  # real time the try started
    offset_ms: int = 0  # when it started, counted from the push's first try
    elapsed_ms: int = 0
    status: int | None = None  # HTTP status, or None when there was no answer
    error: str | None = None  # "timeout", "connect_error" or "error" when there was no answer
    detail: str = ""
    answer: str = ""  # the start of the answer's body


@dataclass
class PushResult:
    """A push of one event or message to the service, with every try and how it ended.

    ``outcome`` is "disabled" (no enabled server configuration: nothing was sent), "success"
    (empty answer or ``success``), "reply" (a passive reply) or "unavailable" (WeChat's notice);
    a scan of an expired QR code (:func:`scan_qrcode`) gives "expired", with nothing sent.
    ``reason`` says which case exactly: success, empty, reply, timeout, connect_error, error,
    http_status, junk, not_plain, not_encrypted, bad_signature, undecryptable, wrong_address,
    disabled, qr_expired. ``shown`` is what the person's phone showed because of it (None for
    nothing).
    """

    openid: str
    msg_type: str
    event: str
    url: str
    mode: str
    create_time: int
    msg_id: str | None
    xml: str  # the plain message
    body: str  # what was POSTed (identical on every try)
    time: float  # simulated time of the push
    id: int | None = None  # assigned when the world records it
    tries: list[PushTry] = field(default_factory=list)
    outcome: str = "disabled"
    reason: str = "disabled"
    detail: str = ""
    encrypted_reply: bool = False
    reply: dict[str, str] | None = None  # the passive reply's fields (decrypted)
    shown: str | None = None
    elapsed_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


# ---- helpers ------------------------------------------------------------------------------------

def _nonce() -> str:
    """A nonce shaped like WeChat's: 9 or 10 digits."""
    return str(100000000 + secrets.randbelow(3900000000))


def _echostr() -> str:
    """An echostr shaped like WeChat's: a 19-digit number."""
    return str(10**18 + secrets.randbelow(9 * 10**18))


def simulator_session() -> requests.Session:
    """An HTTP session that calls the service as WeChat's servers do (their User-Agent, no proxy)."""
    session = requests.Session()
    # The service is usually on this machine: a proxy from the environment must not get in between.
    session.trust_env = False
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "*/*", "Pragma": "no-cache"})
    return session


@dataclass
class _Answer:
    status: int | None
    body: bytes
    elapsed_ms: int
    error: str | None
    detail: str


def _fetch(session: requests.Session, method: str, url: str, params: list[tuple[str, str]],
           timeout: float, data: bytes | None = None) -> _Answer:
    """Make one request with WeChat's patience: ``timeout`` for the whole answer, not per read."""
    started = time.monotonic()
    headers = {"Content-Type": "text/xml"} if data is not None else {}
    try:
        with session.request(method, url, params=params, data=data, headers=headers,
                             timeout=(timeout, timeout), stream=True,
                             allow_redirects=False) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(8192):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER_BYTES or time.monotonic() - started > timeout:
                    break
            elapsed = time.monotonic() - started
            if elapsed > timeout:
                return _Answer(None, b"", int(elapsed * 1000), "timeout",
                               f"the answer took longer than {timeout:g} s")
            return _Answer(response.status_code, b"".join(chunks)[:MAX_ANSWER_BYTES],
                           int(elapsed * 1000), None, "")
    except requests.Timeout:
        error, detail = "timeout", f"no answer within {timeout:g} s"
    except requests.ConnectionError as exc:
        if "timed out" in str(exc).lower():  # a read timeout while the body trickled in
            error, detail = "timeout", f"no complete answer within {timeout:g} s"
        else:
            error, detail = "connect_error", _reason(exc)
    except requests.RequestException as exc:
        error, detail = "error", _reason(exc)
    return _Answer(None, b"", int((time.monotonic() - started) * 1000), error, detail)


def _reason(exc: Exception) -> str:
    """The innermost useful text of a requests exception (e.g. "Connection refused")."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if match:
        return match.group(1).strip()
    return text[:200]


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _excerpt(body: bytes) -> str:
    return body[:EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]


# ---- server configuration -----------------------------------------------------------------------

def validate_server(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a server configuration as the MP console's form does; return it cleaned up."""
    url = str(config.get("url") or "").strip()
    token = str(config.get("token") or "").strip()
    key = str(config.get("encoding_aes_key") or "").strip()
    mode = str(config.get("mode") or "plain").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidServer("invalid_url", "the URL must start with http:// or https://")
    if not validate_token(token):
        raise InvalidServer("invalid_token", "the Token must be 3 to 32 letters or digits")
    if mode not in SERVER_MODES:
        raise InvalidServer("invalid_mode", f"mode must be one of {', '.join(SERVER_MODES)}")
    if (key or mode != "plain") and not validate_encoding_aes_key(key):
        raise InvalidServer("invalid_key", "the EncodingAESKey must be 43 letters or digits")
    return {"url": url, "token": token, "encoding_aes_key": key, "mode": mode,
            "enabled": bool(config.get("enabled", True))}


def check_url(url: str, token: str, timeout: float, now: float | None = None) -> dict[str, Any]:
    """Send WeChat's signed GET to ``url`` and judge the answer; return the check's outcome."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = _nonce()
    echostr = _echostr()
    params = [("signature", sign(token, timestamp, nonce)), ("timestamp", timestamp),
              ("nonce", nonce), ("echostr", echostr)]
    with simulator_session() as session:
        answer = _fetch(session, "GET", url, params, timeout)
    if answer.error == "timeout":
        reason, detail = "timeout", answer.detail
    elif answer.error:
        reason, detail = "connect_error", f"could not connect: {answer.detail}"
    elif answer.status != 200:
        reason, detail = "http_status", f"the URL answered HTTP {answer.status}"
    elif answer.body != echostr.encode("ascii"):
        reason = "wrong_echo"
        detail = (f"the answer was not the echostr {echostr}"
                  f" (got {answer.body[:80].decode('utf-8', errors='replace')!r})")
    else:
        reason, detail = "ok", "the URL answered the echostr"
    return {
        "ok": reason == "ok",
        "reason": reason,
        "message": CHECK_MESSAGES[reason],
        "detail": detail,
        "url": url,
        "status": answer.status,
        "elapsed_ms": answer.elapsed_ms,
        "echostr": echostr,
        "answer": _excerpt(answer.body),
        "time": time.time() if now is None else now,
    }


def configure_server(world: World, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Submit the server configuration like the MP console: check the URL, keep it if it passes.

    ``changes`` may hold url, token, encoding_aes_key, mode, enabled; fields left out keep their
    current values, and ``enabled`` defaults to true (submitting a configuration means using it).
    A change of ``enabled`` alone turns pushing on or off without a check (启用/停用).
    Returns the check's outcome plus ``server``, the configuration in force afterwards. Input
    the console would refuse raises :class:`InvalidServer` (a ValueError) and changes nothing.
    """
    fields = {"url", "token", "encoding_aes_key", "mode", "enabled"}
    unknown = set(changes) - fields
    if unknown:
        raise ValueError(f"unknown server fields: {', '.join(sorted(unknown))}")
    if "enabled" in changes and not isinstance(changes["enabled"], bool):
        raise ValueError("enabled must be true or false")
    if set(changes) == {"enabled"}:
        server = world.set_mp_server_enabled(changes["enabled"])
        state = world.get_mp_server()
        return {"ok": True, "reason": "toggled", "message": "", "detail":
                "enabled" if server["enabled"] else "disabled", "server": server,
                "last_check": state["last_check"]}
    current = world.get_mp_server()["server"]
    candidate = validate_server({**current, "enabled": True, **changes})
    context = world.push_context()
    check = check_url(candidate["url"], candidate["token"], context["timeout"],
                      context["real_now"])
    check["time"] = context["now"]
    server = world.apply_mp_server(candidate if check["ok"] else None, check)
    return {**check, "server": server}


def refuse_server(world: World, error: InvalidServer, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Record a form the console refused as the last check (the configuration is unchanged)."""
    check = {"ok": False, "reason": error.reason, "message": CHECK_MESSAGES[error.reason],
             "detail": error.detail, "url": str(changes.get("url") or ""), "status": None,
             "elapsed_ms": 0, "echostr": "", "answer": "", "time": world.now()}
    server = world.apply_mp_server(None, check)
    return {**check, "server": server}


# ---- pushes -------------------------------------------------------------------------------------

def _judge_reply(body: bytes, server: dict[str, Any], appid: str, openid: str,
                 original_id: str) -> tuple[str, str, dict[str, str] | None, bool]:
    """Read a 2xx answer as WeChat does: (reason, detail, reply fields, was it encrypted)."""
    text = body.strip()
    if not text:
        return "empty", "an empty answer: nothing to show", None, False
    if text == b"success":
        return "success", "success: nothing to show", None, False
    try:
        outer = parse_message(body)
    except XMLMessageError as exc:
        return "junk", f"not a passive reply ({exc})", None, False
    mode = server["mode"]
    encrypted = "Encrypt" in outer
    if encrypted:
        if mode == "plain":
            return "not_plain", "an encrypted reply, but the account is in plain mode", None, True
        enc = outer.get("Encrypt", "")
        if not check_msg_signature(server["token"], outer.get("MsgSignature", ""),
                                   outer.get("TimeStamp", ""), outer.get("Nonce", ""), enc):
            return ("bad_signature", "the reply's MsgSignature is not sign(token, TimeStamp, "
                    "Nonce, Encrypt)", None, True)
        try:
            plain, _label = MessageCrypto(server["token"], server["encoding_aes_key"],
                                          appid).decrypt(enc)
            fields = parse_message(plain)
        except (CryptoError, XMLMessageError) as exc:
            return ("undecryptable", f"the reply does not decrypt with the account's key "
                    f"({type(exc).__name__})", None, True)
    else:
        if mode == "safe":
            return ("not_encrypted", "a plain reply, but safe mode takes encrypted replies only",
                    None, False)
        fields = outer
    msg_type = fields.get("MsgType", "")
    if not msg_type:
        return "junk", "the reply has no MsgType", None, encrypted
    if fields.get("ToUserName") != openid or fields.get("FromUserName") != original_id:
        return ("wrong_address", f"a reply must go from {original_id} to {openid}; this one "
                f"goes from {fields.get('FromUserName')!r} to {fields.get('ToUserName')!r}",
                None, encrypted)
    return "reply", f"a passive {msg_type} reply", fields, encrypted


def _reply_text(fields: dict[str, str]) -> str:
    """What the phone shows for a passive reply."""
    msg_type = fields.get("MsgType", "")
    if msg_type == "text":
        return fields.get("Content", "")
    if msg_type == "news":
        title = fields.get("Articles.item.Title", "")
        return f"[news] {title}".strip()
    return f"[{msg_type}]"


def build_message(world_context: dict[str, Any], openid: str, fields: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """The plain message as a mapping: ToUserName, FromUserName, CreateTime, then ``fields``
    (which may override any of the three)."""
    message: dict[str, Any] = {
        "ToUserName": world_context["original_id"],
        "FromUserName": openid,
        "CreateTime": int(world_context["now"]),
    }
    message.update(fields)
    return message


def push_event(world: World, openid: str, fields: Mapping[str, Any]) -> PushResult:
    """Push one message or event from ``openid`` to the service, as WeChat does; see the module.

    ``fields`` follow ToUserName, FromUserName and CreateTime in the XML, e.g.
    ``{"MsgType": "event", "Event": "SCAN", "EventKey": "42", "Ticket": "..."}``. Numbers are
    written bare, text as CDATA. The push is recorded in the world (unless the server
    configuration is off, when nothing is sent) and what it made the phone show is added to the
    person's chat. Never raises for a misbehaving service: that is what the result describes.
    """
    if not isinstance(openid, str) or not openid:
        raise ValueError("openid is required")
    if not isinstance(fields, Mapping):
        raise ValueError("fields must be a mapping of element names to values")
    context = world.push_context()
    server = context["server"]
    message = build_message(context, openid, fields)
    try:
        xml = build_xml(message)
    except XMLMessageError as exc:
        raise ValueError(f"cannot build the message: {exc}") from None
    result = PushResult(
        openid=openid,
        msg_type=str(message.get("MsgType", "")),
        event=str(message.get("Event", "")),
        url=server["url"],
        mode=server["mode"],
        create_time=_int(message["CreateTime"], int(context["now"])),
        msg_id=None if message.get("MsgId") is None else str(message["MsgId"]),
        xml=xml,
        body="",
        time=context["now"],
    )
    if not server["enabled"] or not server["url"]:
        result.detail = "the server configuration is off: nothing was sent"
        return result

    token = server["token"]
    encrypted_mode = server["mode"] != "plain"
    encrypt = ""
    if encrypted_mode:
        encrypt = MessageCrypto(token, server["encoding_aes_key"], context["appid"]).encrypt(xml)
        if server["mode"] == "compatible":
            result.body = build_xml({**message, "Encrypt": encrypt})
        else:
            result.body = build_xml({"ToUserName": message["ToUserName"], "Encrypt": encrypt})
    else:
        result.body = xml
    data = result.body.encode("utf-8")

    started = time.monotonic()
    answer: _Answer | None = None
    with simulator_session() as session:
        for number in range(1, PUSH_TRIES + 1):
            timeout = world.push_context()["timeout"]
            timestamp = str(int(world.real_now()))
            nonce = _nonce()
            query = {"signature": sign(token, timestamp, nonce), "timestamp": timestamp,
                     "nonce": nonce, "openid": openid}
            if encrypted_mode:
                query["encrypt_type"] = "aes"
                query["msg_signature"] = sign(token, timestamp, nonce, encrypt)
            attempt = PushTry(number=number, timestamp=timestamp, nonce=nonce, query=query,
                              at=time.time(),
                              offset_ms=int((time.monotonic() - started) * 1000))
            answer = _fetch(session, "POST", server["url"], list(query.items()), timeout, data)
            attempt.elapsed_ms = answer.elapsed_ms
            attempt.status = answer.status
            attempt.error = answer.error
            attempt.detail = answer.detail or (
                f"HTTP {answer.status}" if answer.status is not None else "")
            attempt.answer = _excerpt(answer.body)
            result.tries.append(attempt)
            if answer.status is not None and 200 <= answer.status < 300:
                break
    result.elapsed_ms = int((time.monotonic() - started) * 1000)

    # PUSH_TRIES is at least 1, so the loop ran; the assert only tells type checkers (harmless under -O).
    assert answer is not None  # nosec B101
    if answer.status is not None and 200 <= answer.status < 300:
        reason, detail, reply, was_encrypted = _judge_reply(
            answer.body, server, context["appid"], openid, context["original_id"])
        result.encrypted_reply = was_encrypted
        result.reply = reply
    elif answer.status is not None:
        reason, detail = "http_status", f"HTTP {answer.status} after {len(result.tries)} tries"
    else:
        reason = answer.error or "error"
        detail = f"{answer.detail} (after {len(result.tries)} tries)"
    result.reason = reason
    result.detail = detail
    if reason in ("success", "empty"):
        result.outcome = "success"
    elif reason == "reply":
        result.outcome = "reply"
    else:
        result.outcome = "unavailable"

    chat: dict[str, Any] | None = None
    if result.event not in SILENT_EVENTS:
        if result.outcome == "reply" and reply is not None:
            result.shown = _reply_text(reply)
            chat = {"kind": "reply", "text": result.shown, "msg_type": reply.get("MsgType", ""),
                    "encrypted": was_encrypted}
        elif result.outcome == "unavailable":
            result.shown = NOTICE_UNAVAILABLE
            chat = {"kind": "notice", "text": NOTICE_UNAVAILABLE, "reason": reason}
    recorded = world.record_push(result.to_dict(), chat)
    result.id = recorded["id"]
    return result


# ---- what a person does on the phone ------------------------------------------------------------

def _user(world: World, openid: str) -> dict[str, Any]:
    for user in world.describe()["mp"]["users"]:
        if user["openid"] == openid:
            return user
    raise ValueError(f"no WeChat user with openid {openid!r}")


def phone_send_text(world: World, openid: str, content: str) -> PushResult:
    """A follower types ``content`` into the account's chat: it shows as sent, then is pushed
    (MsgType text, Content, a fresh MsgId)."""
    user = _user(world, openid)
    if not user["following"]:
        raise ValueError("only followers can write to the account")
    if not isinstance(content, str) or not content.strip():
        raise ValueError("content is required")
    if len(content) > TEXT_MAX_CHARS:
        raise ValueError(f"content is longer than {TEXT_MAX_CHARS} characters")
    msg_id = world.next_user_msgid()
    world.add_chat(openid, "sent", text=content, msg_id=str(msg_id))
    return push_event(world, openid, {"MsgType": "text", "Content": content, "MsgId": msg_id})


def phone_subscribe(world: World, openid: str, event_key: str = "",
                    ticket: str | None = None) -> PushResult:
    """The person follows the account: they become a follower, then ``subscribe`` is pushed
    (EventKey empty for a plain follow; ``qrscene_...`` plus Ticket after scanning a QR code)."""
    user = _user(world, openid)
    if user["following"]:
        raise ValueError("already following the account")
    world.upsert_mp_user(openid, following=True)
    extra = {"scene": event_key.removeprefix("qrscene_")} if ticket else {}
    world.add_chat(openid, "event", event="subscribe", **extra)
    fields: dict[str, Any] = {"MsgType": "event", "Event": "subscribe", "EventKey": event_key}
    if ticket:
        fields["Ticket"] = ticket
    return push_event(world, openid, fields)


def phone_unsubscribe(world: World, openid: str) -> PushResult:
    """The person unfollows: they stop being a follower, then ``unsubscribe`` is pushed."""
    user = _user(world, openid)
    if not user["following"]:
        raise ValueError("not following the account")
    world.upsert_mp_user(openid, following=False)
    world.add_chat(openid, "event", event="unsubscribe")
    return push_event(world, openid, {"MsgType": "event", "Event": "unsubscribe",
                                      "EventKey": ""})


# ---- scanning the account's QR codes -------------------------------------------------------------

class UnknownQrCode(ValueError):
    """What was scanned is not a QR code the account created (WeChat would not treat it as one)."""


@dataclass
class ScanResult(PushResult):
    """The push a scan caused (or, for an expired code, the notice instead of one), plus the
    code that was scanned, how it was found ("ticket" or "url") and the scan's id in the log."""

    qrcode: dict[str, Any] | None = None
    by: str = "ticket"
    scan_id: int | None = None


def _public_qrcode(found: dict[str, Any]) -> dict[str, Any]:
    return {
        "ticket": found["ticket"],
        "url": found["url"],
        "scene": found["scene"],
        "action_name": found["action_name"],
        "permanent": found["expires_at"] is None,
        "created_at": found["created_at"],
        "expires_at": found["expires_at"],
        "expired": bool(found.get("expired")),
    }


def find_qrcode(world: World, ticket_or_url: str) -> dict[str, Any] | None:
    """The QR code that ``ticket_or_url`` names, as :meth:`World.find_ticket` gives it, or None.

    Takes the ticket, the content URL the service encoded (``http://weixin.qq.com/q/...``, also
    read with https), or a ``showqrcode?ticket=...`` image address; surrounding blanks and a
    URL-encoded ticket are forgiven, as a camera or a paste would produce them.
    """
    text = (ticket_or_url or "").strip() if isinstance(ticket_or_url, str) else ""
    if not text:
        return None
    candidates = [text]
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc:
        tickets = parse_qs(parts.query).get("ticket")
        if tickets:
            # A "+" left unencoded in the query reads as a blank.
            candidates += [tickets[0], tickets[0].replace(" ", "+")]
        other = "https" if parts.scheme == "http" else "http"
        candidates.append(other + text[len(parts.scheme):])
    elif "%" in text:
        candidates.append(unquote(text))
    for candidate in candidates:
        found = world.find_ticket(candidate)
        if found is not None:
            return found
    return None


def scan_qrcode(world: World, openid: str, ticket_or_url: str) -> ScanResult:
    """The person ``openid`` scans one of the account's QR codes with WeChat (PROTOCOL.md §3).

    ``ticket_or_url`` is the ticket or what the phone's camera read (the code's content URL).
    A code the account never created raises :class:`UnknownQrCode` (a ValueError). An expired
    temporary code pushes nothing: WeChat shows the person :data:`NOTICE_QR_EXPIRED`, which is
    added to their chat. Otherwise a person who does not follow the account follows it and
    ``subscribe`` is pushed with ``EventKey = "qrscene_" + scene`` and the Ticket; a follower's
    scan pushes ``SCAN`` with ``EventKey = scene`` (no prefix) and the Ticket. The phone shows
    the service's passive reply as for any push. Every scan is kept in the world's scan log.
    """
    user = _user(world, openid)
    if not isinstance(ticket_or_url, str) or not ticket_or_url.strip():
        raise ValueError("ticket or url is required")
    found = find_qrcode(world, ticket_or_url)
    if found is None:
        raise UnknownQrCode("not a QR code of the account: no code was created with this "
                            "ticket or URL")
    qrcode = _public_qrcode(found)
    by = "ticket" if ticket_or_url.strip() == found["ticket"] else "url"
    scene = str(found["scene"])
    was_following = bool(user["following"])
    if qrcode["expired"]:
        context = world.push_context()
        world.add_chat(openid, "notice", text=NOTICE_QR_EXPIRED, reason="qr_expired")
        result = ScanResult(
            openid=openid, msg_type="", event="", url=context["server"]["url"],
            mode=context["server"]["mode"], create_time=int(context["now"]), msg_id=None,
            xml="", body="", time=context["now"], outcome="expired", reason="qr_expired",
            detail="the temporary QR code has expired: WeChat tells the person and pushes "
                   "nothing", shown=NOTICE_QR_EXPIRED, qrcode=qrcode, by=by)
        event_key = ""
    else:
        if was_following:
            event_key = scene
            world.add_chat(openid, "event", event="SCAN", scene=scene)
            pushed = push_event(world, openid, {"MsgType": "event", "Event": "SCAN",
                                                "EventKey": event_key,
                                                "Ticket": found["ticket"]})
        else:
            event_key = "qrscene_" + scene
            pushed = phone_subscribe(world, openid, event_key, found["ticket"])
        result = ScanResult(**{f.name: getattr(pushed, f.name)
                               for f in dataclass_fields(PushResult)},
                            qrcode=qrcode, by=by)
    scan = world.record_scan({
        "openid": openid,
        "nickname": user["nickname"],
        "was_following": was_following,
        "ticket": found["ticket"],
        "url": found["url"],
        "scene": found["scene"],
        "action_name": found["action_name"],
        "by": by,
        "expired": qrcode["expired"],
        "event": result.event,
        "event_key": event_key,
        "outcome": result.outcome,
        "reason": result.reason,
        "detail": result.detail,
        "shown": result.shown,
        "push_id": result.id,
    })
    result.scan_id = scan["id"]
    return result
