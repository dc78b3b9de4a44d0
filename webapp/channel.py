"""The connected WeChat channel: validating, checking live, storing and loading its configuration.

The configuration keys are those of the contract (``wx_type``, ``wx_app_id``, ``wx_secret``, ...), used
alike by ``flask --app wsgi weixin-config FILE.json`` and the set-up wizard. Secrets are stored
encrypted and never handed back in full.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from flask import g
from flask_babel import gettext as _
from sqlalchemy import select, text

from webapp import runtime
from webapp.clients import mp_client, work_client
from webapp.extensions import db
from webapp.models import CHANNEL_MP, CHANNEL_QYWX, AuditEntry, ChannelConfig
from webapp.secretbox import box
from webapp.tokens import TokenSource
from webapp.wechat import MessageCrypto, WeChatAPIError, WeChatError, diagnose_transport, ids
from webapp.wechat.crypto import validate_encoding_aes_key, validate_token
from webapp.wechat.errors import N_, Sentence

DEFAULT_TEMPLATE_FIELDS = {"heading": "first", "message": "keyword1", "date": "keyword2", "remark": "remark"}
TEMPLATE_PARAMETERS = ("heading", "message", "date", "remark")
ENCRYPT_MODES = ("plain", "compatible", "safe")
QY_MSGTYPES = ("text", "textcard", "markdown")
SECRET_KEYS = ("wx_secret", "wx_qy_corpsecret", "wx_encoding_aes_key", "wx_qy_encoding_aes_key")
MP_KEYS = ("wx_app_id", "wx_secret", "wx_token", "wx_encoding_aes_key", "wx_encrypt_mode", "wx_template_id", "wx_template_fields")
QY_KEYS = ("wx_qy_corpid", "wx_qy_corpsecret", "wx_qy_agentid", "wx_qy_msgtype", "wx_qy_token", "wx_qy_encoding_aes_key")
#: Keys whose values are never written to the audit log (the secrets, and the callback Tokens).
UNAUDITED_KEYS = (*SECRET_KEYS, "wx_token", "wx_qy_token")



@dataclass(frozen=True)
class Channel:
    """The stored configuration with secrets decrypted, for the code that talks to WeChat.

    Its repr leaves the secrets out (AppSecret, Tokens, EncodingAESKeys, CorpSecret): a Channel in a
    log line or a traceback shows which account it is, never how to act as it.
    """

    wx_type: str
    wx_app_id: str | None = None
    wx_secret: str | None = field(default=None, repr=False)
    wx_token: str | None = field(default=None, repr=False)
    wx_encoding_aes_key: str | None = field(default=None, repr=False)
    wx_previous_encoding_aes_key: str | None = field(default=None, repr=False)
    wx_encrypt_mode: str = "plain"
    wx_template_id: str | None = None
    wx_template_fields: dict = field(default_factory=lambda: dict(DEFAULT_TEMPLATE_FIELDS))
    wx_qy_corpid: str | None = None
    wx_qy_corpsecret: str | None = field(default=None, repr=False)
    wx_qy_agentid: int | None = None
    wx_qy_msgtype: str = "text"
    wx_qy_token: str | None = field(default=None, repr=False)
    wx_qy_encoding_aes_key: str | None = field(default=None, repr=False)
    wx_qy_previous_encoding_aes_key: str | None = field(default=None, repr=False)

    @property
    def account(self) -> str:
        """The account bindings belong to: the Official Account appid or the WeCom corpid."""
        return (self.wx_app_id if self.wx_type == CHANNEL_MP else self.wx_qy_corpid) or ""

    @cached_property
    def crypto(self) -> MessageCrypto | None:
        """The callback message crypto of this Official Account (None without an EncodingAESKey).

        Kept with the cached configuration, so keys are decoded once, not per callback.
        """
        if self.wx_type != CHANNEL_MP or not self.wx_encoding_aes_key:
            return None
        return MessageCrypto(self.wx_token, self.wx_encoding_aes_key, self.wx_app_id, self.wx_previous_encoding_aes_key)

    @cached_property
    def qy_crypto(self) -> MessageCrypto | None:
        """The WeCom application's callback crypto (receiveid = CorpID), or None without its 接收消息 server.

        Kept with the cached configuration, like :attr:`crypto`.
        """
        if self.wx_type != CHANNEL_QYWX or not (self.wx_qy_token and self.wx_qy_encoding_aes_key):
            return None
        return MessageCrypto(self.wx_qy_token, self.wx_qy_encoding_aes_key, self.wx_qy_corpid or "",
                             self.wx_qy_previous_encoding_aes_key)

    def token_source(self, corpsecret: str | None = None) -> TokenSource:
        """Where this channel's access token comes from (optionally another WeCom app's secret)."""
        if self.wx_type == CHANNEL_MP:
            return TokenSource.official_account(self.wx_app_id, self.wx_secret)
        return TokenSource.wecom(self.wx_qy_corpid, corpsecret or self.wx_qy_corpsecret)


class ConfigInvalid(ValueError):
    """The configuration breaks the rules; ``errors`` maps each wrong key to a sentence."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class CheckFailed(Exception):
    """The live check against WeChat failed; ``key`` names the setting at fault when known.

    It carries a gettext message id and its parameters (``advice``), so the sentence can be shown in
    any language with :meth:`message`; ``str(exc)`` is the English sentence, for logs and commands.
    """

    def __init__(self, message: str | Sentence, key: str | None = None, errcode: int | None = None,
                 ip: str | None = None, **params: Any):
        self.advice = message if isinstance(message, Sentence) else Sentence.of(message, **params)
        super().__init__(self.advice.render("en"))
        self.key, self.errcode, self.ip = key, errcode, ip

    @property
    def message_id(self) -> str:
        """The gettext message id of the sentence."""
        return self.advice.id

    def message(self, lang: str | None = "en") -> str:
        """The sentence in ``lang`` ('zh', 'zh_Hans_CN', ... give Chinese; None or 'en' English)."""
        return self.advice.render(lang)


def normalize(data: dict[str, Any], current: Channel | None = None) -> dict[str, Any]:
    """Check and clean a configuration; raise ConfigInvalid listing every wrong key.

    A secret left empty keeps the current value (so a form can show secrets masked).
    """
    if not isinstance(data, dict):
        raise ConfigInvalid({"wx_type": _("the configuration must be a JSON object")})
    errors: dict[str, str] = {}
    wx_type = str(data.get("wx_type", "")).strip()
    wx_type = {"qy": CHANNEL_QYWX}.get(wx_type, wx_type)
    if wx_type not in (CHANNEL_MP, CHANNEL_QYWX):
        raise ConfigInvalid({"wx_type": _('must be "mp" (Official Account) or "qywx" (WeCom)')})

    def value_of(key: str) -> str:
        value = data.get(key)
        if value is None or value == "":
            if key in SECRET_KEYS and current is not None and current.wx_type == wx_type:
                return getattr(current, key) or ""
            return ""
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            errors[key] = _("must be a string")
            return ""
        return str(value).strip()

    clean: dict[str, Any] = {"wx_type": wx_type}
    unknown = sorted(set(data) - {"wx_type", *MP_KEYS, *QY_KEYS})
    if unknown:
        errors[unknown[0]] = _("is not a configuration key (check its spelling)")
    if wx_type == CHANNEL_MP:
        appid, secret, token = value_of("wx_app_id"), value_of("wx_secret"), value_of("wx_token")
        aes_key, template_id = value_of("wx_encoding_aes_key"), value_of("wx_template_id")
        mode = value_of("wx_encrypt_mode") or ("safe" if aes_key else "plain")
        if not ids.APPID_RE.fullmatch(appid):
            errors["wx_app_id"] = _("the AppID is 'wx' followed by 16 hexadecimal characters (开发 → 基本配置)")
        if not ids.APP_SECRET_RE.fullmatch(secret):
            errors["wx_secret"] = _("the AppSecret is 32 hexadecimal characters (开发 → 基本配置 → AppSecret)")
        if not validate_token(token):
            errors["wx_token"] = _("the Token is 3 to 32 letters or digits, the same as on WeChat's 服务器配置 page")
        if aes_key and not validate_encoding_aes_key(aes_key):
            errors["wx_encoding_aes_key"] = _("the EncodingAESKey is 43 letters or digits")
        if mode not in ENCRYPT_MODES:
            errors["wx_encrypt_mode"] = _("must be plain, compatible or safe")
        elif mode != "plain" and not aes_key:
            errors["wx_encoding_aes_key"] = _("compatible and safe mode need the EncodingAESKey")
        if not ids.TEMPLATE_ID_RE.fullmatch(template_id):
            errors["wx_template_id"] = _("the template ID is shown under 功能 → 模板消息 → 我的模板 (not the library number such as TM00015)")
        fields = data.get("wx_template_fields") or dict(DEFAULT_TEMPLATE_FIELDS)
        if not isinstance(fields, dict) or not fields:
            errors["wx_template_fields"] = _("must map heading/message/date/remark to template keys")
        else:
            bad = [k for k, v in fields.items() if k not in TEMPLATE_PARAMETERS or not isinstance(v, str) or not ids.TEMPLATE_KEY_RE.fullmatch(v)]
            if bad:
                errors["wx_template_fields"] = _("%(key)s: keys are heading, message, date, remark; values are template keys such as keyword1", key=repr(bad[0]))
            elif "message" not in fields:
                errors["wx_template_fields"] = _("the message must be mapped to a template key")
        clean.update(wx_app_id=appid, wx_secret=secret, wx_token=token, wx_encoding_aes_key=aes_key or None,
                     wx_encrypt_mode=mode, wx_template_id=template_id, wx_template_fields=fields)
    else:
        corpid, corpsecret, msgtype = value_of("wx_qy_corpid"), value_of("wx_qy_corpsecret"), value_of("wx_qy_msgtype") or "text"
        agentid_text = value_of("wx_qy_agentid")
        if not ids.CORPID_RE.fullmatch(corpid):
            errors["wx_qy_corpid"] = _("the CorpID is 18 characters starting with ww (我的企业 → 企业信息)")
        if not ids.CORPSECRET_RE.fullmatch(corpsecret):
            errors["wx_qy_corpsecret"] = _("the Secret is shown on the application's page (应用管理 → 应用 → Secret)")
        if not agentid_text.isdigit() or not 0 < int(agentid_text) < 2**31:
            errors["wx_qy_agentid"] = _("the AgentId is a number shown on the application's page (应用管理 → 应用)")
        if msgtype not in QY_MSGTYPES:
            errors["wx_qy_msgtype"] = _("must be text, textcard or markdown")
        # The 接收消息 server is optional; when it is set, WeCom encrypts everything, so both are needed.
        qy_token = value_of("wx_qy_token")
        # A blank EncodingAESKey keeps the current one (value_of), but only for a server that stays set.
        qy_key = value_of("wx_qy_encoding_aes_key") if qy_token else ""
        if not qy_token and data.get("wx_qy_encoding_aes_key"):
            errors["wx_qy_token"] = _("the Token is needed with the EncodingAESKey (应用管理 → 应用 → 接收消息 → 设置API接收)")
        elif qy_token and not validate_token(qy_token):
            errors["wx_qy_token"] = _("the Token is 3 to 32 letters or digits, the same as on WeCom's 设置API接收 page")
        if qy_token and not qy_key:
            errors["wx_qy_encoding_aes_key"] = _("the EncodingAESKey is needed with the Token: WeCom encrypts every message")
        elif qy_key and not validate_encoding_aes_key(qy_key):
            errors["wx_qy_encoding_aes_key"] = _("the EncodingAESKey is 43 letters or digits")
        clean.update(wx_qy_corpid=corpid, wx_qy_corpsecret=corpsecret,
                     wx_qy_agentid=int(agentid_text) if agentid_text.isdigit() else None, wx_qy_msgtype=msgtype,
                     wx_qy_token=qy_token or None, wx_qy_encoding_aes_key=qy_key or None)
    if errors:
        raise ConfigInvalid(errors)
    return clean


#: Which setting is at fault for each kind of WeChat refusal (see ``webapp.wechat.errors``).
MP_KEY_BY_KIND = {"secret": "wx_secret", "appid": "wx_app_id", "ip": "wx_secret"}
QY_KEY_BY_KIND = {"secret": "wx_qy_corpsecret", "appid": "wx_qy_corpid", "corpid": "wx_qy_corpid",
                  "agent": "wx_qy_agentid", "ip": "wx_qy_corpsecret"}


def check_failure(exc: WeChatError, key_by_kind: dict[str, str]) -> CheckFailed:
    """A WeChat error met while checking keys, as a CheckFailed naming the setting at fault."""
    if isinstance(exc, WeChatAPIError):
        d = exc.diagnosis
        # 40013 is a wrong AppID/CorpID, which the catalogue files under "secret" (the key pair).
        key = key_by_kind.get("appid") if exc.errcode == 40013 else key_by_kind.get(d.kind)
        return CheckFailed(d.advice, key, exc.errcode, d.ip)
    return CheckFailed(diagnose_transport(exc).advice)


def account_templates(appid: str, secret: str) -> list[dict]:
    """The Official Account's templates, read with a token fetched for exactly these keys; raise CheckFailed.

    A token cached for the same account is not used: it would hide a wrong AppSecret.
    """
    try:
        token, _expires_in = TokenSource.official_account(appid, secret).fetch()
        return mp_client().get_all_private_template(token)
    except WeChatError as exc:
        raise check_failure(exc, MP_KEY_BY_KIND) from None


def check_live(clean: dict[str, Any]) -> dict[str, Any]:
    """Check a normalized configuration against WeChat; return what was learnt, raise CheckFailed.

    Official Account: an access token, and the template among the account's templates.
    WeCom: an access token, and the application exists and is visible to at least one member.
    """
    channel = Channel(**clean)
    # Fetch a token with exactly these keys: a token cached for the same account would hide a wrong secret.
    source = channel.token_source()
    if channel.wx_type == CHANNEL_MP:
        templates = account_templates(channel.wx_app_id, channel.wx_secret)
        ids = [t.get("template_id") for t in templates]
        if channel.wx_template_id not in ids:
            raise CheckFailed(
                N_("The template {template_id} is not among this account's templates ({count} found). "
                   "Copy the ID from 功能 → 模板消息 → 我的模板."),
                "wx_template_id", template_id=channel.wx_template_id, count=len(ids),
            )
        return {"templates": len(ids)}
    try:
        token, _expires_in = source.fetch()
        agent = work_client().get_agent(token, channel.wx_qy_agentid)
    except WeChatError as exc:
        raise check_failure(exc, QY_KEY_BY_KIND) from None
    users = (agent.get("allow_userinfos") or {}).get("user") or []
    parties = (agent.get("allow_partys") or {}).get("partyid") or []
    tags = (agent.get("allow_tags") or {}).get("tagid") or []
    if agent.get("close"):
        raise CheckFailed(N_("The WeCom application is disabled. Enable it under 应用管理 → 应用."), "wx_qy_agentid")
    if not (users or parties or tags):
        raise CheckFailed(
            N_("Nobody can see this WeCom application, so nobody could receive messages. Set its visible range "
               "(应用管理 → 应用 → 可见范围) to the people who should be notified."),
            "wx_qy_agentid",
        )
    return {"visible_users": len(users), "visible_parties": len(parties), "visible_tags": len(tags),
            "redirect_domain": agent.get("redirect_domain", "")}


_CONFIG_VERSION = text("SELECT id, version FROM channel_config ORDER BY id LIMIT 1")


_UNCHECKED = object()


def load() -> Channel | None:
    """The configured channel with secrets decrypted, or None when none is configured.

    A configuration stored by any process (the wizard in another worker, ``weixin-config`` in a
    shell) governs the very next request of every process: each request (or job run, or delivery
    call) reads the stored version once, an indexed one-row read, and the decrypted copy of this
    process is used only while that version is unchanged.
    """
    checked = g.get("channel_checked", _UNCHECKED)
    if checked is not _UNCHECKED:
        return checked
    return for_version(db.session.connection().execute(_CONFIG_VERSION).first())


#: The stored configuration's version, as :func:`for_version` expects it (plain SQL for any connection).
CONFIG_VERSION_SQL = _CONFIG_VERSION.text


def for_version(version: tuple | None) -> Channel | None:
    """The configured channel for a version row ``(id, version)`` read with :data:`CONFIG_VERSION_SQL`.

    For a hot path that reads the version on a connection of its own (the WeChat callback); the rest
    of the request then gets the same channel from :func:`load` without reading again.
    """
    channel = runtime.state().channel.get(
        tuple(version) if version is not None else None,
        lambda: _decrypt(db.session.get(ChannelConfig, version[0])))
    g.channel_checked = channel
    return channel


def held() -> tuple[tuple, Channel | None] | None:
    """The channel this process decrypted last and its version ``(id, version)``, read from nothing.

    For the WeChat callback, whose admission statement checks in the same round trip that this
    version is still the stored one (:meth:`webapp.callback.store.Ledger.admit`) and which handles
    the request again with :func:`for_version` when it is not. None when nothing is held yet.
    """
    found = runtime.state().channel.current()
    if found is not None:
        g.channel_checked = found[1]  # the rest of the request uses it; a stale one is replaced by for_version
    return found


class NotConfigured(LookupError):
    """No WeChat channel is configured yet: an administrator has not finished the set-up."""


def require() -> Channel:
    """The configured channel, as :func:`load` reads it; raise :class:`NotConfigured` when there is none.

    For work that cannot go on without a channel (a send, a bind): each caller turns the exception
    into its own refusal (the send API's code, the bind page's sentence).
    """
    configured = load()
    if configured is None:
        raise NotConfigured("no WeChat channel is configured on this service yet: an administrator must finish the set-up")
    return configured


def forget_cached() -> None:
    """Make the next :func:`load` read the stored configuration again (after a save in this process)."""
    runtime.state().channel.forget()
    g.pop("channel_checked", None)


def _decrypt(row: ChannelConfig) -> Channel:
    secret_box = box()
    return Channel(
        wx_type=row.wx_type, wx_app_id=row.wx_app_id, wx_secret=secret_box.decrypt(row.wx_secret_enc),
        wx_token=secret_box.decrypt(row.wx_token_enc), wx_encoding_aes_key=secret_box.decrypt(row.wx_encoding_aes_key_enc),
        wx_previous_encoding_aes_key=secret_box.decrypt(row.wx_previous_encoding_aes_key_enc),
        wx_encrypt_mode=row.wx_encrypt_mode, wx_template_id=row.wx_template_id,
        wx_template_fields=row.wx_template_fields or dict(DEFAULT_TEMPLATE_FIELDS),
        wx_qy_corpid=row.wx_qy_corpid, wx_qy_corpsecret=secret_box.decrypt(row.wx_qy_corpsecret_enc),
        wx_qy_agentid=row.wx_qy_agentid, wx_qy_msgtype=row.wx_qy_msgtype,
        wx_qy_token=secret_box.decrypt(row.wx_qy_token_enc),
        wx_qy_encoding_aes_key=secret_box.decrypt(row.wx_qy_encoding_aes_key_enc),
        wx_qy_previous_encoding_aes_key=secret_box.decrypt(row.wx_qy_previous_encoding_aes_key_enc),
    )


def save(clean: dict[str, Any], *, actor: str) -> ChannelConfig:
    """Store a normalized configuration in one transaction, with an audit entry."""
    with db.transaction() as session:
        row, _audit = store(session, clean, actor=actor)
    forget_cached()
    return row


def store(session, clean: dict[str, Any], *, actor: str) -> tuple[ChannelConfig, AuditEntry]:
    """Write a normalized configuration and its audit entry in the caller's transaction ``session``.

    For callers that write more in the same transaction (the set-up wizard's draft): they commit,
    then call :func:`forget_cached`. The session is flushed, so the audit entry has its id.
    When an EncodingAESKey (the Official Account's or the WeCom application's) changes, the old one
    is kept as the previous key, so messages WeChat encrypted before the switch are still read.
    """
    secret_box = box()
    row = session.scalar(select(ChannelConfig).order_by(ChannelConfig.id).limit(1).with_for_update())
    if row is None:
        row = ChannelConfig(wx_type=clean["wx_type"])
        session.add(row)
    old_key = secret_box.decrypt(row.wx_encoding_aes_key_enc) if row.wx_encoding_aes_key_enc else None
    new_key = clean.get("wx_encoding_aes_key")
    row.wx_type = clean["wx_type"]
    if clean["wx_type"] == CHANNEL_MP:
        row.wx_app_id = clean["wx_app_id"]
        row.wx_secret_enc = secret_box.encrypt(clean["wx_secret"])
        row.wx_token_enc = secret_box.encrypt(clean["wx_token"])
        row.wx_encoding_aes_key_enc = secret_box.encrypt(new_key)
        if old_key and new_key and old_key != new_key:
            row.wx_previous_encoding_aes_key_enc = secret_box.encrypt(old_key)
        row.wx_encrypt_mode = clean["wx_encrypt_mode"]
        row.wx_template_id = clean["wx_template_id"]
        row.wx_template_fields = clean["wx_template_fields"]
    else:
        row.wx_qy_corpid = clean["wx_qy_corpid"]
        row.wx_qy_corpsecret_enc = secret_box.encrypt(clean["wx_qy_corpsecret"])
        row.wx_qy_agentid = clean["wx_qy_agentid"]
        row.wx_qy_msgtype = clean["wx_qy_msgtype"]
        _store_qy_server(row, clean, secret_box)
    row.updated_by = actor
    # Every process sees the new version on its next request and drops its decrypted copy.
    row.version = (row.version or 0) + 1
    public = {k: v for k, v in clean.items() if k not in UNAUDITED_KEYS}
    if clean["wx_type"] == CHANNEL_QYWX:
        public["wx_qy_callback"] = bool(clean.get("wx_qy_token"))
    audit = AuditEntry(actor=actor, action="channel.configure", target=clean["wx_type"], detail=public)
    session.add(audit)
    session.flush()
    return row, audit


def _store_qy_server(row: ChannelConfig, clean: dict[str, Any], secret_box) -> None:
    """Write the WeCom application's 接收消息 server: a changed key keeps the old one as the previous key."""
    token, new_key = clean.get("wx_qy_token"), clean.get("wx_qy_encoding_aes_key")
    old_key = secret_box.decrypt(row.wx_qy_encoding_aes_key_enc) if row.wx_qy_encoding_aes_key_enc else None
    if not (token and new_key):
        # No server any more: nothing of it is kept, the previous key neither.
        row.wx_qy_token_enc = row.wx_qy_encoding_aes_key_enc = row.wx_qy_previous_encoding_aes_key_enc = None
        return
    row.wx_qy_token_enc = secret_box.encrypt(token)
    row.wx_qy_encoding_aes_key_enc = secret_box.encrypt(new_key)
    if old_key and old_key != new_key:
        row.wx_qy_previous_encoding_aes_key_enc = secret_box.encrypt(old_key)


def masked(value: str | None) -> str:
    """A secret shown the only way it may be: its last four characters."""
    if not value:
        return ""
    return "•" * 8 + value[-4:] if len(value) > 8 else "•" * 8
