"""The page a cut message links to: the whole text, behind a signed, expiring, unguessable link."""
from __future__ import annotations

from flask import Blueprint, abort, render_template
from sqlalchemy import select

from webapp.delivery.links import detail_expired, read_detail_token
from webapp.extensions import db
from webapp.models import Message

bp = Blueprint("messages", __name__)


@bp.get("/m/<token>")
def detail(token: str):
    """Show a whole message to whoever holds its link (the receivers); anyone else gets 404."""
    public_id = read_detail_token(token)
    message = db.session.scalar(select(Message).where(Message.public_id == public_id)) if public_id else None
    if message is None or detail_expired(message):
        abort(404)
    return render_template("messages/detail.html", message=message)
