"""The control API under ``/simulator/_control``: JSON endpoints that tests and the control panel
use to reset the world, turn its knobs, inject faults and read what was delivered.

Invalid input answers HTTP 400 with ``{"error": "..."}``; nothing is changed in that case.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from flask import Response, jsonify, request

from webapp.simulator import bp
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
    qy_ip_check, qy_ip_whitelist, qy_strict_limits."""
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
    """Queue one fault, or several given as ``{"faults": [...]}``."""
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
    return current_world().describe()


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
