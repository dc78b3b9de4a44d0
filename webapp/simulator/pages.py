"""The simulated phone: pages showing what each follower and member received, and the control
panel's HTML forms (plain POSTs that redirect back; this is a local tool, so no CSRF token)."""
from __future__ import annotations

import html
import re
import time
from typing import Any

from flask import abort, redirect, render_template, request, url_for
from flask_babel import get_locale
from werkzeug.wrappers import Response

from webapp.simulator import push
from webapp.simulator.blueprint import bp, service_host, service_root
from webapp.simulator.gate import current_world
from webapp.simulator.world import ENDPOINTS, FAULT_KINDS, SERVER_MODES
from webapp.wechat import generate_encoding_aes_key

#: Messages shown per person on the overview, and on a single phone.
OVERVIEW_LIMIT = 10
PHONE_LIMIT = 100
#: Pushes shown in a phone page's callback log (newest first).
PUSH_LOG_SHOWN = 20

_TAG = re.compile(r"<[^>]*>")
_BREAK = re.compile(r"<br\s*/?>|</div>|</p>", re.IGNORECASE)


def _clock_text(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _plain(markup: str) -> str:
    """WeCom textcard descriptions carry a few tags (<div class="gray">, <br>); show their text."""
    return html.unescape(_TAG.sub("", _BREAK.sub("\n", markup))).strip()


def _safe_link(url: str) -> str:
    """The link a card may open: only http(s), never a script URL from a sender."""
    return url if re.match(r"^https?://", url or "", re.IGNORECASE) else ""


def _prepare(message: dict[str, Any], app_names: dict[int, str]) -> dict[str, Any]:
    """Add what the card templates need: readable time, safe link, plain description."""
    message["time_text"] = _clock_text(message["time"])
    if message["channel"] == "mp":
        message["link"] = _safe_link(message.get("url", ""))
    else:
        message["app_name"] = app_names.get(message.get("agentid"), "")
        content = message["content"]
        if message["msgtype"] == "textcard":
            content["plain_description"] = _plain(content["description"])
            message["link"] = _safe_link(content["url"])
    return message


def _prepare_chat(entry: dict[str, Any], app_names: dict[int, str]) -> dict[str, Any]:
    """A line of an Official Account chat: a template card, or a chat line with its time."""
    if entry.get("kind") == "template":
        return _prepare(entry, app_names)
    entry["time_text"] = _clock_text(entry["time"])
    return entry


def _prepare_push(item: dict[str, Any]) -> dict[str, Any]:
    """Add the readable (simulated) time to a push of the log."""
    item["time_text"] = _clock_text(item["time"])
    return item


def _page_context(limit: int) -> dict[str, Any]:
    world = current_world()
    view = world.phone_view(limit)
    app_names = {a["agentid"]: a["name"] for a in view["qy"]["apps"]}
    for channel in ("mp", "qy"):
        for person in view[channel]["people"]:
            person["messages"] = [_prepare(m, app_names) for m in person["messages"]]
            if channel == "mp":
                person["timeline"] = [_prepare_chat(e, app_names) for e in person["timeline"]]
    server_state = world.get_mp_server()
    last_check = server_state["last_check"]
    if last_check:
        last_check["time_text"] = _clock_text(last_check["time"])
    root = request.url_root.rstrip("/") + (bp.url_prefix or "")
    action, action_time = view["last_action"]
    return {
        "view": view,
        "version": view["version"],
        "clock_text": _clock_text(view["now"]),
        "clock_short": time.strftime("%H:%M", time.localtime(view["now"])),
        "last_action": action,
        "last_action_time": _clock_text(action_time),
        "settings": world.get_settings(),
        "stats": world.stats(),
        "faults": world.list_faults(),
        "accounts": world.describe(served_at=service_host()),
        "api_base": {"mp": f"{root}/mp", "qy": f"{root}/qy"},
        "endpoints": ENDPOINTS,
        "fault_kinds": FAULT_KINDS,
        "server": server_state["server"],
        "server_form": world.get_mp_server_form(),
        "server_check": last_check,
        "server_modes": SERVER_MODES,
        # Like the MP console, offer a random EncodingAESKey while none is set.
        "suggested_key": server_state["server"]["encoding_aes_key"] or generate_encoding_aes_key(),
        "callback_hint": service_root() + "/console/user_center/weixin/mp/callback/",
        "lang": str(get_locale() or "en"),
    }


@bp.get("/")
def index() -> str:
    """Every simulated follower and member with the messages they received, and the panel."""
    return render_template("simulator/index.html", **_page_context(OVERVIEW_LIMIT))


@bp.get("/phone/<person_id>")
def phone(person_id: str) -> str:
    """One person's phone: an Official Account follower (openid) or a WeCom member (userid)."""
    context = _page_context(PHONE_LIMIT)
    view = context["view"]
    for channel in ("mp", "qy"):
        for person in view[channel]["people"]:
            if person["id"] == person_id or (channel == "qy" and person["id"] == person_id.lower()):
                pushes = []
                if channel == "mp":
                    pushes = [_prepare_push(p) for p in
                              current_world().list_pushes(person["id"], PUSH_LOG_SHOWN)[::-1]]
                return render_template("simulator/phone.html", person=person, channel=channel,
                                       pushes=pushes, **context)
    abort(404)


def _back() -> Response:
    """Return to the page the form was on (only pages of the simulator), else the overview."""
    target = request.form.get("next", "")
    prefix = (bp.url_prefix or "") + "/"
    if not target.startswith(prefix) or target.startswith("//") or "\\" in target:
        target = url_for("simulator.index")
    return redirect(target, code=303)


def _form_int(name: str, low: int, high: int) -> int:
    try:
        value = int(request.form.get(name, ""))
    except ValueError:
        abort(400, description=f"{name} must be a whole number")
    if not low <= value <= high:
        abort(400, description=f"{name} must be between {low} and {high}")
    return value


@bp.post("/panel/settings")
def panel_settings() -> Response:
    """Save the panel's settings form (unchecked boxes arrive as absent, meaning off)."""
    form = request.form
    changes = {
        "latency_ms": _form_int("latency_ms", 0, 60000),
        "token_lifetime": _form_int("token_lifetime", 1, 7200),
        "mp_ip_check": "mp_ip_check" in form,
        "mp_ip_whitelist": form.get("mp_ip_whitelist", ""),
        "qy_ip_check": "qy_ip_check" in form,
        "qy_ip_whitelist": form.get("qy_ip_whitelist", ""),
        "qy_strict_limits": "qy_strict_limits" in form,
    }
    if form.get("push_timeout"):
        try:
            changes["push_timeout"] = float(form["push_timeout"])
        except ValueError:
            abort(400, description="push_timeout must be a number")
    try:
        current_world().update_settings(changes)
    except ValueError as exc:
        abort(400, description=str(exc))
    return _back()


@bp.post("/panel/invalidate")
def panel_invalidate() -> Response:
    """Revoke every current token, as if the platform had reset them."""
    channel = request.form.get("channel") or None
    if channel not in (None, "mp", "qy"):
        abort(400)
    current_world().invalidate_tokens(channel)
    return _back()


@bp.post("/panel/advance")
def panel_advance() -> Response:
    """Move the simulated clock forward."""
    current_world().advance(_form_int("seconds", 1, 30 * 86400))
    return _back()


@bp.post("/panel/reset")
def panel_reset() -> Response:
    """Return the whole simulator to its seed."""
    current_world().reset()
    return redirect(url_for("simulator.index"), code=303)


@bp.post("/panel/follow")
def panel_follow() -> Response:
    """The person follows (subscribe) or unfollows (unsubscribe) the Official Account; with a
    server configuration on, the event is pushed to the service before the page comes back."""
    openid = request.form.get("openid", "")
    world = current_world()
    users = {u["openid"]: u for u in world.describe()["mp"]["users"]}
    if openid not in users:
        abort(404)
    follow = request.form.get("following") == "1"
    if follow != users[openid]["following"]:  # a second click on a stale page does nothing
        if follow:
            push.phone_subscribe(world, openid)
        else:
            push.phone_unsubscribe(world, openid)
    return _back()


@bp.post("/panel/send")
def panel_send() -> Response:
    """The person sends a text message to the account (pushed to the service when the server
    configuration is on; the page comes back once WeChat would have given up waiting)."""
    openid = request.form.get("openid", "")
    world = current_world()
    if openid not in {u["openid"] for u in world.describe()["mp"]["users"]}:
        abort(404)
    try:
        push.phone_send_text(world, openid, request.form.get("content", ""))
    except ValueError as exc:
        abort(400, description=str(exc))
    return _back()


@bp.post("/panel/server")
def panel_server() -> Response:
    """Submit the server configuration form: the URL check runs and its outcome is shown on the
    page; a configuration that fails it is not kept."""
    form = request.form
    changes = {
        "url": form.get("url", ""),
        "token": form.get("token", ""),
        "encoding_aes_key": form.get("encoding_aes_key", ""),
        "mode": form.get("mode", "plain"),
        "enabled": "enabled" in form,
    }
    world = current_world()
    try:
        outcome = push.configure_server(world, changes)
    except push.InvalidServer as exc:
        outcome = push.refuse_server(world, exc, changes)
    # A refused configuration stays in the form, to be corrected rather than typed again.
    world.fill_mp_server_form(None if outcome["ok"] else changes)
    return _back()


@bp.post("/panel/server/fill")
def panel_server_fill() -> Response:
    """Fill in the server configuration form (url, token, encoding_aes_key, mode) without
    submitting it, as the service's set-up wizard offers; the page shows the form to submit.
    An EncodingAESKey left out keeps the one the form offers."""
    form = request.form
    world = current_world()
    values = {name: form.get(name, "") for name in ("url", "token", "mode")}
    values["encoding_aes_key"] = form.get("encoding_aes_key") or world.get_mp_server()["server"]["encoding_aes_key"]
    try:
        world.fill_mp_server_form(values)
    except ValueError as exc:
        abort(400, description=str(exc))
    return redirect(url_for("simulator.index") + "#server-config", code=303)


@bp.post("/panel/server/enabled")
def panel_server_enabled() -> Response:
    """Turn pushing on or off without changing (or re-checking) the configuration."""
    try:
        current_world().set_mp_server_enabled(request.form.get("enabled") == "1")
    except ValueError as exc:
        abort(400, description=str(exc))
    return _back()


@bp.post("/panel/faults")
def panel_add_fault() -> Response:
    """Queue a fault from the panel's form."""
    form = request.form
    spec: dict[str, Any] = {"endpoint": form.get("endpoint", "*"), "kind": form.get("kind"),
                            "count": _form_int("count", 1, 1000)}
    for name in ("errcode", "status", "seconds"):
        if form.get(name):
            spec[name] = form[name]
    try:
        current_world().add_fault(spec)
    except ValueError as exc:
        abort(400, description=str(exc))
    return _back()


@bp.post("/panel/faults/clear")
def panel_clear_faults() -> Response:
    """Drop every queued fault."""
    current_world().clear_faults()
    return _back()
