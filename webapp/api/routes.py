"""The BlueKing-compatible send API (``cmsi/send_weixin``, ``send_msg``, ``get_msg_type``) and message status."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from webapp import logs
from webapp.api import sending
from webapp.api.openapi import document
from webapp.api.services import ApiError
from webapp.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.errorhandler(ApiError)
def refused(exc: ApiError):
    """A refused call: the same JSON shape as any answer, with the refusal's status and headers."""
    return sending.Answer.refusal(exc, logs.current_id()).response()


@bp.post("/c/compapi/cmsi/send_weixin/")
@bp.post("/c/compapi/v2/cmsi/send_weixin/")
@csrf.exempt
def send_weixin():
    """Send a WeChat message to receivers (openids/userids) or user names; answer per receiver."""
    return sending.send_blueking(sending.SEND_WEIXIN, logs.current_id()).response()


@bp.post("/c/compapi/cmsi/send_msg/")
@bp.post("/c/compapi/v2/cmsi/send_msg/")
@csrf.exempt
def send_msg():
    """BlueKing's generic ``send_msg`` with ``msg_type=weixin``: title -> heading, content -> message."""
    return sending.send_blueking(sending.SEND_MSG, logs.current_id()).response()


@bp.get("/c/compapi/cmsi/get_msg_type/")
@bp.get("/c/compapi/v2/cmsi/get_msg_type/")
def get_msg_type():
    """The message types BlueKing callers may ask for; only ``weixin`` is served here."""
    return sending.message_types(logs.current_id()).response()


@bp.get("/v1/messages/<message_id>")
def message_status(message_id: str):
    """The current status of each delivery of a message sent by the calling application."""
    return sending.message_status(message_id, logs.current_id()).response()


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of these endpoints."""
    return jsonify(document(current_app.config.get("PUBLIC_URL") or request.host_url.rstrip("/")))
