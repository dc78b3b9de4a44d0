"""The callback URL WeChat calls: ``/console/user_center/weixin/mp/callback/`` (path kept from BlueKing)."""
from __future__ import annotations

from flask import Blueprint, Response, request

from webapp.callback import services

bp = Blueprint("callback", __name__, url_prefix="/console/user_center/weixin/mp")

#: WeChat's messages are a few kilobytes; anything much larger is not from WeChat.
MAX_BODY = 64 * 1024


@bp.route("/callback/", methods=["GET", "POST"])
def callback():
    """GET: URL verification. POST: events and messages. Always plain text or XML, never a 5xx."""
    remote_addr = request.remote_addr or ""
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
