"""The callback URL WeChat calls: ``/console/user_center/weixin/mp/callback/`` (path kept from BlueKing)."""
from __future__ import annotations

from urllib.parse import parse_qsl

from flask import Blueprint, Response, request

from webapp.callback import services

bp = Blueprint("callback", __name__, url_prefix="/console/user_center/weixin/mp")

#: WeChat's messages are a few kilobytes; anything much larger is not from WeChat.
MAX_BODY = 64 * 1024


def _query_is_utf8() -> bool:
    """Whether the raw query string, percent-decoded, is valid UTF-8 (Werkzeug would patch it up)."""
    try:
        parse_qsl(request.query_string.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        return False
    return True


@bp.route("/callback/", methods=["GET", "POST"])
def callback():
    """GET: URL verification. POST: events and messages. Always plain text or XML, never a 5xx."""
    remote_addr = request.remote_addr or ""
    if not _query_is_utf8():
        # WeChat's parameters are ASCII; a query that is not even UTF-8 could only be echoed altered.
        services.record(request.method, "malformed", remote_addr=remote_addr, detail="the query is not valid UTF-8")
        return Response("the query string is not valid UTF-8", 400, mimetype="text/plain")
    if request.method == "GET":
        answer = services.verify_url(request.args, remote_addr)
    else:
        if (request.content_length or 0) > MAX_BODY:
            services.record("POST", "too_large", remote_addr=remote_addr)
            return Response("request body too large", 413, mimetype="text/plain")
        body = request.stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            services.record("POST", "too_large", remote_addr=remote_addr)
            return Response("request body too large", 413, mimetype="text/plain")
        answer = services.handle_message(request.args, body, remote_addr)
    return Response(answer.body, answer.status, mimetype="application/xml" if answer.xml else "text/plain")
