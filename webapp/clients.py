"""The WeChat API clients of this process: one HTTP session, the configured API bases and timeout.

Every call to WeChat goes through a client made here, so that they all share the process's
connection pool (:attr:`webapp.runtime.ProcessState.http`) and the WEIXIN_HTTP_TIMEOUT setting.
"""
from __future__ import annotations

from flask import current_app

from webapp import runtime
from webapp.wechat import MpClient, WorkClient
from webapp.wechat.http import TimeoutSession


def http_timeout() -> tuple[float, float]:
    """(connect, read) seconds for one WeChat call, from WEIXIN_HTTP_TIMEOUT."""
    seconds = float(current_app.config.get("WEIXIN_HTTP_TIMEOUT") or 10)
    return min(5.0, seconds), seconds


def http_session() -> TimeoutSession:
    """The process's HTTP session, for calls that are not WeChat API calls (the callback URL probe)."""
    return runtime.state().http


def mp_client() -> MpClient:
    """The Official Account API client for the configured API base."""
    return MpClient(current_app.config["WEIXIN_MP_API_BASE"], session=http_session(), timeout=http_timeout())


def work_client() -> WorkClient:
    """The WeCom API client for the configured API base."""
    return WorkClient(current_app.config["WEIXIN_QY_API_BASE"], session=http_session(), timeout=http_timeout())
