"""The send API's checks: credentials, rate limits, validation of a BlueKing body, and receivers.

Compatible with what BlueKing callers send to ``cmsi/send_weixin``: credentials in
``X-Bkapi-Authorization`` or in the body/query, a JSON body whatever its Content-Type, receivers as a
list or a string split on commas, semicolons, spaces and newlines.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qsl

from flask import current_app, request
from flask_babel import gettext as _
from sqlalchemy import DateTime, Integer, and_, bindparam, delete, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from webapp.api import throttle
from webapp.api.apps import CallingApp, remembered_credentials, verify_credentials
from webapp.delivery import idempotency
from webapp.delivery.content import Notification, default_date
from webapp.delivery.engine import Target
from webapp.extensions import db
from webapp.models import CHANNEL_MP, Binding, RateWindow, User, utcnow
from webapp.wechat.errors import N_, Sentence
from webapp.wechat.ids import valid_openid, valid_wecom_userid

VALIDATION_ERROR = 1306000
SEND_FAILED = 1306201
NOT_CONFIGURED = 1306202
_SPLIT = re.compile(r"[,;\s]+")


class ApiError(Exception):
    """A refused request: HTTP status, BlueKing code and a sentence naming what is wrong."""

    def __init__(self, status: int, code: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def invalid(message: str) -> ApiError:
    """A validation error (code 1306000): nothing is stored, nothing is sent."""
    return ApiError(200, VALIDATION_ERROR, message)


#: Form fields read from one request at most (a send has about ten).
MAX_FORM_FIELDS = 200


def parse_body() -> dict:
    """The request's parameters: a JSON body whatever its Content-Type (BlueKing's SDK sends none, and
    ``curl -d`` sends a form type), else form fields. Checked strictly before anything is stored: a
    body that is not valid UTF-8, or JSON holding an escaped lone surrogate, is refused."""
    raw = request.get_data(cache=True)
    try:
        text = raw.decode("utf-8").strip() if raw else ""
    except UnicodeDecodeError:
        raise invalid("the request body is not valid UTF-8: send the JSON encoded as UTF-8") from None
    if text.startswith("{"):
        return json_object(text)
    if request.mimetype == "multipart/form-data":
        return request.form.to_dict()  # its parts are UTF-8: the whole body decoded above
    try:
        pairs = parse_qsl(text, encoding="utf-8", errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise invalid("a form field is not valid UTF-8 once percent-decoded") from None
    except ValueError:
        raise invalid(f"the form has more than {MAX_FORM_FIELDS} fields") from None
    if text and not pairs:
        raise invalid("the request body must be a JSON object")
    fields: dict = {}
    for name, value in pairs:
        fields.setdefault(name, value)  # the first value of a repeated field, as forms are read elsewhere
    return fields


def json_object(text: str) -> dict:
    """``text`` (already decoded from UTF-8) read as one JSON object; a validation error when it is not one."""
    try:
        body = json.loads(text)
    except ValueError:
        raise invalid("the request body is not valid JSON") from None
    except RecursionError:  # nesting deeper than the parser's stack: no real request looks like that
        raise invalid("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    _refuse_surrogates(text, body)
    return body


_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _refuse_surrogates(text: str, body: dict) -> None:
    """Refuse strings holding a lone surrogate: JSON allows ``"\\ud800"``, but it is no character and
    UTF-8 cannot carry it (escaped pairs, as some clients send emoji, are one character and welcome)."""
    if not _ESCAPED_SURROGATE.search(text):
        return  # the usual case: nothing escaped in that range, no need to look through the values
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if any("\ud800" <= ch <= "\udfff" for ch in value):
                raise invalid("the request body holds an escaped lone surrogate (\\ud800-\\udfff), which is not a character")
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


@dataclass
class Caller:
    """The authenticated calling application."""

    app: CallingApp
    username: str | None


def authenticate(body: dict) -> Caller:
    """Check the application's credentials (header first, then body, then query) or raise 401."""
    fields: dict = {}
    header = request.headers.get("X-Bkapi-Authorization")
    if header:
        try:
            fields = json.loads(header)
        except (ValueError, RecursionError):
            raise ApiError(401, 401, "X-Bkapi-Authorization is not valid JSON") from None
        if not isinstance(fields, dict):
            raise ApiError(401, 401, "X-Bkapi-Authorization must be a JSON object")

    def pick(*names):
        for source in (fields, body, request.args):
            for name in names:
                value = source.get(name)
                if isinstance(value, str) and value:
                    if "\x00" in value or len(value) > 256:
                        raise ApiError(401, 401, f"{name} is not a valid credential")
                    return value
        return None

    code, secret = pick("bk_app_code", "app_code"), pick("bk_app_secret", "app_secret")
    if not code or not secret:
        raise ApiError(401, 401, "application credentials are missing: send bk_app_code and bk_app_secret "
                                 "(in X-Bkapi-Authorization, the body or the query)")
    # A pair verified a moment ago costs no database read; any other is first checked against the
    # throttle of failed authentications (per code and per address, shared by every process).
    app = remembered_credentials(code, secret)
    if app is None:
        address = request.remote_addr
        try:
            throttle.refuse_if_throttled(code, address)
        except throttle.Throttled as exc:
            raise ApiError(429, 429, exc.sentence(), {"Retry-After": str(exc.retry_after)}) from None
        app = verify_credentials(code, secret)
        if app is None:
            throttle.record_failure(code, address)
            raise ApiError(401, 401, "the application code or secret is wrong")
    if not app.enabled:
        raise ApiError(401, 401, f"the application {code} is disabled; ask an administrator to enable it")
    return Caller(app, pick("bk_username", "username"))


def _count_request(statement):
    """Add this request to its application's minute and answer the minute's count (ON CONFLICT ... RETURNING)."""
    return statement.on_conflict_do_update(index_elements=["api_app_id", "window_start"],
                                           set_={"count": RateWindow.count + 1}).returning(RateWindow.count)


# Built once: a statement made afresh on every call costs more Python than the database needs to run it.
_COUNT_REQUEST_SQLITE = _count_request(sqlite.insert(RateWindow).values(
    api_app_id=bindparam("app_id"), window_start=bindparam("window"), count=1))
# On PostgreSQL the statement is its own transaction (autocommit: no BEGIN, no COMMIT round trips),
# and it lets that transaction's commit return before the disk write, as the bookkeeping writes of
# ``db.write_connection(durable=False)`` do: ``set_config(..., true)`` is SET LOCAL inside the
# statement. A crash may forget the last fraction of a second of counts, never corrupt them.
_COUNT_REQUEST_POSTGRESQL = _count_request(postgresql.insert(RateWindow).from_select(
    ["api_app_id", "window_start", "count"],
    select(bindparam("app_id", type_=Integer), bindparam("window", type_=DateTime), literal(1, Integer))
    .where(func.set_config("synchronous_commit", "off", True).is_not(None))))


def check_rate(app: CallingApp) -> None:
    """Count this request in the application's current minute; refuse with Retry-After beyond its limit.

    One statement: the upsert adds the request and answers the minute's count.
    """
    now = utcnow()
    window = now.replace(second=0, microsecond=0)
    values = {"app_id": app.id, "window": window}
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            count = connection.execute(_COUNT_REQUEST_POSTGRESQL, values).scalar_one()
    else:  # SQLite: under the process's writer lock, which spares the database's busy-wait
        with db.write_connection(durable=False) as connection:
            count = connection.execute(_COUNT_REQUEST_SQLITE, values).scalar_one()
    if count > app.rate_limit_per_minute:
        retry_after = max(1, 60 - now.second)
        raise ApiError(429, 429, f"rate limit of {app.rate_limit_per_minute} requests a minute reached for {app.app_code}; "
                                 f"retry in {retry_after} s", {"Retry-After": str(retry_after)})


def _names(value, name: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        items = _SPLIT.split(value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [part for v in value for part in _SPLIT.split(v)]
    else:
        raise invalid(f"{name} must be a string or a list of strings")
    unique = list(dict.fromkeys(i for i in (item.strip() for item in items) if i))
    for item in unique:
        if len(item) > 128:
            raise invalid(f"{name} has an entry longer than 128 characters")
        if "\x00" in item:
            raise invalid(f"{name} contains a NUL character")
    return unique


def _text(data: dict, name: str, *, required: bool = False, limit: int = 4000) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise invalid(f"data.{name} is required")
        return None
    if not isinstance(value, str):
        raise invalid(f"data.{name} must be a string")
    if len(value) > limit:
        raise invalid(f"data.{name} is longer than {limit} characters")
    if "\x00" in value:
        raise invalid(f"data.{name} contains a NUL character")
    return value


def _flag(value, name: str) -> bool:
    if value in (None, "", False, 0, "0", "false", "False"):
        return False
    if value in (True, 1, "1", "true", "True"):
        return True
    raise invalid(f"{name} must be true or false")


@dataclass
class SendRequest:
    """A validated send request."""

    notification: Notification
    receivers: list[str] = field(default_factory=list)
    usernames: list[str] = field(default_factory=list)
    overrides: dict = field(default_factory=dict)


def receivers_of(values) -> tuple[list[str], list[str]]:
    """The ``receiver`` ids and ``receiver__username`` names in ``values`` (a body, or a query's lists),
    the names ignored when ids are given; a 1306000 error when there are none, or too many."""
    receivers = _names(values.get("receiver"), "receiver")
    usernames = [] if receivers else _names(values.get("receiver__username"), "receiver__username")
    if not receivers and not usernames:
        raise invalid("receiver or receiver__username is required")
    limit = int(current_app.config["SEND_MAX_RECEIVERS"])
    if len(receivers) + len(usernames) > limit:
        raise invalid(f"at most {limit} receivers per request")
    return receivers, usernames


#: Fields of a send request that are not its content: the credentials and the idempotency key itself.
_NOT_CONTENT = frozenset({"bk_app_code", "app_code", "bk_app_secret", "app_secret", "bk_username", "username",
                          "idempotency_key"})


def idempotency_guard(body: dict, app_id: int, form: str):
    """The guard of a send request that carries an idempotency key (header ``Idempotency-Key`` or body
    field ``idempotency_key``), or None without one; a 1306000 error for a key that is not 1-128
    printable ASCII characters, or two different keys.

    The fingerprint covers the request's content (``form`` names the endpoint's fields), without the
    credentials: a retry with a rotated secret is still the same request.
    """
    header = request.headers.get("Idempotency-Key")
    field_value = body.get("idempotency_key")
    if header is None and field_value in (None, ""):
        return None
    if field_value not in (None, "") and not isinstance(field_value, str):
        raise invalid(_("idempotency_key must be a string of 1 to %(max)d characters.", max=idempotency.MAX_KEY_LENGTH))
    if header is not None and field_value not in (None, "") and header != field_value:
        raise invalid(_("The Idempotency-Key header and the idempotency_key field differ: send the key once, "
                        "in either of them."))
    key = header if header is not None else field_value
    if not 1 <= len(key) <= idempotency.MAX_KEY_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise invalid(_("The idempotency key must be 1 to %(max)d printable ASCII characters (a UUID is a good "
                        "choice); nothing was sent.", max=idempotency.MAX_KEY_LENGTH))
    content = {name: value for name, value in body.items() if name not in _NOT_CONTENT}
    return idempotency.for_key(app_id, key, [form, content])


def validate(body: dict, *, heading_key="heading", message_key="message", base64_key="is_message_base64") -> SendRequest:
    """Check every field of a send request; raise a 1306000 error naming the first wrong one."""
    receivers, usernames = receivers_of(body)
    data = body.get("data", body if heading_key != "heading" else None)
    if not isinstance(data, dict):
        raise invalid("data must be an object with heading and message")
    heading = _text(data, heading_key, required=True, limit=1000)
    message = _text(data, message_key, required=True, limit=20000)
    if _flag(data.get(base64_key), f"data.{base64_key}" if heading_key == "heading" else base64_key):
        try:
            message = base64.b64decode(message.encode("ascii"), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeError, ValueError):
            raise invalid(f"data.{message_key} is not valid base64 of UTF-8 text") from None
    date = _text(data, "date", limit=64) or default_date(tz=None)
    remark = _text(data, "remark", limit=4000)
    url = _text(data, "url", limit=2048)
    if url and not re.match(r"^https?://[^\s]+$", url):
        raise invalid("data.url must be an http(s) URL")
    overrides = {}
    agentid = body.get("wx_qy_agentid")
    if agentid not in (None, ""):
        if isinstance(agentid, bool) or not str(agentid).isdigit():
            raise invalid("wx_qy_agentid must be a number")
        overrides["agentid"] = int(agentid)
    secret = body.get("wx_qy_corpsecret")
    if secret not in (None, ""):
        if not isinstance(secret, str) or len(secret) > 128 or "\x00" in secret:
            raise invalid("wx_qy_corpsecret must be a string")
        overrides["corpsecret"] = secret
    return SendRequest(Notification(heading, message, date, remark, url), receivers, usernames, overrides)


#: The receivers' bindings on a channel and account, with their users' names: one query.
_RECEIVERS_BINDINGS = (
    select(Binding.wx_id, Binding.active, Binding.deactivated_reason, User.username)
    .outerjoin(User, User.id == Binding.user_id)
    .where(Binding.channel == bindparam("channel"), Binding.account == bindparam("account"),
           Binding.wx_id.in_(bindparam("ids", expanding=True))))
#: The named users, each with its bindings on a channel and account that are active or were ended by
#: unfollowing or by WeCom deleting the member (those get a sentence of their own): one query.
_USERS_BINDINGS = (
    select(User.id, User.username, User.enabled, Binding.wx_id, Binding.active, Binding.deactivated_reason)
    .outerjoin(Binding, and_(Binding.user_id == User.id, Binding.channel == bindparam("channel"),
                             Binding.account == bindparam("account"),
                             or_(Binding.active.is_(True),
                                 Binding.deactivated_reason.in_(("unsubscribed", "member_deleted")))))
    .where(func.lower(User.username).in_(bindparam("names", expanding=True))))


def resolve(send: SendRequest, configured) -> tuple[list[Target], list[str]]:
    """The receivers to deliver to, and the user names that cannot receive (for ``username_check``).

    A user name counts only when the user exists, is enabled and has an active binding on the
    configured channel and account. A binding ended by unfollowing the Official Account or by WeCom
    deleting the member, or an unknown user, fails at once with the reason, without calling WeChat.
    """
    targets: list[Target] = []
    invalid_names: list[str] = []
    if send.receivers:
        bindings = {row.wx_id: row for row in db.session.execute(
            _RECEIVERS_BINDINGS, {"channel": configured.wx_type, "account": configured.account, "ids": send.receivers})}
        for receiver in send.receivers:
            binding = bindings.get(receiver)
            refusal = invalid_receiver(receiver, configured.wx_type)
            reason = "invalid_id" if refusal else None
            if refusal is None and binding is not None and not binding.active and binding.deactivated_reason == "unsubscribed":
                refusal = "the person unfollowed the Official Account, so WeChat would refuse the message (43004)"
                reason = "unfollowed"
            elif refusal is None and binding is not None and not binding.active and binding.deactivated_reason == "member_deleted":
                refusal, reason = _in_both_languages(MEMBER_DELETED), "member_deleted"
            targets.append(Target(receiver, binding.username if binding else None, refusal, reason))
        return targets, invalid_names
    rows = db.session.execute(_USERS_BINDINGS, {"channel": configured.wx_type, "account": configured.account,
                                                "names": [n.lower() for n in send.usernames]}).all()
    users = {row.username.lower(): row for row in rows}
    active = {row.id: row for row in rows if row.wx_id is not None and row.active}
    left = {row.id: row for row in rows if row.wx_id is not None and not row.active}
    channel_name = "the Official Account" if configured.wx_type == CHANNEL_MP else "WeCom"
    for name in send.usernames:
        user = users.get(name.lower())
        if user is None:
            reason, kind = "no such user", "no_such_user"
        elif not user.enabled:
            reason, kind = "the user is disabled", "user_disabled"
        elif user.id in active:
            targets.append(Target(active[user.id].wx_id, user.username))
            continue
        elif user.id in left and left[user.id].deactivated_reason == "member_deleted":
            reason, kind = _in_both_languages(USER_MEMBER_DELETED), "member_deleted"
        elif user.id in left:
            reason, kind = "the user unfollowed the Official Account; following it again restores notifications", "unfollowed"
        else:
            reason, kind = f"the user has not bound WeChat for {channel_name} (Bind WeChat page)", "not_bound"
        invalid_names.append(name)
        targets.append(Target("", name, reason, kind))
    return targets, invalid_names


#: Why a WeCom member deleted from the contacts receives nothing (the binding ended with the member).
MEMBER_DELETED = N_("the member was deleted from WeCom's contacts, so nothing was sent and WeCom was not called; "
                    "if the person has a new WeCom account, they bind it on the Bind WeChat page")
USER_MEMBER_DELETED = N_("the user's WeCom member was deleted from the contacts, so nothing was sent and WeCom was "
                         "not called; the user binds their new WeCom account, if any, on the Bind WeChat page")


def _in_both_languages(message_id: str) -> str:
    """A refusal for the caller's log and the console, who may read either language: English / 中文."""
    return " / ".join(Sentence.of(message_id).render(lang) for lang in ("en", "zh"))


def invalid_receiver(receiver: str, wx_type: str) -> str | None:
    """Why ``receiver`` cannot be an id of the channel (the delivery then fails at once), or None."""
    if wx_type == CHANNEL_MP:
        if not valid_openid(receiver):
            return "not a valid openid: an openid is 1 to 64 letters, digits, '-' or '_' (WeChat was not called)"
    elif not valid_wecom_userid(receiver):
        return "not a valid WeCom userid: a userid is 1 to 64 letters, digits, '_', '-', '.' or '@' (WeChat was not called)"
    return None


def purge_old_windows() -> None:
    """Forget rate-limit counts older than an hour."""
    with db.transaction() as session:
        session.execute(delete(RateWindow).where(RateWindow.window_start < utcnow() - timedelta(hours=1)))
