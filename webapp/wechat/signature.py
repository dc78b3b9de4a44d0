"""SHA-1 signatures that WeChat puts on callback requests.

WeChat signs a callback by sorting a few strings, joining them and taking the SHA-1 hex digest: the
plain ``signature`` covers (token, timestamp, nonce); the ``msg_signature`` of encrypted messages also
covers the ``Encrypt`` payload (or the ``echostr`` of a WeCom URL check).
"""
from __future__ import annotations

import hashlib
import hmac

__all__ = ["sign", "check_signature", "check_msg_signature"]


def _as_text(part) -> str:
    """Turn one signature part into text; timestamps often arrive as ints."""
    if isinstance(part, bool):
        # bool is an int subclass; a flag slipping in here is a caller bug, not a timestamp.
        raise TypeError("signature parts must be text")
    if isinstance(part, int):
        return str(part)
    if isinstance(part, (bytes, bytearray)):
        return bytes(part).decode("utf-8")
    if isinstance(part, str):
        return part
    raise TypeError("signature parts must be text")


def sign(*parts) -> str:
    """Return the SHA-1 hex digest of the parts sorted lexicographically and concatenated."""
    texts = sorted(_as_text(p) for p in parts)
    # Sorting str by code point gives the same order as sorting their UTF-8 bytes.
    # SHA-1 is what WeChat's protocol prescribes for these signatures; we cannot choose another hash.
    return hashlib.sha1("".join(texts).encode("utf-8")).hexdigest()  # nosec B324


def _matches(expected_parts: tuple, given) -> bool:
    """Compare a received signature with the one computed from the parts, in constant time."""
    if not isinstance(given, (str, bytes, bytearray)):
        return False
    try:
        expected = sign(*expected_parts).encode("ascii")
        received = given.encode("utf-8") if isinstance(given, str) else bytes(given)
    except (TypeError, ValueError):
        # None parts, lone surrogates, undecodable bytes: junk never verifies.
        return False
    # WeChat sends lowercase hex; accepting uppercase costs nothing and avoids a support ticket.
    return hmac.compare_digest(expected, received.lower())


def check_signature(token, signature, timestamp, nonce) -> bool:
    """True when ``signature`` is the plain-mode signature of (token, timestamp, nonce)."""
    if not token:
        # An unconfigured token must not let sha1(timestamp+nonce) through.
        return False
    return _matches((token, timestamp, nonce), signature)


def check_msg_signature(token, msg_signature, timestamp, nonce, encrypted) -> bool:
    """True when ``msg_signature`` signs (token, timestamp, nonce, encrypted payload)."""
    if not token or not encrypted:
        return False
    return _matches((token, timestamp, nonce, encrypted), msg_signature)
