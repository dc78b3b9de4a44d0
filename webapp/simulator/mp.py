"""The simulated Official Account API, under ``/simulator/mp`` (PROTOCOL.md sections 1-3)."""
from __future__ import annotations

import threading
from typing import Any

from flask import request

from webapp.simulator.blueprint import bp
from webapp.simulator.gate import api, read_json
from webapp.simulator.world import World


@bp.get("/mp/cgi-bin/token")
@api("mp", "token")
def mp_token(world: World) -> dict[str, Any]:
    """Issue a new token each call; the previous one stays valid for 5 more minutes."""
    args = request.args
    return world.mp_token(args.get("grant_type"), args.get("appid"), args.get("secret"))


@bp.post("/mp/cgi-bin/stable_token")
@api("mp", "stable_token")
def mp_stable_token(world: World) -> dict[str, Any]:
    """Hand out the current stable token (normal mode) or a fresh one (force_refresh)."""
    return world.mp_stable_token(read_json())


@bp.post("/mp/cgi-bin/message/template/send")
@api("mp", "template_send")
def mp_template_send(world: World) -> dict[str, Any]:
    """Deliver a template message to a follower's simulated phone, and report it later as WeChat does."""
    body = read_json()
    answer = world.mp_send_template(request.args.get("access_token"), body)
    if answer.get("errcode") == 0 and world.settings.get("mp_receipts"):
        threading.Timer(RECEIPT_DELAY, _report_delivery, args=(world, str(body.get("touser")), str(answer["msgid"]))).start()
    return answer


#: Seconds between a template message and its delivery report.
RECEIPT_DELAY = 1.0


def _report_delivery(world: World, openid: str, msgid: str) -> None:
    """Push TEMPLATESENDJOBFINISH for ``msgid`` (nothing happens without an enabled server configuration)."""
    from webapp.simulator.push import push_event

    try:
        push_event(world, openid, {"MsgType": "event", "Event": "TEMPLATESENDJOBFINISH", "MsgID": msgid, "Status": "success"})
    # A report that cannot be pushed is simply lost, as with WeChat.
    except Exception:  # nosec B110
        pass


@bp.post("/mp/cgi-bin/qrcode/create")
@api("mp", "qrcode_create")
def mp_qrcode_create(world: World) -> dict[str, Any]:
    """Create a parametric QR code ticket."""
    return world.mp_create_qrcode(request.args.get("access_token"), read_json())


@bp.get("/mp/cgi-bin/template/get_all_private_template")
@api("mp", "template_list")
def mp_template_list(world: World) -> dict[str, Any]:
    """List the account's private templates."""
    return world.mp_template_list(request.args.get("access_token"))
