"""Client for the WeCom (企业微信) API calls this service makes.

Like :mod:`webapp.wechat.mp`, methods take the access token as an argument and raise
:class:`~webapp.wechat.errors.WeChatAPIError` / :class:`~webapp.wechat.errors.WeChatTransportError`.
"""
from __future__ import annotations

import re

from ._client import BaseClient
from .errors import WeChatRequestError, WeChatTransportError

__all__ = ["WorkClient", "MAX_USERS_PER_MESSAGE", "MAX_DUPLICATE_CHECK_INTERVAL"]

#: WeCom accepts at most 1000 user ids in one message/send call.
MAX_USERS_PER_MESSAGE = 1000
#: The duplicate check window may be at most 4 hours.
MAX_DUPLICATE_CHECK_INTERVAL = 4 * 3600

_MSGTYPE_RE = re.compile(r"^[a-z_]{1,32}$")
_RESERVED_KEYS = {"touser", "toparty", "totag", "msgtype", "agentid", "safe", "enable_id_trans",
                  "enable_duplicate_check", "duplicate_check_interval"}

# Answer fields that hold "|"-separated id lists.
_ID_LIST_FIELDS = ("invaliduser", "invalidparty", "invalidtag", "unlicenseduser")


def _split_ids(value) -> list[str]:
    """Split WeCom's "a|b|c" into a list; empty or missing gives []."""
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    if not isinstance(value, str) or not value:
        return []
    return [part for part in value.split("|") if part]


class WorkClient(BaseClient):
    """WeCom API client; ``base_url`` is e.g. ``https://qyapi.weixin.qq.com``."""

    channel = "qywx"

    def get_token(self, corpid: str, corpsecret: str) -> tuple[str, int]:
        """Fetch the app's token from /cgi-bin/gettoken; return (access_token, expires_in seconds)."""
        answer = self._call("GET", "/cgi-bin/gettoken",
                            params={"corpid": corpid, "corpsecret": corpsecret}, context="token")
        return self._token_pair(answer, "/cgi-bin/gettoken")

    def send_message(self, token: str, agentid, touser: list[str], msgtype: str, content: dict,
                     enable_duplicate_check: bool = True, duplicate_check_interval: int = 1800,
                     safe: int = 0) -> dict:
        """Send an app message to up to 1000 users; return the answer with id lists split.

        ``content`` is the body of the ``msgtype`` (e.g. ``{"content": "..."}`` for text).
        ``invaliduser`` (and invalidparty, invalidtag, unlicenseduser) come back as lists; WeCom
        lowercases the ids it lists there.
        """
        if isinstance(touser, str):
            raise WeChatRequestError("touser must be a list of user ids")
        users = [str(u) for u in touser]
        if not users:
            raise WeChatRequestError("no recipient")
        if len(users) > MAX_USERS_PER_MESSAGE:
            raise WeChatRequestError(
                f"at most {MAX_USERS_PER_MESSAGE} users per message, got {len(users)}")
        if any(not u or "|" in u for u in users):
            # "|" separates ids on the wire, so one inside an id would address someone else.
            raise WeChatRequestError("user ids must be non-empty and must not contain '|'")
        if not isinstance(msgtype, str) or not _MSGTYPE_RE.match(msgtype) or msgtype in _RESERVED_KEYS:
            # The msgtype also names a body key, so it must not overwrite touser, agentid, ...
            raise WeChatRequestError("msgtype must be a WeCom message type such as text or textcard")
        try:
            agent = int(agentid)
            interval = int(duplicate_check_interval)
        except (TypeError, ValueError):
            raise WeChatRequestError("agentid and duplicate_check_interval must be numbers") from None
        if not 0 < interval <= MAX_DUPLICATE_CHECK_INTERVAL:
            raise WeChatRequestError("duplicate_check_interval must be between 1 and 14400 seconds")
        body = {
            "touser": "|".join(users),
            "msgtype": msgtype,
            "agentid": agent,
            msgtype: dict(content),
            "safe": 1 if safe else 0,
            "enable_duplicate_check": 1 if enable_duplicate_check else 0,
            "duplicate_check_interval": interval,
        }
        answer = self._call("POST", "/cgi-bin/message/send", params={"access_token": token},
                            body=body)
        for field in _ID_LIST_FIELDS:
            answer[field] = _split_ids(answer.get(field))
        return answer

    def get_user_info(self, token: str, code: str) -> dict:
        """Exchange a login code for the identity: {'userid': ...} for members, {'openid': ...} else."""
        answer = self._call("GET", "/cgi-bin/auth/getuserinfo",
                            params={"access_token": token, "code": code})
        # The older user/getuserinfo capitalised these keys; a proxy or simulator may still do so.
        userid = answer.get("userid") or answer.get("UserId")
        if isinstance(userid, str) and userid:
            return {"userid": userid}
        openid = answer.get("openid") or answer.get("OpenId")
        if isinstance(openid, str) and openid:
            return {"openid": openid}
        raise WeChatTransportError("bad_response",
                                   "neither userid nor openid in the answer from /cgi-bin/auth/getuserinfo")

    def get_agent(self, token: str, agentid) -> dict:
        """Return the app's settings (visible users/departments/tags, trusted domain, ...)."""
        try:
            agent = int(agentid)
        except (TypeError, ValueError):
            raise WeChatRequestError("agentid must be a number") from None
        return self._call("GET", "/cgi-bin/agent/get",
                          params={"access_token": token, "agentid": agent})
