"""The administrator's set-up wizard, under ``/setup/wizard/`` on the ``setup`` blueprint.

Seven steps, one form each, validated on the server: channel, prerequisites, keys, template
(Official Account) , callback (Official Account) or trusted domain (WeCom), save and test, done.
Answers stay in the administrator's draft until the Save step writes them as the configuration in
one transaction. ``/setup/wizard/`` resumes the draft at its step; a finished draft (or none) gives
a new one, pre-filled from the configuration when there is one. Every view is a :func:`wizard_step`;
a GET changes nothing (a new draft is stored by its first answer, the Finish button closes it).
"""
from __future__ import annotations

import json

from functools import wraps

from flask import flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from webapp import channel as channel_config
from webapp import security
from webapp.auth.routes import admin_required
from webapp.binding import services as binding_services
from webapp.models import CHANNEL_MP, CHANNEL_QYWX
from webapp.setup import wizard_services as services
from webapp.setup.blueprint import bp
from webapp.setup.wizard_forms import (CallbackForm, ChannelForm, CheckAgainForm, FinishForm, MpKeysForm,
                                       QyKeysForm, RestartForm, SaveForm, TemplateForm, TestMessageForm)
from webapp.wechat import generate_encoding_aes_key, generate_token

ENDPOINTS = {step: f"setup.wizard_{step}" for step in
             ("channel", "prerequisites", "keys", "template", "callback", "server", "domain", "save", "test", "done")}


def _steps_nav(draft) -> list[dict]:
    """The 7 positions of the progress indicator, with this draft's names and states."""
    wx_type = draft.wx_type
    done = services.checks(draft)["done"]
    saved = draft.state in (services.SAVED, services.DONE)
    names = {
        1: _("Channel"), 2: _("Prerequisites"), 3: _("Keys"),
        4: _("Template") if wx_type != CHANNEL_QYWX else _("Message server"),
        5: _("Callback") if wx_type != CHANNEL_QYWX else _("Trusted domain"),
        6: _("Save and test"), 7: _("Done"),
    }
    steps = services.flow(wx_type)
    items = []
    for position in range(1, 8):
        members = [s for s in steps if services.POSITION[s] == position]
        if not members:
            items.append({"position": position, "name": names[position], "state": "skipped", "url": None})
            continue
        first = members[0]
        finished = all(s in done for s in members) or (position <= 6 and saved) or draft.state == services.DONE
        items.append({"position": position, "name": names[position], "state": "done" if finished else "todo",
                      "url": url_for(ENDPOINTS[first]) if services.reachable(draft, first) else None})
    return items


def _neighbours(draft, step: str) -> tuple[str | None, str | None]:
    """The URLs of the steps before and after ``step`` in this draft's flow."""
    steps = services.flow(draft.wx_type)
    index = steps.index(step)
    back = url_for(ENDPOINTS[steps[index - 1]]) if index > 0 else None
    after = steps[index + 1] if index + 1 < len(steps) else None
    # The test step's way on is its Finish button (which closes the wizard): no second link to the same page.
    if step == "test":
        after = None
    forward = url_for(ENDPOINTS[after]) if after and services.reachable(draft, after) else None
    return back, forward


def _render(step: str, draft, **context):
    back, forward = _neighbours(draft, step)
    return render_template(f"setup/wizard/{step}.html", draft=draft, step=step, position=services.POSITION[step],
                           steps_nav=_steps_nav(draft), back_url=back, forward_url=forward,
                           restart_form=RestartForm(prefix="restart"), wx_type=draft.wx_type,
                           simulator=services.using_simulator(draft.wx_type),
                           simulator_url=services.simulator_url(draft.wx_type),
                           public_url_set=services.public_url_set(), **context)


def _resolve(step: str):
    """The draft to show at ``step``, or a redirect to where to go instead. Writes nothing."""
    draft, reason = services.draft_for_page(current_user.id, step)
    if reason == "unsaved" and step in ("test", "done"):
        # The configuration was removed meanwhile (another administrator, the CLI): start again.
        flash(_("There is no saved configuration any more: run the wizard again."), "warning")
        return draft, redirect(url_for(ENDPOINTS["channel"]))
    if not services.reachable(draft, step):
        target = services.first_open_step(draft)
        if step in services.flow(draft.wx_type) and draft.state == services.OPEN:
            flash(_("Finish this step first."), "warning")
        elif draft.state != services.OPEN and step in services.DRAFT_STEPS:
            flash(_("The configuration is saved. To change it, start the wizard again."), "info")
        return draft, redirect(url_for(ENDPOINTS[target]))
    return draft, None


def wizard_step(step: str):
    """Make a view the page of the wizard's ``step``: administrators only, called with the draft.

    The view runs only when ``step`` may be shown now (the steps before it are done); otherwise the
    browser is sent to the step to do first. Finding the draft writes nothing: a new draft is stored
    by the first answer (a POST) that changes it.
    """
    def decorate(view):
        @wraps(view)
        @admin_required
        def wrapped():
            draft, elsewhere = _resolve(step)
            if elsewhere is not None:
                return elsewhere
            return view(draft)

        return wrapped

    return decorate


def _go(draft, step: str):
    """Mark ``step`` done and go to the next step of the flow."""
    steps = services.flow(draft.wx_type)
    after = steps[steps.index(step) + 1]
    services.update(draft, done=step, step=after)
    return redirect(url_for(ENDPOINTS[after]))


# --- entry points ---------------------------------------------------------------------------------

@bp.get("/wizard/")
@admin_required
def wizard_index():
    """Resume the draft at its step (a new draft, pre-filled from the configuration, when none is open)."""
    draft, reason = services.draft_for_page(current_user.id)
    if reason == "unsaved":
        flash(_("There is no saved configuration any more: run the wizard again."), "warning")
    step = draft.step if services.reachable(draft, draft.step) else services.first_open_step(draft)
    if draft.state == services.SAVED:
        step = "test"
    return redirect(url_for(ENDPOINTS[step]))


@bp.post("/wizard/restart")
@admin_required
def wizard_restart():
    """Throw the draft away and start again from the saved configuration (or from nothing)."""
    form = RestartForm(prefix="restart")
    if form.validate_on_submit():
        services.start_draft(current_user.id)
        flash(_("The wizard starts again. Your saved configuration is unchanged until you save."), "info")
    return redirect(url_for("setup.wizard_channel"))


@bp.get("/wizard/generate/<kind>")
@admin_required
def wizard_generate(kind: str):
    """A fresh Token (32 letters/digits) or EncodingAESKey (43), for the Generate buttons."""
    if kind == "token":
        return jsonify({"result": True, "value": generate_token()})
    if kind == "aes_key":
        return jsonify({"result": True, "value": generate_encoding_aes_key()})
    return jsonify({"result": False, "message": _("Nothing to generate here.")}), 404


# --- 1. channel -----------------------------------------------------------------------------------

@bp.route("/wizard/channel", methods=["GET", "POST"])
@wizard_step("channel")
def wizard_channel(draft):
    """Step 1: the Official Account or WeCom, with what each needs side by side."""
    form = ChannelForm(data={"wx_type": draft.wx_type} if request.method == "GET" else None)
    if form.validate_on_submit():
        chosen = form.wx_type.data
        changed = chosen != draft.wx_type
        services.update(draft, wx_type=chosen, done="channel", step="prerequisites",
                        undone=services.DRAFT_STEPS[1:] if changed else ())
        return redirect(url_for("setup.wizard_prerequisites"))
    return _render("channel", draft, form=form)


# --- 2. prerequisites -----------------------------------------------------------------------------

@bp.route("/wizard/prerequisites", methods=["GET", "POST"])
@wizard_step("prerequisites")
def wizard_prerequisites(draft):
    """Step 2: this server reaches the WeChat API (DNS, TLS, HTTP); the browser's reach is checked by wizard.js.

    The server's check runs on a POST ("Check again", or "Next"); a page shows the last outcome, and
    asks wizard.js to check at once when there is none yet.
    """
    form = CheckAgainForm()
    probes = services.stored_probes(draft)
    if form.validate_on_submit():
        probes = services.check_prerequisites(draft)
        if form.submit.data:
            if services.probes_passed(probes):
                return _go(draft, "prerequisites")
            flash(_("This server cannot reach the WeChat API yet: fix what is marked below, then check again."), "danger")
    sites = services.BROWSER_SITES[draft.wx_type]
    security.allow_connect(*sites)  # wizard.js probes these sites from the administrator's browser
    ip_advice = next((services.probe_advice(p, draft.wx_type) for p in probes or () if p.kind == "ip"), None)
    return _render("prerequisites", draft, form=form, probes=probes, passed=bool(probes) and services.probes_passed(probes),
                   ip_advice=ip_advice, autocheck=probes is None and request.method == "GET",
                   api_base=services.api_base(draft.wx_type), real_host=services.API_HOSTS[draft.wx_type],
                   sites=sites)


# --- 3. keys --------------------------------------------------------------------------------------

def _have(draft) -> set[str]:
    values = services.read_secrets(draft)
    return {k for k, v in values.items() if v}


@bp.route("/wizard/keys", methods=["GET", "POST"])
@wizard_step("keys")
def wizard_keys(draft):
    """Step 3: the account's keys, each checked live against WeChat when submitted."""
    given = services.answers(draft)
    found = services.checks(draft)
    mp = draft.wx_type == CHANNEL_MP
    have = _have(draft)
    form_class = MpKeysForm if mp else QyKeysForm
    if request.method == "GET":
        initial = {k: given.get(k) for k in (services.MP_ANSWERS if mp else services.QY_ANSWERS) if given.get(k) is not None}
        if mp:
            initial["wx_token"] = services.read_secrets(draft).get("wx_token", "")
            initial.setdefault("wx_encrypt_mode", "safe")
        else:
            initial["wx_qy_agentid"] = str(given.get("wx_qy_agentid") or "")
            initial.setdefault("wx_qy_msgtype", "text")
        form = form_class(data=initial, have=have)
    else:
        form = form_class(have=have)
    failure = None
    # "Check again" (after fixing something on WeChat's side) submits the same form: secrets left blank
    # keep the values the draft holds, so nothing needs retyping.
    if form.validate_on_submit():
        if mp:
            answers_update = {"wx_app_id": form.wx_app_id.data, "wx_encrypt_mode": form.wx_encrypt_mode.data}
            secrets_update = {"wx_secret": form.wx_secret.data, "wx_token": form.wx_token.data,
                              "wx_encoding_aes_key": form.wx_encoding_aes_key.data}
        else:
            answers_update = {"wx_qy_corpid": form.wx_qy_corpid.data, "wx_qy_agentid": int(form.wx_qy_agentid.data),
                              "wx_qy_msgtype": form.wx_qy_msgtype.data}
            secrets_update = {"wx_qy_corpsecret": form.wx_qy_corpsecret.data}
        changed = any(given.get(k) != v for k, v in answers_update.items()) or any(secrets_update.values())
        before = services.read_secrets(draft)
        # The answers are well-formed: keep them (so "Check again" needs no retyping), then check live.
        services.update(draft, answers_update=answers_update, secrets_update=secrets_update,
                        undone=("keys",) + services.later_steps(draft.wx_type, "keys") if changed else ("keys",))
        failure = _check_keys(draft)
        if failure is None:
            return _go(draft, "keys")
        if failure.get("key") in ("wx_secret", "wx_qy_corpsecret") and not failure["ip_refused"]:
            # WeChat says the secret itself is wrong: it must not stay in the draft ("Saved (ends in …)").
            services.drop_refused_secret(draft, failure["key"], before.get(failure["key"]))
        if failure.get("key") and failure["key"] in form and not failure["ip_refused"]:
            form[failure["key"]].errors.append(failure["message"])
            failure["at_field"] = True
        found = services.checks(draft)
    return _render("keys", draft, form=form, failure=failure, masked=services.masked_secrets(draft),
                   have=_have(draft), keys_check=found.get("keys"))


def _check_keys(draft) -> dict | None:
    """Check the draft's keys live; record the outcome; None when they work, else the failure to show."""
    data = services.config_of(draft)
    if draft.wx_type == CHANNEL_MP:
        templates, failure = services.attempt(services.check_mp_keys, data.get("wx_app_id", ""), data.get("wx_secret", ""))
        found = {"templates": templates}
    else:
        agent, failure = services.attempt(services.check_qy_keys, data.get("wx_qy_corpid", ""),
                                          data.get("wx_qy_corpsecret", ""), str(data.get("wx_qy_agentid", "")),
                                          data.get("wx_qy_msgtype", "text"))
        found = {"agent": agent}
    if failure is None:
        services.update(draft, checks_update={"keys": {"ok": True}, **found})
        return None
    services.update(draft, checks_update={"keys": {"ok": False, "failed": True, "errcode": failure["errcode"]}})
    return failure


# --- 4. template (Official Account) ---------------------------------------------------------------

def _sample_from(args) -> dict:
    return {k: (args.get(f"sample_{k}") or "")[:2000] for k in ("heading", "message", "remark")}


@bp.route("/wizard/template", methods=["GET", "POST"])
@wizard_step("template")
def wizard_template(draft):
    """Step 4: choose the template and map heading/message/date/remark to its keys, with a live preview."""
    found = services.checks(draft)
    templates = found.get("templates") or []
    failure = None
    if request.method == "POST" and request.form.get("refresh"):
        fetched, failure = services.attempt(services.fetch_templates, draft)
        if failure is None:
            templates = fetched
            services.update(draft, checks_update={"templates": templates})
            flash(_("The templates were fetched again: %(n)d found.", n=len(templates)), "info")
    given = services.answers(draft)
    form = TemplateForm(templates=templates)
    if request.method == "GET" or request.form.get("refresh"):
        chosen = given.get("wx_template_id") if given.get("wx_template_id") in form.templates else None
        if chosen is None and len(templates) == 1:
            chosen = templates[0]["template_id"]
        fields = given.get("wx_template_fields") if chosen and chosen == given.get("wx_template_id") else None
        if chosen and not fields:
            fields = services.suggest_mapping(form.templates[chosen]["keys"])
        form = TemplateForm(templates=templates, formdata=None, data={
            "wx_template_id": chosen, **{f"map_{p}": (fields or {}).get(p, "") for p in TemplateForm.PARAMETERS}})
    elif form.validate_on_submit():
        mapping = form.mapping()
        changed = given.get("wx_template_id") != form.wx_template_id.data or given.get("wx_template_fields") != mapping
        services.update(draft, answers_update={"wx_template_id": form.wx_template_id.data, "wx_template_fields": mapping},
                        undone=services.later_steps(draft.wx_type, "template") if changed else ())
        # The whole Official Account configuration is complete now: check it as Save will.
        _checked, failure = services.attempt(lambda: channel_config.check_live(services.clean_config(draft)))
        if failure is None:
            return _go(draft, "template")
    # Per template, its keys and the suggested mapping, for wizard.js (data-* attributes, as JSON text).
    suggestions = {t["template_id"]: {"keys_json": json.dumps(t["keys"]),
                                      "suggest_json": json.dumps(services.suggest_mapping(t["keys"]))}
                   for t in templates}
    view = services.preview(form.chosen, form.mapping() if form.chosen else {}, _sample_from(request.form))
    form.narrow()
    # ``template`` is the chosen one, for the preview (the page opens with it when one is chosen).
    return _render("template", draft, form=form, templates=templates, failure=failure, preview=view,
                   template=form.chosen, suggestions=suggestions, sample=services.SAMPLE)


@bp.get("/wizard/template/preview")
@admin_required
def wizard_template_preview():
    """JSON for wizard.js: the preview of a template and mapping (nothing is stored)."""
    draft = services.current_draft(current_user.id)
    if draft is None or draft.wx_type != CHANNEL_MP:
        return jsonify({"result": False, "message": _("Start the wizard for an Official Account first.")}), 409
    templates = {t["template_id"]: t for t in services.checks(draft).get("templates") or []}
    template = templates.get(request.args.get("wx_template_id", ""))
    if template is None:
        return jsonify({"result": False, "message": _("Choose one of the account's templates.")}), 400
    fields = {p: request.args.get(f"map_{p}", "") for p in TemplateForm.PARAMETERS}
    fields = {p: k for p, k in fields.items() if k}
    view = services.preview(template, fields, _sample_from(request.args))
    html = render_template("setup/wizard/_preview.html", preview=view, template=template)
    return jsonify({"result": True, "data": {"html": html, "warnings": view["warnings"], "lost": view["lost"]}})


# --- 5. callback (Official Account) ---------------------------------------------------------------

@bp.route("/wizard/callback", methods=["GET", "POST"])
@wizard_step("callback")
def wizard_callback(draft):
    """Step 5: what to enter on WeChat's 服务器配置 page, a self-test, then WeChat's own check, live."""
    found = services.checks(draft)
    given = services.answers(draft)
    test = found.get("callback")
    form = CallbackForm(data={"public_url": given.get("public_url") or services.callback_url(),
                              "forwarded": bool(given.get("forwarded"))} if request.method == "GET" else None)
    if form.validate_on_submit():
        url = form.public_url.data
        if form.test.data:
            token = services.read_secrets(draft).get("wx_token", "")
            test = services.run_callback_test(url, token)
            services.update(draft, answers_update={"public_url": url}, checks_update={"callback": test})
        else:
            passed = bool(test and test.get("passed") and test.get("url") == url)
            if passed or form.forwarded.data:
                services.update(draft, answers_update={"public_url": url, "forwarded": bool(form.forwarded.data)})
                return _go(draft, "callback")
            form.public_url.errors.append(_("Test the callback first: press \"Test the callback\" and fix what it "
                                            "reports (or tick the box below if another server forwards WeChat's "
                                            "messages here)."))
    values = services.read_secrets(draft)
    sentences = []
    if test:
        for result in test["results"]:
            sentences.append({**result, "sentence": services.callback_sentence(result, test.get("service_url", ""))})
    # A key generated in this draft is shown in full until it is saved (it must be entered on WeChat's
    # page); the saved configuration's key stays masked.
    new_key = services.unsaved_aes_key(draft)
    return _render("callback", draft, form=form, callback_url=services.callback_url(), service_url=services.service_url(),
                   token=values.get("wx_token", ""), aes_key=channel_config.masked(values.get("wx_encoding_aes_key")),
                   new_aes_key=new_key, simulator_form=services.simulator_server_form(),
                   mode=given.get("wx_encrypt_mode", "plain"), test=test, sentences=sentences,
                   port_warning=services.port_warning(form.public_url.data or ""),
                   verification=services.wechat_verification(test.get("at") if test and test.get("passed") else None))


@bp.get("/wizard/callback/status")
@admin_required
def wizard_callback_status():
    """JSON for wizard.js: has WeChat's own URL check arrived since the self-test passed?"""
    draft = services.current_draft(current_user.id)
    if draft is None:
        return jsonify({"result": False, "message": _("There is no wizard draft.")}), 404
    test = services.checks(draft).get("callback") or {}
    state = services.wechat_verification(test.get("at") if test.get("passed") else None)
    return jsonify({"result": True, "data": state})


# --- 5. trusted domain (WeCom) --------------------------------------------------------------------

@bp.route("/wizard/domain", methods=["GET", "POST"])
@wizard_step("domain")
def wizard_domain(draft):
    """Step 5 (WeCom): the trusted domain to set, checked against the application's, and who can see it.

    A page shows the application as WeCom last described it (the keys step read it); "Check again"
    and "Next" read it again.
    """
    form = CheckAgainForm()
    result, failure = services.domain_result(services.checks(draft).get("agent")), None
    if form.validate_on_submit():
        result, failure = services.attempt(services.check_domain, draft)
        if form.submit.data:
            if result is not None and result["match"]:
                return _go(draft, "domain")
            if result is not None:
                flash(_("Set the trusted domain as shown below first: WeCom refuses the sign-in of people binding "
                        "their WeChat while it differs."), "danger")
    return _render("domain", draft, form=form, failure=failure, result=result, expected=services.expected_domain(),
                   autocheck=result is None and request.method == "GET")


# --- 6. save and test ------------------------------------------------------------------------------

@bp.route("/wizard/save", methods=["GET", "POST"])
@wizard_step("save")
def wizard_save(draft):
    """Step 6: check everything once more and write the configuration in one transaction."""
    form = SaveForm()
    failure = None
    if form.validate_on_submit():
        _checked, failure = services.attempt(services.save, draft, current_user.username)
        if failure is None:
            # No flash: the test page's first sentence says the configuration is saved.
            return redirect(url_for("setup.wizard_test"))
    return _render("save", draft, form=form, failure=failure, given=services.answers(draft),
                   masked=services.masked_secrets(draft), replacing=channel_config.load())


@bp.route("/wizard/test", methods=["GET", "POST"])
@wizard_step("test")
def wizard_test(draft):
    """Step 6: bind yourself (the real bind flow) and send yourself a test message through the delivery engine."""
    form = TestMessageForm()
    error = None
    if form.validate_on_submit():
        sent = services.send_test(current_user)
        if "error" in sent:
            error = sent["error"]
        else:
            services.update(draft, checks_update={"test_message": sent["message_id"]})
            return redirect(url_for("setup.wizard_test"))
    configured = channel_config.load()
    if configured is None:
        # Removed between the step's check and here (another administrator, the CLI): start again.
        flash(_("There is no saved configuration any more: run the wizard again."), "warning")
        return redirect(url_for("setup.wizard_channel"))
    message_id = services.checks(draft).get("test_message")
    return _render("test", draft, form=form, finish_form=FinishForm(prefix="finish"), error=error, configured=configured,
                   state=binding_services.status(current_user), result=services.delivery_report(message_id),
                   message_id=message_id)


@bp.get("/wizard/test/status")
@admin_required
def wizard_test_status():
    """JSON for wizard.js: the test message's deliveries and receipt, and whether to keep polling."""
    draft = services.current_draft(current_user.id)
    message_id = services.checks(draft).get("test_message") if draft else None
    result = services.delivery_report(message_id)
    if result is None:
        return jsonify({"result": False, "message": _("No test message was sent yet.")}), 404
    html = render_template("setup/wizard/_result.html", result=result)
    return jsonify({"result": True, "data": {"html": html, "finished": result["finished"]}})


# --- 7. done --------------------------------------------------------------------------------------

@bp.route("/wizard/done", methods=["GET", "POST"])
@wizard_step("done")
def wizard_done(draft):
    """Step 7: the summary (secrets masked), the audit entry, and where to go next.

    The Finish button of the test step posts here: that closes the draft (the next visit starts a new one).
    """
    form = FinishForm(prefix="finish")
    if form.validate_on_submit():
        if draft.state != services.DONE:
            services.finish(draft)
        return redirect(url_for("setup.wizard_done"))
    found = services.checks(draft)
    configured = channel_config.load()
    masked = {}
    if configured is not None:
        masked = {k: channel_config.masked(getattr(configured, k)) for k in services.secret_keys()}
        masked["wx_token"] = channel_config.masked(configured.wx_token)
    return _render("done", draft, configured=configured, masked=masked,
                   audit=services.audit_entry(found.get("audit_id")),
                   tested=services.delivery_report(found.get("test_message")))
