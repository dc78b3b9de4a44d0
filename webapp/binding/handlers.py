"""What the binding part does with WeChat's events: QR scans bind, unfollowing deactivates.

The replies are the short passive messages the person sees in WeChat right after scanning.
"""
from __future__ import annotations

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l

from webapp.binding import services
from webapp.models import CHANNEL_MP

SCENE_PREFIX = "qrscene_"

# The person's WeChat language is unknown here, so a reply carries both languages, Chinese first.
_REPLIES = {
    "bound": _l("Bound: notifications for %(name)s will come to this WeChat."),
    "unknown": _l("This code is not valid: get a new one on the Bind WeChat page."),
    "used": _l("This code was already used: get a new one on the Bind WeChat page."),
    "expired": _l("This code has expired: get a new one on the Bind WeChat page."),
    "taken": _l("This WeChat is bound to another account: unbind it there first."),
    "disabled": _l("The account is disabled: contact your administrator."),
    "wrong_account": _l("This code belongs to another account: get a new one."),
    "welcome": _l("Welcome! To receive notifications, scan the code on the Bind WeChat page."),
    "welcome_back": _l("Welcome back: notifications for %(name)s are on again."),
}


def reply(code: str, name: str = "") -> str:
    """The passive reply ``code`` in Chinese, then in English."""
    lines = []
    for language in ("zh", "en"):
        with force_locale(language):
            lines.append(str(_REPLIES[code]) % {"name": name})
    return "\n".join(lines)


def _bind(message: dict, configured, scene: str) -> str:
    outcome = services.complete(scene, message.get("FromUserName", ""), CHANNEL_MP, qr_ticket=message.get("Ticket") or None)
    name = ""
    if outcome.ok:
        binding = services.find_identity(CHANNEL_MP, configured.account, message.get("FromUserName", ""))
        name = binding.user.username if binding else ""
    return reply(outcome.code, name)


def subscribed(message: dict, configured) -> str | None:
    """A follow: with a QR scene the person scanned a bind code before following; else a plain follow."""
    key = message.get("EventKey", "")
    if key.startswith(SCENE_PREFIX) and len(key) > len(SCENE_PREFIX):
        return _bind(message, configured, key[len(SCENE_PREFIX):])
    user = services.follower_returned(message.get("FromUserName", ""), configured.account)
    if user is not None:
        return reply("welcome_back", user.username)
    return reply("welcome")


def scanned(message: dict, configured) -> str | None:
    """A follower scanned a bind code: EventKey is the scene itself."""
    key = message.get("EventKey", "")
    return _bind(message, configured, key) if key else None


def unsubscribed(message: dict, configured) -> None:
    """The person unfollowed: their binding stops receiving (no reply can reach them anyway)."""
    services.follower_left(message.get("FromUserName", ""), configured.account)
    return None
