"""The set-up wizard's WeCom server step (``/setup/wizard/server``): the application's 接收消息 server.

Its work is in :mod:`webapp.setup.server_services`; the step's place in the flow, its decorator and
the page layout are the wizard's (:mod:`webapp.setup.wizard`).
"""
from __future__ import annotations

from flask import flash, jsonify, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from webapp.auth.routes import admin_required
from webapp.models import CHANNEL_QYWX
from webapp.setup import server_services as server
from webapp.setup import wizard_services as services
from webapp.setup.blueprint import bp
from webapp.setup.wizard import _go, _render, wizard_step
from webapp.setup.wizard_forms import QyServerForm


@bp.route("/wizard/server", methods=["GET", "POST"])
@wizard_step("server")
def wizard_server(draft):
    """Step 4 (WeCom): what to enter on WeCom's 设置API接收 page, a test through the reverse proxy,
    then WeCom's own check, live; or the server left out."""
    values = server.server_values(draft)
    given = services.answers(draft)
    if request.method == "GET":
        form = QyServerForm(have_key=values["have_key"], data={
            "wx_qy_token": values["token"], "wx_qy_encoding_aes_key": values["key"],
            "public_url": given.get("qy_public_url") or server.callback_url(), "left_out": server.left_out(draft)})
    else:
        form = QyServerForm(have_key=server.holds_key(draft))
    test = server.last_test(draft)
    if form.validate_on_submit():
        url = form.public_url.data
        if form.test.data:
            test = server.test_server(draft, url, form.wx_qy_token.data, form.wx_qy_encoding_aes_key.data or None)
            return redirect(url_for("setup.wizard_server"), code=303)
        if form.left_out.data:
            server.leave_out(draft)
            return _go(draft, "server")
        if server.tested(draft, url, form.wx_qy_token.data, form.wx_qy_encoding_aes_key.data or None):
            server.keep(draft, url)
            return _go(draft, "server")
        form.public_url.errors.append(_("Test the URL first: press \"Test the URL\" and fix what it reports (or "
                                        "leave the 接收消息 server out below)."))
    sentences = [{**result, "sentence": services.callback_sentence(result, test.get("service_url", ""))}
                 for result in (test or {}).get("results", [])]
    passed = bool(test and test.get("passed"))
    return _render("server", draft, form=form, values=values, callback_url=server.callback_url(),
                   service_url=server.service_url(), test=test, sentences=sentences,
                   port_warning=services.port_warning(form.public_url.data or ""),
                   verification=server.wecom_verification(test.get("at") if passed else None))


@bp.get("/wizard/server/status")
@admin_required
def wizard_server_status():
    """JSON for wizard.js: has WeCom's own URL check arrived since the test passed?"""
    draft = services.current_draft(current_user.id)
    if draft is None:
        return jsonify({"result": False, "message": _("There is no wizard draft.")}), 404
    test = server.last_test(draft) or {}
    return jsonify({"result": True, "data": server.wecom_verification(test.get("at") if test.get("passed") else None)})


@bp.post("/wizard/server/first")
@admin_required
def wizard_server_first():
    """From the keys step, when WeCom refused this server's IP (60020): set up the 接收消息 server
    first, since WeCom accepts a trusted IP only after it. The keys are checked again at the trusted
    domain step and when saving."""
    draft = services.current_draft(current_user.id)
    found = services.checks(draft).get("keys") or {} if draft is not None else {}
    if (draft is None or draft.state != services.OPEN or draft.wx_type != CHANNEL_QYWX or found.get("errcode") != 60020
            or not services.answers(draft).get("wx_qy_corpid")):
        flash(_("Finish this step first."), "warning")
        return redirect(url_for("setup.wizard_keys"))
    services.update(draft, done="keys", step="server")
    return redirect(url_for("setup.wizard_server"))
