"""The binding rules and flows, shared by the bind page, the WeChat callback and the console.

Rules (also in the README):
- one WeChat identity (an openid, or a WeCom userid) belongs to at most one user per account;
  while it is actively bound to someone, binding it to another user is refused;
- a user has at most one active binding per channel and account: binding another WeChat replaces
  the previous one (the old binding is deactivated, with an audit entry);
- every bind attempt uses a fresh, random, single-use ticket that expires (a QR scene, or a WeCom
  OAuth state) and belongs to the user who asked for it;
- unfollowing the Official Account deactivates the binding; following again with the same openid
  reactivates it; an explicit unbind is final until the user binds again;
- a member deleted from WeCom's contacts loses the binding (sends to them fail at once); a member
  whose userid WeCom changed keeps it under the new userid;
- every bind, unbind, refusal and deactivation is written to the audit log.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

import segno
from flask import current_app, request
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy import func, select

from webapp import channel as channel_config
from webapp.clients import mp_client, work_client
from webapp.extensions import db
from webapp.models import CHANNEL_MP, CHANNEL_QYWX, AuditEntry, Binding, BindTicket, User, utcnow
from webapp.tokens import call_with_token
from webapp.wechat import WeChatAPIError, WeChatError, diagnose_transport

log = logging.getLogger(__name__)

LOGIN_CALLBACK_PATH = "/console/user_center/weixin/qy/login_callback/"
#: Bind attempts one user may start in ATTEMPT_WINDOW (each Official Account QR code costs a WeChat call).
MAX_ATTEMPTS = 20
ATTEMPT_WINDOW = timedelta(minutes=10)


class BindError(Exception):
    """A bind step cannot go on; ``message`` is for the person, ``status`` for the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Outcome:
    """How a bind attempt ended: ``ok``, and a sentence for the person in the browser and in WeChat."""

    ok: bool
    code: str
    message: str


# --- reading ------------------------------------------------------------------------------------

def _bindable_channel():
    """The configured channel (:func:`webapp.channel.require`), or BindError when WeChat is not connected yet."""
    try:
        return channel_config.require()
    except channel_config.NotConfigured:
        raise BindError(_("WeChat is not connected to this service yet. Ask your administrator to finish the set-up."),
                        409) from None


def active_binding(user_id: int, wx_type: str, account: str) -> Binding | None:
    """The user's active binding on this channel and account, if any."""
    return db.session.scalar(
        select(Binding).where(Binding.user_id == user_id, Binding.channel == wx_type, Binding.account == account,
                              Binding.active.is_(True))
    )


def mask(wx_id: str) -> str:
    """A WeChat id shown to its owner: enough to recognise it, not enough to copy."""
    return wx_id if len(wx_id) <= 8 else f"{wx_id[:4]}…{wx_id[-4:]}"


def status(user: User, scene: str | None = None) -> dict:
    """The bind state of ``user`` for the configured channel, plus the state of one attempt (``scene``)."""
    configured = channel_config.load()
    data: dict = {"channel": configured.wx_type if configured else None}
    bound = None
    if configured is not None:
        bound = active_binding(user.id, configured.wx_type, configured.account)
    if bound is not None:
        data.update(wx_id=mask(bound.wx_id), since=bound.created_at.isoformat(timespec="seconds"))
    if scene:
        ticket = db.session.scalar(select(BindTicket).where(BindTicket.scene == scene, BindTicket.user_id == user.id))
        if ticket is None:
            data["attempt"] = {"state": "unknown"}
        elif ticket.consumed_at is not None:
            data["attempt"] = {"state": "bound" if ticket.outcome == "bound" else "refused",
                               "message": _outcome_message(ticket.outcome)}
        elif ticket.expires_at <= utcnow():
            data["attempt"] = {"state": "expired", "message": _("The code has expired. Get a new one.")}
        else:
            data["attempt"] = {"state": "pending", "expires_in": int((ticket.expires_at - utcnow()).total_seconds())}
    return {"result": bound is not None, "data": data}


# --- starting an attempt --------------------------------------------------------------------------

def _new_ticket(user: User, wx_type: str, account: str, seconds: int, qr_ticket: str | None = None, scene: str | None = None) -> BindTicket:
    since = utcnow() - ATTEMPT_WINDOW
    recent = db.session.scalar(select(func.count()).select_from(BindTicket).where(BindTicket.user_id == user.id, BindTicket.created_at > since))
    if recent >= MAX_ATTEMPTS:
        raise BindError(_("Too many bind attempts in a short time. Wait a few minutes and try again."), 429)
    ticket = BindTicket(user_id=user.id, channel=wx_type, account=account, scene=scene or secrets.token_hex(16),
                        qr_ticket=qr_ticket, expires_at=utcnow() + timedelta(seconds=seconds))
    with db.transaction() as session:
        session.add(ticket)
    return ticket


def qr_image(content: str) -> str:
    """A QR code of ``content`` drawn here, as an SVG data URI (the browser needs no WeChat site)."""
    return segno.make(content, error="m").svg_data_uri(scale=5, border=2)


def _wechat_failure(exc: WeChatError) -> BindError:
    diagnosis = exc.diagnosis if isinstance(exc, WeChatAPIError) else diagnose_transport(exc)
    log.warning("bind: WeChat call failed: %s", exc)
    # The person in front of the page cannot fix the account; tell them who can, and what to say.
    return BindError(_("WeChat refused the request, so nothing could be done. Tell your administrator: %(reason)s",
                       reason=diagnosis.message(get_locale().language)), 424)


def start_mp_bind(user: User) -> dict:
    """Create a temporary QR code tied to ``user``: a fresh 128-bit scene, valid BIND_QR_EXPIRE_SECONDS."""
    configured = _bindable_channel()
    if configured.wx_type != CHANNEL_MP:
        raise BindError(_("This service sends through WeCom: use the WeCom login instead."), 409)
    seconds = int(current_app.config["BIND_QR_EXPIRE_SECONDS"])
    scene = secrets.token_hex(16)
    try:
        created = call_with_token(configured.token_source(), lambda token: mp_client().create_qrcode(token, scene, seconds))
    except WeChatError as exc:
        raise _wechat_failure(exc) from None
    expires = min(seconds, int(created.get("expire_seconds") or seconds))
    ticket = _new_ticket(user, CHANNEL_MP, configured.account, expires, qr_ticket=created.get("ticket"), scene=scene)
    return {"url": created["url"], "qrcode": qr_image(created["url"]), "expire_seconds": expires, "scene": ticket.scene}


def login_redirect_uri() -> str:
    """Where WeCom sends the browser back: FLASK_PUBLIC_URL (or this request's host) + the callback path."""
    base = current_app.config.get("PUBLIC_URL") or request.host_url.rstrip("/")
    return base + LOGIN_CALLBACK_PATH


def start_qy_bind(user: User) -> dict:
    """Create a WeCom login attempt: a random single-use state, the web-login URL and an in-app QR code."""
    configured = _bindable_channel()
    if configured.wx_type != CHANNEL_QYWX:
        raise BindError(_("This service sends through a WeChat Official Account: scan its QR code instead."), 409)
    seconds = int(current_app.config["BIND_QR_EXPIRE_SECONDS"])
    ticket = _new_ticket(user, CHANNEL_QYWX, configured.account, seconds, scene=secrets.token_hex(16))
    redirect_uri = login_redirect_uri()
    login = current_app.config["WEIXIN_QY_LOGIN_URL"] + "?" + urlencode({
        "login_type": "CorpApp", "appid": configured.wx_qy_corpid, "agentid": configured.wx_qy_agentid,
        "redirect_uri": redirect_uri, "state": ticket.scene,
    })
    in_app = current_app.config["WEIXIN_QY_OAUTH_URL"] + "?" + urlencode({
        "appid": configured.wx_qy_corpid, "redirect_uri": redirect_uri, "response_type": "code",
        "scope": "snsapi_base", "state": ticket.scene, "agentid": configured.wx_qy_agentid,
    }) + "#wechat_redirect"
    return {"url": login, "qrcode": qr_image(in_app), "oauth_url": in_app, "expire_seconds": seconds, "scene": ticket.scene}


# --- finishing an attempt -------------------------------------------------------------------------

_OUTCOMES = {
    "bound": lambda: _("Your WeChat is bound."),
    "unknown": lambda: _("This code is not valid. Open Bind WeChat again and scan the new code."),
    "used": lambda: _("This code has already been used. Open Bind WeChat again for a new one."),
    "expired": lambda: _("This code has expired. Open Bind WeChat again for a new one."),
    "taken": lambda: _("This WeChat is already bound to another user of this service. Unbind it there first, or ask your administrator."),
    "disabled": lambda: _("Your account is disabled. Ask your administrator."),
    "wrong_account": lambda: _("This code belongs to another WeChat account. Open Bind WeChat again for a new one."),
    "not_member": lambda: _("You signed in with a personal WeChat, not as a member of the organisation's WeCom. Sign in with the WeCom app of your organisation."),
    "cancelled": lambda: _("The WeCom sign-in was cancelled, so nothing was bound."),
    "foreign": lambda: _("This sign-in was started by another user or in another browser. Start again from your Bind WeChat page."),
}


def _outcome_message(code: str | None) -> str:
    return _OUTCOMES.get(code or "", _OUTCOMES["unknown"])()


def _audit(session, actor: str, action: str, target: str, **detail) -> None:
    session.add(AuditEntry(actor=actor, action=action, target=target, detail=detail or None))


def _bind_locked(session, ticket: BindTicket, user: User, wx_id: str) -> str:
    """Bind ``wx_id`` to the ticket's user inside the caller's (locked) transaction; return the outcome code."""
    if not user.enabled:
        return "disabled"
    owner = session.scalar(select(Binding).where(Binding.channel == ticket.channel, Binding.account == ticket.account,
                                                 Binding.wx_id == wx_id).with_for_update())
    if owner is not None and owner.active and owner.user_id != user.id:
        _audit(session, user.username, "binding.refused", wx_id, reason="taken", channel=ticket.channel)
        return "taken"
    current = session.scalar(select(Binding).where(Binding.user_id == user.id, Binding.channel == ticket.channel,
                                                   Binding.account == ticket.account, Binding.active.is_(True)).with_for_update())
    now = utcnow()
    if current is not None and current.wx_id != wx_id:
        current.active, current.deactivated_at, current.deactivated_reason = False, now, "replaced"
        _audit(session, user.username, "binding.replaced", current.wx_id, channel=ticket.channel)
        session.flush()  # the partial unique index allows one active binding per user
    if owner is None:
        session.add(Binding(user_id=user.id, channel=ticket.channel, account=ticket.account, wx_id=wx_id))
    else:
        if owner.user_id != user.id:
            _audit(session, user.username, "binding.moved", wx_id, from_user_id=owner.user_id, channel=ticket.channel)
        owner.user_id, owner.active, owner.created_at = user.id, True, now
        owner.deactivated_at = owner.deactivated_reason = None
    _audit(session, user.username, "binding.bind", wx_id, channel=ticket.channel, account=ticket.account)
    return "bound"


def complete(scene: str, wx_id: str, wx_type: str, *, qr_ticket: str | None = None, user_id: int | None = None) -> Outcome:
    """Consume the ticket ``scene`` and bind ``wx_id`` to its user, once; every refusal is audited.

    ``user_id`` (the WeCom flow) must be the ticket's owner: a state started by someone else binds nothing.
    """
    configured = channel_config.load()
    with db.transaction() as session:
        ticket = session.scalar(select(BindTicket).where(BindTicket.scene == scene).with_for_update())
        if ticket is None or ticket.channel != wx_type or (qr_ticket and ticket.qr_ticket and qr_ticket != ticket.qr_ticket):
            code = "unknown"
        elif user_id is not None and ticket.user_id != user_id:
            code = "foreign"
        elif ticket.consumed_at is not None:
            code = "used"
        elif ticket.expires_at <= utcnow():
            code = "expired"
        elif configured is None or configured.wx_type != wx_type or configured.account != ticket.account:
            code = "wrong_account"
        else:
            user = session.get(User, ticket.user_id)
            code = _bind_locked(session, ticket, user, wx_id)
        if ticket is not None and ticket.consumed_at is None and code != "foreign":
            ticket.consumed_at, ticket.outcome = utcnow(), code
        if code not in ("bound", "taken"):
            actor = session.get(User, ticket.user_id).username if ticket is not None else "wechat"
            _audit(session, actor, "binding.refused", wx_id, reason=code, channel=wx_type)
    return Outcome(code == "bound", code, _outcome_message(code))


def refuse_attempt(scene: str, user_id: int, code: str) -> Outcome:
    """End the user's attempt ``scene`` without binding (e.g. the WeCom login was cancelled)."""
    with db.transaction() as session:
        ticket = session.scalar(select(BindTicket).where(BindTicket.scene == scene, BindTicket.user_id == user_id).with_for_update())
        if ticket is not None and ticket.consumed_at is None:
            ticket.consumed_at, ticket.outcome = utcnow(), code
            _audit(session, session.get(User, user_id).username, "binding.refused", "", reason=code, channel=ticket.channel)
    return Outcome(False, code, _outcome_message(code))


def check_qy_state(state: str | None, user: User | None) -> BindTicket:
    """The open WeCom attempt for ``state``, or BindError — checked before any call to WeChat.

    The browser coming back may be the one that started the attempt (signed in: it must be the
    attempt's user) or the WeCom app's own browser on the phone (not signed in here: the random,
    single-use state is what ties the sign-in to the user who asked).
    """
    ticket = db.session.scalar(select(BindTicket).where(BindTicket.scene == (state or ""), BindTicket.channel == CHANNEL_QYWX))
    if not state or ticket is None:
        raise BindError(_outcome_message("unknown"))
    if user is not None and ticket.user_id != user.id:
        with db.transaction() as session:
            _audit(session, user.username, "binding.refused", "", reason="foreign", channel=CHANNEL_QYWX)
        raise BindError(_outcome_message("foreign"), 403)
    if ticket.consumed_at is not None:
        raise BindError(_outcome_message("used"))
    if ticket.expires_at <= utcnow():
        raise BindError(_outcome_message("expired"))
    return ticket


def finish_qy_bind(user: User | None, code: str | None, state: str | None) -> tuple[Outcome, User]:
    """WeCom sent a browser back: check the state first, then exchange the code and bind the userid.

    Returns the outcome and the service user the attempt belongs to.
    """
    ticket = check_qy_state(state, user)
    owner = db.session.get(User, ticket.user_id)
    if not code:
        return refuse_attempt(ticket.scene, owner.id, "cancelled"), owner
    configured = _bindable_channel()
    try:
        identity = call_with_token(configured.token_source(), lambda token: work_client().get_user_info(token, code))
    except WeChatAPIError as exc:
        if exc.errcode in (40029, 40163):
            raise BindError(_("WeCom did not accept the sign-in (the code is invalid or was already used). Start again from your Bind WeChat page.")) from None
        raise _wechat_failure(exc) from None
    except WeChatError as exc:
        raise _wechat_failure(exc) from None
    userid = identity.get("userid") or identity.get("UserId")
    if not userid:
        return refuse_attempt(ticket.scene, owner.id, "not_member"), owner
    return complete(ticket.scene, userid, CHANNEL_QYWX, user_id=owner.id), owner


# --- unbinding and WeChat-side changes ----------------------------------------------------------------

def unbind(user: User, *, actor: str | None = None, wx_type: str | None = None) -> int:
    """Deactivate the user's active bindings (of one channel, or all); return how many."""
    where = [Binding.user_id == user.id, Binding.active.is_(True)]
    if wx_type:
        where.append(Binding.channel == wx_type)
    with db.transaction() as session:
        rows = session.scalars(select(Binding).where(*where).with_for_update()).all()
        for binding in rows:
            binding.active, binding.deactivated_at = False, utcnow()
            binding.deactivated_reason = "unbound" if actor in (None, user.username) else "unbound_by_admin"
            _audit(session, actor or user.username, "binding.unbind", binding.wx_id, user=user.username, channel=binding.channel)
    return len(rows)


def follower_left(openid: str, account: str) -> bool:
    """The person unfollowed the Official Account: deactivate their binding (sends to them then fail)."""
    with db.transaction() as session:
        binding = session.scalar(select(Binding).where(Binding.channel == CHANNEL_MP, Binding.account == account,
                                                       Binding.wx_id == openid, Binding.active.is_(True)).with_for_update())
        if binding is None:
            return False
        binding.active, binding.deactivated_at, binding.deactivated_reason = False, utcnow(), "unsubscribed"
        _audit(session, "wechat", "binding.deactivated", openid, reason="unsubscribed", user_id=binding.user_id)
    return True


def follower_returned(openid: str, account: str) -> User | None:
    """The person followed again: reactivate a binding that unfollowing had deactivated; return its user."""
    with db.transaction() as session:
        binding = session.scalar(select(Binding).where(Binding.channel == CHANNEL_MP, Binding.account == account,
                                                       Binding.wx_id == openid, Binding.active.is_(False),
                                                       Binding.deactivated_reason == "unsubscribed").with_for_update())
        if binding is None:
            return None
        taken = session.scalar(select(Binding.id).where(Binding.user_id == binding.user_id, Binding.channel == CHANNEL_MP,
                                                        Binding.account == account, Binding.active.is_(True)))
        if taken is not None:
            return None  # the user has bound another WeChat meanwhile
        binding.active, binding.deactivated_at, binding.deactivated_reason = True, None, None
        _audit(session, "wechat", "binding.reactivated", openid, user_id=binding.user_id)
        return session.get(User, binding.user_id)


#: Why a binding ended when WeCom deleted the member (the send API refuses such receivers at once).
MEMBER_DELETED = "member_deleted"


def _wecom_binding(session, account: str, userid: str) -> Binding | None:
    """The binding of a WeCom userid on ``account``, locked; userids are compared without case, as WeCom does."""
    return session.scalar(select(Binding).where(Binding.channel == CHANNEL_QYWX, Binding.account == account,
                                                func.lower(Binding.wx_id) == userid.lower()).with_for_update())


def member_deleted(userid: str, account: str) -> bool:
    """WeCom deleted the member ``userid``: their binding ends (audited); sends to them then fail at once."""
    with db.transaction() as session:
        binding = _wecom_binding(session, account, userid)
        if binding is None or not binding.active:
            return False
        binding.active, binding.deactivated_at, binding.deactivated_reason = False, utcnow(), MEMBER_DELETED
        _audit(session, "wecom", "binding.deactivated", binding.wx_id, reason=MEMBER_DELETED, user_id=binding.user_id,
               channel=CHANNEL_QYWX)
    return True


def member_renamed(userid: str, new_userid: str, account: str) -> bool:
    """WeCom changed the member's userid: their binding follows it to ``new_userid`` (audited).

    A binding already held by ``new_userid`` can only be left over from an earlier member of that
    userid (WeCom's userids are unique): it is removed, with its own audit entry.
    """
    if not new_userid or new_userid.lower() == userid.lower():
        return False
    with db.transaction() as session:
        binding = _wecom_binding(session, account, userid)
        if binding is None:
            return False
        stale = _wecom_binding(session, account, new_userid)
        if stale is not None:
            _audit(session, "wecom", "binding.removed", stale.wx_id, reason="userid_taken_over", user_id=stale.user_id,
                   channel=CHANNEL_QYWX)
            session.delete(stale)
            session.flush()  # one identity per account: the old row goes before the new id is written
        old = binding.wx_id
        binding.wx_id = new_userid
        _audit(session, "wecom", "binding.userid_changed", new_userid, from_userid=old, user_id=binding.user_id,
               channel=CHANNEL_QYWX)
    return True


def admin_list(search: str = "", wx_type: str = "", state: str = "", limit: int = 50, offset: int = 0):
    """Bindings for the console, newest first, with the total count matching the filters."""
    query = select(Binding, User).join(User, User.id == Binding.user_id)
    if search:
        like = f"%{search.strip().lower()}%"
        query = query.where(func.lower(User.username).like(like) | func.lower(Binding.wx_id).like(like))
    if wx_type in (CHANNEL_MP, CHANNEL_QYWX):
        query = query.where(Binding.channel == wx_type)
    if state in ("active", "inactive"):
        query = query.where(Binding.active.is_(state == "active"))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.execute(query.order_by(Binding.created_at.desc(), Binding.id.desc()).limit(limit).offset(offset)).all()
    return rows, total


def admin_unbind(binding_id: int, actor: str) -> Binding | None:
    """An administrator ends one binding."""
    with db.transaction() as session:
        binding = session.get(Binding, binding_id, with_for_update=True)
        if binding is None or not binding.active:
            return binding
        binding.active, binding.deactivated_at, binding.deactivated_reason = False, utcnow(), "unbound_by_admin"
        user = session.get(User, binding.user_id)
        _audit(session, actor, "binding.unbind", binding.wx_id, user=user.username, channel=binding.channel, by="admin")
    return binding


def find_identity(wx_type: str, account: str, wx_id: str) -> Binding | None:
    """The binding row of one WeChat identity on an account (active or not)."""
    return db.session.scalar(select(Binding).where(Binding.channel == wx_type, Binding.account == account, Binding.wx_id == wx_id))


def purge_expired_tickets() -> int:
    """Delete bind tickets that expired more than a day ago; returns how many."""
    from sqlalchemy import delete

    with db.transaction() as session:
        return session.execute(delete(BindTicket).where(BindTicket.expires_at < utcnow() - timedelta(days=1))).rowcount
