"""Sign-in and sign-out pages."""
from __future__ import annotations

import hmac
from functools import wraps

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from webapp.auth.forms import ChangePasswordForm, LoginForm
from webapp.auth.services import Throttled, UserError, authenticate, change_password
from webapp.extensions import db, login_manager
from webapp.models import User
from webapp.web import error_response, safe_next

bp = Blueprint("auth", __name__)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Flask-Login: the signed-in user, or None once the user is gone, disabled, or signed in with an old password.

    Flask-Login checks ``is_active`` only when signing in, so a disabled user's open sessions (and
    remember cookies) end here, at their next request; the browser's cookies then forget the user,
    so enabling them again later does not bring that session back.
    """
    number, _sep, stamp = (user_id or "").partition(":")
    try:
        user = db.session.get(User, int(number))
    except (TypeError, ValueError):
        return None
    if user is not None and not user.enabled:
        for key in ("_user_id", "_fresh", "_id"):
            session.pop(key, None)
        session["_remember"] = "clear"  # Flask-Login deletes the remember cookie after this request
        return None
    if user is None or not hmac.compare_digest(stamp.encode(), user.session_stamp.encode()):
        return None
    return user


@login_manager.unauthorized_handler
def unauthorized():
    """Send people to the sign-in page and back; tell programs in JSON."""
    from webapp.web import wants_json_response

    if wants_json_response():
        return error_response(401, _("Please sign in to continue."))
    flash(_("Please sign in to continue."), "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def admin_required(view):
    """Only administrators may use the decorated view (others get 403)."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


@bp.app_context_processor
def password_rules() -> dict:
    """Templates show the password rules with ``password_rules()`` under new-password fields."""
    from webapp.auth.passwords import rules_hint

    return {"password_rules": rules_hint}


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the sign-in form; sign the user in and go to ``next`` (a path on this site only)."""
    target = safe_next(request.args.get("next"), url_for("home.index"))
    if current_user.is_authenticated:
        return redirect(target)
    form = LoginForm()
    status = 400 if form.is_submitted() else 200  # a refused submission is a client error, not a page view
    if form.validate_on_submit():
        try:
            user = authenticate(form.username.data, form.password.data, request.remote_addr or "")
        except Throttled as exc:
            minutes = max(1, (exc.retry_after + 59) // 60)
            flash(_("Too many failed sign-ins. Wait %(n)d minute(s) and try again, or ask an administrator to reset your password.", n=minutes), "danger")
            return render_template("auth/login.html", form=form), 429, {"Retry-After": str(exc.retry_after)}
        if user is None:
            flash(_("The user name or password is wrong."), "danger")
            status = 401
        else:
            login_user(user, remember=form.remember.data)
            return redirect(target)
    return render_template("auth/login.html", form=form), status


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password():
    """Let the signed-in user change their own password (the current one is asked for again)."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        try:
            change_password(current_user, form.current.data, form.password.data)
        except UserError as exc:
            form[exc.field].errors.append(str(exc))
        else:
            # Other sessions of this user end with the old password; this one goes on with the new.
            login_user(current_user._get_current_object())
            flash(_("Your password is changed. Use the new one the next time you sign in."), "success")
            return redirect(url_for("home.index"))
    return render_template("auth/password.html", form=form), 400 if form.errors else 200


@bp.post("/logout")
def logout():
    """Sign out (POST with a CSRF token, checked by CSRFProtect, so other sites cannot sign people out)."""
    logout_user()
    flash(_("You are signed out."), "success")
    return redirect(url_for("auth.login"))
