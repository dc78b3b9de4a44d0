"""Which function answers which WeChat message or event: the application's handler table.

A handler receives the decrypted message (a dict of its fields) and the configured channel, runs
quickly (WeChat waits at most 5 seconds), and returns the text of a passive reply or None. The
table is filled in one place, :func:`webapp.register_callback_handlers`, when the app is built;
a message nobody handles is answered ``success``. The Official Account's callback and the WeCom
application's each have their own handlers (``channel`` "mp" or "qywx").
"""
from __future__ import annotations

from typing import Callable, Optional

from flask import Flask, current_app

Handler = Callable[[dict, object], Optional[str]]

EXTENSION = "callback_handlers"


class HandlerTable:
    """Handlers by (channel, MsgType, Event), compared without case; Event is empty for plain messages."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str, str], Handler] = {}

    def add(self, msg_type: str, event: str, handler: Handler, channel: str = "mp") -> None:
        """Let ``handler`` answer ``msg_type`` (and, for events, ``event``) on ``channel``'s callback;
        it replaces an earlier one."""
        self._handlers[(channel, msg_type.lower(), event.lower())] = handler

    def remove(self, msg_type: str, event: str = "", channel: str = "mp") -> None:
        """Stop handling ``msg_type``/``event`` (such messages are then answered ``success``)."""
        self._handlers.pop((channel, msg_type.lower(), event.lower()), None)

    def find(self, message: dict, channel: str = "mp") -> Handler | None:
        """The handler for a message that reached ``channel``'s callback, or None when nobody handles it."""
        msg_type = message.get("MsgType", "").lower()
        event = message.get("Event", "").lower() if msg_type == "event" else ""
        return self._handlers.get((channel, msg_type, event))

    def __len__(self) -> int:
        return len(self._handlers)


def install(app: Flask) -> HandlerTable:
    """Give ``app`` an empty handler table and return it."""
    table = app.extensions[EXTENSION] = HandlerTable()
    return table


def table(app: Flask | None = None) -> HandlerTable:
    """The handler table of ``app`` (by default the current app)."""
    return (app or current_app).extensions[EXTENSION]
