"""First-run set-up: creating the first administrator exactly once."""
from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from webapp import runtime
from webapp.auth.services import UserError, admin_exists, check_new_credentials
from webapp.extensions import db
from webapp.models import AppState, AuditEntry, User

SETUP_MARKER = "setup.admin_created"


def setup_done() -> bool:
    """Whether an administrator exists; remembered by the process once true (it never becomes false)."""
    process = runtime.state()
    if not process.setup_done and admin_exists():
        process.setup_done = True
    return process.setup_done


class SetupAlreadyDone(Exception):
    """An administrator exists: first-run set-up cannot run again."""


def create_first_admin(username: str, password: str) -> User:
    """Create the first administrator, or raise SetupAlreadyDone if set-up has already run.

    The marker row has a fixed primary key and is written in the same transaction, so two
    browsers submitting at the same moment cannot both create an administrator.
    """
    check_new_credentials(username, password)
    if admin_exists():
        raise SetupAlreadyDone()
    user = User(username=username, is_admin=True)
    user.set_password(password)
    try:
        with db.transaction() as session:
            session.add(AppState(key=SETUP_MARKER, value=username))
            session.add(user)
            session.add(AuditEntry(actor=username, action="setup.admin_created", target=username))
    except IntegrityError:
        if admin_exists():
            raise SetupAlreadyDone() from None
        raise UserError(_("The user name %(name)s is already taken.", name=username)) from None
    runtime.state().setup_done = True
    return user
