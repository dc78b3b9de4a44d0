"""The administrators' console: an overview of users, calling applications and the channel."""
from __future__ import annotations

from flask import Blueprint, render_template
from sqlalchemy import select

from webapp.auth.routes import admin_required
from webapp.extensions import db
from webapp.models import ApiApp, AuditEntry, ChannelConfig, User

bp = Blueprint("console", __name__, url_prefix="/console")


@bp.get("/")
@admin_required
def index():
    """Overview: the configured channel, users, calling applications and recent audit entries."""
    return render_template(
        "console/index.html",
        channel=db.session.scalar(select(ChannelConfig).limit(1)),
        users=db.session.scalars(select(User).order_by(User.username)).all(),
        apps=db.session.scalars(select(ApiApp).order_by(ApiApp.app_code)).all(),
        audit=db.session.scalars(select(AuditEntry).order_by(AuditEntry.at.desc()).limit(20)).all(),
    )
