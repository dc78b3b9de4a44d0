"""The administrators' console: an overview of users, calling applications and the channel."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from webapp.auth.forms import EmptyForm
from webapp.auth.routes import admin_required
from webapp.extensions import db
from webapp.models import ApiApp, AuditEntry, ChannelConfig, User
from webapp.web import safe_next

bp = Blueprint("console", __name__, url_prefix="/console")
PAGE_SIZE = 50


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


@bp.get("/bindings/")
@admin_required
def bindings():
    """Every binding, searchable by user name or WeChat id, filterable by channel and state."""
    from webapp.binding.services import admin_list

    page = max(1, request.args.get("page", 1, type=int))
    search = request.args.get("q", "")[:100]
    wx_type, state = request.args.get("channel", ""), request.args.get("state", "")
    rows, total = admin_list(search, wx_type, state, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render_template("console/bindings.html", rows=rows, total=total, page=page, pages=max(1, -(-total // PAGE_SIZE)),
                           q=search, channel=wx_type, state=state, form=EmptyForm())


@bp.post("/bindings/<int:binding_id>/unbind")
@admin_required
def unbind_binding(binding_id: int):
    """An administrator ends one binding (CSRF-protected form)."""
    from webapp.binding.services import admin_unbind

    binding = admin_unbind(binding_id, current_user.username)
    if binding is None:
        abort(404)
    flash(_("The binding of %(id)s is ended.", id=binding.wx_id), "success")
    back = request.form.get("next")
    return redirect(safe_next(back, url_for("console.bindings")))
