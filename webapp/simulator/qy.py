"""The simulated WeCom API, under ``/simulator/qy`` (PROTOCOL.md sections 5 and 6)."""
from __future__ import annotations

from typing import Any

from flask import request

from webapp.simulator.blueprint import bp, service_host
from webapp.simulator.gate import api, read_json
from webapp.simulator.world import World


@bp.get("/qy/cgi-bin/gettoken")
@api("qy", "gettoken")
def qy_gettoken(world: World) -> dict[str, Any]:
    """Issue a token for the application whose secret is given."""
    return world.qy_gettoken(request.args.get("corpid"), request.args.get("corpsecret"))


@bp.post("/qy/cgi-bin/message/send")
@api("qy", "qy_send")
def qy_send(world: World) -> dict[str, Any]:
    """Deliver an application message (text, textcard or markdown) to members' phones."""
    return world.qy_send(request.args.get("access_token"), read_json())


@bp.get("/qy/cgi-bin/auth/getuserinfo")
@api("qy", "getuserinfo")
def qy_getuserinfo(world: World) -> dict[str, Any]:
    """Exchange a single-use login code for a userid (member) or an openid (non-member)."""
    return world.qy_getuserinfo(request.args.get("access_token"), request.args.get("code"))


@bp.get("/qy/cgi-bin/agent/get")
@api("qy", "agent_get")
def qy_agent_get(world: World) -> dict[str, Any]:
    """Describe the token's application: visibility, trusted domain, whether it is closed."""
    return world.qy_agent_get(request.args.get("access_token"), request.args.get("agentid"),
                              served_at=service_host())
