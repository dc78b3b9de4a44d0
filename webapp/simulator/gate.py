"""What every simulated API call goes through: counting, latency, injected faults, the IP
whitelist, and WeChat-shaped JSON answers and errors."""
from __future__ import annotations

import functools
import json
import secrets
import socket
import time
from http import HTTPStatus
from typing import Any, Callable, Iterator

from flask import Response, current_app, request

from webapp.simulator.world import MP_ERRMSG, QY_ERRMSG, ApiError, World

QY_MORE_INFO = "https://open.work.weixin.qq.com/devtool/query?e="


def current_world() -> World:
    """The World of the app serving this request."""
    from webapp.simulator.blueprint import get_world

    return get_world(current_app)


def json_answer(payload: dict[str, Any], status: int = 200) -> Response:
    """A JSON answer written the way WeChat writes it (UTF-8, no escaping of Chinese)."""
    return Response(json.dumps(payload, ensure_ascii=False), status=status,
                    content_type="application/json; charset=utf-8")


def request_id() -> str:
    """A random id in the shape of the ``rid`` that ends Official Account errmsgs."""
    return "-".join(secrets.token_hex(4) for _ in range(3))


def hint() -> str:
    """A random id in the shape of the ``hint`` inside WeCom errmsgs."""
    return f"{int(time.time())}{secrets.randbelow(10**15):015d}"


def errmsg(channel: str, errcode: int, text: str | None, ip: str) -> str:
    """The full errmsg of a refusal, with the suffix the real platform adds."""
    table = MP_ERRMSG if channel == "mp" else QY_ERRMSG
    text = text or table.get(errcode, "system error")
    if channel == "mp":
        return f"{text} rid: {request_id()}"
    return f"{text}, hint: [{hint()}], from ip: {ip}, more info at {QY_MORE_INFO}{errcode}"


def error_answer(channel: str, errcode: int, text: str | None = None,
                 extra: dict[str, Any] | None = None) -> Response:
    """A refusal as JSON with HTTP 200, like WeChat: ``{"errcode", "errmsg", **extra}``."""
    ip = request.remote_addr or ""
    return json_answer({"errcode": errcode, "errmsg": errmsg(channel, errcode, text, ip),
                        **(extra or {})})


def ip_refusal(channel: str, ip: str) -> Response:
    """40164 (Official Account) or 60020 (WeCom) naming the caller's address."""
    if channel == "mp":
        mapped = f"::ffff:{ip}" if "." in ip and ":" not in ip else ip
        return error_answer("mp", 40164, f"invalid ip {ip} ipv6 {mapped}, not in whitelist")
    return error_answer("qy", 60020)


class _HangUp:
    """A response body that closes the connection instead of producing any bytes.

    Raising a ConnectionError while the server iterates the body makes werkzeug treat the
    connection as dropped and write nothing; shutting the socket first makes the client see
    the hang-up at once rather than wait for a keep-alive answer that never comes.
    """

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ

    def __iter__(self) -> Iterator[bytes]:
        sock = self.environ.get("werkzeug.socket") or self.environ.get("gunicorn.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise ConnectionAbortedError("simulated dropped connection")


def drop_connection() -> Response:
    """A response that makes the server close the connection without answering."""
    return Response(_HangUp(request.environ), status=200)


def http_error(status: int) -> Response:
    """A bare HTTP error page, like the one a gateway in front of WeChat would answer."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = f"<html><body><h1>{status} {phrase}</h1></body></html>"
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def read_json() -> Any:
    """The request body parsed as JSON, or None when it is not JSON (the world then refuses)."""
    try:
        return json.loads(request.get_data().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def api(channel: str, endpoint: str) -> Callable:
    """Wrap a simulated API view: count the call, add latency, apply a queued fault, check the
    caller's IP, then answer the view's dict as JSON or its ApiError as a WeChat error.

    The view receives the World as its first argument.
    """

    def decorate(view: Callable[..., dict[str, Any]]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            world = current_world()
            world.count_call(endpoint)
            latency = world.get_settings()["latency_ms"]
            if latency:
                time.sleep(latency / 1000)  # outside the world's lock: calls overlap as for real
            fault = world.take_fault(endpoint)
            if fault is not None:
                if fault["kind"] == "delay":
                    time.sleep(fault["seconds"])
                elif fault["kind"] == "errcode":
                    return error_answer(channel, fault["errcode"], fault.get("errmsg"))
                elif fault["kind"] == "http_status":
                    return http_error(fault["status"])
                else:
                    return drop_connection()
            ip = request.remote_addr or ""
            if world.ip_refused(channel, ip):
                return ip_refusal(channel, ip)
            try:
                return json_answer(view(world, *args, **kwargs))
            except ApiError as exc:
                return error_answer(channel, exc.errcode, exc.text, exc.extra)

        return wrapper

    return decorate
