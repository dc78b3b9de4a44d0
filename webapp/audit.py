"""What each audit log action means, in words: the audit log stores short codes ("binding.bind") so
that it can be filtered and kept stable, and pages show these sentences in the reader's language.

Every code written anywhere in the service has its sentence here (tests/test_audit_sentences.py
reads the source to make sure); a code without one is shown as it is.
"""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

#: Audit action code -> what happened, said from the point of view of the one who did it
#: (the "Who" column of the audit log: a user, the command line, WeChat or WeCom).
SENTENCES = {
    "setup.admin_created": _l("Created the first administrator during first-run set-up"),
    "channel.configure": _l("Saved the WeChat channel configuration"),
    "secrets.rotate": _l("Re-encrypted the stored secrets with the current secret key"),
    "user.create": _l("Created a user"),
    "user.enable": _l("Enabled a user: they can sign in again"),
    "user.disable": _l("Disabled a user: they can no longer sign in"),
    "user.admin_grant": _l("Made a user an administrator"),
    "user.admin_revoke": _l("Removed a user's administrator role"),
    "user.password_change": _l("Changed their own password"),
    "user.password_reset": _l("Reset a user's password"),
    "api_app.create": _l("Registered an application that may send messages"),
    "api_app.rotate_secret": _l("Gave an application a new secret (the old one stopped working)"),
    "api_app.enable": _l("Enabled an application"),
    "api_app.disable": _l("Disabled an application: its calls are refused"),
    "api_app.rate_limit": _l("Changed an application's rate limit"),
    "delivery.retry": _l("Sent a failed delivery again"),
    "binding.bind": _l("Bound a WeChat account"),
    "binding.replaced": _l("Replaced their earlier WeChat binding with a new one"),
    "binding.moved": _l("Took over a WeChat account that was bound to another user"),
    "binding.refused": _l("Tried to bind a WeChat account and was refused"),
    "binding.unbind": _l("Ended a WeChat binding"),
    "binding.deactivated": _l("Stopped a binding: the person unfollowed the Official Account or left the WeCom company"),
    "binding.reactivated": _l("Resumed a binding: the person followed the Official Account again"),
    "binding.removed": _l("Removed a binding whose WeCom userid now belongs to another member"),
    "binding.userid_changed": _l("Moved a binding to the member's new WeCom userid"),
}


def sentence(action: str) -> str | None:
    """The sentence for an audit action code in the page language, or None for a code it does not know."""
    text = SENTENCES.get(action)
    return str(text) if text is not None else None
