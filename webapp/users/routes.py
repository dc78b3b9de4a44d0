"""The users page of the console (administrators only): thin views over ``webapp.users.services``."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from webapp.auth.forms import EmptyForm
from webapp.auth.routes import admin_required
from webapp.auth.services import UserError
from webapp.users import services
from webapp.users.forms import NewUserForm, ResetPasswordForm
from webapp.web import error_response

bp = Blueprint("users", __name__, url_prefix="/console/users")
PAGE_SIZE = 50
MAX_PAGE = 1_000_000  # far beyond any real list; larger numbers would overflow the database's OFFSET


def _list_page(form: NewUserForm, status: int = 200):
    search = request.args.get("q", "")[:64]
    page = min(MAX_PAGE, max(1, request.args.get("page", 1, type=int)))
    rows, total = services.list_users(search, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render_template("console/users.html", rows=rows, total=total, page=page, pages=max(1, -(-total // PAGE_SIZE)),
                           q=search, form=form), status


@bp.get("/")
@admin_required
def index():
    """Every user with role, state, WeChat binding and last sign-in; and the form that creates one."""
    return _list_page(NewUserForm(formdata=None))


@bp.post("/")
@admin_required
def create():
    """Create a user (same rules as ``flask create-user``), then show the list again."""
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            user = services.create(form.username.data, form.password.data, is_admin=form.is_admin.data,
                                   actor=current_user.username)
        except UserError as exc:
            form[exc.field].errors.append(str(exc))
        else:
            flash(_("The administrator %(name)s is created.", name=user.username) if user.is_admin
                  else _("The user %(name)s is created.", name=user.username), "success")
            flash(_("Give them the password in person; they can change it after signing in."), "info")
            return redirect(url_for("users.index"))
    return _list_page(form, 400)


def _user_page(user, reset_form: ResetPasswordForm | None = None, status: int = 200, refusal: str | None = None):
    return render_template("console/users_detail.html", row=services.describe(user), user=user,
                           reset_form=reset_form or ResetPasswordForm(formdata=None), action_form=EmptyForm(),
                           is_self=user.id == current_user.id, only_admin=services.is_only_admin(user),
                           refusal=refusal), status


def _user_or_404(user_id: int):
    try:
        return services.get_user(user_id), None
    except UserError as exc:
        return None, error_response(404, str(exc))


@bp.get("/<int:user_id>/")
@admin_required
def detail(user_id: int):
    """One user: their state, and the buttons that disable, enable, reset the password and change the role."""
    user, missing = _user_or_404(user_id)
    return missing or _user_page(user)


def _switch(user_id: int, field: str, change, wrong_button: str, said):
    """Apply a POSTed "1"/"0" ``field`` with ``change(user_id, bool, actor=...)``; ``said(user)`` is the flash."""
    user, missing = _user_or_404(user_id)
    if missing:
        return missing
    wanted = {"1": True, "0": False}.get(request.form.get(field, ""))
    if wanted is None:
        return _user_page(user, status=400, refusal=wrong_button)
    try:
        change(user_id, wanted, actor=current_user)
    except UserError as exc:
        return _user_page(user, status=409, refusal=str(exc))
    flash(said(user), "success")
    return redirect(url_for("users.detail", user_id=user_id))


@bp.post("/<int:user_id>/enabled")
@admin_required
def set_enabled(user_id: int):
    """Disable or enable a user (``enabled`` is 1 or 0)."""
    return _switch(user_id, "enabled", services.set_enabled, _("Nothing was changed: use the Disable or Enable button."),
                   lambda user: _("%(name)s is enabled and can sign in.", name=user.username) if user.enabled else _(
                       "%(name)s is disabled: they cannot sign in, their open sessions have ended, and messages to them are refused.",
                       name=user.username))


@bp.post("/<int:user_id>/admin")
@admin_required
def set_admin(user_id: int):
    """Grant or remove the administrator role (``admin`` is 1 or 0)."""
    return _switch(user_id, "admin", services.set_admin, _("Nothing was changed: use the button that grants or removes the role."),
                   lambda user: _("%(name)s is an administrator.", name=user.username) if user.is_admin
                   else _("%(name)s is no longer an administrator.", name=user.username))


@bp.post("/<int:user_id>/password")
@admin_required
def reset_password(user_id: int):
    """Give a user a new password (the password rules apply); their open sessions end."""
    user, missing = _user_or_404(user_id)
    if missing:
        return missing
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            services.reset_password(user_id, form.password.data, actor=current_user)
        except UserError as exc:
            if user.id == current_user.id:  # their own page has no reset form to show the sentence under
                return _user_page(user, status=400, refusal=str(exc))
            form.password.errors.append(str(exc))
        else:
            flash(_("%(name)s has a new password. Their open sessions have ended; give them the password in person.",
                    name=user.username), "success")
            return redirect(url_for("users.detail", user_id=user_id))
    return _user_page(user, form, 400)
