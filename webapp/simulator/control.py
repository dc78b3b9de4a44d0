"""The control API under ``/simulator/_control``: JSON endpoints that tests and the control panel
use to reset the world, turn its knobs, inject faults and read what was delivered.

Invalid input answers HTTP 400 with ``{"error": "..."}``; nothing is changed in that case.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from flask import Response, jsonify, request

from webapp.simulator import push
from webapp.simulator.blueprint import bp, service_host
from webapp.simulator.gate import current_world
from webapp.simulator.world import QY_AGENTID


def control(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer a control view's result as JSON, and bad input as HTTP 400."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return jsonify(view(*args, **kwargs))
        except (ValueError, TypeError) as exc:
            return jsonify({"error": str(exc)}), 400

    return wrapper


def body() -> dict[str, Any]:
    """The request's JSON object ({} for an empty body)."""
    if not request.get_data():
        return {}
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


@bp.post("/_control/reset")
@control
def control_reset() -> dict[str, Any]:
    """Return to the seed: accounts, people, settings, clock, faults, tokens, messages."""
    current_world().reset()
    return {"ok": True}


@bp.get("/_control/settings")
@control
def control_settings() -> dict[str, Any]:
    """The current settings."""
    return current_world().get_settings()


@bp.post("/_control/settings")
@control
def control_update_settings() -> dict[str, Any]:
    """Change some settings: latency_ms, token_lifetime, mp_ip_check, mp_ip_whitelist,
    qy_ip_check, qy_ip_whitelist, qy_strict_limits, push_timeout."""
    return current_world().update_settings(body())


@bp.get("/_control/clock")
@control
def control_clock() -> dict[str, Any]:
    """The simulated time and its offset from the real one."""
    return current_world().clock()


@bp.post("/_control/clock/advance")
@control
def control_advance() -> dict[str, Any]:
    """Move the simulated clock forward by ``seconds``."""
    world = current_world()
    world.advance(body().get("seconds", 0))
    return world.clock()


@bp.get("/_control/faults")
@control
def control_faults() -> dict[str, Any]:
    """The queued faults."""
    return {"faults": current_world().list_faults()}


@bp.post("/_control/faults")
@control
def control_add_fault() -> dict[str, Any]:
    """Queue one fault, or several given as ``{"faults": [...]}``; ``for_seconds`` makes a fault
    window (every matching call for that long) instead of ``count`` calls."""
    data = body()
    specs = data["faults"] if isinstance(data.get("faults"), list) else [data]
    world = current_world()
    added = [world.add_fault(spec) for spec in specs]
    return {"added": added, "faults": world.list_faults()}


@bp.delete("/_control/faults")
@control
def control_clear_faults() -> dict[str, Any]:
    """Drop every queued fault."""
    current_world().clear_faults()
    return {"faults": []}


@bp.post("/_control/tokens/invalidate")
@control
def control_invalidate() -> dict[str, Any]:
    """Revoke current tokens (``channel`` "mp", "qy", or omitted for both)."""
    return {"revoked": current_world().invalidate_tokens(body().get("channel"))}


@bp.get("/_control/stats")
@control
def control_stats() -> dict[str, Any]:
    """Call counts per endpoint and delivered-message counts."""
    return current_world().stats()


@bp.get("/_control/messages")
@control
def control_messages() -> dict[str, Any]:
    """Delivered messages, oldest first (``channel``, ``to`` and ``limit`` narrow the list)."""
    limit = request.args.get("limit")
    channel = request.args.get("channel")
    if channel not in (None, "mp", "qy"):
        raise ValueError("channel must be mp or qy")
    return {"messages": current_world().get_messages(
        channel, request.args.get("to"), int(limit) if limit else None)}


@bp.get("/_control/world")
@control
def control_world() -> dict[str, Any]:
    """The accounts, templates, users, applications and members."""
    return current_world().describe(served_at=service_host())


@bp.get("/_control/version")
@control
def control_version() -> dict[str, Any]:
    """A number that changes whenever anything changes (the phone page polls it)."""
    return {"version": current_world().version}


@bp.post("/_control/mp/account")
@control
def control_mp_account() -> dict[str, Any]:
    """Change the Official Account's appid, secret, original_id or name."""
    return current_world().update_mp_account(body())


@bp.post("/_control/mp/users")
@control
def control_mp_user() -> dict[str, Any]:
    """Add a WeChat user or change one: ``openid``, ``nickname``, ``following``."""
    data = body()
    following = data.get("following")
    return current_world().upsert_mp_user(
        data.get("openid"), data.get("nickname"), None if following is None else bool(following))


@bp.delete("/_control/mp/users/<openid>")
@control
def control_mp_user_remove(openid: str) -> dict[str, Any]:
    """Forget a WeChat user."""
    return {"removed": current_world().remove_mp_user(openid)}


@bp.post("/_control/mp/templates")
@control
def control_mp_template() -> dict[str, Any]:
    """Add or replace a private template."""
    return current_world().upsert_template(body())


@bp.delete("/_control/mp/templates/<template_id>")
@control
def control_mp_template_remove(template_id: str) -> dict[str, Any]:
    """Delete a private template."""
    return {"removed": current_world().remove_template(template_id)}


@bp.get("/_control/mp/qrcodes")
@control
def control_mp_qrcodes() -> dict[str, Any]:
    """Every QR code created so far, with its scene."""
    return {"qrcodes": current_world().list_tickets()}


@bp.get("/_control/mp/server")
@control
def control_mp_server() -> dict[str, Any]:
    """The Official Account's server configuration (URL, token, EncodingAESKey, mode, enabled)
    as ``server``, and the outcome of the last URL check as ``last_check``."""
    return current_world().get_mp_server()


@bp.post("/_control/mp/server")
@control
def control_mp_server_submit() -> dict[str, Any]:
    """Submit the server configuration as in the MP console: the URL is checked with WeChat's
    signed GET and the configuration kept only if it answers the echostr. Answers the check
    (``ok``, ``reason``, ``message``, ``detail``, ``status``, ...) and the ``server`` in force;
    a failed check is still HTTP 200. ``{"enabled": false}`` alone turns pushing off."""
    return push.configure_server(current_world(), body())


@bp.delete("/_control/mp/server")
@control
def control_mp_server_clear() -> dict[str, Any]:
    """Forget the server configuration (nothing is pushed any more)."""
    world = current_world()
    world.clear_mp_server()
    return world.get_mp_server()


@bp.post("/_control/mp/push")
@control
def control_mp_push() -> dict[str, Any]:
    """Push any event or message to the service: ``{"openid", "fields": {...}}``; answers the
    push with its tries and outcome."""
    data = body()
    fields = data.get("fields")
    if not isinstance(fields, dict):
        raise ValueError("fields must be a JSON object")
    return push.push_event(current_world(), data.get("openid"), fields).to_dict()


@bp.get("/_control/mp/pushes")
@control
def control_mp_pushes() -> dict[str, Any]:
    """Pushes made to the service, oldest first (``openid`` and ``limit`` narrow the list)."""
    limit = request.args.get("limit")
    return {"pushes": current_world().list_pushes(
        request.args.get("openid"), int(limit) if limit else None)}


@bp.get("/_control/mp/chat/<openid>")
@control
def control_mp_chat(openid: str) -> dict[str, Any]:
    """What a person's chat shows besides template messages: what they sent, passive replies,
    WeChat's notices and follow/unfollow lines, oldest first."""
    return {"chat": current_world().get_chat(openid)}


@bp.post("/_control/mp/phone/text")
@control
def control_mp_phone_text() -> dict[str, Any]:
    """A follower sends a text message: ``{"openid", "content"}``; answers the push."""
    data = body()
    return push.phone_send_text(current_world(), data.get("openid"),
                                data.get("content")).to_dict()


@bp.post("/_control/mp/phone/subscribe")
@control
def control_mp_phone_subscribe() -> dict[str, Any]:
    """A person follows the account: ``{"openid"}`` (optionally ``event_key``, ``ticket``)."""
    data = body()
    return push.phone_subscribe(current_world(), data.get("openid"),
                                str(data.get("event_key") or ""), data.get("ticket")).to_dict()


@bp.post("/_control/mp/phone/unsubscribe")
@control
def control_mp_phone_unsubscribe() -> dict[str, Any]:
    """A person unfollows the account: ``{"openid"}``."""
    return push.phone_unsubscribe(current_world(), body().get("openid")).to_dict()


@bp.post("/_control/mp/scan")
@control
def control_mp_scan() -> dict[str, Any]:
    """A person scans one of the account's QR codes: ``{"openid", "ticket"}`` or ``{"openid",
    "url"}`` (the content URL the service encoded). Answers the push (``subscribe`` with
    ``qrscene_<scene>`` for a non-follower, ``SCAN`` with ``<scene>`` for a follower) plus
    ``qrcode``, ``by`` and ``scan_id``; an expired code answers ``outcome`` "expired" with the
    notice WeChat showed and nothing pushed. An unknown code is HTTP 400."""
    data = body()
    ticket, url = data.get("ticket"), data.get("url")
    if bool(ticket) == bool(url):
        raise ValueError("give exactly one of ticket or url")
    return push.scan_qrcode(current_world(), data.get("openid"), ticket or url).to_dict()


@bp.get("/_control/mp/scans")
@control
def control_mp_scans() -> dict[str, Any]:
    """Scans of QR codes by the simulated phones, oldest first (``openid``, ``limit``)."""
    limit = request.args.get("limit")
    return {"scans": current_world().list_scans(
        request.args.get("openid"), int(limit) if limit else None)}


@bp.post("/_control/qy/corp")
@control
def control_qy_corp() -> dict[str, Any]:
    """Change the corp's corpid or name."""
    return current_world().update_qy_corp(body())


@bp.post("/_control/qy/apps")
@control
def control_qy_app() -> dict[str, Any]:
    """Add or change an application: ``agentid`` plus any of secret, name, allow_users,
    redirect_domain, close, home_url."""
    return current_world().upsert_qy_app(body())


@bp.post("/_control/qy/members")
@control
def control_qy_member() -> dict[str, Any]:
    """Add or rename a member; ``visible`` puts them in or out of an application's visibility."""
    data = body()
    visible = data.get("visible")
    return current_world().upsert_qy_member(
        data.get("userid"), data.get("name"), None if visible is None else bool(visible),
        int(data.get("agentid", QY_AGENTID)))


@bp.delete("/_control/qy/members/<userid>")
@control
def control_qy_member_remove(userid: str) -> dict[str, Any]:
    """Delete a member."""
    return {"removed": current_world().remove_qy_member(userid)}


@bp.post("/_control/qy/codes")
@control
def control_qy_code() -> dict[str, Any]:
    """Issue a single-use login code for ``userid`` (a member) or ``openid`` (a non-member)."""
    data = body()
    return current_world().qy_issue_code(data.get("userid"), data.get("openid"))
