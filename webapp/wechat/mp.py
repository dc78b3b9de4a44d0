"""Client for the WeChat Official Account (公众号) API calls this service makes.

Methods take the access token as an argument: fetching, storing and refreshing tokens is the token
broker's job. Every method returns parsed JSON (or the useful part of it) and raises
:class:`~webapp.wechat.errors.WeChatAPIError` for an errcode and
:class:`~webapp.wechat.errors.WeChatTransportError` when no usable answer came back.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from ._client import BaseClient
from .errors import WeChatRequestError, WeChatTransportError

__all__ = ["MpClient", "template_keys", "MAX_QR_EXPIRE_SECONDS"]

#: Temporary QR codes live at most 30 days.
MAX_QR_EXPIRE_SECONDS = 2_592_000

# The official page renders placeholders as "{ {key.DATA} }", so spaces between braces are allowed.
_TEMPLATE_KEY_RE = re.compile(r"\{\s*\{\s*([A-Za-z0-9_]+)\.DATA\s*\}\s*\}")


def template_keys(content: str) -> list[str]:
    """Return the keys of a template's ``{{key.DATA}}`` placeholders, in order, without repeats."""
    if not isinstance(content, str):
        return []
    seen: list[str] = []
    for key in _TEMPLATE_KEY_RE.findall(content):
        if key not in seen:
            seen.append(key)
    return seen


class MpClient(BaseClient):
    """Official Account API client; ``base_url`` is e.g. ``https://api.weixin.qq.com``."""

    channel = "mp"

    def stable_token(self, appid: str, secret: str, force_refresh: bool = False) -> tuple[str, int]:
        """Fetch a token from /cgi-bin/stable_token; return (access_token, expires_in seconds).

        In normal mode repeated calls return the same token, so several instances never
        invalidate each other's token; ``force_refresh`` is for leaked tokens only (20 a day).
        """
        answer = self._call("POST", "/cgi-bin/stable_token", body={
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret,
            "force_refresh": bool(force_refresh),
        }, context="token")
        return self._token_pair(answer, "/cgi-bin/stable_token")

    def legacy_token(self, appid: str, secret: str) -> tuple[str, int]:
        """Fetch a token from the older GET /cgi-bin/token (each call invalidates the last token)."""
        answer = self._call("GET", "/cgi-bin/token", params={
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret,
        }, context="token")
        return self._token_pair(answer, "/cgi-bin/token")

    def send_template(self, token: str, touser: str, template_id: str, data: Mapping,
                      url: str | None = None, client_msg_id: str | None = None) -> int:
        """Send a template message; ``data`` maps template keys to text. Return WeChat's msgid.

        ``client_msg_id`` makes WeChat drop a repeat of the same message to the same user
        (within about 10 minutes), so a retry after a lost answer cannot deliver twice.
        """
        if not touser or not template_id:
            raise WeChatRequestError("touser and template_id are required")
        values = {}
        for key, value in data.items():
            # Accept {"value": ...} as well, for callers that build WeChat's shape themselves.
            values[key] = dict(value) if isinstance(value, Mapping) else {"value": str(value)}
        body: dict = {"touser": touser, "template_id": template_id, "data": values}
        if url:
            body["url"] = url
        if client_msg_id:
            body["client_msg_id"] = str(client_msg_id)
        answer = self._call("POST", "/cgi-bin/message/template/send",
                            params={"access_token": token}, body=body)
        try:
            return int(answer["msgid"])
        except (KeyError, TypeError, ValueError):
            raise WeChatTransportError(
                "bad_response", "no msgid in the answer from /cgi-bin/message/template/send") from None

    def create_qrcode(self, token: str, scene_str: str, expire_seconds: int) -> dict:
        """Create a temporary string-scene QR code; return {'ticket', 'url', 'expire_seconds'}.

        ``url`` is the text to draw into the QR image.
        """
        if not isinstance(scene_str, str) or not 1 <= len(scene_str) <= 64:
            raise WeChatRequestError("scene_str must be 1 to 64 characters")
        try:
            expire_seconds = int(expire_seconds)
        except (TypeError, ValueError):
            raise WeChatRequestError("expire_seconds must be a number") from None
        if not 1 <= expire_seconds <= MAX_QR_EXPIRE_SECONDS:
            raise WeChatRequestError("expire_seconds must be between 1 and 2592000")
        answer = self._call("POST", "/cgi-bin/qrcode/create", params={"access_token": token}, body={
            "expire_seconds": expire_seconds,
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": scene_str}},
        })
        ticket, url = answer.get("ticket"), answer.get("url")
        if not isinstance(ticket, str) or not isinstance(url, str) or not url:
            raise WeChatTransportError("bad_response",
                                       "no ticket/url in the answer from /cgi-bin/qrcode/create")
        try:
            expires = int(answer.get("expire_seconds", expire_seconds))
        except (TypeError, ValueError):
            expires = expire_seconds
        return {"ticket": ticket, "url": url, "expire_seconds": expires}

    def get_all_private_template(self, token: str) -> list[dict]:
        """List the account's templates (template_id, title, content, example, ...)."""
        answer = self._call("GET", "/cgi-bin/template/get_all_private_template",
                            params={"access_token": token})
        templates = answer.get("template_list", [])
        if not isinstance(templates, list):
            raise WeChatTransportError(
                "bad_response", "template_list is not a list in the answer from "
                "/cgi-bin/template/get_all_private_template")
        return [t for t in templates if isinstance(t, dict)]
