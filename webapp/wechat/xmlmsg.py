"""Parsing WeChat's callback XML safely, and building XML replies.

Callback bodies come from the Internet before anything vouches for them (a plain-mode POST is only as
trustworthy as its signature), so parsing uses defusedxml with DTDs, entities and external references
forbidden, a size cap, and limits on depth and element count. Every refusal is an
:class:`XMLMessageError`, so the callback can answer one way to all junk.
"""
from __future__ import annotations

import re
# The standard module builds replies and names the ParseError type; parsing goes through defusedxml.
import xml.etree.ElementTree as ET  # nosec B405
from collections.abc import Mapping

import defusedxml.ElementTree as DET
from defusedxml.common import DefusedXmlException

from .errors import XMLMessageError

__all__ = [
    "MAX_BODY_BYTES",
    "XMLMessageError",
    "parse_message",
    "build_xml",
    "build_text_reply",
    "cdata",
]

#: WeChat callbacks are a few hundred bytes (about 3x more in compatible mode); 64 KiB is generous.
MAX_BODY_BYTES = 64 * 1024
# Deepest WeChat nesting is menu events such as SendPicsInfo/PicList/item/PicMd5Sum (4 below <xml>).
_MAX_DEPTH = 4
_MAX_ELEMENTS = 256

_TAG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
# Characters XML 1.0 cannot carry at all, not even inside CDATA.
_XML_ILLEGAL = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _flatten(element, prefix: str, depth: int, out: dict[str, str], counter: list[int]) -> None:
    """Copy the leaves under ``element`` into ``out``; nested ones get dotted keys (Parent.Child)."""
    for child in element:
        counter[0] += 1
        if counter[0] > _MAX_ELEMENTS:
            raise XMLMessageError("too many elements")
        tag = child.tag
        if not isinstance(tag, str) or not _TAG_RE.match(tag):
            # Namespaced tags ("{uri}name") and comments are never part of a WeChat message.
            raise XMLMessageError("unexpected element")
        key = f"{prefix}{tag}"
        if len(child):
            if depth >= _MAX_DEPTH:
                raise XMLMessageError("elements nested too deeply")
            _flatten(child, key + ".", depth + 1, out, counter)
            continue
        if key in out:
            if depth == 1:
                # Two FromUserName (say) would leave it to chance which one the service believes.
                raise XMLMessageError("repeated element")
            # Repeated list items (PicList/item) keep the first one, which is all the service reads.
            continue
        out[key] = child.text or ""


def parse_message(body, max_bytes: int = MAX_BODY_BYTES) -> dict[str, str]:
    """Parse a WeChat XML message into {element name: text}; raise XMLMessageError for anything else.

    Direct children of ``<xml>`` give their own names (ToUserName, MsgType, Encrypt, ...); the rare
    nested elements of menu events give dotted names such as ``SendLocationInfo.Location_X``.
    """
    if isinstance(body, str):
        try:
            body = body.encode("utf-8")
        except UnicodeError:
            raise XMLMessageError("body is not UTF-8 text") from None
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise XMLMessageError("body must be bytes")
    body = bytes(body)
    if len(body) > max_bytes:
        raise XMLMessageError("body too large")
    if not body.strip():
        raise XMLMessageError("empty body")
    try:
        root = DET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError, LookupError, UnicodeError,
            RecursionError, TypeError):
        # Which parser error it was is of no use to the caller; the text could echo junk input.
        raise XMLMessageError("malformed XML") from None
    if root.tag != "xml":
        raise XMLMessageError("root element is not <xml>")
    out: dict[str, str] = {}
    _flatten(root, "", 1, out, [0])
    return out


def _clean(text: str) -> str:
    """Drop characters XML 1.0 cannot represent (control characters, lone surrogates)."""
    return _XML_ILLEGAL.sub("", text)


def cdata(text) -> str:
    """Wrap ``text`` in CDATA; a ``]]>`` inside is split across two sections so it stays well-formed."""
    text = _clean(str(text))
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _render(tag: str, value) -> str:
    """Render one element: numbers bare, text as CDATA, mappings and lists as nested elements."""
    if not isinstance(tag, str) or not _TAG_RE.match(tag):
        raise XMLMessageError("invalid element name")
    if isinstance(value, bool):
        inner = cdata("1" if value else "0")
    elif isinstance(value, (int, float)):
        inner = str(value)
    elif isinstance(value, Mapping):
        inner = "".join(_render(k, v) for k, v in value.items() if v is not None)
    elif isinstance(value, (list, tuple)):
        # WeChat's reply lists (Articles) repeat an <item> element.
        inner = "".join(_render("item", v) for v in value if v is not None)
    else:
        inner = cdata(value)
    return f"<{tag}>{inner}</{tag}>"


def build_xml(data: Mapping) -> str:
    """Build ``<xml>…</xml>`` from a mapping: text as CDATA, ints bare, nested mappings as elements."""
    if not isinstance(data, Mapping):
        raise XMLMessageError("reply must be a mapping")
    return "<xml>" + "".join(_render(k, v) for k, v in data.items() if v is not None) + "</xml>"


def build_text_reply(to_user: str, from_user: str, content: str, create_time: int) -> str:
    """Build a passive text reply; ``to_user`` is the user's openid, ``from_user`` the account id."""
    return build_xml({
        "ToUserName": to_user,
        "FromUserName": from_user,
        "CreateTime": int(create_time),
        "MsgType": "text",
        "Content": content,
    })
