"""Detail links: a cut message links to its whole text, behind a signed, expiring, unguessable link."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from itsdangerous import URLSafeSerializer

from webapp.models import Message, utcnow


def _detail_signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="message-detail")


def detail_url(message: Message) -> str | None:
    """A signed, unguessable link to the whole message, when FLASK_PUBLIC_URL is set.

    The link is the same on every attempt (no time inside it), so a retried WeCom message is
    identical to the first and WeChat's duplicate check recognises it; it expires
    DETAIL_LINK_MAX_AGE after the message was accepted (checked when it is opened).
    """
    base = current_app.config.get("PUBLIC_URL")
    if not base:
        return None
    return f"{base}/m/{_detail_signer().dumps(message.public_id)}"


def read_detail_token(token: str) -> str | None:
    """The message id in a detail link, or None when the link is forged."""
    try:
        return _detail_signer().loads(token)
    except Exception:  # BadSignature or malformed input: both mean "no such link"
        return None


def detail_expired(message: Message) -> bool:
    """Whether a message's detail link is past its lifetime."""
    return utcnow() - message.created_at > timedelta(seconds=int(current_app.config["DETAIL_LINK_MAX_AGE"]))
