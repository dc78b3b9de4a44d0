"""Managing users on an administrator's behalf: list, create, disable and enable, reset passwords, roles.

The name and password rules, and the creation and password reset themselves, are those of
``webapp.auth.services`` (the same as ``flask create-user`` and ``flask set-password``). What this
module adds are the rules that keep the service manageable: an enabled administrator always
remains, and an administrator never disables, demotes or resets themselves here (their own
password has its own page, which asks for the current one).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from flask_babel import gettext as _
from sqlalchemy import and_, func, or_, select

from webapp import channel
from webapp.auth import services as accounts
from webapp.auth.services import UserError
from webapp.extensions import db
from webapp.models import AuditEntry, Binding, User


@dataclass
class UserRow:
    """One user as the users page lists them: the account, and the channels of their active bindings."""

    user: User
    #: Channels ("mp", "qywx") bound on the connected account.
    bound: list[str] = field(default_factory=list)
    #: Active bindings that belong to another account (made before the channel was changed).
    elsewhere: int = 0


def list_users(search: str = "", *, limit: int = 50, offset: int = 0) -> tuple[list[UserRow], int]:
    """Users by name (optionally those whose name contains ``search``), with binding state; and the total."""
    query = select(User)
    if search.strip():
        query = query.where(func.lower(User.username).contains(search.strip().lower(), autoescape=True))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    users = db.session.scalars(query.order_by(func.lower(User.username), User.id).limit(limit).offset(offset)).all()
    return _with_bindings(users), total


def describe(user: User) -> UserRow:
    """One user with their binding state, as the list shows it."""
    return _with_bindings([user])[0]


def _with_bindings(users: list[User]) -> list[UserRow]:
    rows = {user.id: UserRow(user) for user in users}
    if not rows:
        return []
    current = channel.load()
    account = (current.wx_type, current.account) if current else None
    bindings = db.session.execute(select(Binding.user_id, Binding.channel, Binding.account)
                                  .where(Binding.user_id.in_(rows), Binding.active.is_(True)).order_by(Binding.id)).all()
    for user_id, wx_type, bound_account in bindings:
        if (wx_type, bound_account) == account:
            rows[user_id].bound.append(wx_type)
        else:
            rows[user_id].elsewhere += 1
    return list(rows.values())


def is_only_admin(user: User) -> bool:
    """Whether ``user`` is the one enabled administrator (who may then be neither disabled nor demoted)."""
    if not (user.is_admin and user.enabled):
        return False
    others = select(User.id).where(User.is_admin.is_(True), User.enabled.is_(True), User.id != user.id).limit(1)
    return db.session.scalar(others) is None


def get_user(user_id: int) -> User:
    """The user numbered ``user_id``; UserError (a sentence) when there is none."""
    user = db.session.get(User, user_id)
    if user is None:
        raise UserError(_("There is no user with the number %(id)d: it may have been deleted. Go back to the list of users.", id=user_id))
    return user


def create(username: str, password: str, *, is_admin: bool, actor: str) -> User:
    """Create a user with the rules of ``flask create-user`` (committed, audited as ``user.create``)."""
    return accounts.create_user((username or "").strip(), password or "", is_admin=is_admin, actor=actor)


def reset_password(user_id: int, password: str, *, actor: User) -> User:
    """Give another user a new password (committed, audited); their sessions end with the old one."""
    user = get_user(user_id)
    if user.id == actor.id:
        raise UserError(_("Change your own password on the Change my password page: it asks for your current one first."), "password")
    return accounts.reset_password(user.username, password or "", actor=actor.username)


def set_enabled(user_id: int, enabled: bool, *, actor: User) -> tuple[User, bool]:
    """Enable or disable a user; return the user and whether anything changed (audited when it did).

    A disabled user cannot sign in, their open sessions end at their next request, and messages
    addressed to them are refused.
    """
    return _change(user_id, "enabled", enabled, actor, ("user.enable", "user.disable"),
                   _("You cannot disable your own account: you would be signed out at once. Another administrator can do it."))


def set_admin(user_id: int, is_admin: bool, *, actor: User) -> tuple[User, bool]:
    """Grant or remove the administrator role; return the user and whether anything changed (audited when it did)."""
    return _change(user_id, "is_admin", is_admin, actor, ("user.admin_grant", "user.admin_revoke"),
                   _("You cannot remove your own administrator role: you would lose this page at once. Another administrator can do it."))


def _change(user_id: int, attribute: str, value: bool, actor: User, actions: tuple[str, str], not_yourself: str):
    """Set a flag that makes an administrator (``enabled``, ``is_admin``) to ``value``, keeping one enabled administrator.

    Switching it off is refused for the last enabled administrator, and for the actor's own account.
    """
    with db.transaction() as session:
        user, admins = _lock(session, user_id)
        if getattr(user, attribute) == value:
            return user, False
        if not value:
            _refuse_losing_the_last_admin(user, admins)
            if user.id == actor.id:
                raise UserError(not_yourself, "")
        setattr(user, attribute, value)
        session.add(AuditEntry(actor=actor.username, action=actions[0] if value else actions[1], target=user.username))
    return user, True


def _lock(session, user_id: int) -> tuple[User, list[User]]:
    """The user and every enabled administrator, locked in one statement (always in id order).

    Two administrators demoting each other at the same moment then take their turns: the second
    sees the first's change and is refused, so the service never ends up without an administrator.
    """
    locked = session.scalars(
        select(User).where(or_(User.id == user_id, and_(User.is_admin.is_(True), User.enabled.is_(True))))
        .order_by(User.id).with_for_update().execution_options(populate_existing=True)).all()
    user = next((u for u in locked if u.id == user_id), None)
    if user is None:
        raise UserError(_("There is no user with the number %(id)d: it may have been deleted. Go back to the list of users.", id=user_id))
    return user, [u for u in locked if u.is_admin and u.enabled]


def _refuse_losing_the_last_admin(user: User, admins: list[User]) -> None:
    if user.is_admin and user.enabled and not any(a.id != user.id for a in admins):
        raise UserError(_("%(name)s is the only enabled administrator, so nothing was changed: without one nobody could manage "
                          "this service. Make another user an administrator first.", name=user.username), "")
