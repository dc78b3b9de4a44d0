"""Message encryption shared by Official Account callbacks (compatible/safe mode) and WeCom callbacks.

The scheme: AES-256-CBC with key = Base64(EncodingAESKey + "=") and IV = key[:16], over
``random(16) | uint32_be(len(msg)) | msg | receiveid`` padded PKCS#7-style to a 32-byte block.
The receiveid is the AppID (Official Account) or CorpID (WeCom). There is no MAC: the ciphertext is
authenticated only by the ``msg_signature`` over it, so callers check that first
(:meth:`MessageCrypto.decrypt_message` does both).
"""
from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import secrets
import string
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import (BadPadding, CryptoError, DecryptError, EncryptError, IllegalBuffer,
                     InvalidAESKey, InvalidBase64, InvalidSignature, ReceiveIdMismatch,
                     XMLMessageError)
from .signature import check_msg_signature, sign
from .xmlmsg import MAX_BODY_BYTES, cdata, parse_message

__all__ = [
    "KEY_CURRENT",
    "KEY_PREVIOUS",
    "BLOCK_SIZE",
    "MessageCrypto",
    "validate_encoding_aes_key",
    "generate_encoding_aes_key",
    "generate_token",
    "validate_token",
]

#: Labels returned by :meth:`MessageCrypto.decrypt` for the key that worked.
KEY_CURRENT = "current"
KEY_PREVIOUS = "previous"
#: WeChat pads to 32 bytes, not AES's 16, so pad values run from 1 to 32.
BLOCK_SIZE = 32

_ALNUM = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"^[A-Za-z0-9]{43}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9]{3,32}$")
_DIGITS_RE = re.compile(r"^[0-9]+$")


def _decode_key(encoding_aes_key) -> bytes:
    """Return the 32-byte AES key of an EncodingAESKey, or raise InvalidAESKey."""
    if not isinstance(encoding_aes_key, str) or not _KEY_RE.match(encoding_aes_key):
        raise InvalidAESKey()
    try:
        key = base64.b64decode(encoding_aes_key + "=")
    except (binascii.Error, ValueError):
        raise InvalidAESKey() from None
    if len(key) != 32:
        raise InvalidAESKey()
    return key


def validate_encoding_aes_key(value) -> bool:
    """True when ``value`` is 43 letters/digits that decode to a 32-byte AES key."""
    try:
        _decode_key(value)
    except InvalidAESKey:
        return False
    return True


def generate_encoding_aes_key() -> str:
    """Return a fresh random EncodingAESKey (43 letters/digits), like the WeChat console generates."""
    return "".join(secrets.choice(_ALNUM) for _ in range(43))


def validate_token(value) -> bool:
    """True when ``value`` is a valid callback Token: 3 to 32 letters or digits."""
    return isinstance(value, str) and bool(_TOKEN_RE.match(value))


def generate_token(length: int = 32) -> str:
    """Return a random callback Token of ``length`` (3..32) letters and digits."""
    if not isinstance(length, int) or not 3 <= length <= 32:
        raise ValueError("token length must be between 3 and 32")
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def _pad(data: bytes) -> bytes:
    """Pad to a multiple of 32 bytes; a full block of 32 is added when already aligned."""
    n = BLOCK_SIZE - len(data) % BLOCK_SIZE
    return data + bytes([n]) * n


def _unpad(data: bytes) -> bytes:
    """Strip the 32-byte-block padding, refusing anything that is not exactly valid padding."""
    if not data:
        raise BadPadding()
    n = data[-1]
    if not 1 <= n <= BLOCK_SIZE or n > len(data):
        raise BadPadding()
    # Compare the whole tail at once rather than stopping at the first wrong byte.
    if not hmac.compare_digest(data[-n:], bytes([n]) * n):
        raise BadPadding()
    return data[:-n]


class MessageCrypto:
    """Encrypts and decrypts callback messages for one account (Official Account or WeCom app).

    ``receive_id`` is the AppID or CorpID messages must be addressed to. While the EncodingAESKey is
    being changed in the console, pass the old one as ``previous_encoding_aes_key``: messages under
    either key are accepted, and replies should use the key that decrypted the message.
    """

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str,
                 previous_encoding_aes_key: str | None = None):
        if not isinstance(token, str) or not token:
            raise CryptoError("a Token is required")
        if not isinstance(receive_id, str):
            raise CryptoError("receive_id must be text")
        self.token = token
        self.receive_id = receive_id
        self._receive_id_bytes = receive_id.encode("utf-8")
        self._keys: dict[str, bytes] = {KEY_CURRENT: _decode_key(encoding_aes_key)}
        if previous_encoding_aes_key:
            previous = _decode_key(previous_encoding_aes_key)
            if previous != self._keys[KEY_CURRENT]:
                self._keys[KEY_PREVIOUS] = previous

    def __repr__(self) -> str:
        # Never show key material or the Token, even in a debugger or a log of locals.
        return f"<MessageCrypto receive_id={self.receive_id!r} keys={list(self._keys)}>"

    # -- primitives ---------------------------------------------------------------------------

    def _key(self, label: str) -> bytes:
        """The AES key for ``label`` ('current' or 'previous')."""
        try:
            return self._keys[label]
        except KeyError:
            raise EncryptError(f"no {label!s:.20} key is configured") from None

    def msg_signature(self, timestamp, nonce, encrypted: str) -> str:
        """Return the msg_signature of an encrypted payload."""
        return sign(self.token, timestamp, nonce, encrypted)

    def encrypt(self, plaintext, random_bytes=None, key: str = KEY_CURRENT) -> str:
        """Encrypt ``plaintext`` (str or bytes) and return the Base64 ciphertext.

        ``random_bytes`` (16 bytes, or a 16-character string) is only for reproducible tests.
        """
        if isinstance(plaintext, str):
            plaintext = plaintext.encode("utf-8")
        if not isinstance(plaintext, (bytes, bytearray)):
            raise EncryptError("plaintext must be str or bytes")
        if random_bytes is None:
            random_bytes = os.urandom(16)
        elif isinstance(random_bytes, str):
            random_bytes = random_bytes.encode("utf-8")
        if not isinstance(random_bytes, (bytes, bytearray)) or len(random_bytes) != 16:
            raise EncryptError("random_bytes must be 16 bytes")
        if len(plaintext) >= 2 ** 32:
            raise EncryptError("message too long")
        aes_key = self._key(key)
        body = bytes(random_bytes) + struct.pack(">I", len(plaintext)) + bytes(plaintext) + \
            self._receive_id_bytes
        encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(aes_key[:16])).encryptor()
        ciphertext = encryptor.update(_pad(body)) + encryptor.finalize()
        return base64.b64encode(ciphertext).decode("ascii")

    def _decrypt_with(self, aes_key: bytes, ciphertext: bytes) -> str:
        """Decrypt with one key and check the layout and the receiveid."""
        decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(aes_key[:16])).decryptor()
        plain = _unpad(decryptor.update(ciphertext) + decryptor.finalize())
        if len(plain) < 20:
            raise IllegalBuffer()
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise IllegalBuffer()
        message = plain[20:20 + length]
        receive_id = plain[20 + length:]
        if not hmac.compare_digest(receive_id, self._receive_id_bytes):
            raise ReceiveIdMismatch()
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError:
            raise IllegalBuffer() from None

    def decrypt(self, encrypted) -> tuple[str, str]:
        """Decrypt a Base64 payload; return (plaintext, 'current' or 'previous' key label).

        This does not authenticate the payload: check its msg_signature first, or use
        :meth:`decrypt_message`.
        """
        if isinstance(encrypted, (bytes, bytearray)):
            try:
                encrypted = bytes(encrypted).decode("ascii")
            except UnicodeDecodeError:
                raise InvalidBase64() from None
        if not isinstance(encrypted, str) or not encrypted:
            raise InvalidBase64()
        try:
            ciphertext = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidBase64() from None
        if len(ciphertext) < BLOCK_SIZE or len(ciphertext) % 16:
            raise DecryptError("the encrypted payload has an impossible length")

        # Keep the error that got furthest: a receiveid mismatch means the key was right.
        rank = {BadPadding: 1, IllegalBuffer: 2, ReceiveIdMismatch: 3}
        best: DecryptError | ReceiveIdMismatch | None = None
        for label, aes_key in self._keys.items():
            try:
                return self._decrypt_with(aes_key, ciphertext), label
            except (DecryptError, ReceiveIdMismatch) as exc:
                if best is None or rank.get(type(exc), 0) > rank.get(type(best), 0):
                    best = exc
        raise best  # type: ignore[misc]

    # -- callback helpers ---------------------------------------------------------------------

    def decrypt_message(self, msg_signature, timestamp, nonce, encrypted) -> tuple[str, str]:
        """Check ``msg_signature`` over the payload, then decrypt it; return (plaintext, key label)."""
        if not check_msg_signature(self.token, msg_signature, timestamp, nonce, encrypted):
            raise InvalidSignature()
        return self.decrypt(encrypted)

    def decrypt_xml(self, body, msg_signature, timestamp, nonce,
                    max_bytes: int = MAX_BODY_BYTES) -> tuple[dict[str, str], str]:
        """Take an encrypted callback body, verify and decrypt its <Encrypt>, parse the inner XML.

        Returns (fields of the inner message, key label). Raises XMLMessageError for a bad body
        and CryptoError subclasses for signature or decryption failures.
        """
        outer = parse_message(body, max_bytes=max_bytes)
        encrypted = outer.get("Encrypt")
        if not encrypted:
            raise XMLMessageError("no <Encrypt> element")
        plaintext, label = self.decrypt_message(msg_signature, timestamp, nonce, encrypted)
        return parse_message(plaintext, max_bytes=max_bytes), label

    def decrypt_echostr(self, msg_signature, timestamp, nonce, echostr) -> str:
        """WeCom URL check: verify msg_signature over the echostr, decrypt it, return the plaintext."""
        plaintext, _label = self.decrypt_message(msg_signature, timestamp, nonce, echostr)
        return plaintext

    def encrypt_reply(self, xml, timestamp, nonce, key: str = KEY_CURRENT,
                      random_bytes=None) -> str:
        """Encrypt a reply and wrap it in WeChat's envelope with its MsgSignature."""
        timestamp = str(timestamp)
        nonce = str(nonce)
        encrypted = self.encrypt(xml, random_bytes=random_bytes, key=key)
        signature = self.msg_signature(timestamp, nonce, encrypted)
        # The signature covers the timestamp text exactly, so it is written back unchanged.
        stamp = timestamp if _DIGITS_RE.match(timestamp) else cdata(timestamp)
        return (f"<xml><Encrypt>{cdata(encrypted)}</Encrypt>"
                f"<MsgSignature>{cdata(signature)}</MsgSignature>"
                f"<TimeStamp>{stamp}</TimeStamp>"
                f"<Nonce>{cdata(nonce)}</Nonce></xml>")
