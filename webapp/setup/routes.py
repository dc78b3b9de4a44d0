"""The first-run page and the guard that leads every page there until set-up is done."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_user

from webapp import channel as channel_config
from webapp.auth.services import UserError
from webapp.setup.blueprint import bp
from webapp.setup.forms import AdminForm
from webapp.setup.services import SetupAlreadyDone, create_first_admin, setup_done
from webapp.web import error_response, is_machine_path, wants_json_response

# Reachable before set-up: the set-up pages themselves, static files (ours and Bootstrap's), health
# checks and metrics, the simulator.
OPEN_PREFIXES = ("/setup", "/static/", "/bootstrap/static/", "/healthz", "/metrics", "/simulator", "/language/", "/m/")


@bp.before_app_request
def require_setup():
    """Until an administrator exists, send pages to /setup/; programs get JSON, WeChat plain text."""
    path = request.path
    if path.startswith(OPEN_PREFIXES) or is_machine_path(path) or setup_done():
        return None
    if wants_json_response():
        return error_response(503, _("The service is not set up yet: an administrator must finish first-run set-up."))
    return redirect(url_for("setup.index"))


@bp.route("/", methods=["GET", "POST"])
def index():
    """Create the first administrator; once one exists this page only says so."""
    if setup_done():
        flash(_("Set-up is already done. Sign in with an administrator account."), "info")
        return redirect(url_for("auth.login"))
    form = AdminForm()
    if form.validate_on_submit():
        try:
            user = create_first_admin(form.username.data.strip(), form.password.data)
        except SetupAlreadyDone:
            flash(_("Set-up is already done. Sign in with an administrator account."), "info")
            return redirect(url_for("auth.login"))
        except UserError as exc:
            form[exc.field].errors.append(str(exc))
        else:
            login_user(user)
            flash(_("Welcome! Your administrator account %(name)s is ready.", name=user.username), "success")
            # With no WeChat channel yet, the next thing to do is the set-up wizard.
            return redirect(url_for("setup.wizard_index" if channel_config.load() is None else "console.index"))
    return render_template("setup/admin.html", form=form), 400 if form.is_submitted() else 200

