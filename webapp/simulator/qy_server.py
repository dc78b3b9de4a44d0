"""The simulated WeCom calling the service: the URL check of the application's 接收消息 server, and
encrypted pushes of events and contact changes (PROTOCOL.md section 5).

**The 接收消息 server** (应用管理 → 应用 → 接收消息 → 设置API接收): URL, Token and EncodingAESKey, all
three required (WeCom encrypts everything). Saving it sends WeCom's GET check: ``msg_signature =
sign(token, timestamp, nonce, echostr)`` with ``echostr`` the Base64 encryption of a random number
for receiveid = the CorpID; it is kept only when the answer is HTTP 200 with that number as the
whole body (no quotes, BOM or newline); otherwise the previous server stays and the outcome says
why, in the console's words (:data:`CHECK_MESSAGES`).

**Pushes** (:func:`push_event`): the plain ``<xml>`` (ToUserName = CorpID, FromUserName, CreateTime,
the fields, AgentID) is encrypted with the server's key and POSTed as ``<xml><ToUserName/><Encrypt/>
<AgentID/></xml>`` with ``msg_signature``, ``timestamp`` and ``nonce`` in the query; up to three tries,
each with the same body and a fresh timestamp and nonce, stopping at the first 2xx answer (an empty
body or ``success`` means received). What people do on WeCom's side becomes such a push: an
administrator deletes a member (``change_contact``/``delete_user``) or changes a member's userid
(``update_user`` with ``NewUserID``), a member opens the application (``enter_agent``) or writes to it.

The JSON routes are under ``/simulator/_control/qy/``, the panel's forms under ``/simulator/panel/qy/``.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from flask import abort, request

from webapp.simulator.blueprint import bp, service_root
from webapp.simulator.control import body, control
from webapp.simulator.gate import current_world
# The Official Account side's HTTP helpers: WeCom calls the service with the same patience and retries.
from webapp.simulator.pages import _back as back_to_page
from webapp.simulator.push import PUSH_TRIES, PushTry
from webapp.simulator.push import _excerpt as excerpt
from webapp.simulator.push import _fetch as fetch
from webapp.simulator.push import _nonce as new_nonce
from webapp.simulator.push import InvalidServer, simulator_session
from webapp.simulator.world import World
from webapp.wechat import (MessageCrypto, XMLMessageError, build_xml, generate_encoding_aes_key, sign,
                           validate_encoding_aes_key, validate_token)
from webapp.wechat.ids import valid_wecom_userid

#: What WeCom's console says for each outcome of saving the 接收消息 server (close paraphrases).
CHECK_MESSAGES = {
    "ok": "保存成功",
    "timeout": "openapi回调地址请求不通过（请求超时）",
    "connect_error": "openapi回调地址请求不通过（无法连接）",
    "http_status": "openapi回调地址请求不通过",
    "wrong_echo": "openapi回调地址请求不通过（未正确返回明文echostr）",
    "invalid_url": "URL必须以http://或https://开头",
    "invalid_token": "Token须为3至32位英文或数字",
    "invalid_key": "EncodingAESKey须为43位英文或数字",
}
#: How long a text a member can send to the application is.
TEXT_MAX_CHARS = 2000


@dataclass
class QyPush:
    """A push to the WeCom callback, with every try and how it ended.

    ``outcome`` is "disabled" (no enabled 接收消息 server: nothing was sent), "success" (an empty
    answer or ``success``), "reply" (a passive reply, encrypted) or "failed" (no 2xx answer, or one
    WeCom cannot read); ``reason`` says which case exactly.
    """

    from_user: str
    msg_type: str
    event: str
    change_type: str
    url: str
    create_time: int
    xml: str  # the plain message
    body: str  # what was POSTed (identical on every try)
    time: float  # simulated time of the push
    id: int | None = None
    tries: list[PushTry] = field(default_factory=list)
    outcome: str = "disabled"
    reason: str = "disabled"
    detail: str = ""
    elapsed_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


# ---- the 接收消息 server --------------------------------------------------------------------------

def validate_server(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a 接收消息 form as WeCom's console does; return it cleaned up."""
    url = str(config.get("url") or "").strip()
    token = str(config.get("token") or "").strip()
    key = str(config.get("encoding_aes_key") or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidServer("invalid_url", "the URL must start with http:// or https://")
    if not validate_token(token):
        raise InvalidServer("invalid_token", "the Token must be 3 to 32 letters or digits")
    if not validate_encoding_aes_key(key):
        raise InvalidServer("invalid_key", "the EncodingAESKey must be 43 letters or digits")
    return {"url": url, "token": token, "encoding_aes_key": key, "agentid": int(config.get("agentid") or 0),
            "enabled": bool(config.get("enabled", True))}


def check_url(url: str, token: str, key: str, corpid: str, timeout: float, now: float | None = None) -> dict[str, Any]:
    """Send WeCom's URL check to ``url`` and judge the answer; return the check's outcome."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = new_nonce()
    plaintext = str(10**18 + secrets.randbelow(9 * 10**18))
    echostr = MessageCrypto(token, key, corpid).encrypt(plaintext)
    params = [("msg_signature", sign(token, timestamp, nonce, echostr)), ("timestamp", timestamp),
              ("nonce", nonce), ("echostr", echostr)]
    with simulator_session() as session:
        answer = fetch(session, "GET", url, params, timeout)
    if answer.error == "timeout":
        reason, detail = "timeout", answer.detail
    elif answer.error:
        reason, detail = "connect_error", f"could not connect: {answer.detail}"
    elif answer.status != 200:
        reason, detail = "http_status", f"the URL answered HTTP {answer.status}"
    elif answer.body != plaintext.encode("ascii"):
        reason = "wrong_echo"
        detail = (f"the answer was not the decrypted echostr {plaintext}"
                  f" (got {answer.body[:80].decode('utf-8', errors='replace')!r})")
    else:
        reason, detail = "ok", "the URL answered the decrypted echostr"
    return {"ok": reason == "ok", "reason": reason, "message": CHECK_MESSAGES[reason], "detail": detail,
            "url": url, "status": answer.status, "elapsed_ms": answer.elapsed_ms, "echostr": echostr,
            "plaintext": plaintext, "answer": excerpt(answer.body), "time": time.time() if now is None else now}


def configure_server(world: World, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Save the 接收消息 server like WeCom's console: check the URL, keep the server if it passes.

    ``changes`` may hold url, token, encoding_aes_key, enabled; fields left out keep their current
    values. ``enabled`` alone turns pushing on or off without a check. Returns the check's outcome
    plus ``server``, the server in force afterwards. A form the console would refuse raises
    :class:`InvalidServer` (a ValueError) and changes nothing.
    """
    unknown = set(changes) - {"url", "token", "encoding_aes_key", "enabled"}
    if unknown:
        raise ValueError(f"unknown server fields: {', '.join(sorted(unknown))}")
    if "enabled" in changes and not isinstance(changes["enabled"], bool):
        raise ValueError("enabled must be true or false")
    if set(changes) == {"enabled"}:
        server = world.set_qy_server_enabled(changes["enabled"])
        return {"ok": True, "reason": "toggled", "message": "", "detail": "enabled" if server["enabled"] else "disabled",
                "server": server, "last_check": world.get_qy_server()["last_check"]}
    context = world.qy_push_context()
    candidate = validate_server({**context["server"], "enabled": True, **changes})
    check = check_url(candidate["url"], candidate["token"], candidate["encoding_aes_key"], context["corpid"],
                      context["timeout"], context["real_now"])
    check["time"] = context["now"]
    server = world.apply_qy_server(candidate if check["ok"] else None, check)
    return {**check, "server": server}


def refuse_server(world: World, error: InvalidServer, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Record a form the console refused as the last check (the server is unchanged)."""
    check = {"ok": False, "reason": error.reason, "message": CHECK_MESSAGES[error.reason], "detail": error.detail,
             "url": str(changes.get("url") or ""), "status": None, "elapsed_ms": 0, "echostr": "", "answer": "",
             "time": world.now()}
    return {**check, "server": world.apply_qy_server(None, check)}


# ---- pushes -------------------------------------------------------------------------------------

def _judge(answer_body: bytes) -> tuple[str, str, str]:
    """Read a 2xx answer as WeCom does: (outcome, reason, detail)."""
    text = answer_body.strip()
    if not text:
        return "success", "empty", "an empty answer: received"
    if text == b"success":
        return "success", "success", "success: received"
    if b"<Encrypt>" in text:
        return "reply", "reply", "an encrypted passive reply"
    return "failed", "junk", "WeCom takes an empty answer, success or an encrypted reply, not this"


def push_event(world: World, from_user: str, fields: Mapping[str, Any]) -> QyPush:
    """Push one event or message from ``from_user`` (a userid, or "sys" for contact changes) to the
    service's WeCom callback, as WeCom does; see the module. Never raises for a misbehaving service:
    that is what the result describes."""
    if not isinstance(from_user, str) or not from_user:
        raise ValueError("from_user is required")
    if not isinstance(fields, Mapping):
        raise ValueError("fields must be a mapping of element names to values")
    context = world.qy_push_context()
    server = context["server"]
    message: dict[str, Any] = {"ToUserName": context["corpid"], "FromUserName": from_user,
                               "CreateTime": int(context["now"]), **fields, "AgentID": server["agentid"]}
    try:
        xml = build_xml(message)
    except XMLMessageError as exc:
        raise ValueError(f"cannot build the message: {exc}") from None
    result = QyPush(from_user=from_user, msg_type=str(message.get("MsgType", "")), event=str(message.get("Event", "")),
                    change_type=str(message.get("ChangeType", "")), url=server["url"],
                    create_time=int(message["CreateTime"]), xml=xml, body="", time=context["now"])
    if not server["enabled"] or not server["url"]:
        result.detail = "the 接收消息 server is off: nothing was sent"
        return result
    token = server["token"]
    encrypted = MessageCrypto(token, server["encoding_aes_key"], context["corpid"]).encrypt(xml)
    result.body = build_xml({"ToUserName": context["corpid"], "Encrypt": encrypted, "AgentID": server["agentid"]})
    data = result.body.encode("utf-8")
    started = time.monotonic()
    answer = None
    with simulator_session() as session:
        for number in range(1, PUSH_TRIES + 1):
            timestamp, nonce = str(int(world.real_now())), new_nonce()
            query = {"msg_signature": sign(token, timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
            attempt = PushTry(number=number, timestamp=timestamp, nonce=nonce, query=query, at=time.time(),
                              offset_ms=int((time.monotonic() - started) * 1000))
            answer = fetch(session, "POST", server["url"], list(query.items()), world.qy_push_context()["timeout"], data)
            attempt.elapsed_ms, attempt.status, attempt.error = answer.elapsed_ms, answer.status, answer.error
            attempt.detail = answer.detail or (f"HTTP {answer.status}" if answer.status is not None else "")
            attempt.answer = excerpt(answer.body)
            result.tries.append(attempt)
            if answer.status is not None and 200 <= answer.status < 300:
                break
    result.elapsed_ms = int((time.monotonic() - started) * 1000)
    if answer is not None and answer.status is not None and 200 <= answer.status < 300:
        result.outcome, result.reason, result.detail = _judge(answer.body)
    elif answer is not None and answer.status is not None:
        result.outcome, result.reason = "failed", "http_status"
        result.detail = f"HTTP {answer.status} after {len(result.tries)} tries"
    else:
        result.outcome, result.reason = "failed", (answer.error if answer is not None else None) or "error"
        result.detail = f"{answer.detail if answer is not None else ''} (after {len(result.tries)} tries)"
    result.id = world.record_qy_push(result.to_dict())["id"]
    return result


def _member(world: World, userid: Any) -> dict[str, Any]:
    """The member ``userid`` of the simulated corp, with whether the application sees them."""
    if not isinstance(userid, str) or not userid:
        raise ValueError("userid is required")
    described = world.describe()["qy"]
    visible = {u for app in described["apps"] for u in app["allow_users"]}
    for member in described["members"]:
        if member["userid"] == userid.lower():
            return {**member, "visible": member["userid"] in visible}
    raise ValueError(f"no WeCom member with userid {userid!r}")


def delete_member(world: World, userid: str) -> QyPush:
    """An administrator deletes the member: they leave the corp, then ``delete_user`` is pushed."""
    member = _member(world, userid)
    world.remove_qy_member(member["userid"])
    return push_event(world, "sys", {"MsgType": "event", "Event": "change_contact", "ChangeType": "delete_user",
                                     "UserID": member["userid"]})


def change_userid(world: World, userid: str, new_userid: str) -> QyPush:
    """An administrator changes the member's userid (WeCom allows it once for a generated one): the
    member is known by ``new_userid`` from now on, then ``update_user`` with ``NewUserID`` is pushed."""
    member = _member(world, userid)
    if not isinstance(new_userid, str) or not valid_wecom_userid(new_userid):
        raise ValueError("new_userid must be 1 to 64 letters, digits, '_', '-', '.' or '@'")
    new = new_userid.lower()
    if new == member["userid"] or any(m["userid"] == new for m in world.describe()["qy"]["members"]):
        raise ValueError(f"the userid {new_userid!r} is taken")
    world.remove_qy_member(member["userid"])
    world.upsert_qy_member(new, member["name"], visible=member["visible"])
    return push_event(world, "sys", {"MsgType": "event", "Event": "change_contact", "ChangeType": "update_user",
                                     "UserID": member["userid"], "NewUserID": new})


def enter_agent(world: World, userid: str) -> QyPush:
    """The member opens the application in WeCom: ``enter_agent`` is pushed."""
    member = _member(world, userid)
    return push_event(world, member["userid"], {"MsgType": "event", "Event": "enter_agent", "EventKey": ""})


def send_text(world: World, userid: str, content: Any) -> QyPush:
    """The member writes ``content`` to the application: a text message with a fresh MsgId is pushed."""
    member = _member(world, userid)
    if not isinstance(content, str) or not content.strip():
        raise ValueError("content is required")
    if len(content) > TEXT_MAX_CHARS:
        raise ValueError(f"content is longer than {TEXT_MAX_CHARS} characters")
    return push_event(world, member["userid"], {"MsgType": "text", "Content": content,
                                                 "MsgId": world.next_user_msgid()})


ACTIONS = {"delete_user": delete_member, "enter_agent": enter_agent}


# ---- the control API ----------------------------------------------------------------------------

@bp.get("/_control/qy/server")
@control
def control_qy_server() -> dict[str, Any]:
    """The application's 接收消息 server as ``server`` and the outcome of its last URL check as ``last_check``."""
    return current_world().get_qy_server()


@bp.post("/_control/qy/server")
@control
def control_qy_server_submit() -> dict[str, Any]:
    """Save the 接收消息 server as in WeCom's console (url, token, encoding_aes_key): WeCom's URL check
    runs and the server is kept only when it passes. Answers the check and the ``server`` in force; a
    failed check is still HTTP 200. ``{"enabled": false}`` alone turns pushing off."""
    return configure_server(current_world(), body())


@bp.delete("/_control/qy/server")
@control
def control_qy_server_clear() -> dict[str, Any]:
    """Forget the 接收消息 server (nothing is pushed any more)."""
    world = current_world()
    world.clear_qy_server()
    return world.get_qy_server()


@bp.post("/_control/qy/push")
@control
def control_qy_push() -> dict[str, Any]:
    """Push any event or message: ``{"from": userid or "sys", "fields": {...}}``; answers the push."""
    data = body()
    if not isinstance(data.get("fields"), dict):
        raise ValueError("fields must be a JSON object")
    return push_event(current_world(), data.get("from"), data["fields"]).to_dict()


@bp.post("/_control/qy/contact/delete")
@control
def control_qy_delete_member() -> dict[str, Any]:
    """Delete the member ``{"userid"}`` from the corp and push ``delete_user``."""
    return delete_member(current_world(), body().get("userid")).to_dict()


@bp.post("/_control/qy/contact/userid")
@control
def control_qy_change_userid() -> dict[str, Any]:
    """Change a member's userid ``{"userid", "new_userid"}`` and push ``update_user`` with ``NewUserID``."""
    data = body()
    return change_userid(current_world(), data.get("userid"), data.get("new_userid")).to_dict()


@bp.post("/_control/qy/enter_agent")
@control
def control_qy_enter_agent() -> dict[str, Any]:
    """The member ``{"userid"}`` opens the application: push ``enter_agent``."""
    return enter_agent(current_world(), body().get("userid")).to_dict()


@bp.post("/_control/qy/text")
@control
def control_qy_text() -> dict[str, Any]:
    """The member ``{"userid", "content"}`` writes to the application: push the text message."""
    data = body()
    return send_text(current_world(), data.get("userid"), data.get("content")).to_dict()


@bp.get("/_control/qy/pushes")
@control
def control_qy_pushes() -> dict[str, Any]:
    """Pushes made to the WeCom callback, oldest first (``limit`` keeps the last N)."""
    limit = request.args.get("limit")
    return {"pushes": current_world().list_qy_pushes(int(limit) if limit else None)}


# ---- the control panel's forms ------------------------------------------------------------------

#: Pushes to the WeCom callback the panel shows (newest first).
PANEL_PUSHES = 5


@bp.app_template_global("qy_server_panel")
def qy_server_panel() -> dict[str, Any]:
    """What the panel's WeCom box shows: the 接收消息 server, its last check, the members, the latest pushes."""
    world = current_world()
    state = world.get_qy_server()
    server = state["server"]
    pushes = world.list_qy_pushes(PANEL_PUSHES)[::-1]
    for item in [state["last_check"], *pushes]:
        if item:
            item["time_text"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(item["time"]))
    return {"server": server, "check": state["last_check"], "pushes": pushes,
            "members": world.describe()["qy"]["members"],
            "suggested_key": server["encoding_aes_key"] or generate_encoding_aes_key(),
            "callback_hint": service_root() + "/console/user_center/weixin/qy/callback/"}


@bp.post("/panel/qy/server")
def panel_qy_server():
    """Save the 接收消息 form: WeCom's URL check runs and its outcome is shown on the page."""
    form = request.form
    changes = {"url": form.get("url", ""), "token": form.get("token", ""),
               "encoding_aes_key": form.get("encoding_aes_key", ""), "enabled": "enabled" in form}
    world = current_world()
    try:
        configure_server(world, changes)
    except InvalidServer as exc:
        refuse_server(world, exc, changes)
    return back_to_page()


@bp.post("/panel/qy/server/enabled")
def panel_qy_server_enabled():
    """Turn pushing to the 接收消息 server on or off without a new check."""
    try:
        current_world().set_qy_server_enabled(request.form.get("enabled") == "1")
    except ValueError as exc:
        abort(400, description=str(exc))
    return back_to_page()


@bp.post("/panel/qy/contact")
def panel_qy_contact():
    """What happens on WeCom's side, pushed to the service: delete_user, update_user (NewUserID) or enter_agent."""
    form = request.form
    world = current_world()
    action = form.get("action", "")
    try:
        if action == "update_user":
            change_userid(world, form.get("userid", ""), form.get("new_userid", "").strip())
        elif action in ACTIONS:
            ACTIONS[action](world, form.get("userid", ""))
        else:
            abort(400, description="action must be delete_user, update_user or enter_agent")
    except ValueError as exc:
        abort(400, description=str(exc))
    return back_to_page()
