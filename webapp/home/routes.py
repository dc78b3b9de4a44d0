"""Home page, language choice and ``/healthz``."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from sqlalchemy import text

from webapp import jobs
from webapp.extensions import db
from webapp.i18n import LANGUAGES
from webapp.web import safe_next

bp = Blueprint("home", __name__)


@bp.get("/")
@login_required
def index():
    """Where a signed-in person starts: what they can do here."""
    return render_template("home/index.html", user=current_user)


@bp.get("/language/<code>")
def set_language(code: str):
    """Remember the chosen page language in the session and go back where the person was."""
    if code in LANGUAGES:
        session["lang"] = code
    return redirect(safe_next(request.args.get("next"), url_for("home.index")))


@bp.get("/healthz")
def healthz():
    """200 when the app and its database answer; 503 (with the reason) when the database does not."""
    status = {"status": "ok", "database": "ok", "scheduler": jobs.state(current_app)}
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means "not healthy", whatever its type
        db.session.rollback()
        current_app.logger.warning("health check: database unavailable: %s", type(exc).__name__)
        status.update(status="error", database="unavailable")
        return jsonify(status), 503
    return jsonify(status)
