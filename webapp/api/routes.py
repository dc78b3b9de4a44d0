"""The BlueKing-compatible send API (``cmsi/send_weixin``, ``send_msg``, ``get_msg_type``) and message status."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError

from webapp.api import services
from webapp.api.openapi import document
from webapp.api.services import ApiError, SEND_FAILED
from webapp.delivery import engine
from webapp.delivery import handlers  # noqa: F401  (registers the delivery-report handler)
from webapp.extensions import csrf, db
from webapp.models import Message

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger(__name__)


def _answer(request_id: str, *, result: bool, code: int, message: str, data=None, status: int = 200, headers=None):
    response = jsonify({"result": result, "code": code, "message": message, "request_id": request_id, "data": data})
    response.status_code = status
    response.headers["X-Request-Id"] = request_id
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _refusal(request_id: str, exc: ApiError):
    return _answer(request_id, result=False, code=exc.code, message=exc.message, status=exc.status, headers=exc.headers)


def _send(request_id: str, send: services.SendRequest, caller: services.Caller):
    configured = services.configured_channel()
    targets, invalid = services.resolve(send, configured)
    message = engine.accept(api_app_id=caller.app.id, request_id=request_id, configured=configured,
                            notification=send.notification, targets=targets, overrides=send.overrides)
    accepted = engine.describe_accepted(message, invalid)
    try:
        engine.send_now(message)
        data = engine.describe(message, invalid)
    except (OperationalError, InterfaceError):
        # The message is stored: a 503 now would make the caller send it again (a second message to
        # every receiver). Answer "queued"; the retry job delivers it once the database is back.
        log.warning("database unavailable after message %s was stored: answering queued", message.public_id)
        data = accepted
    failed = sum(1 for d in data["deliveries"] if d["status"] == engine.FAILED)
    queued = sum(1 for d in data["deliveries"] if d["status"] == engine.QUEUED)
    total = len(data["deliveries"])
    if failed:
        text = f"{failed} of {total} receivers failed" + (f", {queued} still being delivered" if queued else "")
    elif queued:
        text = f"accepted: {total - queued} sent, {queued} being delivered in the background"
    else:
        text = "OK"
    return _answer(request_id, result=failed == 0, code=0 if failed == 0 else SEND_FAILED, message=text, data=data)


@bp.post("/c/compapi/cmsi/send_weixin/")
@bp.post("/c/compapi/v2/cmsi/send_weixin/")
@csrf.exempt
def send_weixin():
    """Send a WeChat message to receivers (openids/userids) or user names; answer per receiver."""
    request_id = services.request_id()
    try:
        body = services.parse_body()
        caller = services.authenticate(body)
        services.check_rate(caller.app)
        send = services.validate(body)
        return _send(request_id, send, caller)
    except ApiError as exc:
        return _refusal(request_id, exc)


@bp.post("/c/compapi/cmsi/send_msg/")
@bp.post("/c/compapi/v2/cmsi/send_msg/")
@csrf.exempt
def send_msg():
    """BlueKing's generic ``send_msg`` with ``msg_type=weixin``: title -> heading, content -> message."""
    request_id = services.request_id()
    try:
        body = services.parse_body()
        caller = services.authenticate(body)
        services.check_rate(caller.app)
        if body.get("msg_type") != "weixin":
            raise services.invalid("msg_type must be weixin: this service sends WeChat messages only")
        send = services.validate(body, heading_key="title", message_key="content", base64_key="is_content_base64")
        return _send(request_id, send, caller)
    except ApiError as exc:
        return _refusal(request_id, exc)


@bp.get("/c/compapi/cmsi/get_msg_type/")
@bp.get("/c/compapi/v2/cmsi/get_msg_type/")
def get_msg_type():
    """The message types BlueKing callers may ask for; only ``weixin`` is served here."""
    request_id = services.request_id()
    try:
        services.authenticate({})
    except ApiError as exc:
        return _refusal(request_id, exc)
    from webapp import channel as channel_config

    active = channel_config.load() is not None
    types = [{"type": "weixin", "label": "WeChat", "label_en": "WeChat", "is_active": active}]
    types += [{"type": t, "label": label, "label_en": label, "is_active": False}
              for t, label in (("mail", "Email"), ("sms", "SMS"), ("voice", "Voice"))]
    return _answer(request_id, result=True, code=0, message="OK", data=types)


@bp.get("/v1/messages/<message_id>")
def message_status(message_id: str):
    """The current status of each delivery of a message sent by the calling application."""
    request_id = services.request_id()
    try:
        caller = services.authenticate({})
    except ApiError as exc:
        return _refusal(request_id, exc)
    message = db.session.scalar(select(Message).where(Message.public_id == message_id[:32]))
    if message is None or message.api_app_id != caller.app.id:
        return _answer(request_id, result=False, code=404, message="no message with this id was sent by this application",
                       status=404)
    return _answer(request_id, result=True, code=0, message="OK", data=engine.describe(message))


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of these endpoints."""
    return jsonify(document(current_app.config.get("PUBLIC_URL") or request.host_url.rstrip("/")))
