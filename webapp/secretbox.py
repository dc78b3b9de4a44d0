"""Encryption at rest for the secrets the service must be able to read back (AppSecret, tokens, keys).

The encryption key is derived from the app's SECRET_KEY with HKDF, so nothing else needs to be kept.
To rotate SECRET_KEY, move the old value into ``OLD_SECRET_KEYS`` (a list): stored values encrypted
with an old key stay readable, and ``flask --app wsgi rotate-secrets`` re-encrypts them with the new one.
"""
from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the current or any old SECRET_KEY."""


def _derive(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"weixin-notify/secretbox", info=b"v1").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    """Encrypts with the key derived from the current SECRET_KEY; decrypts with it or an old one."""

    def __init__(self, secret_key: str, old_secret_keys: list[str] | tuple[str, ...] = ()) -> None:
        self._fernet = MultiFernet([_derive(secret_key), *(_derive(k) for k in old_secret_keys)])

    def encrypt(self, value: str | None) -> str | None:
        """Encrypt ``value``; None stays None so optional secrets need no special case."""
        if value is None:
            return None
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str | None) -> str | None:
        """Decrypt a value made by :meth:`encrypt` (with this or an old key)."""
        if token is None:
            return None
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                "a stored secret cannot be decrypted: SECRET_KEY changed without the old key in OLD_SECRET_KEYS"
            ) from None

    def rotate(self, token: str | None) -> str | None:
        """Re-encrypt a stored value with the current key."""
        if token is None:
            return None
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("a stored secret cannot be decrypted with any configured key") from None


def init_app(app) -> None:
    """Attach the app's SecretBox, built from SECRET_KEY and OLD_SECRET_KEYS."""
    app.extensions["secretbox"] = SecretBox(app.config["SECRET_KEY"], app.config.get("OLD_SECRET_KEYS", ()))


def box() -> SecretBox:
    """The SecretBox of the current app."""
    return current_app.extensions["secretbox"]
