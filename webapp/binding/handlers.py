"""What the binding part does with WeChat's events: QR scans bind, unfollowing deactivates.

The replies are the short passive messages the person sees in WeChat right after scanning.
"""
from __future__ import annotations

from webapp.binding import services
from webapp.models import CHANNEL_MP

SCENE_PREFIX = "qrscene_"

# The person's WeChat language is unknown here, so replies carry both languages, Chinese first.
_REPLIES = {
    "bound": "绑定成功：{name} 的通知将发送到这个微信。\nBound: notifications for {name} will come to this WeChat.",
    "unknown": "二维码无效，请在“绑定微信”页面重新获取。\nThis code is not valid: get a new one on the Bind WeChat page.",
    "used": "二维码已使用过，请在“绑定微信”页面重新获取。\nThis code was already used: get a new one on the Bind WeChat page.",
    "expired": "二维码已过期，请在“绑定微信”页面重新获取。\nThis code has expired: get a new one on the Bind WeChat page.",
    "taken": "此微信已绑定其他账号，请先在该账号中解除绑定。\nThis WeChat is bound to another account: unbind it there first.",
    "disabled": "账号已停用，请联系管理员。\nThe account is disabled: contact your administrator.",
    "wrong_account": "二维码不属于本公众号，请重新获取。\nThis code belongs to another account: get a new one.",
    "welcome": "欢迎关注！如需接收通知，请在“绑定微信”页面扫码绑定。\nWelcome! To receive notifications, scan the code on the Bind WeChat page.",
    "welcome_back": "欢迎回来：{name} 的通知已恢复。\nWelcome back: notifications for {name} are on again.",
}


def _bind(message: dict, configured, scene: str) -> str:
    outcome = services.complete(scene, message.get("FromUserName", ""), CHANNEL_MP, qr_ticket=message.get("Ticket") or None)
    name = ""
    if outcome.ok:
        binding = services.find_identity(CHANNEL_MP, configured.account, message.get("FromUserName", ""))
        name = binding.user.username if binding else ""
    return _REPLIES[outcome.code].format(name=name)


def subscribed(message: dict, configured) -> str | None:
    """A follow: with a QR scene the person scanned a bind code before following; else a plain follow."""
    key = message.get("EventKey", "")
    if key.startswith(SCENE_PREFIX) and len(key) > len(SCENE_PREFIX):
        return _bind(message, configured, key[len(SCENE_PREFIX):])
    user = services.follower_returned(message.get("FromUserName", ""), configured.account)
    if user is not None:
        return _REPLIES["welcome_back"].format(name=user.username)
    return _REPLIES["welcome"]


def scanned(message: dict, configured) -> str | None:
    """A follower scanned a bind code: EventKey is the scene itself."""
    key = message.get("EventKey", "")
    return _bind(message, configured, key) if key else None


def unsubscribed(message: dict, configured) -> None:
    """The person unfollowed: their binding stops receiving (no reply can reach them anyway)."""
    services.follower_left(message.get("FromUserName", ""), configured.account)
    return None
