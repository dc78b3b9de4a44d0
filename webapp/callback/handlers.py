"""The registry of event and message handlers; other parts of the service register theirs here.

A handler receives the decrypted message (a dict of its fields) and the configured channel, runs
quickly (WeChat waits at most 5 seconds), and returns the text of a passive reply or None.
"""
from __future__ import annotations

from typing import Callable, Optional

Handler = Callable[[dict, object], Optional[str]]

_HANDLERS: dict[tuple[str, str], Handler] = {}


def on(msg_type: str, event: str = "") -> Callable[[Handler], Handler]:
    """Register the decorated function for a MsgType (and, for events, an Event name)."""

    def decorator(func: Handler) -> Handler:
        _HANDLERS[(msg_type.lower(), event.lower())] = func
        return func

    return decorator


def find(message: dict) -> Handler | None:
    """The handler for a message, or None when nobody handles it (it is then answered ``success``)."""
    msg_type = message.get("MsgType", "").lower()
    event = message.get("Event", "").lower() if msg_type == "event" else ""
    return _HANDLERS.get((msg_type, event))
