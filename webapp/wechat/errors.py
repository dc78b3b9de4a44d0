"""Exceptions of the WeChat package and the errcode catalogue that turns failures into advice.

:func:`diagnose` maps an errcode answered by the Official Account API (channel ``"mp"``) or the
WeCom API (channel ``"qywx"``) to a :class:`Diagnosis`: whether retrying later can help, what kind of
problem it is, and a sentence telling an administrator what to do. :func:`diagnose_transport` does
the same for network failures.

Sentences are gettext message ids marked with :func:`N_` and extracted into the service's catalogue
(``make translations``); :meth:`Diagnosis.message` translates them with Python's ``gettext`` module
from the compiled catalogue, so this package stays free of Flask.
"""
from __future__ import annotations

import gettext
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import requests

from .http import redact

__all__ = [
    "WeChatError",
    "WeChatAPIError",
    "WeChatTransportError",
    "WeChatRequestError",
    "CryptoError",
    "InvalidSignature",
    "InvalidAESKey",
    "DecryptError",
    "BadPadding",
    "InvalidBase64",
    "IllegalBuffer",
    "ReceiveIdMismatch",
    "EncryptError",
    "XMLMessageError",
    "Diagnosis",
    "Sentence",
    "N_",
    "translate",
    "diagnose",
    "diagnose_transport",
    "classify_transport",
    "extract_ip",
    "catalogued_codes",
    "TRANSPORT_KINDS",
]

# --------------------------------------------------------------------------------------------------
# Exceptions
# --------------------------------------------------------------------------------------------------


class WeChatError(Exception):
    """Base class of every error raised by ``webapp.wechat``."""


class WeChatRequestError(WeChatError, ValueError):
    """A request refused locally before any call (e.g. more than 1000 WeCom recipients)."""


class WeChatAPIError(WeChatError):
    """WeChat answered with a non-zero errcode; ``diagnosis`` says what it means and what to do."""

    def __init__(self, errcode: int, errmsg: str, diagnosis: "Diagnosis | None" = None):
        self.errcode = errcode
        # errmsg is stored redacted: it ends up in logs, the database and API answers.
        self.errmsg = redact(errmsg)
        self.diagnosis = diagnosis if diagnosis is not None else diagnose(errcode, errmsg)
        super().__init__(f"WeChat errcode {errcode}: {self.errmsg}")

    @property
    def transient(self) -> bool:
        """True when trying again later (or after a token refresh) may succeed."""
        return self.diagnosis.transient

    @property
    def token_error(self) -> bool:
        """True when the access token was rejected and a fresh one should be fetched once."""
        return self.diagnosis.kind == "token"


#: Kinds of :class:`WeChatTransportError`.
TRANSPORT_KINDS = ("dns", "refused", "timeout", "tls", "connection", "http", "bad_response", "url")


class WeChatTransportError(WeChatError):
    """The call did not produce a WeChat answer: network failure, HTTP error status or non-JSON body."""

    def __init__(self, kind: str, detail: str = "", status: int | None = None):
        self.kind = kind
        self.status = status
        # Library messages quote the full URL, access_token included, so redact before storing.
        self.detail = redact(detail)[:500]
        self.diagnosis = diagnose_transport(self)
        label = f"http {status}" if kind == "http" and status is not None else kind
        super().__init__(f"WeChat transport error ({label}): {self.detail}" if self.detail else
                         f"WeChat transport error ({label})")

    @property
    def transient(self) -> bool:
        """True when the same call may succeed later."""
        return self.diagnosis.transient


class CryptoError(WeChatError):
    """Base of message signature/encryption errors; ``code`` is Tencent's crypto error code."""

    code = -40000

    def __init__(self, message: str = ""):
        super().__init__(message or self.__class__.__doc__.strip().splitlines()[0])


class InvalidSignature(CryptoError):
    """The signature does not match the Token and the message."""

    code = -40001


class InvalidAESKey(CryptoError):
    """The EncodingAESKey is not 43 letters/digits decoding to 32 bytes."""

    code = -40004


class ReceiveIdMismatch(CryptoError):
    """The message was encrypted for another AppID/CorpID."""

    code = -40005


class EncryptError(CryptoError):
    """The message could not be encrypted."""

    code = -40006


class DecryptError(CryptoError):
    """The encrypted payload could not be decrypted with the configured EncodingAESKey."""

    code = -40007


class BadPadding(DecryptError):
    """The decrypted payload has invalid padding (wrong key or tampered ciphertext)."""

    code = -40007


class InvalidBase64(DecryptError):
    """The encrypted payload is not valid Base64."""

    code = -40010


class IllegalBuffer(DecryptError):
    """The decrypted payload does not have WeChat's layout (length field, UTF-8 text)."""

    code = -40008


class XMLMessageError(WeChatError):
    """The body is not a well-formed, flat WeChat XML message within the size limit."""

    code = -40002

    def __init__(self, message: str = ""):
        super().__init__(message or "The body is not an acceptable WeChat XML message")


# --------------------------------------------------------------------------------------------------
# Messages: gettext ids translated through the service's compiled catalogue
# --------------------------------------------------------------------------------------------------

#: The compiled catalogues (``<lang>/LC_MESSAGES/messages.mo``), shared with the web pages.
TRANSLATIONS_DIR = Path(__file__).resolve().parent.parent / "translations"


def N_(message_id: str) -> str:
    """Mark ``message_id`` for extraction into the catalogue; it is translated where it is shown."""
    return message_id


def _language(lang: str | None) -> str:
    """The catalogue language of a locale name: 'zh', 'zh-CN', 'zh_Hans_CN' give 'zh'; None gives 'en'."""
    return (lang or "en").replace("-", "_").split("_")[0].lower() or "en"


@lru_cache(maxsize=16)
def _translations(language: str) -> gettext.NullTranslations:
    """The catalogue of ``language``, read once; English (the message ids) when there is none."""
    if language == "en":
        return gettext.NullTranslations()
    return gettext.translation("messages", TRANSLATIONS_DIR, languages=[language], fallback=True)


def translate(message_id: str, lang: str | None = "en") -> str:
    """``message_id`` in ``lang``, from the same compiled catalogue as the pages (no Flask needed)."""
    return _translations(_language(lang)).gettext(message_id)


@dataclass(frozen=True)
class Sentence:
    """A message id and its parameters, rendered in any language when it is shown.

    Parameters are formatted into the translated sentence (``{name}`` placeholders); a parameter
    that is itself a :class:`Sentence` is rendered in the same language first.
    """

    id: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, message_id: str, **params: Any) -> "Sentence":
        """A sentence with keyword parameters."""
        return cls(message_id, tuple(params.items()))

    def render(self, lang: str | None = "en") -> str:
        """The sentence in ``lang`` with its parameters filled in."""
        text = translate(self.id, lang)
        if not self.params:
            return text
        values = {k: v.render(lang) if isinstance(v, Sentence) else v for k, v in self.params}
        return text.format(**values)


# --------------------------------------------------------------------------------------------------
# Diagnosis
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    """What a failure means: retryable or not, its kind, and advice an administrator can act on.

    ``kind`` is one of: 'secret' (AppID/AppSecret/CorpID/corpsecret), 'ip' (caller IP refused),
    'token' (access token rejected: refresh once and retry), 'user' (recipient problem), 'template',
    'quota', 'network', 'busy' (WeChat asks to retry), 'permission' (API not granted to the account),
    'parameter' (request content rejected), 'config' (app/domain settings), 'crypto' (callback
    signature or encryption) and 'other'. ``advice`` is rendered per language by :meth:`message`.
    """

    errcode: int | None
    transient: bool
    kind: str
    advice: Sentence
    ip: str | None = None
    errmsg: str = ""
    channel: str = "mp"

    @property
    def refresh_token(self) -> bool:
        """True when the caller should fetch a fresh access token once and retry."""
        return self.kind == "token"

    def message(self, lang: str | None = "en") -> str:
        """The advice in ``lang`` ('zh', 'zh_Hans_CN', ... give Chinese; None or 'en' English)."""
        return self.advice.render(lang)


@dataclass(frozen=True)
class _Entry:
    """One catalogue line; its message id may use {errcode}, {errmsg}, {ip} and {field}."""

    kind: str
    transient: bool
    message_id: str


# Codes shared by both channels: Tencent's callback crypto codes.
_CRYPTO: dict[int, _Entry] = {
    -40001: _Entry("crypto", False, N_("The callback signature does not match: the Token configured here must be exactly the one entered in the WeChat console's server configuration.")),
    -40002: _Entry("crypto", False, N_("The callback body is not valid WeChat XML; if a proxy forwards WeChat's calls, make sure it passes the body through unchanged.")),
    -40003: _Entry("crypto", False, N_("The signature of the reply could not be computed; check the Token setting.")),
    -40004: _Entry("crypto", False, N_("The EncodingAESKey is invalid: it must be the 43 letters and digits shown in the WeChat console; copy it again.")),
    -40005: _Entry("crypto", False, N_("The message was encrypted for another AppID/CorpID: check that the AppID (Official Account) or CorpID (WeCom) configured here belongs to the account whose callback points at this server.")),
    -40006: _Entry("crypto", False, N_("The reply could not be encrypted; check the EncodingAESKey setting.")),
    -40007: _Entry("crypto", False, N_("The message could not be decrypted: the EncodingAESKey configured here differs from the one in the WeChat console. If you just changed it there, enter the new key here (the previous one is still accepted during the change).")),
    -40008: _Entry("crypto", False, N_("The decrypted message has an invalid layout; it was probably not sent by WeChat or was altered on the way.")),
    -40009: _Entry("crypto", False, N_("Base64 encoding of the encrypted reply failed.")),
    -40010: _Entry("crypto", False, N_("The encrypted payload is not valid Base64; if a proxy forwards WeChat's calls, make sure it does not alter '+' or '/' characters.")),
    -40011: _Entry("crypto", False, N_("The encrypted reply XML could not be generated.")),
}

_MP: dict[int | tuple[int, str], _Entry] = {
    -1: _Entry("busy", True, N_("WeChat reports that its system is busy; the call will be retried later.")),
    (40001, "token"): _Entry("secret", False, N_("The AppSecret is wrong: copy it again from Development → Basic configuration (开发 → 基本配置) of the Official Account console (reset it there if nobody kept it) and save it here.")),
    40001: _Entry("token", True, N_("WeChat rejected the access token as invalid or no longer the latest. The service fetches a fresh token and retries once; if it keeps happening, make sure no other program fetches tokens for the same AppID with the legacy /cgi-bin/token API.")),
    40002: _Entry("other", False, N_("WeChat rejected the grant_type of the token request; this is a bug in the service, please report it.")),
    40003: _Entry("user", False, N_("The openid is not valid for this Official Account (the user may have bound another account's openid); ask the user to bind WeChat again.")),
    40013: _Entry("secret", False, N_("The AppID is wrong: copy it again from Development → Basic configuration (开发 → 基本配置) of the Official Account console.")),
    40014: _Entry("token", True, N_("WeChat rejected the access token as invalid. The service fetches a fresh token and retries once; if it keeps happening, make sure no other program fetches tokens for the same AppID with the legacy /cgi-bin/token API.")),
    40029: _Entry("user", False, N_("The login code is invalid, already used or expired (codes last 5 minutes); start the binding again.")),
    40036: _Entry("template", False, N_("The template ID has the wrong length: copy the template ID (not the template library number) from 广告与服务 → 模板消息 → 我的模板 (Ads and services → Template messages → My templates).")),
    40037: _Entry("template", False, N_("The template ID is not one of this account's templates: copy the template ID (a long string, not a library number such as TM00015) from 广告与服务 → 模板消息 → 我的模板 (Ads and services → Template messages → My templates).")),
    40058: _Entry("parameter", False, N_("WeChat rejected a parameter of the request ({errmsg}); check the message content and settings.")),
    40125: _Entry("secret", False, N_("The AppSecret is wrong: copy it again from Development → Basic configuration (开发 → 基本配置) of the Official Account console (reset it there if nobody kept it) and save it here.")),
    40164: _Entry("ip", False, N_("WeChat refused the call because {ip} is not in the Official Account's IP whitelist: add it under Development → Basic configuration → IP whitelist (开发 → 基本配置 → IP白名单), then try again.")),
    41033: _Entry("parameter", False, N_("WeChat refused the request as not allowed for this account or missing a field ({errmsg}); check the account type and the message settings.")),
    41001: _Entry("token", True, N_("The request carried no access token. The service fetches a fresh token and retries once; if it keeps happening, make sure no other program fetches tokens for the same AppID with the legacy /cgi-bin/token API.")),
    42001: _Entry("token", True, N_("The access token has expired. The service fetches a fresh token and retries once; if it keeps happening, make sure no other program fetches tokens for the same AppID with the legacy /cgi-bin/token API.")),
    43004: _Entry("user", False, N_("The user no longer follows the Official Account, so WeChat will not deliver to them; ask them to follow it again (scan the binding QR code).")),
    45009: _Entry("quota", True, N_("The daily API quota of the Official Account is used up; sending resumes when it resets at midnight, or an administrator can reset it (10 times a month) with the clear_quota API.")),
    45015: _Entry("user", False, N_("The user has not interacted with the Official Account in the last 48 hours, so this kind of message can no longer be sent to them.")),
    47003: _Entry("template", False, N_("A template value breaks WeChat's rules{field}: since May 2023 each value is limited (e.g. thing ≤ 20 characters, character_string without Chinese, no line breaks); shorten the content or change the template field mapping.")),
    48001: _Entry("permission", False, N_("This Official Account is not allowed to use this API: template messages and QR codes need a verified service account (已认证服务号); check 开发 → 接口权限 (Development → API permissions).")),
    89501: _Entry("ip", False, N_("WeChat is waiting for an administrator to confirm calls from {ip}: confirm the prompt the administrator received in WeChat, then try again.")),
    89503: _Entry("ip", False, N_("WeChat considers calls from {ip} risky and asked the account administrator to confirm them in WeChat: confirm the message, or add the IP under Development → Basic configuration → IP whitelist (开发 → 基本配置 → IP白名单).")),
    89506: _Entry("ip", False, N_("An administrator refused calls from {ip} twice in 24 hours, so WeChat blocks it for 24 hours; add the IP under Development → Basic configuration → IP whitelist (开发 → 基本配置 → IP白名单) or wait.")),
    89507: _Entry("ip", False, N_("An administrator refused calls from {ip}, so WeChat blocks it for one hour; add the IP under Development → Basic configuration → IP whitelist (开发 → 基本配置 → IP白名单) or wait.")),
}

_QY: dict[int | tuple[int, str], _Entry] = {
    -1: _MP[-1],
    40001: _Entry("secret", False, N_("The app's Secret (corpsecret) is wrong: copy it again from App management → the app → Secret (应用管理 → 应用 → Secret, shown in the WeCom client when you click View).")),
    40013: _Entry("secret", False, N_("The CorpID is wrong: copy it from My company → Company information → Company ID (我的企业 → 企业信息 → 企业ID).")),
    40014: _Entry("token", True, N_("WeCom rejected the access token as invalid; the service fetches a fresh token and retries once.")),
    40029: _MP[40029],
    40056: _Entry("config", False, N_("The AgentId is wrong: copy it from App management → the app → AgentId (应用管理 → 应用 → AgentId).")),
    40058: _Entry("parameter", False, N_("WeCom rejected a parameter ({errmsg}); most often the content is too long (text 2048 bytes, textcard title 128 / description 512 bytes).")),
    41001: _Entry("token", True, N_("The request carried no access token; the service fetches a fresh token and retries once.")),
    41033: _Entry("parameter", False, N_("A textcard message needs a description; fill in the message text.")),
    42001: _Entry("token", True, N_("The access token has expired; the service fetches a fresh token and retries once.")),
    45009: _Entry("quota", True, N_("WeCom's frequency limit was reached (per app a daily limit of 200 messages per licensed member, 30 a minute and 1000 an hour to the same member); sending resumes later.")),
    48002: _Entry("permission", False, N_("This Secret may not call the API: use the Secret of the self-built app that sends the messages (not the contacts-sync Secret), from App management → the app → Secret (应用管理 → 应用 → Secret, shown in the WeCom client when you click View).")),
    50001: _Entry("config", False, N_("The redirect address is not the app's trusted domain: the host (and port) of this service's public URL must match exactly the domain set under App management → the app → Web authorization and JS-SDK → Trusted domain (网页授权及JS-SDK → 可信域名).")),
    60011: _Entry("user", False, N_("The app may not reach this member: add them (or their department) to the app's visible range under App management → the app → Visible range (可见范围).")),
    60020: _Entry("ip", False, N_("WeCom refused the call because {ip} is not a trusted IP of the app: add it under App management → the app → Trusted IPs (应用管理 → 应用 → 企业可信IP), then try again.")),
    60111: _Entry("user", False, N_("The WeCom UserID does not exist; check the member's account in the contacts and bind again.")),
    80001: _Entry("config", False, N_("The trusted domain is not verified: WeCom trusted domains need an ICP filing matching the company and may not be an IP address, contain a port or be a short-link domain; serve this service from such a domain.")),
    81013: _Entry("user", False, N_("None of the recipients is valid: they were deleted or are outside the app's visible range; check App management → the app → Visible range (应用管理 → 应用 → 可见范围).")),
    82001: _Entry("parameter", False, N_("The message has no recipient (touser, toparty and totag are all empty).")),
    301002: _Entry("config", False, N_("The Secret belongs to a different app than the AgentId: configure the AgentId and the Secret of the same app (App management → the app).")),
}

_GENERIC = _Entry("other", False, N_("WeChat answered errcode {errcode} ({errmsg}). This code is not in the service's catalogue: look it up in the official global return code list and check the configuration."))

_TABLES = {"mp": _MP, "qywx": _QY}


def catalogued_codes(channel: str = "mp") -> list[int]:
    """The errcodes that have a specific diagnosis for ``channel`` (crypto codes included)."""
    table = _TABLES[_channel(channel)]
    codes = {k if isinstance(k, int) else k[0] for k in table}
    return sorted(codes | set(_CRYPTO))


def _channel(channel: str | None) -> str:
    """Normalise the channel name; 'qy' is accepted as an alias of 'qywx'."""
    return "qywx" if channel in ("qywx", "qy", "work", "wecom") else "mp"


_IP_TOKEN_SPLIT = re.compile(r"[\s,;()\[\]<>\"'=]+")


def extract_ip(errmsg: str | None) -> str | None:
    """Return the caller IP quoted in a WeChat errmsg (IPv4 preferred, IPv6 otherwise), or None."""
    if not errmsg or not isinstance(errmsg, str):
        return None
    v4: str | None = None
    v6: str | None = None
    for token in _IP_TOKEN_SPLIT.split(errmsg):
        token = token.strip(".:") if token.count(":") < 2 else token.rstrip(".")
        if not token or len(token) > 45:
            continue
        try:
            addr = ipaddress.ip_address(token)
        except ValueError:
            continue
        if addr.is_unspecified:
            continue
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            # "ipv6 ::ffff:1.2.3.4" is just the IPv4 address again, which is what the console wants.
            v4 = v4 or str(addr.ipv4_mapped)
        elif isinstance(addr, ipaddress.IPv4Address):
            v4 = v4 or str(addr)
        else:
            v6 = v6 or str(addr)
    return v4 or v6


_FIELD_RE = re.compile(r"data\.([A-Za-z0-9_]+)\.value")


def diagnose(errcode, errmsg: str = "", channel: str = "mp", context: str | None = None) -> Diagnosis:
    """Explain ``errcode`` of ``channel`` ('mp' or 'qywx'); ``context='token'`` for token fetches."""
    try:
        code = int(errcode)
    except (TypeError, ValueError):
        code = None
    channel = _channel(channel)
    errmsg = errmsg if isinstance(errmsg, str) else ("" if errmsg is None else str(errmsg))
    clean_msg = redact(errmsg)[:300]
    table = _TABLES[channel]
    entry = None
    if code is not None:
        entry = table.get((code, context)) if context else None
        entry = entry or table.get(code) or _CRYPTO.get(code)
    entry = entry or _GENERIC

    ip = extract_ip(errmsg) if entry.kind == "ip" else None
    field = None
    if code == 47003:
        match = _FIELD_RE.search(errmsg)
        field = match.group(1) if match else None
    # Only the placeholders the sentence uses are kept; {ip} and {field} are phrases translated in turn.
    values = {
        "errcode": code if code is not None else errcode,
        "errmsg": clean_msg or "-",
        "ip": (Sentence.of(N_("the IP address {ip}"), ip=ip) if ip
               else Sentence(N_("this server's public (egress) IP address"))),
        "field": Sentence.of(N_(" (field {field})"), field=field) if field else "",
    }
    used = {name for name in values if "{" + name + "}" in entry.message_id}
    return Diagnosis(
        errcode=code,
        transient=entry.transient,
        kind=entry.kind,
        advice=Sentence(entry.message_id, tuple((k, v) for k, v in values.items() if k in used)),
        ip=ip,
        errmsg=clean_msg,
        channel=channel,
    )


# --------------------------------------------------------------------------------------------------
# Transport failures
# --------------------------------------------------------------------------------------------------


def _causes(exc: BaseException):
    """Yield ``exc`` and everything it wraps (requests nests urllib3 and socket errors)."""
    seen = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([current.__cause__, current.__context__])
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)


def classify_transport(exc: BaseException) -> str:
    """Name the kind of a network exception: 'dns', 'refused', 'timeout', 'tls', 'url' or 'connection'."""
    if isinstance(exc, WeChatTransportError):
        return exc.kind
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return "url"
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout"
    chain = list(_causes(exc))
    if any(isinstance(c, ssl.SSLError) for c in chain):
        return "tls"
    if any(isinstance(c, socket.gaierror) for c in chain):
        return "dns"
    if any(isinstance(c, ConnectionRefusedError) for c in chain):
        return "refused"
    if any(isinstance(c, (socket.timeout, TimeoutError)) for c in chain):
        return "timeout"
    text = " ".join(str(c) for c in chain).lower()
    # urllib3 sometimes keeps only the message text of the socket error it wrapped.
    if "name or service not known" in text or "nodename nor servname" in text or \
            "failed to resolve" in text or "temporary failure in name resolution" in text:
        return "dns"
    if "connection refused" in text:
        return "refused"
    return "connection"


_TRANSPORT_TEXT = {
    "dns": N_("The WeChat API host name could not be resolved: check this server's DNS settings and the configured API base URL."),
    "refused": N_("The connection to the WeChat API was refused: check the configured API base URL, and any proxy or firewall between this server and the Internet."),
    "timeout": N_("The WeChat API did not answer in time: the network may be slow or blocked by a firewall; the call will be retried later."),
    "tls": N_("The TLS (HTTPS) connection to the WeChat API failed: check the server's clock and CA certificates, and whether a proxy intercepts HTTPS."),
    "connection": N_("The connection to the WeChat API broke off: check the network between this server and the Internet; the call will be retried later."),
    "url": N_("The configured WeChat API base URL is not a valid http(s) URL; correct it in the configuration."),
    "bad_response": N_("The WeChat API answered with something that is not WeChat's JSON (perhaps a proxy's error page); the call will be retried later."),
    "http_5xx": N_("The WeChat API answered HTTP {status}, a server-side error; the call will be retried later."),
    "http_4xx": N_("The WeChat API answered HTTP {status}: check the configured API base URL and any proxy in between."),
}


def diagnose_transport(exc) -> Diagnosis:
    """Explain a network failure (a :class:`WeChatTransportError` or a ``requests`` exception)."""
    kind = classify_transport(exc) if isinstance(exc, BaseException) else str(exc)
    status = getattr(exc, "status", None)
    transient = kind not in ("url",)
    if kind == "http":
        if status is not None and 400 <= int(status) < 500 and int(status) != 429:
            key, transient = "http_4xx", False
        else:
            key = "http_5xx"
        advice = Sentence.of(_TRANSPORT_TEXT[key], status=status)
    else:
        advice = Sentence(_TRANSPORT_TEXT.get(kind, _TRANSPORT_TEXT["connection"]))
    return Diagnosis(errcode=None, transient=transient, kind="network", advice=advice, ip=None,
                     errmsg="", channel="")
