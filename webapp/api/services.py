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
from sqlalchemy import func, select

from webapp.api.apps import verify_secret
from webapp.delivery.content import Notification, default_date
from webapp.delivery.engine import Target
from webapp.extensions import db
from webapp.models import CHANNEL_MP, ApiApp, Binding, RateWindow, User, utcnow
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

    app: ApiApp
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
    app = db.session.scalar(select(ApiApp).where(ApiApp.app_code == code))
    if app is None or not verify_secret(app.secret_hash, secret):
        raise ApiError(401, 401, "the application code or secret is wrong")
    if not app.enabled:
        raise ApiError(401, 401, f"the application {code} is disabled; ask an administrator to enable it")
    return Caller(app, pick("bk_username", "username"))


def check_rate(app: ApiApp) -> None:
    """Count this request in the application's current minute; refuse with Retry-After beyond its limit."""
    now = utcnow()
    window = now.replace(second=0, microsecond=0)
    with db.write_connection(durable=False) as connection:
        dialect_insert = _insert_for(connection)
        statement = dialect_insert(RateWindow).values(api_app_id=app.id, window_start=window, count=1)
        connection.execute(statement.on_conflict_do_update(
            index_elements=["api_app_id", "window_start"], set_={"count": RateWindow.count + 1}))
        count = connection.execute(select(RateWindow.count).where(RateWindow.api_app_id == app.id,
                                                                  RateWindow.window_start == window)).scalar()
    if count > app.rate_limit_per_minute:
        retry_after = max(1, 60 - now.second)
        raise ApiError(429, 429, f"rate limit of {app.rate_limit_per_minute} requests a minute reached for {app.app_code}; "
                                 f"retry in {retry_after} s", {"Retry-After": str(retry_after)})


def _insert_for(connection):
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


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


def validate(body: dict, *, heading_key="heading", message_key="message", base64_key="is_message_base64") -> SendRequest:
    """Check every field of a send request; raise a 1306000 error naming the first wrong one."""
    receivers = _names(body.get("receiver"), "receiver")
    usernames = [] if receivers else _names(body.get("receiver__username"), "receiver__username")
    if not receivers and not usernames:
        raise invalid("receiver or receiver__username is required")
    limit = int(current_app.config["SEND_MAX_RECEIVERS"])
    if len(receivers) + len(usernames) > limit:
        raise invalid(f"at most {limit} receivers per request")
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


def resolve(send: SendRequest, configured) -> tuple[list[Target], list[str]]:
    """The receivers to deliver to, and the user names that cannot receive (for ``username_check``).

    A user name counts only when the user exists, is enabled and has an active binding on the
    configured channel and account. A binding ended by unfollowing the Official Account, or an
    unknown user, fails at once with the reason, without calling WeChat.
    """
    targets: list[Target] = []
    invalid_names: list[str] = []
    if send.receivers:
        bindings = {b.wx_id: b for b in db.session.scalars(
            select(Binding).where(Binding.channel == configured.wx_type, Binding.account == configured.account,
                                  Binding.wx_id.in_(send.receivers)))}
        users = {u.id: u.username for u in db.session.scalars(select(User).where(User.id.in_([b.user_id for b in bindings.values()])))}
        for receiver in send.receivers:
            binding = bindings.get(receiver)
            refusal = invalid_receiver(receiver, configured.wx_type)
            if refusal is None and binding is not None and not binding.active and binding.deactivated_reason == "unsubscribed":
                refusal = "the person unfollowed the Official Account, so WeChat would refuse the message (43004)"
            targets.append(Target(receiver, users.get(binding.user_id) if binding else None, refusal))
        return targets, invalid_names
    users = {u.username.lower(): u for u in db.session.scalars(select(User).where(func.lower(User.username).in_([n.lower() for n in send.usernames])))}
    active = {b.user_id: b for b in db.session.scalars(select(Binding).where(
        Binding.channel == configured.wx_type, Binding.account == configured.account, Binding.active.is_(True),
        Binding.user_id.in_([u.id for u in users.values()])))}
    left = {b.user_id: b for b in db.session.scalars(select(Binding).where(
        Binding.channel == configured.wx_type, Binding.account == configured.account, Binding.active.is_(False),
        Binding.deactivated_reason == "unsubscribed", Binding.user_id.in_([u.id for u in users.values()])))}
    channel_name = "the Official Account" if configured.wx_type == CHANNEL_MP else "WeCom"
    for name in send.usernames:
        user = users.get(name.lower())
        if user is None:
            reason = "no such user"
        elif not user.enabled:
            reason = "the user is disabled"
        elif user.id in active:
            targets.append(Target(active[user.id].wx_id, user.username))
            continue
        elif user.id in left:
            reason = "the user unfollowed the Official Account; following it again restores notifications"
        else:
            reason = f"the user has not bound WeChat for {channel_name} (Bind WeChat page)"
        invalid_names.append(name)
        targets.append(Target("", name, reason))
    return targets, invalid_names


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
    from sqlalchemy import delete

    with db.transaction() as session:
        session.execute(delete(RateWindow).where(RateWindow.window_start < utcnow() - timedelta(hours=1)))
