"""Home page, language choice and ``/healthz``."""
from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from webapp.i18n import LANGUAGES
from webapp.ops import health
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
    """200 when the app and its database answer (with the scheduler and tokens); 503 when the database does not."""
    answer, status = health.report()
    return jsonify(answer), status
