"""The request/answer cycle shared by the Official Account and WeCom clients."""
from __future__ import annotations

import json
import time

import requests

from .errors import WeChatAPIError, WeChatTransportError, classify_transport, diagnose
from .http import DEFAULT_TIMEOUT, logger, redact, shared_session


class BaseClient:
    """Sends one call to a WeChat-style JSON API and turns every failure into a WeChatError."""

    #: Channel name used for diagnoses ('mp' or 'qywx').
    channel = "mp"

    def __init__(self, base_url: str, session: requests.Session | None = None, timeout=None):
        if not isinstance(base_url, str) or not base_url:
            raise ValueError("base_url is required")
        self.base_url = base_url.rstrip("/")
        self.session = session if session is not None else shared_session()
        # None: use the session's own default (TimeoutSession), else the package default.
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url}>"

    def _call(self, method: str, path: str, *, params: dict | None = None,
              body: dict | None = None, context: str | None = None) -> dict:
        """Call ``path`` and return the JSON answer; raise WeChatAPIError/WeChatTransportError."""
        url = self.base_url + path
        data = None
        headers = None
        if body is not None:
            # Raw UTF-8 rather than \\u escapes: WeChat counts characters of the text it receives.
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers = {"Content-Type": "application/json; charset=utf-8"}
        timeout = self.timeout
        if timeout is None:
            timeout = getattr(self.session, "default_timeout", None) or DEFAULT_TIMEOUT
        started = time.monotonic()
        try:
            response = self.session.request(method, url, params=params, data=data,
                                            headers=headers, timeout=timeout)
            content = response.content
        except requests.RequestException as exc:
            kind = classify_transport(exc)
            logger.warning("wechat %s %s failed (%s): %s", method, path, kind, redact(exc))
            # "from None": the cause's text quotes the URL with its token and would reach tracebacks.
            raise WeChatTransportError(kind, str(exc)) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        status = response.status_code
        if status >= 300:
            logger.warning("wechat %s %s answered HTTP %s in %.0f ms", method, path, status,
                           elapsed_ms)
            raise WeChatTransportError("http", f"HTTP {status} from {path}", status=status)
        try:
            answer = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            logger.warning("wechat %s %s answered a non-JSON body (%d bytes)", method, path,
                           len(content))
            raise WeChatTransportError("bad_response", f"non-JSON answer from {path}") from None
        if not isinstance(answer, dict):
            raise WeChatTransportError("bad_response", f"unexpected JSON answer from {path}")
        errcode = answer.get("errcode", 0)
        try:
            errcode = int(errcode or 0)
        except (TypeError, ValueError):
            raise WeChatTransportError("bad_response", f"unexpected errcode from {path}") from None
        if errcode != 0:
            errmsg = answer.get("errmsg")
            errmsg = errmsg if isinstance(errmsg, str) else ""
            diagnosis = diagnose(errcode, errmsg, channel=self.channel, context=context)
            logger.warning("wechat %s %s errcode %s: %s", method, path, errcode, redact(errmsg))
            raise WeChatAPIError(errcode, errmsg, diagnosis)
        logger.debug("wechat %s %s ok in %.0f ms", method, path, elapsed_ms)
        return answer

    @staticmethod
    def _token_pair(answer: dict, path: str) -> tuple[str, int]:
        """Pull (access_token, expires_in) out of a token answer, checking both are there."""
        token = answer.get("access_token")
        expires_in = answer.get("expires_in")
        if not isinstance(token, str) or not token:
            raise WeChatTransportError("bad_response", f"no access_token in the answer from {path}")
        try:
            expires_in = int(expires_in)
        except (TypeError, ValueError):
            raise WeChatTransportError("bad_response",
                                       f"no expires_in in the answer from {path}") from None
        return token, expires_in
