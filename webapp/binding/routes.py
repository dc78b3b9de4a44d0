"""The "Bind WeChat" page and its JSON endpoints (paths kept from the BlueKing console)."""
from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from webapp import channel as channel_config
from webapp.binding import services
from webapp.binding.services import BindError

bp = Blueprint("binding", __name__, url_prefix="/console/user_center/weixin")


def _failure(exc: BindError):
    return jsonify({"result": False, "message": exc.message}), exc.status


@bp.get("/")
@login_required
def index():
    """The person's bind page: their state, and the way to bind or unbind."""
    configured = channel_config.load()
    state = services.status(current_user)
    return render_template("binding/index.html", configured=configured, state=state)


@bp.get("/mp/get_qrcode/")
@login_required
def get_qrcode():
    """A new Official Account QR code for the signed-in user."""
    try:
        return jsonify({"result": True, "data": services.start_mp_bind(current_user)})
    except BindError as exc:
        return _failure(exc)


@bp.get("/qy/get_login_url/")
@login_required
def get_login_url():
    """A new WeCom login attempt: the web-login URL and a QR code for the WeCom app."""
    try:
        return jsonify({"result": True, "data": services.start_qy_bind(current_user)})
    except BindError as exc:
        return _failure(exc)


@bp.get("/qy/login_callback/")
def login_callback():
    """WeCom sends a browser back here with ``code`` and ``state``: this one, or the WeCom app's on a phone."""
    user = current_user if current_user.is_authenticated else None
    try:
        outcome, owner = services.finish_qy_bind(user, request.args.get("code"), request.args.get("state"))
    except BindError as exc:
        return render_template("binding/result.html", ok=False, message=exc.message, signed_in=user is not None), exc.status
    return render_template("binding/result.html", ok=outcome.ok, message=outcome.message, owner=owner,
                           signed_in=user is not None), 200 if outcome.ok else 400


@bp.get("/get_bind_status/")
@login_required
def get_bind_status():
    """``{"result": BOUND, "data": {...}}``; with ``?scene=`` also the state of that bind attempt."""
    return jsonify(services.status(current_user, request.args.get("scene")))


@bp.post("/unbind_wx_user_info/")
@login_required
def unbind_wx_user_info():
    """End the signed-in user's binding (POST with a CSRF token)."""
    count = services.unbind(current_user)
    if request.accept_mimetypes.best == "text/html" or request.form.get("from_page"):
        flash(_("Your WeChat is unbound: notifications will no longer reach it.") if count else _("No WeChat was bound."), "success")
        return redirect(url_for("binding.index"))
    return jsonify({"result": True, "data": {"unbound": count}})
