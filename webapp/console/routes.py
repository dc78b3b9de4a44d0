"""The administrators' console: an overview of users, calling applications and the channel."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from webapp.auth.forms import EmptyForm
from webapp.auth.routes import admin_required
from webapp.extensions import db
from webapp.models import ApiApp, AuditEntry, User
from webapp.web import safe_next

bp = Blueprint("console", __name__, url_prefix="/console")
PAGE_SIZE = 50


# Far beyond any real page; larger numbers would overflow the database's OFFSET.
MAX_PAGE = 1_000_000


def page_number() -> int:
    """The ``page`` query parameter, kept between 1 and MAX_PAGE (garbage means page 1)."""
    return min(MAX_PAGE, max(1, request.args.get("page", 1, type=int)))


@bp.get("/")
@admin_required
def index():
    """Overview: channel health (token, callback, deliveries of the last 24 h, frequent errors), recent changes."""
    from webapp.console.charts import stacked_bars
    from webapp.console.health import overview

    data = overview(get_locale().language)
    chart = stacked_bars(data["buckets"], data["labels"], title=_("Deliveries per hour, last 24 hours"),
                         starts=data["starts"])
    return render_template(
        "console/index.html", **data, chart=chart,
        apps=db.session.scalars(select(ApiApp).order_by(ApiApp.app_code)).all(),
        users=db.session.scalars(select(User).order_by(User.username)).all(),
        audit=db.session.scalars(select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(10)).all(),
    )


@bp.get("/audit/")
@admin_required
def audit():
    """The audit log: who changed what, when (administrative changes, binds, unbinds, refusals)."""
    page = page_number()
    action = request.args.get("action", "")[:64]
    query = select(AuditEntry)
    if action:
        query = query.where(AuditEntry.action.startswith(action))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    entries = db.session.scalars(query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                                 .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    return render_template("console/audit.html", entries=entries, total=total, page=page,
                           pages=max(1, -(-total // PAGE_SIZE)), action=action)


@bp.get("/bindings/")
@admin_required
def bindings():
    """Every binding, searchable by user name or WeChat id, filterable by channel and state."""
    from webapp.binding.services import admin_list

    page = page_number()
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


# --- calling applications ---------------------------------------------------------------------------

@bp.route("/apps/", methods=["GET", "POST"])
@admin_required
def apps():
    """The applications allowed to call the send API; register one (its secret is shown once, after a redirect)."""
    from webapp.api.apps import AppError, create_app_credentials
    from webapp.console.forms import NewAppForm

    form = NewAppForm()
    if form.validate_on_submit():
        try:
            _, secret = create_app_credentials(form.app_code.data, actor=current_user.username,
                                               rate_limit_per_minute=form.rate_limit.data)
        except AppError as exc:
            form.app_code.errors.append(str(exc))
        else:
            return _show_secret_next(form.app_code.data, secret, rotated=False)
    return _apps_page(form if form.errors else NewAppForm(formdata=None), 400 if form.errors else 200)


def _show_secret_next(app_code: str, secret: str, *, rotated: bool):
    """Redirect to the applications page, which shows the new secret once (so a reload cannot post again)."""
    from webapp.console.services import keep_secret_for_next_page

    keep_secret_for_next_page(app_code, secret, rotated=rotated)
    return redirect(url_for("console.apps"), 303)


def _apps_page(form, status: int = 200):
    """The applications page; with the secret kept for it, shown once with ready-to-paste example calls."""
    from webapp.console.services import example_calls, take_secret

    listed = db.session.scalars(select(ApiApp).order_by(ApiApp.app_code)).all()
    shown = take_secret() if request.method == "GET" else None
    examples = None
    if shown:
        base = current_app.config.get("PUBLIC_URL") or request.host_url
        examples = example_calls(base, shown["code"], shown["secret"], current_user.username)
    page = render_template("console/apps.html", form=form, apps=listed, secret=shown and shown["secret"],
                           new_code=shown and shown["code"], rotated=shown and shown["rotated"], examples=examples,
                           action_form=EmptyForm())
    # A page holding a secret must not stay in any cache, the browser's back-forward cache included.
    return page, status, ({"Cache-Control": "no-store"} if shown else {})


def _app_or_404(app_id: int) -> ApiApp:
    api_app = db.session.get(ApiApp, app_id)
    if api_app is None:
        abort(404)
    return api_app


@bp.post("/apps/<int:app_id>/rotate")
@admin_required
def rotate_app_secret(app_id: int):
    """Give an application a new secret (shown once, after a redirect); the old one stops working at once."""
    from webapp.api.apps import rotate_secret

    api_app = _app_or_404(app_id)
    return _show_secret_next(api_app.app_code, rotate_secret(api_app, actor=current_user.username), rotated=True)


@bp.post("/apps/<int:app_id>/enabled")
@admin_required
def toggle_app(app_id: int):
    """Enable or disable an application."""
    from webapp.console.services import set_enabled

    api_app = _app_or_404(app_id)
    set_enabled(api_app, request.form.get("enabled") == "1", current_user.username)
    flash(_("%(code)s is enabled.", code=api_app.app_code) if api_app.enabled else _("%(code)s is disabled: its calls are refused.", code=api_app.app_code), "success")
    return redirect(url_for("console.apps"))


@bp.post("/apps/<int:app_id>/rate")
@admin_required
def app_rate_limit(app_id: int):
    """Change an application's rate limit."""
    from webapp.console.forms import RateLimitForm
    from webapp.console.services import set_rate_limit

    api_app = _app_or_404(app_id)
    form = RateLimitForm()
    if form.validate_on_submit():
        set_rate_limit(api_app, form.rate_limit.data, current_user.username)
        flash(_("%(code)s may now send %(n)d requests a minute.", code=api_app.app_code, n=form.rate_limit.data), "success")
    else:
        flash(_("The rate limit must be a whole number from 1 to 1,000,000."), "danger")
    return redirect(url_for("console.apps"))


# --- the delivery log ----------------------------------------------------------------------------

@bp.get("/deliveries/")
@admin_required
def deliveries():
    """Every delivery, newest first, filtered by status, receiver, application and day."""
    from webapp.console.services import delivery_log

    args = {k: request.args.get(k, "")[:100] for k in ("status", "receiver", "app", "since", "until")}
    page = page_number()
    rows, total = delivery_log(args["status"], args["receiver"], args["app"], args["since"], args["until"],
                               limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    codes = db.session.scalars(select(ApiApp.app_code).order_by(ApiApp.app_code)).all()
    return render_template("console/deliveries.html", rows=rows, total=total, page=page,
                           pages=max(1, -(-total // PAGE_SIZE)), args=args, codes=codes)


@bp.get("/messages/<public_id>")
@admin_required
def message(public_id: str):
    """One message: its content and each delivery with errcode, the advice for it, attempts and receipt."""
    from webapp.models import Delivery, Message
    from webapp.wechat import diagnose

    found = db.session.scalar(select(Message).where(Message.public_id == public_id[:32]))
    if found is None:
        abort(404)
    rows = db.session.scalars(select(Delivery).where(Delivery.message_id == found.id).order_by(Delivery.id)).all()
    language = get_locale().language
    advice = {d.id: diagnose(d.errcode, d.errmsg or "", found.channel).message(language) for d in rows if d.errcode not in (None, 0)}
    app_code = db.session.scalar(select(ApiApp.app_code).where(ApiApp.id == found.api_app_id)) if found.api_app_id else None
    return render_template("console/message.html", message=found, rows=rows, advice=advice, app_code=app_code, form=EmptyForm())


@bp.post("/deliveries/<int:delivery_id>/retry")
@admin_required
def retry_delivery(delivery_id: int):
    """Send a failed delivery again (it keeps its client_msg_id, so WeChat never shows it twice)."""
    from webapp.delivery.retry import retry_now
    from webapp.models import Message

    delivery = retry_now(delivery_id, actor=current_user.username)
    if delivery is None:
        abort(404)
    flash(_("The delivery to %(receiver)s is queued again; it is sent within a minute.", receiver=delivery.receiver), "success")
    public_id = db.session.scalar(select(Message.public_id).where(Message.id == delivery.message_id))
    return redirect(url_for("console.message", public_id=public_id))
