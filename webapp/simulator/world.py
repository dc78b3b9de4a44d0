"""In-memory state of the simulated WeChat platforms, and the seed it starts from.

Everything the simulated Official Account ("mp") and WeCom ("qy") platforms know lives in one
:class:`World`: the account with its templates and followers, the corp with its members and
applications, issued tokens, login codes and QR tickets, the messages each phone received, and the
knobs tests turn (latency, IP whitelists, injected faults, the clock). One lock guards it all and
every public method takes it, so a world can be shared by the threads of a server and by tests
running in the same process. Nothing here knows about Flask: refusals are raised as
:class:`ApiError` and the HTTP layer turns them into WeChat-shaped JSON.
"""
from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from webapp.wechat.errors import N_, translate

# ---------------------------------------------------------------------------------------------
# Seed: the accounts a fresh (or reset) world starts with. Tests import these.
# Its names and texts are message ids of the catalogue, so pages show them in the reader's
# language (see :func:`seed_text`); the platforms' APIs answer them as they are.
# ---------------------------------------------------------------------------------------------

#: The simulated Official Account.
MP_APPID = "wx0123456789abcdef"
MP_SECRET = "0123456789abcdef0123456789abcdef"
MP_ORIGINAL_ID = "gh_5130a0e1c2d3"
MP_NAME = N_("Notice Simulator")

#: The classic BlueKing mapping (first / keyword1 / keyword2 / remark) on a legacy template.
TEMPLATE_NOTIFICATION_ID = "Zs9aVq3nC8mW2xL5bR7tY0uK4eJ6hD1gF3pS8oI2cA1"
TEMPLATE_NOTIFICATION = {
    "template_id": TEMPLATE_NOTIFICATION_ID,
    "title": N_("Notification"),
    "primary_industry": "IT Technology",
    "deputy_industry": "Internet|E-commerce",
    "content": "{{first.DATA}}\nContent:{{keyword1.DATA}}\nTime:{{keyword2.DATA}}\n{{remark.DATA}}",
    "example": "You have a new notification\nContent:Disk usage above 90%\n"
    "Time:2024-05-04 10:00:00\nPlease check the server",
}

#: A category-library template with typed keys (thing / time / character_string).
TEMPLATE_CATEGORY_ID = "Kd4mP0xQ7rT2vB9nL6cW1yH8jF5sA3gE0uZ4oN7iR2e"
TEMPLATE_CATEGORY = {
    "template_id": TEMPLATE_CATEGORY_ID,
    "title": N_("Alert notice"),
    "primary_industry": "IT Technology",
    "deputy_industry": "Internet|E-commerce",
    "content": "Alert:{{thing1.DATA}}\nTime:{{time2.DATA}}\nAlert ID:{{character_string3.DATA}}",
    "example": "Alert:Disk usage above 90%\nTime:2024-05-04 10:00\nAlert ID:ALERT-2024-0001",
}

#: A category-library template with two free-text keys and a time: with the wizard's suggested
#: mapping a follower sees the heading ("Disk alert") and the message, each on its own line.
TEMPLATE_ALERT_ID = "QFy1PSE6VcknZsVDPf0GNtlFOAUtb542ZqWueVWuq3R"
TEMPLATE_ALERT = {
    "template_id": TEMPLATE_ALERT_ID,
    "title": N_("Service alert"),
    "primary_industry": "IT Technology",
    "deputy_industry": "Internet|E-commerce",
    "content": "Alert:{{thing1.DATA}}\nDetails:{{thing2.DATA}}\nTime:{{time3.DATA}}",
    "example": "Alert:Disk alert\nDetails:disk /data 91% full\nTime:2024-05-04 10:00",
}

#: Simulated WeChat users (openid, nickname, follows the account). Openids are 28 characters.
MP_USERS = (
    ("oSimA1lice9xT3kQ7mZ2vW8nB4cL", N_("Alice"), True),
    ("oSimB0bby5rY1pH6dG3jK9sF2aXe", N_("Bob"), True),
    ("oSimC4rol2uE8tM5wQ1zN7yV3bRk", N_("Carol"), True),
    ("oSimD4ve07iO3lP9kJ6hG2fD5sAm", N_("Dave"), True),
    ("oSimE5ve18qW4eR0tY7uI3oP6aSd", N_("Eve"), False),
)
#: Handy names for the seed users.
OPENID_ALICE, OPENID_BOB, OPENID_CAROL, OPENID_DAVE, OPENID_EVE = (u[0] for u in MP_USERS)
#: The seed user who does not follow the account (sending to her gives 43004).
OPENID_NOT_FOLLOWING = OPENID_EVE

#: The simulated WeCom corp and its one application.
QY_CORPID = "ww0123456789abcdef"
QY_CORP_NAME = N_("Simulated Corp")
QY_AGENTID = 1000002
QY_CORPSECRET = "SimCorpSecret0123456789abcdefghijklmnopqrs_"
QY_APP_NAME = N_("Notifications")
#: The application's trusted domain until one is set: None stands for the host[:port] the simulator
#: is served at (what the API call or the browser reached it at), so that ``make run`` on any
#: address trusts itself, as an administrator would have set it up.
QY_REDIRECT_DOMAIN: str | None = None
#: Members (userid, name); the application is visible to the first three only.
QY_MEMBERS = (
    ("zhangsan", N_("Zhang San")),
    ("lisi", N_("Li Si")),
    ("wangwu", N_("Wang Wu")),
    ("zhaoliu", N_("Zhao Liu")),
    ("sunqi", N_("Sun Qi")),
)
QY_VISIBLE = ("zhangsan", "lisi", "wangwu")

#: The field labels of the seed templates' content, as a phone shows them (see :func:`card_lines`).
SEED_LABELS = (N_("Content"), N_("Time"), N_("Alert"), N_("Alert ID"), N_("Details"))
#: Every name and text of the seed that a page shows.
SEED_TEXTS = frozenset({
    MP_NAME, TEMPLATE_NOTIFICATION["title"], TEMPLATE_CATEGORY["title"], TEMPLATE_ALERT["title"],
    QY_CORP_NAME, QY_APP_NAME,
    *SEED_LABELS, *(name for _openid, name, _following in MP_USERS), *(name for _userid, name in QY_MEMBERS),
})


def seed_text(text: str, lang: str | None) -> str:
    """``text`` in ``lang`` when it is a name or text of the seed; anything else (what tests or a
    person set through the control API) is shown as it is."""
    return translate(text, lang) if text in SEED_TEXTS else text

# ---------------------------------------------------------------------------------------------
# Platform rules (PROTOCOL.md sections 1, 2, 3, 5, 6).
# ---------------------------------------------------------------------------------------------

TOKEN_LIFETIME = 7200
#: After /cgi-bin/token issues a new token the previous one stays valid this long; stable_token
#: hands out the next token during the last this-many seconds of the current one.
TOKEN_OVERLAP = 300
CLIENT_MSG_ID_WINDOW = 600
LOGIN_CODE_LIFETIME = 300
DUPLICATE_CHECK_DEFAULT = 1800
DUPLICATE_CHECK_MAX = 14400
QY_MAX_USERS = 1000
QY_MAX_PARTIES = 100
QY_MAX_TAGS = 100
TEXT_MAX_BYTES = 2048
MARKDOWN_MAX_BYTES = 2048
TEXTCARD_TITLE_MAX_BYTES = 128
TEXTCARD_DESCRIPTION_MAX_BYTES = 512
TEXTCARD_URL_MAX_BYTES = 2048
QR_DEFAULT_EXPIRE = 60
QR_MAX_EXPIRE = 2592000

#: Names of the API endpoints, as used by call statistics and fault injection ("*" = any).
MP_ENDPOINTS = ("token", "stable_token", "template_send", "qrcode_create", "template_list")
QY_ENDPOINTS = ("gettoken", "qy_send", "getuserinfo", "agent_get")
ENDPOINTS = MP_ENDPOINTS + QY_ENDPOINTS
FAULT_KINDS = ("errcode", "http_status", "drop", "delay")

#: errmsg texts (before the " rid: ..." / ", hint: [...]" suffix) as the real platforms word them.
MP_ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40036: "invalid template_id size",
    40037: "invalid template_id",
    40052: "invalid action name",
    40053: "invalid action info",
    40125: "invalid appsecret",
    40164: "invalid ip",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    42001: "access_token expired",
    43004: "require subscribe",
    45009: "reach max api daily quota limit",
    47001: "data format error",
    47003: "argument invalid!",
}
QY_ERRMSG = {
    -1: "system busy",
    40001: "invalid credential",
    40008: "invalid message type",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40029: "invalid code",
    40032: "invalid userid list size, at most 1000 users",
    40056: "invalid agentid",
    40058: "invalid parameter",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    41008: "missing code",
    41010: "url missing",
    41011: "agentid missing",
    41016: "title missing",
    41033: "description missing",
    42001: "access_token expired",
    44004: "empty content",
    45002: "content size out of limit",
    45009: "api freq out of limit",
    60020: "not allow to access from your ip",
    81013: "user & party & tag all invalid",
    82001: "touser & toparty & totag all empty",
    82002: "invalid party list size, at most 100 parties",
    82003: "invalid tag list size, at most 100 tags",
    301002: "not allow operate another agent with this accesstoken.",
}

DEFAULT_SETTINGS: dict[str, Any] = {
    "latency_ms": 0,  # added to every API call
    "token_lifetime": TOKEN_LIFETIME,  # expires_in of newly issued tokens, seconds
    "mp_ip_check": False,  # refuse Official Account API callers outside mp_ip_whitelist (40164)
    "mp_ip_whitelist": [],
    "qy_ip_check": False,  # refuse WeCom API callers outside qy_ip_whitelist (60020)
    "qy_ip_whitelist": [],
    # WeCom's documentation says over-long text is cut; refusing it instead (45002/40058)
    # catches a sender that forgets to cut on a UTF-8 boundary. Turn off to cut like WeCom.
    "qy_strict_limits": True,
    # How long the simulated WeChat waits for each answer of the service's callback URL (the URL
    # check and every try of an event push), seconds. WeChat waits 5 s; tests lower it.
    "push_timeout": 5.0,
    # Like WeChat, report each template message's delivery (TEMPLATESENDJOBFINISH, success) to the
    # callback about a second after it is sent, when the server configuration is enabled.
    "mp_receipts": True,
}

#: Server configuration modes of the Official Account (开发 → 基本配置 → 服务器配置 → 消息加解密方式).
SERVER_MODES = ("plain", "compatible", "safe")
#: The server configuration a fresh world starts with: none, and off.
EMPTY_SERVER: dict[str, Any] = {
    "url": "",
    "token": "",
    "encoding_aes_key": "",
    "mode": "plain",
    "enabled": False,
}
#: The WeCom application's 接收消息 server (设置API接收) a fresh world starts with: none, and off.
EMPTY_QY_SERVER: dict[str, Any] = {"url": "", "token": "", "encoding_aes_key": "", "agentid": QY_AGENTID,
                                   "enabled": False}
#: What WeChat shows in the chat when the callback failed or answered something unusable.
NOTICE_UNAVAILABLE = "该公众号暂时无法提供服务，请稍后再试"
#: What WeChat shows a person who scans a temporary QR code that has expired (nothing is pushed).
NOTICE_QR_EXPIRED = "二维码已过期"
#: Pushes kept for the log, and chat entries kept per person (oldest ones are forgotten).
PUSH_LOG_LIMIT = 500
CHAT_LIMIT = 500
#: Scans of QR codes kept for the scan page (oldest ones are forgotten).
SCAN_LOG_LIMIT = 200

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\.DATA\s*\}\}")
_TYPED_KEY = re.compile(r"^([a-z_]+?)\d+$")


class ApiError(Exception):
    """A refusal in the platform's words: errcode, errmsg text (no suffix), extra JSON fields."""

    def __init__(self, errcode: int, text: str | None = None, **extra: Any) -> None:
        super().__init__(errcode)
        self.errcode = errcode
        self.text = text
        self.extra = extra


def template_keys(content: str) -> list[str]:
    """The data keys a template's content asks for, in order (``{{key.DATA}}``)."""
    return _PLACEHOLDER.findall(content)


def utf8_cut(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _rules_for(key: str) -> Callable[[str], bool] | None:
    """The value check WeChat applies to a category-template key such as ``thing1``, if any."""
    match = _TYPED_KEY.match(key)
    if not match:
        return None
    kind = match.group(1)
    printable_ascii = re.compile(r"^[\x20-\x7e]*$")
    rules: dict[str, Callable[[str], bool]] = {
        "thing": lambda v: len(v) <= 20 and "\n" not in v,
        "character_string": lambda v: len(v) <= 32 and bool(printable_ascii.match(v)),
        "number": lambda v: len(v) <= 32 and bool(re.match(r"^[0-9.]*$", v)),
        "letter": lambda v: len(v) <= 32 and bool(re.match(r"^[A-Za-z]*$", v)),
        "symbol": lambda v: len(v) <= 5,
        "phrase": lambda v: len(v) <= 5,
        "phone_number": lambda v: len(v) <= 17,
        "car_number": lambda v: len(v) <= 8,
        "name": lambda v: len(v) <= 20,
    }
    return rules.get(kind)


def card_lines(content: str, data: dict[str, str]) -> list[dict[str, Any]]:
    """Lay a template message out as a phone shows it: one entry per placeholder line.

    ``first`` and ``remark`` are flagged ``hidden`` because WeChat stopped displaying them on
    2023-05-04; the phone still shows them, dimmed, so nobody wonders where their text went.
    """
    lines = []
    for raw in content.split("\n"):
        keys = _PLACEHOLDER.findall(raw)
        if not keys:
            if raw.strip():
                lines.append({"label": raw.strip(), "key": "", "value": "", "hidden": False})
            continue
        if len(keys) == 1:
            start = _PLACEHOLDER.search(raw).start()
            label = raw[:start].strip().rstrip(":：")
            value = _PLACEHOLDER.sub(lambda m: data.get(m.group(1), ""), raw[start:]).strip()
        else:
            label = ""
            value = _PLACEHOLDER.sub(lambda m: data.get(m.group(1), ""), raw).strip()
        lines.append({
            "label": label,
            "key": keys[0],
            "value": value,
            "hidden": keys[0] in ("first", "remark"),
        })
    return lines


def _ip_in(ip: str, entries: list[str]) -> bool:
    """Whether ``ip`` is one of the whitelist entries (addresses or networks)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    for entry in entries:
        try:
            if addr in ipaddress.ip_network(entry, strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False


def _check_whitelist(entries: Any) -> list[str]:
    if isinstance(entries, str):
        entries = [e for e in re.split(r"[\s,;]+", entries) if e]
    if not isinstance(entries, list):
        raise ValueError("whitelist must be a list of addresses")
    for entry in entries:
        try:
            ipaddress.ip_network(str(entry), strict=False)
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return [str(e) for e in entries]


@dataclass
class Template:
    """A private template of the Official Account (as get_all_private_template lists it)."""

    template_id: str
    title: str
    content: str
    example: str = ""
    primary_industry: str = ""
    deputy_industry: str = ""


@dataclass
class MpUser:
    """A WeChat user as the Official Account knows them."""

    openid: str
    nickname: str
    following: bool = True


@dataclass
class QyMember:
    """A member of the WeCom corp."""

    userid: str
    name: str


@dataclass
class QyApp:
    """A self-built WeCom application with its visibility (members only; no departments)."""

    agentid: int
    secret: str
    name: str
    allow_users: list[str] = field(default_factory=list)
    redirect_domain: str | None = QY_REDIRECT_DOMAIN
    close: bool = False
    home_url: str = ""


def _trusted_domain(app: QyApp, served_at: str | None) -> str:
    """The application's trusted domain, with the simulator's address for one that follows it."""
    return (served_at or "") if app.redirect_domain is None else app.redirect_domain


@dataclass
class Token:
    """An issued access token. ``source`` is "token", "stable_token" or "qy"."""

    value: str
    source: str
    owner: str  # appid, or corpid for WeCom
    agentid: int | None
    issued_at: float
    expires_at: float
    valid_until: float | None = None  # set when a newer /cgi-bin/token superseded it
    revoked: bool = False


class World:
    """The whole simulated platform state; thread-safe, resettable, with an adjustable clock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._reset_unlocked()

    # ---- lifecycle, clock, settings ---------------------------------------------------------

    def _reset_unlocked(self) -> None:
        self.offset = 0.0
        self.version = getattr(self, "version", 0) + 1
        self.settings = copy.deepcopy(DEFAULT_SETTINGS)
        self.mp_appid = MP_APPID
        self.mp_secret = MP_SECRET
        self.mp_original_id = MP_ORIGINAL_ID
        self.mp_name = MP_NAME
        self.templates = {
            t["template_id"]: Template(**t)
            for t in (TEMPLATE_ALERT, TEMPLATE_NOTIFICATION, TEMPLATE_CATEGORY)
        }
        self.mp_users = {o: MpUser(o, n, f) for o, n, f in MP_USERS}
        self.qy_corpid = QY_CORPID
        self.qy_corp_name = QY_CORP_NAME
        self.qy_members = {u: QyMember(u, n) for u, n in QY_MEMBERS}
        self.qy_apps = {
            QY_AGENTID: QyApp(QY_AGENTID, QY_CORPSECRET, QY_APP_NAME, list(QY_VISIBLE)),
        }
        self.tokens: dict[str, Token] = {}
        self.stable_current: dict[str, str] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.tickets: dict[str, dict[str, Any]] = {}
        self.faults: list[dict[str, Any]] = []
        self.calls: dict[str, int] = {name: 0 for name in ENDPOINTS}
        self.messages: list[dict[str, Any]] = []
        self.inbox: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.client_msg_ids: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.qy_duplicates: dict[str, tuple[float, dict[str, Any]]] = {}
        # Calls answered from the duplicate guards (client_msg_id, enable_duplicate_check) without
        # delivering anything: a retry the phone never shows twice.
        self.suppressed: dict[str, int] = {"mp": 0, "qy": 0}
        self._prune_at = 1024
        self._next_mp_msgid = 3717005636572528642 + secrets.randbelow(1 << 20)
        # The callback side: the account's server configuration, the outcome of the last URL
        # check, every push made to the service, and what each person's chat shows besides
        # template messages (what they sent, passive replies, notices).
        self.mp_server: dict[str, Any] = dict(EMPTY_SERVER)
        self.mp_server_check: dict[str, Any] | None = None
        # What the server configuration form holds before it is submitted (filled in for the
        # administrator, or kept from a submission the URL check refused); None: the one in force.
        self.mp_server_form: dict[str, str] | None = None
        # The WeCom application's 接收消息 server, its last URL check and the pushes made to it
        # (see webapp.simulator.qy_server).
        self.qy_server: dict[str, Any] = dict(EMPTY_QY_SERVER)
        self.qy_server_check: dict[str, Any] | None = None
        self.qy_pushes: list[dict[str, Any]] = []
        self.pushes: list[dict[str, Any]] = []
        self.chats: dict[str, list[dict[str, Any]]] = {}
        self._next_push_id = 1
        self._next_chat_seq = 1
        # Scans of the account's QR codes by the simulated phones (see push.scan_qrcode).
        self.scans: list[dict[str, Any]] = []
        self._next_scan_id = 1
        self._next_user_msgid = 7355000000000000000 + secrets.randbelow(1 << 40)
        self.last_action = ("reset", self._now())

    def _now(self) -> float:
        return self._clock() + self.offset

    def _touch(self, action: str | None = None) -> None:
        # The version lets the phone page poll cheaply for "anything new?".
        self.version += 1
        if action:
            self.last_action = (action, self._now())

    def reset(self) -> None:
        """Forget everything and return to the seed (settings, clock and faults included)."""
        with self._lock:
            self._reset_unlocked()

    def now(self) -> float:
        """The simulated time: ``time.time()`` plus the offset set by :meth:`advance`."""
        with self._lock:
            return self._now()

    def real_now(self) -> float:
        """The clock without the offset (what the service's own clock reads)."""
        return self._clock()

    def advance(self, seconds: float) -> float:
        """Move the simulated clock forward (tokens, codes and dedupe windows age) and return it."""
        seconds = float(seconds)
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self.offset += seconds
            self._touch("advance")
            return self._now()

    def clock(self) -> dict[str, float]:
        """The simulated time and its offset from the real clock."""
        with self._lock:
            return {"now": self._now(), "offset": self.offset}

    def get_settings(self) -> dict[str, Any]:
        """A copy of the settings (latency, token lifetime, IP checks and whitelists, limits)."""
        with self._lock:
            return copy.deepcopy(self.settings)

    def update_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some settings; unknown names or bad values raise ValueError before any change."""
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in DEFAULT_SETTINGS:
                raise ValueError(f"unknown setting: {name}")
            if name == "latency_ms":
                value = int(value)
                if not 0 <= value <= 60000:
                    raise ValueError("latency_ms must be between 0 and 60000")
            elif name == "token_lifetime":
                value = int(value)
                if not 1 <= value <= 7200:
                    raise ValueError("token_lifetime must be between 1 and 7200")
            elif name == "push_timeout":
                value = float(value)
                if not 0.1 <= value <= 60:
                    raise ValueError("push_timeout must be between 0.1 and 60 seconds")
            elif name.endswith("_whitelist"):
                value = _check_whitelist(value)
            elif not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false")
            clean[name] = value
        with self._lock:
            self.settings.update(clean)
            self._touch("settings")
            return copy.deepcopy(self.settings)

    # ---- gate: statistics, faults, IP whitelist ---------------------------------------------

    def count_call(self, endpoint: str) -> None:
        """Count one call of an API endpoint (whatever its outcome)."""
        with self._lock:
            self.calls[endpoint] = self.calls.get(endpoint, 0) + 1
            self.version += 1

    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Queue a fault for the next ``count`` calls of an endpoint ("*" for any endpoint).

        ``kind`` is "errcode" (answer ``errcode``, default -1), "http_status" (answer ``status``,
        default 503), "drop" (close the connection without an answer) or "delay" (wait ``seconds``
        then answer normally; longer than the caller's timeout, it is a timeout after which the
        call still takes effect, as when WeChat's answer is lost on the way back).
        With ``for_seconds`` instead of ``count`` the fault applies to every matching call for that
        many seconds: an outage window.
        """
        endpoint = spec.get("endpoint", "*")
        kind = spec.get("kind")
        if endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)} or *")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        fault = {"endpoint": endpoint, "kind": kind, "count": int(spec.get("count", 1))}
        if fault["count"] < 1:
            raise ValueError("count must be at least 1")
        if spec.get("for_seconds") is not None:
            # A fault window (an outage) rather than a number of calls: every matching call fails
            # until the window ends, measured in real time (the simulated clock may be moved).
            seconds = float(spec["for_seconds"])
            if not 0 < seconds <= 3600:
                raise ValueError("for_seconds must be more than 0 and at most 3600")
            del fault["count"]
            fault["for_seconds"] = seconds
            fault["until"] = time.monotonic() + seconds
        if kind == "errcode":
            fault["errcode"] = int(spec.get("errcode", -1))
            if spec.get("errmsg") is not None:
                fault["errmsg"] = str(spec["errmsg"])
        elif kind == "http_status":
            fault["status"] = int(spec.get("status", 503))
            if not 400 <= fault["status"] <= 599:
                raise ValueError("status must be an HTTP error status (400-599)")
        elif kind == "delay":
            fault["seconds"] = float(spec.get("seconds", 6))
            if not 0 <= fault["seconds"] <= 120:
                raise ValueError("seconds must be between 0 and 120")
        with self._lock:
            self.faults.append(fault)
            self._touch("fault")
            return {k: v for k, v in fault.items() if k != "until"}

    def take_fault(self, endpoint: str) -> dict[str, Any] | None:
        """Consume one use of the first queued fault matching ``endpoint``, if any."""
        with self._lock:
            self._drop_ended_faults()
            for fault in self.faults:
                if fault["endpoint"] in ("*", endpoint):
                    if "until" not in fault:
                        fault["count"] -= 1
                        if fault["count"] <= 0:
                            self.faults.remove(fault)
                    self.version += 1
                    return dict(fault)
        return None

    def _drop_ended_faults(self) -> None:
        now = time.monotonic()
        self.faults = [f for f in self.faults if "until" not in f or f["until"] > now]

    def list_faults(self) -> list[dict[str, Any]]:
        """The faults still queued, with their remaining counts (or ``remaining_seconds`` of a window)."""
        with self._lock:
            self._drop_ended_faults()
            now = time.monotonic()
            listed = []
            for fault in self.faults:
                item = {k: v for k, v in fault.items() if k != "until"}
                if "until" in fault:
                    item["remaining_seconds"] = round(fault["until"] - now, 3)
                listed.append(item)
            return listed

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self.faults.clear()
            self._touch("faults_cleared")

    def ip_refused(self, channel: str, ip: str) -> bool:
        """Whether the channel's IP check is on and ``ip`` is outside its whitelist."""
        with self._lock:
            if not self.settings[f"{channel}_ip_check"]:
                return False
            return not _ip_in(ip, self.settings[f"{channel}_ip_whitelist"])

    # ---- tokens -----------------------------------------------------------------------------

    def _issue(self, source: str, owner: str, agentid: int | None = None) -> Token:
        now = self._now()
        nbytes = 120 if source == "qy" else 96  # real tokens are long; callers must store 512
        token = Token(
            value=secrets.token_urlsafe(nbytes),
            source=source,
            owner=owner,
            agentid=agentid,
            issued_at=now,
            expires_at=now + self.settings["token_lifetime"],
        )
        self.tokens[token.value] = token
        if len(self.tokens) > self._prune_at:
            self._prune(now)
        return token

    def _prune(self, now: float) -> None:
        # Forget what can no longer matter, so a long benchmark does not grow the world forever.
        day = 86400
        self.tokens = {k: t for k, t in self.tokens.items() if t.expires_at > now - day}
        self.client_msg_ids = {
            k: v for k, v in self.client_msg_ids.items() if v[0] > now - CLIENT_MSG_ID_WINDOW
        }
        self.qy_duplicates = {
            k: v for k, v in self.qy_duplicates.items() if v[0] > now - DUPLICATE_CHECK_MAX
        }
        self.codes = {k: c for k, c in self.codes.items() if c["expires_at"] > now - day}
        self._prune_at = max(1024, 2 * max(len(self.tokens), len(self.client_msg_ids),
                                           len(self.qy_duplicates)))

    def _token_state(self, value: str, channel: str) -> tuple[str, Token | None]:
        token = self.tokens.get(value)
        if token is None or token.revoked:
            return "invalid", None
        if (channel == "qy") != (token.source == "qy"):
            return "invalid", None
        if token.owner != (self.qy_corpid if channel == "qy" else self.mp_appid):
            return "invalid", None
        now = self._now()
        if token.valid_until is not None and now >= token.valid_until:
            return "invalid", None  # superseded: "access_token is invalid or not latest"
        if now >= token.expires_at:
            return "expired", None
        return "ok", token

    def _mp_check(self, value: str | None) -> Token:
        if not value:
            raise ApiError(41001)
        state, token = self._token_state(value, "mp")
        if state == "expired":
            raise ApiError(42001)
        if token is None:
            raise ApiError(40001)
        return token

    def _qy_check(self, value: str | None) -> QyApp:
        if not value:
            raise ApiError(41001)
        state, token = self._token_state(value, "qy")
        if state == "expired":
            raise ApiError(42001)
        if token is None or token.agentid not in self.qy_apps:
            raise ApiError(40014)
        return self.qy_apps[token.agentid]

    def invalidate_tokens(self, channel: str | None = None) -> int:
        """Revoke every current token (of "mp", "qy", or both); using one then gives 40001/40014."""
        if channel not in (None, "mp", "qy"):
            raise ValueError("channel must be mp, qy or omitted")
        with self._lock:
            count = 0
            for token in self.tokens.values():
                if token.revoked or (channel and (token.source == "qy") != (channel == "qy")):
                    continue
                token.revoked = True
                count += 1
            if channel in (None, "mp"):
                self.stable_current.clear()
            self._touch("invalidate")
            return count

    def token_info(self, value: str) -> dict[str, Any] | None:
        """What the world knows about a token (for tests), or None if it never issued it."""
        with self._lock:
            token = self.tokens.get(value)
            return asdict(token) if token else None

    # ---- Official Account API ---------------------------------------------------------------

    def _mp_credentials(self, appid: str | None, secret: str | None) -> None:
        if not appid:
            raise ApiError(41002)
        if not secret:
            raise ApiError(41004)
        if appid != self.mp_appid:
            raise ApiError(40013)
        if secret != self.mp_secret:
            raise ApiError(40125)

    def mp_token(self, grant_type: str | None, appid: str | None, secret: str | None
                 ) -> dict[str, Any]:
        """GET /cgi-bin/token: a new token each call; the previous ones stay valid 5 minutes."""
        with self._lock:
            if grant_type != "client_credential":
                raise ApiError(40002)
            self._mp_credentials(appid, secret)
            now = self._now()
            for token in self.tokens.values():
                if token.source == "token" and token.owner == appid and token.valid_until is None:
                    token.valid_until = now + TOKEN_OVERLAP
            token = self._issue("token", self.mp_appid)
            self._touch()
            return {"access_token": token.value, "expires_in": self.settings["token_lifetime"]}

    def mp_stable_token(self, body: Any) -> dict[str, Any]:
        """POST /cgi-bin/stable_token: the same token while it is valid, unless it is in its last
        5 minutes (or half its lifetime, if shorter) or ``force_refresh`` asks for a new one."""
        with self._lock:
            if not isinstance(body, dict):
                raise ApiError(47001)
            if body.get("grant_type") != "client_credential":
                raise ApiError(40002)
            self._mp_credentials(body.get("appid"), body.get("secret"))
            now = self._now()
            current = self.tokens.get(self.stable_current.get(self.mp_appid, ""))
            if current is not None and body.get("force_refresh") in (True, "true", 1):
                current.revoked = True
                current = None
            if current is not None:
                state, _ = self._token_state(current.value, "mp")
                window = min(TOKEN_OVERLAP, (current.expires_at - current.issued_at) / 2)
                if state == "ok" and now < current.expires_at - window:
                    return {"access_token": current.value,
                            "expires_in": int(current.expires_at - now)}
            token = self._issue("stable_token", self.mp_appid)
            self.stable_current[self.mp_appid] = token.value
            self._touch()
            return {"access_token": token.value, "expires_in": self.settings["token_lifetime"]}

    def mp_send_template(self, access_token: str | None, body: Any) -> dict[str, Any]:
        """POST /cgi-bin/message/template/send: validate, deduplicate by client_msg_id, deliver."""
        with self._lock:
            self._mp_check(access_token)
            if not isinstance(body, dict):
                raise ApiError(47001)
            openid = body.get("touser")
            client_msg_id = body.get("client_msg_id")
            now = self._now()
            if openid and client_msg_id:
                seen = self.client_msg_ids.get((str(openid), str(client_msg_id)))
                if seen and now - seen[0] < CLIENT_MSG_ID_WINDOW:
                    self.suppressed["mp"] += 1
                    return copy.deepcopy(seen[1])
            template_id = body.get("template_id")
            if not template_id:
                raise ApiError(40036)
            template = self.templates.get(str(template_id))
            if template is None:
                raise ApiError(40037)
            user = self.mp_users.get(str(openid)) if openid else None
            if user is None:
                raise ApiError(40003)
            if not user.following:
                raise ApiError(43004)
            raw_data = body.get("data") or {}
            if not isinstance(raw_data, dict):
                raise ApiError(47001)
            data = {}
            for key, item in raw_data.items():
                value = item.get("value", "") if isinstance(item, dict) else item
                data[str(key)] = "" if value is None else str(value)
            for key in template_keys(template.content):
                check = _rules_for(key)
                if check and key in data and not check(data[key]):
                    raise ApiError(47003, f"argument invalid! data.{key}.value invalid")
            msgid = self._next_mp_msgid
            self._next_mp_msgid += 1 + secrets.randbelow(1000)
            message = {
                "channel": "mp",
                "msgid": msgid,
                "to": user.openid,
                "template_id": template.template_id,
                "title": template.title,
                "data": data,
                "lines": card_lines(template.content, data),
                "url": body.get("url") or "",
                "miniprogram": body.get("miniprogram"),
                "client_msg_id": client_msg_id,
                "time": now,
            }
            self._deliver(message, [user.openid])
            answer = {"errcode": 0, "errmsg": "ok", "msgid": msgid}
            if client_msg_id:
                self.client_msg_ids[(user.openid, str(client_msg_id))] = (now, dict(answer))
            return answer

    def mp_create_qrcode(self, access_token: str | None, body: Any) -> dict[str, Any]:
        """POST /cgi-bin/qrcode/create: remember ticket -> scene so a later scan can use it."""
        with self._lock:
            self._mp_check(access_token)
            if not isinstance(body, dict):
                raise ApiError(47001)
            action = body.get("action_name")
            if action not in ("QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"):
                raise ApiError(40052)
            info = body.get("action_info")
            scene_box = info.get("scene") if isinstance(info, dict) else None
            if not isinstance(scene_box, dict):
                raise ApiError(40053)
            permanent = action.startswith("QR_LIMIT")
            if action.endswith("STR_SCENE"):
                scene = scene_box.get("scene_str")
                if not isinstance(scene, str) or not 1 <= len(scene) <= 64:
                    raise ApiError(40053)
            else:
                scene = scene_box.get("scene_id")
                top = 100000 if permanent else 0xFFFFFFFF
                if isinstance(scene, bool) or not isinstance(scene, int) or not 1 <= scene <= top:
                    raise ApiError(40053)
            now = self._now()
            expire = None
            if not permanent:
                try:
                    expire = int(body.get("expire_seconds") or QR_DEFAULT_EXPIRE)
                except (TypeError, ValueError):
                    raise ApiError(47001) from None
                expire = min(max(expire, 1), QR_MAX_EXPIRE)
            url = "http://weixin.qq.com/q/" + secrets.token_urlsafe(16)[:22]
            # Real tickets are base64 with "+", "/" and "=": callers must URL-encode them.
            ticket = base64.b64encode(
                b"\x80\x01" + secrets.token_bytes(8) + url.encode() + secrets.token_bytes(10)
            ).decode()
            self.tickets[ticket] = {
                "ticket": ticket,
                "url": url,
                "action_name": action,
                "scene": scene,
                "created_at": now,
                "expires_at": None if expire is None else now + expire,
            }
            self._touch()
            answer: dict[str, Any] = {"ticket": ticket, "url": url}
            if expire is not None:
                answer["expire_seconds"] = expire
            return answer

    def find_ticket(self, ticket_or_url: str) -> dict[str, Any] | None:
        """The QR code created with this ticket (or url), with ``expired`` computed; else None."""
        with self._lock:
            found = self.tickets.get(ticket_or_url)
            if found is None:
                found = next((t for t in self.tickets.values() if t["url"] == ticket_or_url), None)
            if found is None:
                return None
            found = dict(found)
            expires_at = found["expires_at"]
            found["expired"] = expires_at is not None and self._now() >= expires_at
            return found

    def list_tickets(self) -> list[dict[str, Any]]:
        """Every QR code created so far, oldest first."""
        with self._lock:
            return [dict(t) for t in self.tickets.values()]

    def recent_tickets(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` QR codes, newest first, each with ``expired`` computed and
        ``scans``, how many times a simulated phone scanned it."""
        with self._lock:
            now = self._now()
            newest = list(self.tickets.values())[-limit:][::-1] if limit > 0 else []
            found = []
            for ticket in newest:
                item = dict(ticket)
                item.setdefault("scans", 0)
                expires_at = item["expires_at"]
                item["expired"] = expires_at is not None and now >= expires_at
                found.append(item)
            return found

    def record_scan(self, scan: dict[str, Any]) -> dict[str, Any]:
        """Keep a scan of a QR code (its ``id`` and ``time`` are assigned here) and count it on
        the code's ticket."""
        with self._lock:
            scan = {**copy.deepcopy(scan), "id": self._next_scan_id, "time": self._now()}
            self._next_scan_id += 1
            self.scans.append(scan)
            del self.scans[:-SCAN_LOG_LIMIT]
            ticket = self.tickets.get(scan.get("ticket", ""))
            if ticket is not None:
                ticket["scans"] = ticket.get("scans", 0) + 1
            self._touch("scan")
            return copy.deepcopy(scan)

    def list_scans(self, openid: str | None = None, limit: int | None = None
                   ) -> list[dict[str, Any]]:
        """Scans of QR codes, oldest first; optionally one person's, the last N."""
        with self._lock:
            found = [s for s in self.scans if openid in (None, s.get("openid"))]
            if limit is not None:
                found = found[-limit:] if limit > 0 else []
            return copy.deepcopy(found)

    def get_scan(self, scan_id: int) -> dict[str, Any] | None:
        """One scan by its id, if it is still kept."""
        with self._lock:
            found = next((s for s in self.scans if s["id"] == scan_id), None)
            return copy.deepcopy(found)

    def mp_template_list(self, access_token: str | None) -> dict[str, Any]:
        """GET /cgi-bin/template/get_all_private_template."""
        with self._lock:
            self._mp_check(access_token)
            return {"template_list": [asdict(t) for t in self.templates.values()]}

    # ---- WeCom API --------------------------------------------------------------------------

    def qy_gettoken(self, corpid: str | None, corpsecret: str | None) -> dict[str, Any]:
        """GET /cgi-bin/gettoken: a new token per call; earlier ones live until they expire."""
        with self._lock:
            if not corpid:
                raise ApiError(41002)
            if not corpsecret:
                raise ApiError(41004)
            if corpid != self.qy_corpid:
                raise ApiError(40013)
            app = next((a for a in self.qy_apps.values() if a.secret == corpsecret), None)
            if app is None or app.close:
                raise ApiError(40001)
            token = self._issue("qy", self.qy_corpid, app.agentid)
            self._touch()
            return {"errcode": 0, "errmsg": "ok", "access_token": token.value,
                    "expires_in": self.settings["token_lifetime"]}

    def _qy_content(self, msgtype: Any, body: dict[str, Any]) -> dict[str, Any]:
        strict = self.settings["qy_strict_limits"]

        def limit(text: str, maximum: int, errcode: int, what: str) -> str:
            if _nbytes(text) <= maximum:
                return text
            if strict:
                raise ApiError(errcode, f"{what} exceeds {maximum} bytes")
            return utf8_cut(text, maximum)

        part = body.get(msgtype) if isinstance(msgtype, str) else None
        if msgtype not in ("text", "textcard", "markdown") or not isinstance(part, dict):
            raise ApiError(40008)
        if msgtype in ("text", "markdown"):
            content = str(part.get("content") or "")
            if not content:
                raise ApiError(44004)
            return {"content": limit(content, TEXT_MAX_BYTES, 45002, f"{msgtype}.content")}
        title = str(part.get("title") or "")
        description = str(part.get("description") or "")
        url = str(part.get("url") or "")
        if not title:
            raise ApiError(41016)
        if not description:
            raise ApiError(41033)
        if not url:
            raise ApiError(41010)
        if _nbytes(url) > TEXTCARD_URL_MAX_BYTES:
            raise ApiError(40058, f"textcard.url exceeds {TEXTCARD_URL_MAX_BYTES} bytes")
        return {
            "title": limit(title, TEXTCARD_TITLE_MAX_BYTES, 40058, "textcard.title"),
            "description": limit(description, TEXTCARD_DESCRIPTION_MAX_BYTES, 40058,
                                 "textcard.description"),
            "url": url,
            "btntxt": str(part.get("btntxt") or "详情")[:4],  # WeCom's own default label
        }

    def qy_send(self, access_token: str | None, body: Any) -> dict[str, Any]:
        """POST /cgi-bin/message/send: validate, apply the duplicate check, deliver to the visible
        recipients and report the others in invaliduser/invalidparty/invalidtag."""
        with self._lock:
            app = self._qy_check(access_token)
            if not isinstance(body, dict):
                raise ApiError(40058, "invalid json")
            agentid = body.get("agentid")
            if agentid in (None, ""):
                raise ApiError(41011)
            try:
                agentid = int(agentid)
            except (TypeError, ValueError):
                raise ApiError(40056) from None
            if agentid != app.agentid:
                raise ApiError(301002)

            def split(name: str) -> list[str]:
                value = body.get(name) or ""
                items = value if isinstance(value, list) else str(value).split("|")
                return [str(i).strip() for i in items if str(i).strip()]

            users, parties, tags = split("touser"), split("toparty"), split("totag")
            if not users and not parties and not tags:
                raise ApiError(82001)
            if len(users) > QY_MAX_USERS:
                raise ApiError(40032)
            if len(parties) > QY_MAX_PARTIES:
                raise ApiError(82002)
            if len(tags) > QY_MAX_TAGS:
                raise ApiError(82003)
            msgtype = body.get("msgtype")
            content = self._qy_content(msgtype, body)

            now = self._now()
            dup_key = None
            if body.get("enable_duplicate_check") in (1, True, "1"):
                try:
                    interval = int(body.get("duplicate_check_interval") or DUPLICATE_CHECK_DEFAULT)
                except (TypeError, ValueError):
                    raise ApiError(40058, "invalid duplicate_check_interval") from None
                interval = min(max(interval, 1), DUPLICATE_CHECK_MAX)
                dup_key = json.dumps(body, sort_keys=True, ensure_ascii=False)
                seen = self.qy_duplicates.get(dup_key)
                if seen and now - seen[0] < interval:
                    self.suppressed["qy"] += 1
                    return copy.deepcopy(seen[1])

            visible = {u.lower() for u in app.allow_users}
            deliver: list[str] = []
            invalid: list[str] = []
            if "@all" in users:
                deliver = [u for u in self.qy_members if u in visible]
            else:
                for userid in users:
                    key = userid.lower()
                    if key in self.qy_members and key in visible:
                        if key not in deliver:
                            deliver.append(key)
                    elif key not in invalid:
                        invalid.append(key)
            extra = {}
            if invalid:
                extra["invaliduser"] = "|".join(invalid)
            if parties:
                extra["invalidparty"] = "|".join(parties)
            if tags:
                extra["invalidtag"] = "|".join(tags)
            if not deliver:
                raise ApiError(81013, **extra)
            msgid = secrets.token_urlsafe(48)
            message = {
                "channel": "qy",
                "msgid": msgid,
                "agentid": app.agentid,
                "to": deliver,
                "msgtype": msgtype,
                "content": content,
                "time": now,
            }
            self._deliver(message, deliver)
            answer = {"errcode": 0, "errmsg": "ok", **extra, "msgid": msgid}
            if dup_key is not None:
                self.qy_duplicates[dup_key] = (now, dict(answer))
            return answer

    def qy_issue_code(self, userid: str | None = None, openid: str | None = None) -> dict[str, Any]:
        """Issue a single-use WeCom login code for a member (userid) or a non-member (openid)."""
        if bool(userid) == bool(openid):
            raise ValueError("give exactly one of userid or openid")
        with self._lock:
            if userid and userid.lower() not in self.qy_members:
                raise ValueError(f"no member with userid {userid!r}")
            code = secrets.token_urlsafe(32)
            now = self._now()
            self.codes[code] = {
                "code": code,
                "userid": self.qy_members[userid.lower()].userid if userid else None,
                "openid": openid,
                "expires_at": now + LOGIN_CODE_LIFETIME,
                "used": False,
            }
            self._touch("code")
            return {"code": code, "expires_in": LOGIN_CODE_LIFETIME}

    def qy_getuserinfo(self, access_token: str | None, code: str | None) -> dict[str, Any]:
        """GET /cgi-bin/auth/getuserinfo: a code works once, within 5 minutes."""
        with self._lock:
            self._qy_check(access_token)
            if not code:
                raise ApiError(41008)
            found = self.codes.get(code)
            if found is None or found["used"] or self._now() >= found["expires_at"]:
                raise ApiError(40029)
            found["used"] = True
            self._touch()
            if found["userid"]:
                return {"errcode": 0, "errmsg": "ok", "userid": found["userid"]}
            return {"errcode": 0, "errmsg": "ok", "openid": found["openid"]}

    def qy_agent_get(self, access_token: str | None, agentid: Any,
                     served_at: str | None = None) -> dict[str, Any]:
        """GET /cgi-bin/agent/get: only for the application the token belongs to. ``served_at``
        is the host[:port] this call reached the simulator at (see :data:`QY_REDIRECT_DOMAIN`)."""
        with self._lock:
            app = self._qy_check(access_token)
            if agentid in (None, ""):
                raise ApiError(41011)
            try:
                agentid = int(agentid)
            except (TypeError, ValueError):
                raise ApiError(40056) from None
            if agentid != app.agentid:
                raise ApiError(301002)
            return {
                "errcode": 0,
                "errmsg": "ok",
                "agentid": app.agentid,
                "name": app.name,
                "square_logo_url": "",
                "description": "",
                "allow_userinfos": {"user": [{"userid": u} for u in app.allow_users]},
                "allow_partys": {"partyid": []},
                "allow_tags": {"tagid": []},
                "close": int(app.close),
                "redirect_domain": _trusted_domain(app, served_at),
                "report_location_flag": 0,
                "isreportenter": 0,
                "home_url": app.home_url,
            }

    # ---- delivered messages -----------------------------------------------------------------

    def _deliver(self, message: dict[str, Any], recipients: list[str]) -> None:
        self.messages.append(message)
        for rid in recipients:
            self.inbox.setdefault((message["channel"], rid), []).append(message)
        if len(self.client_msg_ids) + len(self.qy_duplicates) > self._prune_at:
            self._prune(self._now())
        self._touch()

    def get_messages(self, channel: str | None = None, to: str | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
        """Delivered messages, oldest first; optionally one channel, one recipient, the last N."""
        with self._lock:
            if to is not None:
                key = to.lower() if channel == "qy" else to
                if channel:
                    found = list(self.inbox.get((channel, key), []))
                else:
                    found = self.inbox.get(("mp", to), []) + self.inbox.get(("qy", to.lower()), [])
                    found.sort(key=lambda m: m["time"])
            else:
                found = [m for m in self.messages if channel in (None, m["channel"])]
            if limit is not None:
                found = found[-limit:] if limit > 0 else []
            return copy.deepcopy(found)

    def stats(self) -> dict[str, Any]:
        """Call counts per endpoint, message counts (total and per recipient) and duplicates suppressed."""
        with self._lock:
            return {
                "calls": dict(self.calls),
                "messages": {
                    "mp": sum(1 for m in self.messages if m["channel"] == "mp"),
                    "qy": sum(1 for m in self.messages if m["channel"] == "qy"),
                },
                "inbox": {
                    "mp": {k[1]: len(v) for k, v in self.inbox.items() if k[0] == "mp"},
                    "qy": {k[1]: len(v) for k, v in self.inbox.items() if k[0] == "qy"},
                },
                "pushes": len(self.pushes),
                "duplicates_suppressed": dict(self.suppressed),
            }

    # ---- the callback side: server configuration, pushes, chat ------------------------------
    # The HTTP work lives in :mod:`webapp.simulator.push`; these methods only keep its state, so
    # the lock is never held while the simulator waits for the service.

    def get_mp_server(self) -> dict[str, Any]:
        """The account's server configuration and the outcome of the last URL check (or None)."""
        with self._lock:
            return {"server": dict(self.mp_server),
                    "last_check": copy.deepcopy(self.mp_server_check)}

    def push_context(self) -> dict[str, Any]:
        """What a push needs, read at one instant: the server configuration, the account's AppID
        and original id, the per-try timeout, the simulated and the real time."""
        with self._lock:
            return {
                "server": dict(self.mp_server),
                "appid": self.mp_appid,
                "original_id": self.mp_original_id,
                "timeout": float(self.settings["push_timeout"]),
                "now": self._now(),
                "real_now": self._clock(),
            }

    def apply_mp_server(self, server: dict[str, Any] | None, check: dict[str, Any] | None
                        ) -> dict[str, Any]:
        """Record a URL check; when ``server`` is given (the check passed) it replaces the
        configuration. Returns the configuration in force afterwards."""
        if server is not None:
            unknown = set(server) - set(EMPTY_SERVER)
            if unknown:
                raise ValueError(f"unknown server fields: {', '.join(sorted(unknown))}")
            if server.get("mode", "plain") not in SERVER_MODES:
                raise ValueError(f"mode must be one of {', '.join(SERVER_MODES)}")
        with self._lock:
            if server is not None:
                self.mp_server = {**EMPTY_SERVER, **server}
                self.mp_server["enabled"] = bool(self.mp_server["enabled"])
            if check is not None:
                self.mp_server_check = copy.deepcopy(check)
            self._touch("server")
            return dict(self.mp_server)

    def set_mp_server_enabled(self, enabled: bool) -> dict[str, Any]:
        """Turn pushing on or off (启用/停用) without a new URL check."""
        with self._lock:
            if enabled and not self.mp_server["url"]:
                raise ValueError("no server configuration to enable: submit a URL first")
            self.mp_server["enabled"] = bool(enabled)
            self._touch("server")
            return dict(self.mp_server)

    def clear_mp_server(self) -> None:
        """Forget the server configuration and the last URL check."""
        with self._lock:
            self.mp_server = dict(EMPTY_SERVER)
            self.mp_server_check = None
            self.mp_server_form = None
            self._touch("server")

    def fill_mp_server_form(self, values: dict[str, Any] | None) -> dict[str, str] | None:
        """Put ``values`` (url, token, encoding_aes_key, mode) in the server configuration form
        without submitting it (nothing is checked or pushed); None empties the form again."""
        form = None
        if values is not None:
            mode = str(values.get("mode") or "plain")
            if mode not in SERVER_MODES:
                raise ValueError(f"mode must be one of {', '.join(SERVER_MODES)}")
            form = {name: str(values.get(name) or "")[:2000] for name in ("url", "token", "encoding_aes_key")}
            form["mode"] = mode
        with self._lock:
            self.mp_server_form = form
            self._touch("server_form")
            return dict(form) if form else None

    def get_mp_server_form(self) -> dict[str, str] | None:
        """What the server configuration form holds before it is submitted (None: the configuration)."""
        with self._lock:
            return dict(self.mp_server_form) if self.mp_server_form else None

    def next_user_msgid(self) -> int:
        """A fresh MsgId for a message a person sends (64-bit, increasing, never repeated)."""
        with self._lock:
            msgid = self._next_user_msgid
            self._next_user_msgid += 1 + secrets.randbelow(1000)
            return msgid

    def _add_chat_unlocked(self, openid: str, entry: dict[str, Any]) -> dict[str, Any]:
        entry = {"time": self._now(), **entry, "seq": self._next_chat_seq}
        self._next_chat_seq += 1
        box = self.chats.setdefault(openid, [])
        box.append(entry)
        del box[:-CHAT_LIMIT]
        return entry

    def add_chat(self, openid: str, kind: str, **fields: Any) -> dict[str, Any]:
        """Add a line to a person's chat: ``kind`` is "sent" (text they sent), "reply" (a passive
        reply from the account), "notice" (WeChat's own notice) or "event" (followed/unfollowed)."""
        if kind not in ("sent", "reply", "notice", "event"):
            raise ValueError(f"unknown chat entry kind {kind!r}")
        with self._lock:
            entry = self._add_chat_unlocked(openid, {"kind": kind, **fields})
            self._touch("chat")
            return copy.deepcopy(entry)

    def get_chat(self, openid: str) -> list[dict[str, Any]]:
        """A person's chat lines besides template messages, oldest first."""
        with self._lock:
            return copy.deepcopy(self.chats.get(openid, []))

    def record_push(self, push: dict[str, Any], chat: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        """Keep a finished push (its ``id`` is assigned here) and, if the phone shows something
        because of it, add that chat line (``kind`` plus fields) in the same step."""
        with self._lock:
            push = copy.deepcopy(push)
            push["id"] = self._next_push_id
            self._next_push_id += 1
            self.pushes.append(push)
            del self.pushes[:-PUSH_LOG_LIMIT]
            if chat is not None:
                self._add_chat_unlocked(push["openid"], {**chat, "push_id": push["id"]})
            self._touch("push")
            return copy.deepcopy(push)

    def list_pushes(self, openid: str | None = None, limit: int | None = None
                    ) -> list[dict[str, Any]]:
        """Pushes made to the service, oldest first; optionally one person's, the last N."""
        with self._lock:
            found = [p for p in self.pushes if openid in (None, p["openid"])]
            if limit is not None:
                found = found[-limit:] if limit > 0 else []
            return copy.deepcopy(found)

    # ---- accounts, people -------------------------------------------------------------------

    def update_mp_account(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change the Official Account's appid, secret, original_id or name."""
        allowed = {"appid": "mp_appid", "secret": "mp_secret", "original_id": "mp_original_id",
                   "name": "mp_name"}
        for name, value in changes.items():
            if name not in allowed or not isinstance(value, str) or not value:
                raise ValueError(f"cannot set {name!r}")
        with self._lock:
            for name, value in changes.items():
                setattr(self, allowed[name], value)
            self._touch("account")
        return self.describe()["mp"]

    def upsert_mp_user(self, openid: str, nickname: str | None = None,
                       following: bool | None = None) -> dict[str, Any]:
        """Add a WeChat user, or change one's nickname or whether they follow the account."""
        if not openid or not isinstance(openid, str):
            raise ValueError("openid is required")
        with self._lock:
            user = self.mp_users.get(openid)
            if user is None:
                user = self.mp_users[openid] = MpUser(openid, nickname or openid[-6:], True)
            if nickname:
                user.nickname = str(nickname)
            if following is not None:
                user.following = bool(following)
            self._touch("user")
            return asdict(user)

    def remove_mp_user(self, openid: str) -> bool:
        """Forget a WeChat user (sending to them then gives 40003)."""
        with self._lock:
            found = self.mp_users.pop(openid, None) is not None
            self._touch("user")
            return found

    def upsert_template(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Add or replace a private template (template_id, title, content, ...)."""
        try:
            template = Template(**spec)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        if not template.template_id or not template.content:
            raise ValueError("template_id and content are required")
        with self._lock:
            self.templates[template.template_id] = template
            self._touch("template")
            return asdict(template)

    def remove_template(self, template_id: str) -> bool:
        """Delete a private template (sending with it then gives 40037)."""
        with self._lock:
            found = self.templates.pop(template_id, None) is not None
            self._touch("template")
            return found

    def update_qy_corp(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change the corp's corpid or name."""
        allowed = {"corpid": "qy_corpid", "name": "qy_corp_name"}
        for name, value in changes.items():
            if name not in allowed or not isinstance(value, str) or not value:
                raise ValueError(f"cannot set {name!r}")
        with self._lock:
            for name, value in changes.items():
                setattr(self, allowed[name], value)
            self._touch("account")
        return self.describe()["qy"]

    def upsert_qy_app(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Add an application or change one (secret, name, allow_users, redirect_domain, close)."""
        try:
            agentid = int(spec["agentid"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("agentid (an integer) is required") from None
        fields = {"secret", "name", "allow_users", "redirect_domain", "close", "home_url"}
        unknown = set(spec) - fields - {"agentid"}
        if unknown:
            raise ValueError(f"unknown application fields: {', '.join(sorted(unknown))}")
        if "allow_users" in spec and not isinstance(spec["allow_users"], list):
            raise ValueError("allow_users must be a list of userids")
        with self._lock:
            app = self.qy_apps.get(agentid)
            if app is None:
                if not spec.get("secret"):
                    raise ValueError("a new application needs a secret")
                app = self.qy_apps[agentid] = QyApp(agentid, spec["secret"], f"App {agentid}")
            for name in fields & set(spec):
                value = spec[name]
                if name == "allow_users":
                    value = [str(u).lower() for u in value]
                elif name == "close":
                    value = bool(value)
                elif name == "redirect_domain" and value is None:
                    value = None  # follow the simulator's address again
                else:
                    value = str(value)
                setattr(app, name, value)
            self._touch("app")
            return asdict(app)

    def upsert_qy_member(self, userid: str, name: str | None = None, visible: bool | None = None,
                         agentid: int = QY_AGENTID) -> dict[str, Any]:
        """Add a member or rename one; ``visible`` adds them to / removes them from an app's
        visibility (the seed application unless ``agentid`` says otherwise)."""
        if not userid or not isinstance(userid, str):
            raise ValueError("userid is required")
        key = userid.lower()
        with self._lock:
            app = self.qy_apps.get(int(agentid))
            if visible is not None and app is None:
                raise ValueError(f"no application {agentid}")
            member = self.qy_members.get(key)
            if member is None:
                member = self.qy_members[key] = QyMember(key, name or userid)
            if name:
                member.name = str(name)
            if visible is not None and app is not None:
                if visible and key not in app.allow_users:
                    app.allow_users.append(key)
                if not visible and key in app.allow_users:
                    app.allow_users.remove(key)
            self._touch("member")
            return asdict(member)

    def remove_qy_member(self, userid: str) -> bool:
        """Delete a member (they then show up in invaliduser)."""
        key = userid.lower()
        with self._lock:
            found = self.qy_members.pop(key, None) is not None
            for app in self.qy_apps.values():
                if key in app.allow_users:
                    app.allow_users.remove(key)
            self._touch("member")
            return found

    def describe(self, served_at: str | None = None) -> dict[str, Any]:
        """The accounts and people (secrets included: they are the simulator's own seed).

        An application that follows the simulator's address (:data:`QY_REDIRECT_DOMAIN`) shows
        ``served_at`` as its trusted domain ("" when not given)."""
        with self._lock:
            return {
                "mp": {
                    "appid": self.mp_appid,
                    "secret": self.mp_secret,
                    "original_id": self.mp_original_id,
                    "name": self.mp_name,
                    "templates": [asdict(t) for t in self.templates.values()],
                    "users": [asdict(u) for u in self.mp_users.values()],
                },
                "qy": {
                    "corpid": self.qy_corpid,
                    "name": self.qy_corp_name,
                    "apps": [{**asdict(a), "redirect_domain": _trusted_domain(a, served_at)}
                             for a in self.qy_apps.values()],
                    "members": [asdict(m) for m in self.qy_members.values()],
                },
                "now": self._now(),
                "offset": self.offset,
                "version": self.version,
            }

    def phone_view(self, limit: int = 20) -> dict[str, Any]:
        """Everything the phone page shows: people with their newest ``limit`` messages, oldest
        first and the newest last, as a chat shows them."""
        with self._lock:
            visible = {u for app in self.qy_apps.values() for u in app.allow_users}

            def newest(channel: str, key: str) -> tuple[list[dict[str, Any]], int]:
                box = self.inbox.get((channel, key), [])
                return copy.deepcopy(box[-limit:]), len(box)

            mp_people = []
            for user in self.mp_users.values():
                messages, total = newest("mp", user.openid)
                # The chat as the phone shows it: template messages and chat lines by time.
                box = self.inbox.get(("mp", user.openid), [])
                chat = self.chats.get(user.openid, [])
                merged = sorted(
                    [{"kind": "template", **m} for m in box[-limit:]] + chat[-limit:],
                    key=lambda e: e["time"])
                mp_people.append({**asdict(user), "id": user.openid, "name": user.nickname,
                                  "messages": messages, "total": total,
                                  "timeline": copy.deepcopy(merged[-limit:]),
                                  "timeline_total": len(box) + len(chat)})
            qy_people = []
            for member in self.qy_members.values():
                messages, total = newest("qy", member.userid)
                qy_people.append({**asdict(member), "id": member.userid, "visible":
                                  member.userid in visible, "messages": messages, "total": total})
            return {
                "mp": {"name": self.mp_name, "appid": self.mp_appid,
                       "original_id": self.mp_original_id, "people": mp_people},
                "qy": {"name": self.qy_corp_name, "corpid": self.qy_corpid,
                       "apps": [asdict(a) for a in self.qy_apps.values()], "people": qy_people},
                "version": self.version,
                "now": self._now(),
                "last_action": self.last_action,
            }

    # ---- the WeCom application's 接收消息 server -------------------------------------------------
    # As for the Official Account, the HTTP work lives in :mod:`webapp.simulator.qy_server`; these
    # methods only keep its state.

    def get_qy_server(self) -> dict[str, Any]:
        """The application's 接收消息 server (url, token, encoding_aes_key, agentid, enabled) and the
        outcome of its last URL check (or None)."""
        with self._lock:
            return {"server": dict(self.qy_server), "last_check": copy.deepcopy(self.qy_server_check)}

    def qy_push_context(self) -> dict[str, Any]:
        """What a WeCom push needs, read at one instant: the server, the CorpID, the per-try timeout,
        the simulated and the real time."""
        with self._lock:
            return {"server": dict(self.qy_server), "corpid": self.qy_corpid,
                    "timeout": float(self.settings["push_timeout"]), "now": self._now(), "real_now": self._clock()}

    def apply_qy_server(self, server: dict[str, Any] | None, check: dict[str, Any] | None) -> dict[str, Any]:
        """Record a URL check; when ``server`` is given (the check passed) it replaces the 接收消息
        server. Returns the server in force afterwards."""
        if server is not None and set(server) - set(EMPTY_QY_SERVER):
            raise ValueError(f"unknown server fields: {', '.join(sorted(set(server) - set(EMPTY_QY_SERVER)))}")
        with self._lock:
            if server is not None:
                self.qy_server = {**EMPTY_QY_SERVER, **server, "enabled": bool(server.get("enabled", True))}
            if check is not None:
                self.qy_server_check = copy.deepcopy(check)
            self._touch("server")
            return dict(self.qy_server)

    def set_qy_server_enabled(self, enabled: bool) -> dict[str, Any]:
        """Turn pushing to the 接收消息 server on or off without a new URL check."""
        with self._lock:
            if enabled and not self.qy_server["url"]:
                raise ValueError("no 接收消息 server to enable: submit a URL first")
            self.qy_server["enabled"] = bool(enabled)
            self._touch("server")
            return dict(self.qy_server)

    def clear_qy_server(self) -> None:
        """Forget the 接收消息 server and its last URL check."""
        with self._lock:
            self.qy_server = dict(EMPTY_QY_SERVER)
            self.qy_server_check = None
            self._touch("server")

    def record_qy_push(self, push: dict[str, Any]) -> dict[str, Any]:
        """Keep a finished push to the WeCom callback (its ``id`` is assigned here)."""
        with self._lock:
            push = {**copy.deepcopy(push), "id": self._next_push_id}
            self._next_push_id += 1
            self.qy_pushes.append(push)
            del self.qy_pushes[:-PUSH_LOG_LIMIT]
            self._touch("push")
            return copy.deepcopy(push)

    def list_qy_pushes(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Pushes made to the WeCom callback, oldest first; optionally the last ``limit``."""
        with self._lock:
            found = self.qy_pushes if limit is None else (self.qy_pushes[-limit:] if limit > 0 else [])
            return copy.deepcopy(found)
