"""Exceptions of the WeChat package and the errcode catalogue that turns failures into advice.

:func:`diagnose` maps an errcode answered by the Official Account API (channel ``"mp"``) or the
WeCom API (channel ``"qywx"``) to a :class:`Diagnosis`: whether retrying later can help, what kind of
problem it is, and one sentence in English and one in Simplified Chinese telling an administrator what
to do. :func:`diagnose_transport` does the same for network failures.
"""
from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass

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
# Diagnosis
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    """What a failure means: retryable or not, its kind, and advice in English and Chinese.

    ``kind`` is one of: 'secret' (AppID/AppSecret/CorpID/corpsecret), 'ip' (caller IP refused),
    'token' (access token rejected: refresh once and retry), 'user' (recipient problem), 'template',
    'quota', 'network', 'busy' (WeChat asks to retry), 'permission' (API not granted to the account),
    'parameter' (request content rejected), 'config' (app/domain settings), 'crypto' (callback
    signature or encryption) and 'other'.
    """

    errcode: int | None
    transient: bool
    kind: str
    message_en: str
    message_zh: str
    ip: str | None = None
    errmsg: str = ""
    channel: str = "mp"

    @property
    def refresh_token(self) -> bool:
        """True when the caller should fetch a fresh access token once and retry."""
        return self.kind == "token"

    def message(self, lang: str | None = "en") -> str:
        """The advice in ``lang`` ('zh…' gives Chinese, anything else English)."""
        return self.message_zh if (lang or "").lower().startswith("zh") else self.message_en


@dataclass(frozen=True)
class _Entry:
    """One catalogue line; messages may use {errcode}, {errmsg}, {ip}, {ip_en}, {ip_zh}, {field}."""

    kind: str
    transient: bool
    en: str
    zh: str


_MP_IP_PAGE_EN = "Development → Basic configuration → IP whitelist (开发 → 基本配置 → IP白名单)"
_MP_IP_PAGE_ZH = "开发 → 基本配置 → IP白名单"
_QY_IP_PAGE_EN = "App management → the app → Trusted IPs (应用管理 → 应用 → 企业可信IP)"
_QY_IP_PAGE_ZH = "应用管理 → 应用 → 企业可信IP"
_MP_SECRET_PAGE_EN = "Development → Basic configuration (开发 → 基本配置)"
_MP_SECRET_PAGE_ZH = "开发 → 基本配置"

_TOKEN_RETRY_EN = " The service fetches a fresh token and retries once; if it keeps happening, make sure no other program fetches tokens for the same AppID with the legacy /cgi-bin/token API."
_TOKEN_RETRY_ZH = "服务会重新获取一次令牌并重试；若反复出现，请确认没有其他程序用旧的 /cgi-bin/token 接口为同一 AppID 获取令牌。"

# Codes shared by both channels: Tencent's callback crypto codes.
_CRYPTO: dict[int, _Entry] = {
    -40001: _Entry("crypto", False,
                   "The callback signature does not match: the Token configured here must be exactly the one entered in the WeChat console's server configuration.",
                   "回调签名校验失败：此处配置的 Token 必须与微信后台服务器配置中填写的 Token 完全一致。"),
    -40002: _Entry("crypto", False,
                   "The callback body is not valid WeChat XML; if a proxy forwards WeChat's calls, make sure it passes the body through unchanged.",
                   "回调消息体不是有效的微信 XML；若由代理转发微信的请求，请确认其原样转发消息体。"),
    -40003: _Entry("crypto", False,
                   "The signature of the reply could not be computed; check the Token setting.",
                   "无法计算回复的签名，请检查 Token 配置。"),
    -40004: _Entry("crypto", False,
                   "The EncodingAESKey is invalid: it must be the 43 letters and digits shown in the WeChat console; copy it again.",
                   "EncodingAESKey 无效：应为微信后台显示的 43 位字母和数字，请重新复制。"),
    -40005: _Entry("crypto", False,
                   "The message was encrypted for another AppID/CorpID: check that the AppID (Official Account) or CorpID (WeCom) configured here belongs to the account whose callback points at this server.",
                   "消息是为其他 AppID/CorpID 加密的：请确认此处配置的 AppID（公众号）或 CorpID（企业微信）与回调指向本服务的账号一致。"),
    -40006: _Entry("crypto", False,
                   "The reply could not be encrypted; check the EncodingAESKey setting.",
                   "无法加密回复，请检查 EncodingAESKey 配置。"),
    -40007: _Entry("crypto", False,
                   "The message could not be decrypted: the EncodingAESKey configured here differs from the one in the WeChat console. If you just changed it there, enter the new key here (the previous one is still accepted during the change).",
                   "消息解密失败：此处配置的 EncodingAESKey 与微信后台的不一致。若刚在后台修改过，请在此处填入新密钥（修改期间旧密钥仍会被接受）。"),
    -40008: _Entry("crypto", False,
                   "The decrypted message has an invalid layout; it was probably not sent by WeChat or was altered on the way.",
                   "解密后的消息格式不正确，可能并非微信发送或在传输中被篡改。"),
    -40009: _Entry("crypto", False,
                   "Base64 encoding of the encrypted reply failed.",
                   "加密回复的 Base64 编码失败。"),
    -40010: _Entry("crypto", False,
                   "The encrypted payload is not valid Base64; if a proxy forwards WeChat's calls, make sure it does not alter '+' or '/' characters.",
                   "加密内容不是有效的 Base64；若由代理转发微信的请求，请确认其没有改动“+”或“/”字符。"),
    -40011: _Entry("crypto", False,
                   "The encrypted reply XML could not be generated.",
                   "无法生成加密回复的 XML。"),
}

_MP: dict[int | tuple[int, str], _Entry] = {
    -1: _Entry("busy", True,
               "WeChat reports that its system is busy; the call will be retried later.",
               "微信系统繁忙，稍后会自动重试。"),
    (40001, "token"): _Entry("secret", False,
                             f"The AppSecret is wrong: copy it again from {_MP_SECRET_PAGE_EN} of the Official Account console (reset it there if nobody kept it) and save it here.",
                             f"AppSecret 错误：请在公众号后台 {_MP_SECRET_PAGE_ZH} 重新复制 AppSecret（若无人保存可在该页重置）并保存到此处。"),
    40001: _Entry("token", True,
                  "WeChat rejected the access token as invalid or no longer the latest." + _TOKEN_RETRY_EN,
                  "微信认为访问令牌无效或不是最新的。" + _TOKEN_RETRY_ZH),
    40002: _Entry("other", False,
                  "WeChat rejected the grant_type of the token request; this is a bug in the service, please report it.",
                  "获取令牌请求的 grant_type 不合法，这是本服务的缺陷，请报告。"),
    40003: _Entry("user", False,
                  "The openid is not valid for this Official Account (the user may have bound another account's openid); ask the user to bind WeChat again.",
                  "该 openid 对本公众号无效（可能绑定的是其他公众号的 openid），请让用户重新绑定微信。"),
    40013: _Entry("secret", False,
                  f"The AppID is wrong: copy it again from {_MP_SECRET_PAGE_EN} of the Official Account console.",
                  f"AppID 错误：请在公众号后台 {_MP_SECRET_PAGE_ZH} 重新复制 AppID。"),
    40014: _Entry("token", True,
                  "WeChat rejected the access token as invalid." + _TOKEN_RETRY_EN,
                  "微信认为访问令牌不合法。" + _TOKEN_RETRY_ZH),
    40029: _Entry("user", False,
                  "The login code is invalid, already used or expired (codes last 5 minutes); start the binding again.",
                  "登录 code 无效、已被使用或已过期（有效期 5 分钟），请重新发起绑定。"),
    40036: _Entry("template", False,
                  "The template ID has the wrong length: copy the template ID (not the template library number) from 广告与服务 → 模板消息 → 我的模板 (Ads and services → Template messages → My templates).",
                  "模板 ID 长度不正确：请在 广告与服务 → 模板消息 → 我的模板 中复制模板 ID（不是模板库编号）。"),
    40037: _Entry("template", False,
                  "The template ID is not one of this account's templates: copy the template ID (a long string, not a library number such as TM00015) from 广告与服务 → 模板消息 → 我的模板 (Ads and services → Template messages → My templates).",
                  "模板 ID 不属于本公众号：请在 广告与服务 → 模板消息 → 我的模板 中复制模板 ID（一长串字符，不是 TM00015 这样的模板库编号）。"),
    40058: _Entry("parameter", False,
                  "WeChat rejected a parameter of the request ({errmsg}); check the message content and settings.",
                  "微信认为请求参数不合法（{errmsg}），请检查消息内容和配置。"),
    40125: _Entry("secret", False,
                  f"The AppSecret is wrong: copy it again from {_MP_SECRET_PAGE_EN} of the Official Account console (reset it there if nobody kept it) and save it here.",
                  f"AppSecret 错误：请在公众号后台 {_MP_SECRET_PAGE_ZH} 重新复制 AppSecret（若无人保存可在该页重置）并保存到此处。"),
    40164: _Entry("ip", False,
                  "WeChat refused the call because {ip_en} is not in the Official Account's IP whitelist: add it under " + _MP_IP_PAGE_EN + ", then try again.",
                  "微信拒绝了调用，因为{ip_zh}不在公众号的 IP 白名单中：请在 " + _MP_IP_PAGE_ZH + " 中添加，然后重试。"),
    41033: _Entry("parameter", False,
                  "WeChat refused the request as not allowed for this account or missing a field ({errmsg}); check the account type and the message settings.",
                  "微信拒绝了该请求：本账号不允许此操作或缺少字段（{errmsg}），请检查账号类型和消息配置。"),
    41001: _Entry("token", True,
                  "The request carried no access token." + _TOKEN_RETRY_EN,
                  "请求缺少访问令牌。" + _TOKEN_RETRY_ZH),
    42001: _Entry("token", True,
                  "The access token has expired." + _TOKEN_RETRY_EN,
                  "访问令牌已过期。" + _TOKEN_RETRY_ZH),
    43004: _Entry("user", False,
                  "The user no longer follows the Official Account, so WeChat will not deliver to them; ask them to follow it again (scan the binding QR code).",
                  "该用户已不再关注公众号，微信不会向其推送；请让用户重新关注（扫描绑定二维码）。"),
    45009: _Entry("quota", True,
                  "The daily API quota of the Official Account is used up; sending resumes when it resets at midnight, or an administrator can reset it (10 times a month) with the clear_quota API.",
                  "公众号当日接口调用次数已用完；次日零点恢复，管理员也可以通过 clear_quota 接口重置（每月 10 次）。"),
    45015: _Entry("user", False,
                  "The user has not interacted with the Official Account in the last 48 hours, so this kind of message can no longer be sent to them.",
                  "该用户 48 小时内未与公众号互动，无法再向其发送此类消息。"),
    47003: _Entry("template", False,
                  "A template value breaks WeChat's rules{field_en}: since May 2023 each value is limited (e.g. thing ≤ 20 characters, character_string without Chinese, no line breaks); shorten the content or change the template field mapping.",
                  "模板字段的取值不符合微信规则{field_zh}：自 2023 年 5 月起每个取值都有限制（如 thing 不超过 20 个字、character_string 不能含中文、不能换行）；请缩短内容或调整模板字段映射。"),
    48001: _Entry("permission", False,
                  "This Official Account is not allowed to use this API: template messages and QR codes need a verified service account (已认证服务号); check 开发 → 接口权限 (Development → API permissions).",
                  "本公众号无权调用该接口：模板消息和带参数二维码需要已认证的服务号，请在 开发 → 接口权限 中查看。"),
    89501: _Entry("ip", False,
                  "WeChat is waiting for an administrator to confirm calls from {ip_en}: confirm the prompt the administrator received in WeChat, then try again.",
                  "微信正在等待管理员确认来自{ip_zh}的调用：请管理员在微信中确认提示后重试。"),
    89503: _Entry("ip", False,
                  "WeChat considers calls from {ip_en} risky and asked the account administrator to confirm them in WeChat: confirm the message, or add the IP under " + _MP_IP_PAGE_EN + ".",
                  "微信认为来自{ip_zh}的调用存在风险，已通知管理员在微信中确认：请确认该消息，或在 " + _MP_IP_PAGE_ZH + " 中添加该 IP。"),
    89506: _Entry("ip", False,
                  "An administrator refused calls from {ip_en} twice in 24 hours, so WeChat blocks it for 24 hours; add the IP under " + _MP_IP_PAGE_EN + " or wait.",
                  "管理员 24 小时内两次拒绝了来自{ip_zh}的调用，该 IP 24 小时内不可调用；请在 " + _MP_IP_PAGE_ZH + " 中添加该 IP 或稍后再试。"),
    89507: _Entry("ip", False,
                  "An administrator refused calls from {ip_en}, so WeChat blocks it for one hour; add the IP under " + _MP_IP_PAGE_EN + " or wait.",
                  "管理员拒绝了来自{ip_zh}的调用，该 IP 1 小时内不可调用；请在 " + _MP_IP_PAGE_ZH + " 中添加该 IP 或稍后再试。"),
}

_QY_SECRET_EN = "App management → the app → Secret (应用管理 → 应用 → Secret, shown in the WeCom client when you click View)"
_QY_SECRET_ZH = "应用管理 → 应用 → Secret（点击“查看”后在企业微信客户端中显示）"

_QY: dict[int | tuple[int, str], _Entry] = {
    -1: _MP[-1],
    40001: _Entry("secret", False,
                  f"The app's Secret (corpsecret) is wrong: copy it again from {_QY_SECRET_EN}.",
                  f"应用的 Secret（corpsecret）错误：请在 {_QY_SECRET_ZH} 重新复制。"),
    40013: _Entry("secret", False,
                  "The CorpID is wrong: copy it from My company → Company information → Company ID (我的企业 → 企业信息 → 企业ID).",
                  "CorpID 错误：请在 我的企业 → 企业信息 → 企业ID 中复制。"),
    40014: _Entry("token", True,
                  "WeCom rejected the access token as invalid; the service fetches a fresh token and retries once.",
                  "企业微信认为访问令牌不合法；服务会重新获取一次令牌并重试。"),
    40029: _MP[40029],
    40056: _Entry("config", False,
                  "The AgentId is wrong: copy it from App management → the app → AgentId (应用管理 → 应用 → AgentId).",
                  "AgentId 错误：请在 应用管理 → 应用 → AgentId 中复制。"),
    40058: _Entry("parameter", False,
                  "WeCom rejected a parameter ({errmsg}); most often the content is too long (text 2048 bytes, textcard title 128 / description 512 bytes).",
                  "企业微信认为参数不合法（{errmsg}）；最常见的原因是内容过长（文本 2048 字节，文本卡片标题 128 / 描述 512 字节）。"),
    41001: _Entry("token", True,
                  "The request carried no access token; the service fetches a fresh token and retries once.",
                  "请求缺少访问令牌；服务会重新获取一次令牌并重试。"),
    41033: _Entry("parameter", False,
                  "A textcard message needs a description; fill in the message text.",
                  "文本卡片消息必须有描述，请填写消息内容。"),
    42001: _Entry("token", True,
                  "The access token has expired; the service fetches a fresh token and retries once.",
                  "访问令牌已过期；服务会重新获取一次令牌并重试。"),
    45009: _Entry("quota", True,
                  "WeCom's frequency limit was reached (per app a daily limit of 200 messages per licensed member, 30 a minute and 1000 an hour to the same member); sending resumes later.",
                  "触发了企业微信的频率限制（每个应用每天按成员数×200 人次，对同一成员每分钟 30 条、每小时 1000 条）；稍后会继续发送。"),
    48002: _Entry("permission", False,
                  "This Secret may not call the API: use the Secret of the self-built app that sends the messages (not the contacts-sync Secret), from " + _QY_SECRET_EN + ".",
                  "该 Secret 无权调用此接口：请使用发送消息的自建应用的 Secret（不是通讯录同步 Secret），位于 " + _QY_SECRET_ZH + "。"),
    50001: _Entry("config", False,
                  "The redirect address is not the app's trusted domain: the host (and port) of this service's public URL must match exactly the domain set under App management → the app → Web authorization and JS-SDK → Trusted domain (网页授权及JS-SDK → 可信域名).",
                  "回调地址不在应用的可信域名内：本服务对外地址的域名（及端口）必须与 应用管理 → 应用 → 网页授权及JS-SDK → 可信域名 中的设置完全一致。"),
    60011: _Entry("user", False,
                  "The app may not reach this member: add them (or their department) to the app's visible range under App management → the app → Visible range (可见范围).",
                  "应用无权访问该成员：请在 应用管理 → 应用 → 可见范围 中加入该成员或其部门。"),
    60020: _Entry("ip", False,
                  "WeCom refused the call because {ip_en} is not a trusted IP of the app: add it under " + _QY_IP_PAGE_EN + ", then try again.",
                  "企业微信拒绝了调用，因为{ip_zh}不是该应用的企业可信IP：请在 " + _QY_IP_PAGE_ZH + " 中添加，然后重试。"),
    60111: _Entry("user", False,
                  "The WeCom UserID does not exist; check the member's account in the contacts and bind again.",
                  "该企业微信 UserID 不存在，请在通讯录中核对成员账号后重新绑定。"),
    80001: _Entry("config", False,
                  "The trusted domain is not verified: WeCom trusted domains need an ICP filing matching the company and may not be an IP address, contain a port or be a short-link domain; serve this service from such a domain.",
                  "可信域名未通过校验：企业微信可信域名需要与企业主体一致的 ICP 备案，且不能是 IP 地址、不能带端口、不能是短链域名；请用符合要求的域名访问本服务。"),
    81013: _Entry("user", False,
                  "None of the recipients is valid: they were deleted or are outside the app's visible range; check App management → the app → Visible range (应用管理 → 应用 → 可见范围).",
                  "所有接收人均无效：可能已被删除或不在应用可见范围内；请检查 应用管理 → 应用 → 可见范围。"),
    82001: _Entry("parameter", False,
                  "The message has no recipient (touser, toparty and totag are all empty).",
                  "消息没有接收人（touser、toparty、totag 均为空）。"),
    301002: _Entry("config", False,
                   "The Secret belongs to a different app than the AgentId: configure the AgentId and the Secret of the same app (App management → the app).",
                   "Secret 与 AgentId 不属于同一个应用：请配置同一应用的 AgentId 和 Secret（应用管理 → 应用）。"),
}

_GENERIC = _Entry("other", False,
                  "WeChat answered errcode {errcode} ({errmsg}). This code is not in the service's catalogue: look it up in the official global return code list and check the configuration.",
                  "微信返回错误码 {errcode}（{errmsg}）。该错误码不在本服务的目录中，请查阅官方全局返回码说明并检查配置。")

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
    values = {
        "errcode": code if code is not None else errcode,
        "errmsg": clean_msg or "-",
        "ip_en": f"the IP address {ip}" if ip else "this server's public (egress) IP address",
        "ip_zh": f" IP 地址 {ip} " if ip else "本服务器的公网出口 IP ",
        "field_en": f" (field {field})" if field else "",
        "field_zh": f"（字段 {field}）" if field else "",
    }
    return Diagnosis(
        errcode=code,
        transient=entry.transient,
        kind=entry.kind,
        message_en=entry.en.format(**values),
        message_zh=entry.zh.format(**values),
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
    "dns": ("The WeChat API host name could not be resolved: check this server's DNS settings and the configured API base URL.",
            "无法解析微信接口的域名：请检查本服务器的 DNS 设置和配置的接口地址。"),
    "refused": ("The connection to the WeChat API was refused: check the configured API base URL, and any proxy or firewall between this server and the Internet.",
                "连接微信接口被拒绝：请检查配置的接口地址，以及本服务器与互联网之间的代理或防火墙。"),
    "timeout": ("The WeChat API did not answer in time: the network may be slow or blocked by a firewall; the call will be retried later.",
                "微信接口响应超时：网络可能较慢或被防火墙拦截，稍后会自动重试。"),
    "tls": ("The TLS (HTTPS) connection to the WeChat API failed: check the server's clock and CA certificates, and whether a proxy intercepts HTTPS.",
            "与微信接口的 TLS（HTTPS）连接失败：请检查服务器时间和 CA 证书，以及是否有代理拦截 HTTPS。"),
    "connection": ("The connection to the WeChat API broke off: check the network between this server and the Internet; the call will be retried later.",
                   "与微信接口的连接中断：请检查本服务器与互联网之间的网络，稍后会自动重试。"),
    "url": ("The configured WeChat API base URL is not a valid http(s) URL; correct it in the configuration.",
            "配置的微信接口地址不是有效的 http(s) 地址，请在配置中更正。"),
    "bad_response": ("The WeChat API answered with something that is not WeChat's JSON (perhaps a proxy's error page); the call will be retried later.",
                     "微信接口返回的不是微信的 JSON（可能是代理的错误页面），稍后会自动重试。"),
    "http_5xx": ("The WeChat API answered HTTP {status}, a server-side error; the call will be retried later.",
                 "微信接口返回 HTTP {status}（服务端错误），稍后会自动重试。"),
    "http_4xx": ("The WeChat API answered HTTP {status}: check the configured API base URL and any proxy in between.",
                 "微信接口返回 HTTP {status}：请检查配置的接口地址以及中间的代理。"),
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
        en, zh = _TRANSPORT_TEXT[key]
        en, zh = en.format(status=status), zh.format(status=status)
    else:
        en, zh = _TRANSPORT_TEXT.get(kind, _TRANSPORT_TEXT["connection"])
    return Diagnosis(errcode=None, transient=transient, kind="network", message_en=en,
                     message_zh=zh, ip=None, errmsg="", channel="")
