"""The callback URLs WeChat calls (paths kept from BlueKing): the Official Account's
``/console/user_center/weixin/mp/callback/`` and the WeCom application's ``.../qy/callback/``."""
from __future__ import annotations

from urllib.parse import parse_qsl

from flask import Blueprint, Response, request

from webapp.callback import qy_services, services
from webapp.models import CHANNEL_MP, CHANNEL_QYWX

bp = Blueprint("callback", __name__, url_prefix="/console/user_center/weixin")

#: WeChat's messages are a few kilobytes; anything much larger is not from WeChat.
MAX_BODY = 64 * 1024


def _query_is_utf8() -> bool:
    """Whether the raw query string, percent-decoded, is valid UTF-8 (Werkzeug would patch it up)."""
    try:
        parse_qsl(request.query_string.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _refusal(channel: str) -> Response | None:
    """The answer to a request refused before it is read (a query that is not UTF-8, a body too large), or None."""
    remote_addr = request.remote_addr or ""
    mode = "aes" if channel == CHANNEL_QYWX else "plain"
    if not _query_is_utf8():
        # WeChat's parameters are ASCII; a query that is not even UTF-8 could only be echoed altered.
        services.record(request.method, "malformed", mode=mode, remote_addr=remote_addr,
                        detail="the query is not valid UTF-8", channel=channel)
        return Response("the query string is not valid UTF-8", 400, mimetype="text/plain")
    if request.method == "POST" and (request.content_length or 0) > MAX_BODY:
        services.record("POST", "too_large", mode=mode, remote_addr=remote_addr, channel=channel)
        return Response("request body too large", 413, mimetype="text/plain")
    return None


def _body(channel: str) -> bytes | Response:
    """The POST body, read up to the limit; a refusal when it is longer (a body sent without a length)."""
    body = request.stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        services.record("POST", "too_large", mode="aes" if channel == CHANNEL_QYWX else "plain",
                        remote_addr=request.remote_addr or "", channel=channel)
        return Response("request body too large", 413, mimetype="text/plain")
    return body


def _serve(channel: str, handler) -> Response:
    """One request to ``channel``'s callback: refused early, a URL check (GET), or a push (POST)
    handed to ``handler`` (the channel's callback services module)."""
    refused = _refusal(channel)
    if refused is not None:
        return refused
    if request.method == "GET":
        return _answer(handler.verify_url(request.args, request.remote_addr or ""))
    body = _body(channel)
    if isinstance(body, Response):
        return body
    return _answer(handler.handle_message(request.args, body, request.remote_addr or ""))


def _answer(answer: services.Answer) -> Response:
    return Response(answer.body, answer.status, mimetype="application/xml" if answer.xml else "text/plain")


@bp.route("/mp/callback/", methods=["GET", "POST"])
def callback():
    """GET: URL verification. POST: events and messages. Always plain text or XML, never a 5xx."""
    return _serve(CHANNEL_MP, services)


@bp.route("/qy/callback/", methods=["GET", "POST"])
def qy_callback():
    """The WeCom application's callback. GET: WeCom's URL check (the decrypted echostr only).
    POST: encrypted events and messages. Always plain text or XML, never a 5xx."""
    return _serve(CHANNEL_QYWX, qy_services)
