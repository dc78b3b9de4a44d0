"""A tiny stand-in for the service's callback URL, for the push tests.

It checks every request with :mod:`webapp.wechat` (signature, msg_signature, decryption) and
records what it saw; what it answers is set per test (:attr:`Receiver.verify`,
:attr:`Receiver.answer`, :attr:`Receiver.delay`).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import pytest
from flask import Flask, Response, request

from tests.livesrv import serve
from webapp.wechat import (CryptoError, MessageCrypto, XMLMessageError, build_text_reply,
                           check_msg_signature, check_signature, parse_message)
from webapp.simulator.world import MP_APPID

TOKEN = "SimCallbackToken42"
KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OTHER_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"

Answer = Callable[[dict[str, Any]], Any]


class Receiver:
    """Records callback requests and answers as told. ``base`` is set once it is served."""

    def __init__(self) -> None:
        self.base = ""
        self.lock = threading.Lock()
        self.app = Flask("callback_receiver")
        self.app.add_url_rule("/cb", "cb", self._view, methods=["GET", "POST"])
        self.reset()

    @property
    def url(self) -> str:
        return f"{self.base}/cb"

    def reset(self) -> None:
        """Forget what was received; answer the echostr and "success" again, at once."""
        with self.lock:
            self.received: list[dict[str, Any]] = []
        self.token = TOKEN
        self.key = KEY
        #: URL check: "echo", "wrong" (echostr + "x"), "sleep" (answer after ``delay``).
        self.verify = "echo"
        #: POST: a function of the record returning a body (str) or a Response.
        self.answer: Answer = lambda record: "success"
        #: Seconds to wait before answering a POST (or, with verify "sleep", a GET).
        self.delay = 0.0

    def posts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if r["method"] == "POST"]

    def gets(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if r["method"] == "GET"]

    def crypto(self) -> MessageCrypto:
        return MessageCrypto(self.token, self.key, MP_APPID)

    def _view(self) -> Any:
        args = request.args.to_dict()
        record: dict[str, Any] = {"method": request.method, "args": args, "at": time.time(),
                                  "signature_ok": check_signature(
                                      self.token, args.get("signature"), args.get("timestamp"),
                                      args.get("nonce"))}
        if request.method == "GET":
            with self.lock:
                self.received.append(record)
            if not record["signature_ok"]:
                return Response("invalid signature", 403)
            if self.verify == "sleep":
                time.sleep(self.delay)
            if self.verify == "wrong":
                return args.get("echostr", "") + "x"
            return args.get("echostr", "")
        body = request.get_data()
        record["body"] = body
        record["content_type"] = request.content_type
        record["outer"] = parse_message(body)
        record["fields"] = None
        if args.get("encrypt_type") == "aes":
            encrypted = record["outer"].get("Encrypt", "")
            record["msg_signature_ok"] = check_msg_signature(
                self.token, args.get("msg_signature"), args.get("timestamp"), args.get("nonce"),
                encrypted)
            try:
                fields, _label = self.crypto().decrypt_xml(
                    body, args.get("msg_signature"), args.get("timestamp"), args.get("nonce"))
                record["fields"] = fields
            except (CryptoError, XMLMessageError) as exc:
                record["error"] = repr(exc)
        else:
            record["fields"] = record["outer"]
        with self.lock:
            self.received.append(record)
        if self.delay:
            time.sleep(self.delay)
        return self.answer(record)

    # ---- answers -------------------------------------------------------------------------------

    def text_reply(self, record: dict[str, Any], content: str) -> str:
        """A passive text reply to the message in ``record``, in plain XML."""
        fields = record["fields"]
        return build_text_reply(fields["FromUserName"], fields["ToUserName"], content,
                                int(time.time()))

    def encrypted_reply(self, record: dict[str, Any], content: str,
                        crypto: MessageCrypto | None = None) -> str:
        """The same reply in WeChat's encrypted envelope, signed for the request's nonce."""
        args = record["args"]
        return (crypto or self.crypto()).encrypt_reply(
            self.text_reply(record, content), args["timestamp"], args["nonce"])


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    """One receiver served over HTTP for the whole session."""
    receiver = Receiver()
    with serve(receiver.app) as base_url:
        receiver.base = base_url
        yield receiver


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    """The receiver, reset for this test."""
    receiver_server.reset()
    return receiver_server
