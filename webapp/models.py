"""The service's data, as SQLAlchemy 2.x typed models. The schema itself is built by Alembic migrations."""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

#: Channel markers used on bindings, tokens, tickets and messages.
CHANNEL_MP = "mp"
CHANNEL_QYWX = "qywx"
CHANNELS = (CHANNEL_MP, CHANNEL_QYWX)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (evaluated per row, never at import)."""
    return datetime.now(timezone.utc)


def new_public_id() -> str:
    """A random identifier safe to show to callers (message ids, request ids)."""
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator):
    """Stores UTC without a zone (SQLite has none) and always hands back aware datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    """Declarative base with constraint names that Alembic can refer to on every database."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class User(Base):
    """A person who signs in: an administrator or an ordinary user who binds their WeChat."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    bindings: Mapped[list["Binding"]] = relationship(back_populates="user", cascade="all, delete-orphan")

    def set_password(self, password: str) -> None:
        """Store a salted hash of ``password`` (never the password itself)."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """Whether ``password`` matches the stored hash."""
        return check_password_hash(self.password_hash, password)

    # Flask-Login protocol.
    @property
    def is_active(self) -> bool:
        return self.enabled

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """The id kept in the session and the remember cookie: the user id and :attr:`session_stamp`.

        A new password changes the stamp, so every session signed in with the old one ends.
        """
        return f"{self.id}:{self.session_stamp}"

    @property
    def session_stamp(self) -> str:
        """A short digest of the password hash (itself salted): changes whenever the password does."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]


class ApiApp(Base):
    """A calling program allowed to use the send API (BlueKing ``bk_app_code``/``bk_app_secret``)."""

    __tablename__ = "api_apps"

    id: Mapped[int] = mapped_column(primary_key=True)
    app_code: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(String(256), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, default=600)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    secret_rotated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelConfig(Base):
    """The connected WeChat account: one row, written in one transaction by the CLI or the wizard.

    Secret values are stored encrypted (``*_enc`` columns, see ``webapp.secretbox``).
    """

    __tablename__ = "channel_config"

    id: Mapped[int] = mapped_column(primary_key=True)
    wx_type: Mapped[str] = mapped_column(String(8))
    # Official Account
    wx_app_id: Mapped[str | None] = mapped_column(String(64))
    wx_secret_enc: Mapped[str | None] = mapped_column(Text)
    wx_token_enc: Mapped[str | None] = mapped_column(Text)
    wx_encoding_aes_key_enc: Mapped[str | None] = mapped_column(Text)
    wx_previous_encoding_aes_key_enc: Mapped[str | None] = mapped_column(Text)
    wx_encrypt_mode: Mapped[str] = mapped_column(String(16), default="plain")
    wx_template_id: Mapped[str | None] = mapped_column(String(128))
    wx_template_fields: Mapped[dict[str, Any] | None]
    # WeCom
    wx_qy_corpid: Mapped[str | None] = mapped_column(String(64))
    wx_qy_corpsecret_enc: Mapped[str | None] = mapped_column(Text)
    wx_qy_agentid: Mapped[int | None]
    wx_qy_msgtype: Mapped[str] = mapped_column(String(16), default="text")
    # The WeCom application's 接收消息 server (optional): Token and EncodingAESKey, and the key in use
    # before the last change, so that messages WeCom encrypted before the switch are still read.
    wx_qy_token_enc: Mapped[str | None] = mapped_column(Text)
    wx_qy_encoding_aes_key_enc: Mapped[str | None] = mapped_column(Text)
    wx_qy_previous_encoding_aes_key_enc: Mapped[str | None] = mapped_column(Text)

    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="")
    # Raised by every save: each process compares it with the copy it holds, once per request.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    @property
    def account(self) -> str:
        """The account that bindings and tokens belong to: the appid, or the WeCom corpid."""
        return (self.wx_app_id if self.wx_type == CHANNEL_MP else self.wx_qy_corpid) or ""


class Binding(Base):
    """A user's WeChat identity on one account: an openid (``mp``) or a WeCom userid (``qywx``).

    The channel and account are stored with the id, so switching the service to another account
    or channel never sends to an id that belongs elsewhere.
    """

    __tablename__ = "bindings"
    __table_args__ = (
        # One WeChat identity belongs to at most one user per account.
        UniqueConstraint("channel", "account", "wx_id", name="uq_bindings_identity"),
        # A user has at most one active binding per channel and account.
        Index(
            "uq_bindings_active_user",
            "user_id",
            "channel",
            "account",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    account: Mapped[str] = mapped_column(String(64))
    wx_id: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deactivated_at: Mapped[datetime | None]
    deactivated_reason: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship(back_populates="bindings")


class BindTicket(Base):
    """A single-use, expiring bind attempt: an Official Account QR scene or a WeCom OAuth state."""

    __tablename__ = "bind_tickets"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    account: Mapped[str] = mapped_column(String(64))
    scene: Mapped[str] = mapped_column(String(64), unique=True)
    qr_ticket: Mapped[str | None] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    consumed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessToken(Base):
    """A cached WeChat access token, one row per (kind, account); the value is stored encrypted."""

    __tablename__ = "access_tokens"
    __table_args__ = (UniqueConstraint("kind", "account", name="uq_access_tokens_kind_account"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    account: Mapped[str] = mapped_column(String(128))
    token_enc: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    fetched_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    # The caller fetching the next token, and until when its lease lasts: WeChat is called outside
    # any transaction, and the others wait for the result instead of fetching too.
    fetching_by: Mapped[str | None] = mapped_column(String(64))
    fetching_until: Mapped[datetime | None]


class Message(Base):
    """One accepted send request; its receivers are the message's deliveries."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    api_app_id: Mapped[int | None] = mapped_column(ForeignKey("api_apps.id", ondelete="SET NULL"), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    account: Mapped[str] = mapped_column(String(64))
    heading: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    date: Mapped[str | None] = mapped_column(String(64))
    remark: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any] | None]
    # How the message came in (see SOURCES); empty for messages accepted before this was recorded.
    source: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    deliveries: Mapped[list["Delivery"]] = relationship(back_populates="message", cascade="all, delete-orphan")

    @property
    def origin(self) -> str:
        """How the message came in; for messages stored before ``source`` was recorded, the only two
        ways there were: the send API (a calling application) or the set-up wizard's test message."""
        return self.source or (SOURCE_API if self.api_app_id is not None else SOURCE_WIZARD)


#: Where a message came from: the send API, an alert webhook, or a test message from the set-up wizard.
SOURCE_API, SOURCE_ALERTMANAGER, SOURCE_GRAFANA, SOURCE_WIZARD = "api", "alertmanager", "grafana", "wizard"
SOURCES = (SOURCE_API, SOURCE_ALERTMANAGER, SOURCE_GRAFANA, SOURCE_WIZARD)


class Delivery(Base):
    """The message to one receiver: its status, WeChat's answer, attempts and receipt."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    receiver: Mapped[str] = mapped_column(String(128))
    username: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    client_msg_id: Mapped[str] = mapped_column(String(64), unique=True, default=new_public_id)
    errcode: Mapped[int | None]
    errmsg: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]
    # The claim holding the row (see webapp.delivery.claims): its live process renews claimed_until.
    claimed_by: Mapped[str | None] = mapped_column(String(64), index=True)
    wx_msgid: Mapped[str | None] = mapped_column(String(64), index=True)
    receipt: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    message: Mapped[Message] = relationship(back_populates="deliveries")


class AuditEntry(Base):
    """Who did what, when: every administrative change, bind, unbind and refusal."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(256), default="")
    detail: Mapped[dict[str, Any] | None]


class LoginFailure(Base):
    """A failed sign-in, kept for a while to slow down password guessing."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class AppState(Base):
    """Small facts about the installation (for example that first-run set-up has happened)."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CallbackReplayGuard(Base):
    """What WeChat signed for one callback request (its timestamp and nonce), kept for the timestamp
    window: the same pair again, GET or POST, is a replay of a captured request."""

    __tablename__ = "callback_replay_guard"

    replay_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CallbackEvent(Base):
    """A message WeChat pushed, kept for a day: its identity (MsgId/MsgID, or sender, time, event and
    key), so that WeChat's retries of one event are handled once; and the reply given to it."""

    __tablename__ = "callback_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    reply: Mapped[str | None] = mapped_column(Text)


class CallbackAttempt(Base):
    """The outcome of a request to the callback URL: what the set-up wizard shows the administrator."""

    __tablename__ = "callback_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    method: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))  # verification (GET) or message (POST)
    # Whose callback was called: the Official Account's ("mp") or the WeCom application's ("qywx").
    channel: Mapped[str] = mapped_column(String(8), default=CHANNEL_MP, server_default=CHANNEL_MP)
    outcome: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(16), default="plain")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class RateWindow(Base):
    """Send requests counted per calling application and minute, for its rate limit (all workers share it)."""

    __tablename__ = "rate_windows"
    __table_args__ = (UniqueConstraint("api_app_id", "window_start", name="uq_rate_windows_app_window"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    api_app_id: Mapped[int] = mapped_column(ForeignKey("api_apps.id", ondelete="CASCADE"))
    window_start: Mapped[datetime] = mapped_column(index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class WizardDraft(Base):
    """An administrator's answers in the set-up wizard, kept until they are written as the configuration.

    One per administrator. ``answers`` holds what may be shown (AppID, mode, template mapping, ...);
    the secret answers (AppSecret, Token, EncodingAESKey, WeCom Secret) are kept together in
    ``secrets_enc``, encrypted with ``webapp.secretbox``. ``state`` is "open" while the admin answers
    (the callback then also accepts WeChat's URL check signed with this draft's Token), "saved" once
    the configuration is written, "done" when the admin has seen the summary.
    """

    __tablename__ = "wizard_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)
    step: Mapped[str] = mapped_column(String(16), default="channel")
    wx_type: Mapped[str | None] = mapped_column(String(8))
    answers: Mapped[dict[str, Any] | None]
    secrets_enc: Mapped[str | None] = mapped_column(Text)
    checks: Mapped[dict[str, Any] | None]
    prefilled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IdempotencyRecord(Base):
    """A request that made a message, so that the same request again answers that message and sends nothing.

    ``key_hash`` is a SHA-256 of the caller's ``Idempotency-Key`` (``kind`` "key") or of a webhook
    notification's identity (``kind`` "alertmanager"/"grafana"); ``fingerprint`` one of the request
    body, so that the same key with another body is refused. Unique per application and key: of two
    identical requests in flight at once, one insert waits for the other and then fails.
    """

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("api_app_id", "key_hash", name="uq_idempotency_records_app_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    api_app_id: Mapped[int] = mapped_column(ForeignKey("api_apps.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    public_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
