"""What the binding part does with WeChat's events: QR scans bind, unfollowing deactivates, and WeCom's
contact changes end or move bindings.

The replies are the short passive messages the person sees in WeChat right after scanning.
"""
from __future__ import annotations

from functools import lru_cache

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l

from webapp.binding import services
from webapp.callback import store
from webapp.models import CHANNEL_MP
from webapp.wechat.ids import valid_wecom_userid

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
    return "\n".join(template % {"name": name} for template in _translated(code))


@lru_cache(maxsize=None)
def _translated(code: str) -> tuple[str, ...]:
    """The reply's sentence in each language, looked up once per process (the catalogues do not change)."""
    translated = []
    for language in ("zh", "en"):
        with force_locale(language):
            translated.append(str(_REPLIES[code]))
    return tuple(translated)


#: Whether unfollowing deactivated this follower's binding (see ``services.follower_returned``).
_LEFT_BEFORE = ("SELECT 1 FROM bindings WHERE channel = :channel AND account = :account AND wx_id = :openid "
                "AND NOT active AND deactivated_reason = 'unsubscribed'")


def _may_be_returning(openid: str, account: str) -> bool:
    """A look without locks before ``follower_returned``'s locked one: most follows are newcomers."""
    ledger = store.current()
    if ledger is None:  # not inside a callback request: let the service look
        return True
    return ledger.read(_LEFT_BEFORE, {"channel": CHANNEL_MP, "account": account, "openid": openid}) is not None


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
    openid = message.get("FromUserName", "")
    user = services.follower_returned(openid, configured.account) if _may_be_returning(openid, configured.account) else None
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


def contact_changed(message: dict, configured) -> None:
    """A WeCom contact change (``change_contact``): ``delete_user`` ends the member's binding,
    ``update_user`` with ``NewUserID`` moves it to the new userid; other changes need nothing."""
    change = message.get("ChangeType", "").lower()
    userid = message.get("UserID", "")
    if not valid_wecom_userid(userid):
        return None
    if change == "delete_user":
        services.member_deleted(userid, configured.account)
    elif change == "update_user" and valid_wecom_userid(message.get("NewUserID", "")):
        services.member_renamed(userid, message["NewUserID"], configured.account)
    return None
