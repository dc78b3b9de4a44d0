"""The set-up wizard's drafts: an administrator's answers, kept until they are written as the configuration.

Data access only, with no request and no transaction of its own: the wizard's services open the
transactions (and pass their session in), and the callback reads the Tokens of open drafts, which
WeChat's URL check may be signed with before the configuration is saved.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from webapp.extensions import db
from webapp.models import CHANNEL_MP, CHANNEL_QYWX, WizardDraft, utcnow
from webapp.secretbox import SecretUnreadable, box

#: A draft is "open" while the administrator answers, "saved" once its answers are the configuration,
#: "done" when the administrator has finished the wizard.
OPEN, SAVED, DONE = "open", "saved", "done"

#: Secret answers: kept encrypted in the draft. The Token is not shown masked (it must be typed into
#: WeChat's page), but it is stored encrypted like the configuration stores it.
DRAFT_SECRETS = ("wx_secret", "wx_token", "wx_encoding_aes_key", "wx_qy_corpsecret", "wx_qy_token",
                 "wx_qy_encoding_aes_key")
MP_ANSWERS = ("wx_app_id", "wx_encrypt_mode", "wx_template_id", "wx_template_fields")
QY_ANSWERS = ("wx_qy_corpid", "wx_qy_agentid", "wx_qy_msgtype")


def current_draft(user_id: int) -> WizardDraft | None:
    """The administrator's stored draft, whatever its state, or None."""
    return db.session.scalar(select(WizardDraft).where(WizardDraft.user_id == user_id))


def new_draft(user_id: int, configured=None) -> WizardDraft:
    """A fresh open draft, pre-filled from ``configured`` (a :class:`webapp.channel.Channel`) when given.

    It is not stored: pages show it as it is, and :func:`replace` stores it when an answer is given.
    """
    answers: dict[str, Any] = {}
    secret_values: dict[str, str] = {}
    wx_type = None
    if configured is not None:
        wx_type = configured.wx_type
        for key in MP_ANSWERS + QY_ANSWERS:
            value = getattr(configured, key, None)
            if value is not None:
                answers[key] = dict(value) if isinstance(value, dict) else value
        for key in DRAFT_SECRETS:
            value = getattr(configured, key, None)
            if value:
                secret_values[key] = value
    return WizardDraft(user_id=user_id, state=OPEN, step="channel", wx_type=wx_type, answers=answers,
                       secrets_enc=box().encrypt(json.dumps(secret_values)), checks={"done": []},
                       prefilled=configured is not None)


def is_stored(draft: WizardDraft) -> bool:
    """Whether ``draft`` is a stored row (not one made by :func:`new_draft` and not stored yet)."""
    return draft.id is not None


def replace(session: Session, draft: WizardDraft) -> WizardDraft:
    """Store ``draft`` as its administrator's only draft, in the caller's transaction ``session``."""
    session.execute(delete(WizardDraft).where(WizardDraft.user_id == draft.user_id))
    session.add(draft)
    session.flush()
    return draft


def read_secrets(draft: WizardDraft) -> dict[str, str]:
    """The draft's secret answers, decrypted (for checks and for saving, never for rendering)."""
    if not draft.secrets_enc:
        return {}
    try:
        return json.loads(box().decrypt(draft.secrets_enc) or "{}")
    except (SecretUnreadable, ValueError):
        # SECRET_KEY changed without the old one kept: the admin simply enters the secrets again.
        return {}


def answers(draft: WizardDraft) -> dict[str, Any]:
    """The draft's non-secret answers."""
    return dict(draft.answers or {})


def checks(draft: WizardDraft) -> dict[str, Any]:
    """What the draft's checks found (per step), and which steps are done."""
    found = dict(draft.checks or {})
    found.setdefault("done", [])
    return found


def record(session: Session, draft_id: int, *, step: str | None = None, wx_type: str | None = None,
           answers_update: dict[str, Any] | None = None, secrets_update: dict[str, str | None] | None = None,
           secrets_forget: tuple[str, ...] = (), checks_update: dict[str, Any] | None = None,
           done: str | None = None, undone: tuple[str, ...] = (), state: str | None = None) -> WizardDraft:
    """Change the draft in the caller's transaction ``session``. Secrets given as None or "" keep their
    value; those named in ``secrets_forget`` are dropped."""
    row = session.get(WizardDraft, draft_id, with_for_update=True)
    if row is None:
        raise LookupError("the draft is gone")
    if wx_type is not None:
        row.wx_type = wx_type
    if answers_update:
        row.answers = {**(row.answers or {}), **answers_update}
    if secrets_update or secrets_forget:
        values = read_secrets(row)
        for key, value in (secrets_update or {}).items():
            if value:
                values[key] = value
        for key in secrets_forget:
            values.pop(key, None)
        row.secrets_enc = box().encrypt(json.dumps(values))
    found = checks(row)
    if checks_update:
        found.update(checks_update)
    finished = [s for s in found["done"] if s not in undone]
    if done and done not in finished:
        finished.append(done)
    found["done"] = finished
    row.checks = found
    if step is not None:
        row.step = step
    if state is not None:
        row.state = state
    row.updated_at = utcnow()
    return row


def open_draft_tokens() -> list[str]:
    """Tokens of open Official Account drafts: WeChat's URL check signed with one of them is accepted."""
    tokens = []
    rows = db.session.scalars(select(WizardDraft).where(WizardDraft.state == OPEN, WizardDraft.wx_type == CHANNEL_MP))
    for row in rows:
        token = read_secrets(row).get("wx_token")
        if token:
            tokens.append(token)
    return tokens


def open_qy_servers() -> list[tuple[str, str, str]]:
    """(Token, EncodingAESKey, CorpID) of open WeCom drafts: WeCom's URL check made with one is accepted."""
    servers = []
    rows = db.session.scalars(select(WizardDraft).where(WizardDraft.state == OPEN, WizardDraft.wx_type == CHANNEL_QYWX))
    for row in rows:
        values = read_secrets(row)
        token, key, corpid = values.get("wx_qy_token"), values.get("wx_qy_encoding_aes_key"), answers(row).get("wx_qy_corpid")
        if token and key and corpid:
            servers.append((token, key, corpid))
    return servers
