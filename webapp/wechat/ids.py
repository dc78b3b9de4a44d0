"""The shapes of WeChat's identifiers, checked before an id is stored or sent.

An Official Account openid is 28 characters in practice; WeChat documents letters, digits, ``-``
and ``_`` and at most 64. A WeCom userid is 1-64 letters, digits and ``_ - . @`` (WeCom lets an
administrator choose them, an email address among others).
"""
from __future__ import annotations

import re

OPENID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
WECOM_USERID_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def valid_openid(value: str) -> bool:
    """Whether ``value`` can be an Official Account openid."""
    return bool(OPENID_RE.fullmatch(value))


def valid_wecom_userid(value: str) -> bool:
    """Whether ``value`` can be a WeCom userid."""
    return bool(WECOM_USERID_RE.fullmatch(value))
