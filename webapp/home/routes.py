"""Home page, language choice, ``/healthz`` and the status page people read."""
from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for
from flask_babel import get_locale
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
    """200 when the app and its database answer, 503 when the database does not; the scheduler and
    tokens only for administrators and the clients allowed to read /metrics."""
    answer, status = health.report()
    return jsonify(health.visible_answer(answer, health.may_see_details())), status


@bp.get("/status")
def status():
    """The health check for people: the overall state for everyone; each part, with what to do about
    it, for those who may see the details of ``/healthz`` (administrators, the metrics networks)."""
    from webapp.models import utcnow
    from webapp.wechat import diagnose

    answer, code = health.report()
    details = health.may_see_details()
    advice = {}
    if details:
        for kind, token in answer.get("tokens", {}).items():
            if token.get("last_error_code") is not None:
                advice[kind] = diagnose(token["last_error_code"], "", kind, context="token").message(get_locale().language)
    return render_template("home/status.html", answer=answer, details=details, advice=advice, checked=utcnow()), code
