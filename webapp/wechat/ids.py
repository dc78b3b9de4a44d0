"""The shapes of WeChat's identifiers and keys, checked before one is stored or sent.

The one place these rules live: the configuration (``webapp.channel``), the set-up wizard's forms
and the send API all use them.

An Official Account openid is 28 characters in practice; WeChat documents letters, digits, ``-``
and ``_`` and at most 64. A WeCom userid is 1-64 letters, digits and ``_ - . @`` (WeCom lets an
administrator choose them, an email address among others).
"""
from __future__ import annotations

import re

OPENID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
WECOM_USERID_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
#: An Official Account AppID: "wx" and 16 hexadecimal characters.
APPID_RE = re.compile(r"wx[0-9a-f]{16}")
#: An Official Account AppSecret: 32 hexadecimal characters.
APP_SECRET_RE = re.compile(r"[0-9a-fA-F]{32}")
#: A WeCom CorpID: "ww" (older corporations "wx") and 16 letters or digits.
CORPID_RE = re.compile(r"(ww|wx)[0-9a-zA-Z]{16}")
#: A WeCom application Secret.
CORPSECRET_RE = re.compile(r"[A-Za-z0-9_-]{20,64}")
#: A template's ID as "My templates" shows it (not the library number such as TM00015).
TEMPLATE_ID_RE = re.compile(r"[A-Za-z0-9_-]{10,128}")
#: A key of a template's content, such as keyword1 or first.
TEMPLATE_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def valid_openid(value: str) -> bool:
    """Whether ``value`` can be an Official Account openid."""
    return bool(OPENID_RE.fullmatch(value))


def valid_wecom_userid(value: str) -> bool:
    """Whether ``value`` can be a WeCom userid."""
    return bool(WECOM_USERID_RE.fullmatch(value))
