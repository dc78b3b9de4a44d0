"""Adapting one notification to what each channel can show.

A notification carries the fields of BlueKing's ``send_weixin`` (``heading``, ``message``, ``date``,
``remark``, ``url``). Official Account template messages get one value per mapped template key,
following WeChat's rules since 2023-05-04 (``first`` and ``remark`` no longer shown, at most 20
characters per value, no line breaks). WeCom app messages get a ``text``, ``textcard`` or
``markdown`` body within WeCom's byte limits. Text is always cut on a character boundary (and, where
simple, a grapheme boundary), with "…" marking the cut; ``Adapted.truncated`` tells the caller to
offer the full text on a detail page.

No database here: everything is a pure function of its arguments. Warnings for people go
through Flask-Babel's gettext, which gives English outside a request.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

from babel.lists import format_list
from flask_babel import get_locale, pgettext
from flask_babel import gettext as _

__all__ = [
    "DATE_LABEL",
    "DEFAULT_TEMPLATE_FIELDS",
    "DETAIL_LINK_LABEL",
    "ELLIPSIS",
    "HIDDEN_TEMPLATE_KEYS",
    "PARAMETERS",
    "TEMPLATE_VALUE_LIMIT",
    "TEXTCARD_BUTTON",
    "WECOM_MARKDOWN_LIMIT",
    "WECOM_MSGTYPES",
    "WECOM_TEXTCARD_DESCRIPTION_LIMIT",
    "WECOM_TEXTCARD_TITLE_LIMIT",
    "WECOM_TEXTCARD_URL_LIMIT",
    "WECOM_TEXT_LIMIT",
    "Adapted",
    "Notification",
    "cut_chars",
    "cut_utf8",
    "default_date",
    "escape_markdown",
    "lost_text_warnings",
    "one_line",
    "template_message",
    "template_preview",
    "wecom_message",
]

PARAMETERS = ("heading", "message", "date", "remark")
DEFAULT_TEMPLATE_FIELDS = {"heading": "first", "message": "keyword1", "date": "keyword2", "remark": "remark"}
# Keys WeChat still accepts but no longer displays (since 2023-05-04).
HIDDEN_TEMPLATE_KEYS = frozenset({"first", "remark"})
TEMPLATE_VALUE_LIMIT = 20          # characters, WeChat's rule since 2023-05-04
WECOM_TEXT_LIMIT = 2048            # bytes
WECOM_MARKDOWN_LIMIT = 2048        # bytes
WECOM_TEXTCARD_TITLE_LIMIT = 128   # bytes
WECOM_TEXTCARD_DESCRIPTION_LIMIT = 512  # bytes
WECOM_TEXTCARD_URL_LIMIT = 2048    # bytes; WeCom also requires http(s)
WECOM_MSGTYPES = ("text", "textcard", "markdown")
ELLIPSIS = "…"
# BlueKing's send_weixin labelled the date line in English; kept so existing readers see the same text.
DATE_LABEL = "Date: "
DETAIL_LINK_LABEL = "详情 / Details"
TEXTCARD_BUTTON = "详情"

# When several parameters are mapped to one template key only one can be sent: the message matters most.
_KEY_PRIORITY = ("message", "heading", "date", "remark")
# Category-template key types whose values WeChat checks (errcode 47003), unlike free text ("thing").
_TYPED_KEYS = frozenset({"character_string", "number", "letter", "symbol", "amount", "phone_number",
                         "car_number", "name", "phrase", "const"})
_TIME_KEYS = frozenset({"time", "date"})
_ZWJ = "\u200d"
_LONE_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_URL_RE = re.compile(r"^https?://", re.IGNORECASE)


@dataclass(frozen=True)
class Notification:
    """One message as BlueKing's ``send_weixin`` takes it."""

    heading: str
    message: str
    date: str | None = None   # None/empty -> the current local time, "YYYY-mm-dd HH:MM"
    remark: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Adapted:
    """A channel-ready body, and whether some text had to be cut or left out to make it fit."""

    payload: dict
    truncated: bool
    msgtype: str | None = None


# --- text primitives -------------------------------------------------------------------------------

def default_date(now: datetime | None = None, tz: tzinfo | None = None) -> str:
    """The date shown when the caller gave none: ``now`` (default: the current time) as "YYYY-mm-dd HH:MM".

    An aware ``now`` is converted to ``tz``; a naive ``now`` is taken as already being local wall time.
    Without ``tz`` the server's local time zone is used.
    """
    if now is None:
        now = datetime.now(tz) if tz is not None else datetime.now().astimezone()
    elif tz is not None and now.tzinfo is not None:
        now = now.astimezone(tz)
    return now.strftime("%Y-%m-%d %H:%M")


def _valid_text(text: str | None) -> str:
    # Lone surrogates (e.g. from a JSON "\ud800" escape) cannot be encoded as UTF-8 at all.
    if not text:
        return ""
    return _LONE_SURROGATE_RE.sub("\ufffd", str(text))


def _extends_previous(ch: str) -> bool:
    """True for characters that belong to the grapheme before them (marks, joiners, modifiers)."""
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")   # combining marks, variation selectors
        or ch == _ZWJ
        or 0x1F3FB <= cp <= 0x1F3FF                      # emoji skin-tone modifiers
        or 0xE0020 <= cp <= 0xE007F                      # emoji tag sequences (subdivision flags)
        or 0x1160 <= cp <= 0x11FF or 0xD7B0 <= cp <= 0xD7FF  # Hangul medial/final jamo
    )


def _is_regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _boundary_at_or_before(text: str, end: int) -> int:
    """The largest cut position <= ``end`` that does not split a grapheme (a simple approximation)."""
    while 0 < end < len(text):
        ch, prev = text[end], text[end - 1]
        if _extends_previous(ch) or prev == _ZWJ or (prev == "\r" and ch == "\n"):
            end -= 1
            continue
        if _is_regional_indicator(ch):
            # Flags are pairs of regional indicators: an odd run before us means we sit inside a pair.
            run = 0
            while run < end and _is_regional_indicator(text[end - 1 - run]):
                run += 1
            if run % 2:
                end -= 1
                continue
        break
    return end


def cut_chars(text: str, limit: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``limit`` characters including the "…" marker; True if it was cut."""
    text = text or ""
    if len(text) <= limit:
        return text, False
    if limit < len(ELLIPSIS):
        return "", True
    end = _boundary_at_or_before(text, limit - len(ELLIPSIS))
    return text[:end] + ELLIPSIS, True


def cut_utf8(text: str, max_bytes: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_bytes`` of UTF-8 including the "…" marker; True if it was cut.

    Never splits a character, and avoids splitting combining sequences, emoji sequences and flags.
    Lone surrogates (not encodable) become U+FFFD. When even the marker does not fit, the result has
    no marker.
    """
    text = _valid_text(text)
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text, False
    marker = ELLIPSIS if max_bytes >= len(ELLIPSIS.encode("utf-8")) else ""
    room = max(max_bytes, 0) - len(marker.encode("utf-8"))
    # Decoding a byte prefix with "ignore" drops only the incomplete last character, so this is a
    # character count of the longest prefix that fits.
    end = len(data[:room].decode("utf-8", "ignore"))
    end = _boundary_at_or_before(text, end)
    return text[:end] + marker, True


def one_line(text: str) -> str:
    """Line breaks (\\r\\n, \\n, \\r, \\u2028, ...) and runs of whitespace become single spaces; trimmed."""
    # str.split() splits on every character str.splitlines() treats as a line break, and on tabs etc.
    return " ".join((text or "").split())


def _blen(text: str) -> int:
    return len(text.encode("utf-8"))


# --- Official Account template messages -----------------------------------------------------------

@dataclass
class _Row:
    parameter: str
    key: str
    full: str          # the one-line text before cutting
    value: str         # what is sent
    cut: bool
    displaced: bool    # another parameter with text took the same key first


def _parameter_texts(n: Notification, now, tz) -> tuple[dict[str, str], dict[str, bool]]:
    """One-line text per parameter, and whether the caller supplied it (the date may be filled in)."""
    texts = {
        "heading": one_line(_valid_text(n.heading)),
        "message": one_line(_valid_text(n.message)),
        "date": one_line(_valid_text(n.date)),
        "remark": one_line(_valid_text(n.remark)),
    }
    given = {p: bool(t) for p, t in texts.items()}
    if not texts["date"]:
        texts["date"] = default_date(now, tz)
    return texts, given


def _mapped_key(fields: Mapping[str, str], parameter: str) -> str:
    key = fields.get(parameter)
    return key.strip() if isinstance(key, str) else ""


def _template_rows(n: Notification, fields: Mapping[str, str] | None, now, tz) -> tuple[list[_Row], list[str]]:
    """Rows for mapped parameters (in PARAMETERS order) and the non-empty parameters left out."""
    fields = DEFAULT_TEMPLATE_FIELDS if fields is None else fields
    texts, given = _parameter_texts(n, now, tz)
    rows: dict[str, _Row] = {}
    left_out: list[str] = []
    taken: set[str] = set()
    for parameter in _KEY_PRIORITY:
        key, full = _mapped_key(fields, parameter), texts[parameter]
        if not key:
            if given[parameter]:
                left_out.append(parameter)
            continue
        value, cut = cut_chars(full, TEMPLATE_VALUE_LIMIT)
        # An empty parameter sends nothing, so it does not claim its key.
        displaced = bool(full) and key in taken
        if displaced:
            left_out.append(parameter)
        elif full:
            taken.add(key)
        rows[parameter] = _Row(parameter, key, full, value, cut and not displaced, displaced)
    return [rows[p] for p in PARAMETERS if p in rows], left_out


def template_message(n: Notification, fields: Mapping[str, str] | None = None, detail_url: str | None = None,
                     now: datetime | None = None, tz: tzinfo | None = None) -> Adapted:
    """The template-message payload ``{"data": {key: text}, "url": url or None}`` for ``n``.

    ``fields`` maps heading/message/date/remark to template keys (default: BlueKing's
    first/keyword1/keyword2/remark). Unmapped or empty parameters are not sent; values are made one
    line and cut to 20 characters. If anything was cut or a non-empty parameter could not be sent,
    ``truncated`` is True and, when ``detail_url`` is given, it replaces the click-through url (the
    detail page links on to the caller's url). Text hidden by WeChat (first/remark) does not count.
    """
    rows, left_out = _template_rows(n, fields, now, tz)
    data = {row.key: row.value for row in rows if row.value and not row.displaced}
    truncated = bool(left_out) or any(row.cut for row in rows)
    url = detail_url if truncated and detail_url else (n.url or None)
    return Adapted(payload={"data": data, "url": url}, truncated=truncated)


def template_preview(n: Notification, fields: Mapping[str, str] | None = None,
                     template_keys: list[str] | None = None,
                     now: datetime | None = None, tz: tzinfo | None = None) -> list[dict]:
    """Per mapped key, what a follower will see: ``{"key", "parameter", "value", "shown", "cut", "lost"}``.

    ``shown`` is False for first/remark (no longer displayed), for keys missing from ``template_keys``
    and for a parameter that lost its key to another one; ``lost`` is the text that will not be seen.
    With ``template_keys`` (the template's keys, in order) the rows follow the template, unmapped
    template keys appear with ``parameter`` None, and mapped keys the template lacks come last.
    """
    rows, _ = _template_rows(n, fields, now, tz)
    known = None if template_keys is None else set(template_keys)
    by_key: dict[str, list[dict]] = {}
    for row in rows:
        shown = not row.displaced and row.key not in HIDDEN_TEMPLATE_KEYS and (known is None or row.key in known)
        if not shown:
            lost = row.full
        elif row.cut:
            lost = row.full[len(row.value) - len(ELLIPSIS):]
        else:
            lost = ""
        value = "" if row.displaced else row.value
        by_key.setdefault(row.key, []).append(
            {"key": row.key, "parameter": row.parameter, "value": value, "shown": shown, "cut": row.cut,
             "lost": lost})
    if template_keys is None:
        return [entry for entries in by_key.values() for entry in entries]
    preview: list[dict] = []
    for key in dict.fromkeys(template_keys):
        preview.extend(by_key.pop(key, None) or [
            {"key": key, "parameter": None, "value": "", "shown": key not in HIDDEN_TEMPLATE_KEYS, "cut": False,
             "lost": ""}])
    preview.extend(entry for entries in by_key.values() for entry in entries)
    return preview


def _key_type(key: str) -> str:
    # Category-template keys are a type name followed by a number: thing1, character_string3.
    return key.rstrip("0123456789")


def _parameter_label(parameter: str) -> str:
    """A send parameter as the page names it: its API name, explained in the page's language."""
    labels = {
        "heading": pgettext("send parameter", "heading"),
        "message": pgettext("send parameter", "message"),
        "date": pgettext("send parameter", "date"),
        "remark": pgettext("send parameter", "remark"),
    }
    return labels.get(parameter, parameter)


def _listed(items: list[str]) -> str:
    """``items`` as one phrase in the page's language ("a, b and c" / "a、b和c")."""
    return format_list(items, locale=str(get_locale() or "en"))


def lost_text_warnings(fields: Mapping[str, str] | None, template_keys: list[str] | None = None) -> list[str]:
    """Readable warnings about a mapping that hides, drops or endangers the caller's text.

    The sentences are in the language of the page being served (English outside a request).
    """
    fields = DEFAULT_TEMPLATE_FIELDS if fields is None else fields
    warnings: list[str] = []
    unknown = sorted(str(p) for p in fields if p not in PARAMETERS)
    if unknown:
        warnings.append(_("Unknown parameter(s) %(unknown)s: only %(known)s can be mapped.",
                          unknown=_listed(unknown), known=_listed([_parameter_label(p) for p in PARAMETERS])))
    keys = {p: _mapped_key(fields, p) for p in PARAMETERS}
    if not keys["message"]:
        warnings.append(_("The message is not mapped to any template key: it will not be shown."))
    unmapped = [p for p in ("heading", "date", "remark") if not keys[p]]
    if unmapped:
        warnings.append(_("Not mapped: %(parameters)s. Their text appears only on the detail page.",
                          parameters=_listed([_parameter_label(p) for p in unmapped])))
    for parameter in PARAMETERS:
        key = keys[parameter]
        if key in HIDDEN_TEMPLATE_KEYS:
            warnings.append(_("The %(parameter)s is mapped to '%(key)s', which WeChat no longer shows "
                              "(since 2023-05-04): it will not be seen in the message.",
                              parameter=_parameter_label(parameter), key=key))
    users: dict[str, list[str]] = {}
    for parameter in _KEY_PRIORITY:
        if keys[parameter]:
            users.setdefault(keys[parameter], []).append(parameter)
    for key, parameters in users.items():
        if len(parameters) > 1:
            warnings.append(_("%(parameters)s are all mapped to '%(key)s': only one is sent (the %(first)s "
                              "when it has text); the others are left out.",
                              parameters=_listed([_parameter_label(p) for p in parameters]), key=key,
                              first=_parameter_label(parameters[0])))
    for parameter in PARAMETERS:
        key = keys[parameter]
        if not key:
            continue
        kind = _key_type(key)
        if template_keys is not None and key not in template_keys:
            warnings.append(_("'%(key)s' (the %(parameter)s) is not a key of this template: it will not be shown.",
                              key=key, parameter=_parameter_label(parameter)))
        elif kind in _TYPED_KEYS:
            warnings.append(_("'%(key)s' only accepts %(kind)s values: WeChat refuses other text (errcode 47003). "
                              "Map the %(parameter)s to a free-text key such as thing or keyword.",
                              key=key, kind=kind.replace("_", " "), parameter=_parameter_label(parameter)))
        elif kind in _TIME_KEYS and parameter != "date":
            warnings.append(_("'%(key)s' only accepts a date or time: WeChat refuses other text (errcode 47003).",
                              key=key))
    return warnings


# --- WeCom app messages ----------------------------------------------------------------------------

_Part = tuple[str, Callable[[str], str]]   # raw text and how it is rendered into the body


def _plain(text: str) -> str:
    return text


def _shares(sizes: list[int], budget: int) -> list[int]:
    """Split ``budget`` bytes so short parts stay whole and long ones share the rest evenly."""
    allowance = [0] * len(sizes)
    remaining, left = budget, len(sizes)
    for index in sorted(range(len(sizes)), key=sizes.__getitem__):
        fair = remaining // left
        allowance[index] = min(sizes[index], fair)
        remaining -= allowance[index]
        left -= 1
    return allowance


def _fit_rendered(raw: str, render: Callable[[str], str], allowance: int) -> str:
    """The longest rendering of a cut of ``raw`` within ``allowance`` bytes, or "" if none fits."""
    # Rendering (escaping, prefixes) grows with the kept prefix, so the fit is monotonic in the
    # byte budget given to cut_utf8 and a binary search finds the best one.
    best, low, high = "", 0, allowance
    while low <= high:
        middle = (low + high) // 2
        candidate = render(cut_utf8(raw, middle)[0])
        if _blen(candidate) <= allowance:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best


def _fit_parts(parts: list[_Part], limit: int, suffix: str = "") -> tuple[str, bool]:
    """Join the non-empty parts with newlines within ``limit`` bytes; append ``suffix`` only when cut."""
    parts = [(raw, render) for raw, render in parts if raw]
    rendered = [render(raw) for raw, render in parts]
    whole = "\n".join(rendered)
    if _blen(whole) <= limit:
        return whole, False
    # A suffix that would eat most of the room (an absurdly long detail url) is left out instead.
    if not suffix or _blen(suffix) > limit // 2:
        suffix = ""
    room = max(limit - _blen(suffix) - (len(parts) - 1), 0)
    allowances = _shares([_blen(r) for r in rendered], room)
    kept = []
    for (raw, render), full, allowance in zip(parts, rendered, allowances):
        piece = full if _blen(full) <= allowance else _fit_rendered(raw, render, allowance)
        if piece:
            kept.append(piece)
    return "\n".join(kept) + suffix, True


_MD_INLINE_RE = re.compile(r"([\\`*_\[\]<])")
_MD_LINE_START_RE = re.compile(r"^([ \t]*)([#>+=-])", re.MULTILINE)
_MD_ORDERED_RE = re.compile(r"^([ \t]*\d+)([.)])", re.MULTILINE)


def escape_markdown(text: str) -> str:
    """Backslash-escape what would change WeCom markdown layout: emphasis, code, links, tags, block marks."""
    text = _MD_INLINE_RE.sub(r"\\\1", text)
    # Headings, quotes, lists and setext underlines only matter at the start of a line.
    text = _MD_LINE_START_RE.sub(r"\1\\\2", text)
    return _MD_ORDERED_RE.sub(r"\1\\\2", text)


def _markdown_url(url: str) -> str:
    # Inside "(...)" a space or parenthesis would end the link target early.
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _usable_url(url: str | None) -> str | None:
    url = _valid_text(url).strip()
    return url if _URL_RE.match(url) and _blen(url) <= WECOM_TEXTCARD_URL_LIMIT else None


def wecom_message(n: Notification, msgtype: str = "text", detail_url: str | None = None,
                  now: datetime | None = None, tz: tzinfo | None = None) -> Adapted:
    """The WeCom body of ``msgtype`` ("text", "textcard" or "markdown") for ``n``, within WeCom's byte limits.

    text: "heading\\nmessage\\nDate: d\\nremark" (<= 2048 bytes). textcard: one-line title (<= 128
    bytes), description of message/date/remark (<= 512 bytes), the caller's url or else
    ``detail_url``; without a usable url it falls back to text. markdown: bold heading, escaped
    message, quoted date and remark (<= 2048 bytes). Short parts are kept whole and long ones cut;
    when something was cut and ``detail_url`` is given, the body points to it. Unknown msgtype:
    ValueError.
    """
    if msgtype not in WECOM_MSGTYPES:
        raise ValueError(f"unknown WeCom msgtype {msgtype!r}; expected one of {', '.join(WECOM_MSGTYPES)}")
    heading = one_line(_valid_text(n.heading))
    message = _valid_text(n.message).strip()
    date = one_line(_valid_text(n.date)) or default_date(now, tz)
    remark = _valid_text(n.remark).strip()
    detail = _valid_text(detail_url).strip() or None

    if msgtype == "text":
        parts = [(heading, _plain), (message, _plain), (date, lambda d: DATE_LABEL + d), (remark, _plain)]
        content, cut = _fit_parts(parts, WECOM_TEXT_LIMIT, "\n" + detail if detail else "")
        return Adapted(payload={"content": content}, truncated=cut, msgtype="text")

    if msgtype == "markdown":
        def quote(text: str) -> str:
            return "> " + escape_markdown(text).replace("\n", "\n> ")

        parts = [
            (heading, lambda h: f"**{escape_markdown(h)}**"),
            (message, escape_markdown),
            (date, lambda d: quote(DATE_LABEL + d)),
            (remark, quote),
        ]
        link = f"\n[{DETAIL_LINK_LABEL}]({_markdown_url(detail)})" if detail else ""
        content, cut = _fit_parts(parts, WECOM_MARKDOWN_LIMIT, link)
        return Adapted(payload={"content": content}, truncated=cut, msgtype="markdown")

    # textcard: WeCom refuses a card without an http(s) url, so without one it is sent as text.
    own_url, detail_target = _usable_url(n.url), _usable_url(detail)
    if not own_url and not detail_target:
        return wecom_message(n, "text", detail_url=detail_url, now=now, tz=tz)
    # A card needs a title; without a heading the start of the message stands in (it is also in the
    # description, so cutting that stand-in loses nothing).
    title, title_cut = cut_utf8(heading or one_line(message), WECOM_TEXTCARD_TITLE_LIMIT)
    title_cut = title_cut and bool(heading)
    parts = [(message, _plain), (date, lambda d: DATE_LABEL + d), (remark, _plain)]
    description, description_cut = _fit_parts(parts, WECOM_TEXTCARD_DESCRIPTION_LIMIT)
    truncated = title_cut or description_cut
    url = detail_target if (truncated and detail_target) or not own_url else own_url
    payload = {"title": title, "description": description, "url": url, "btntxt": TEXTCARD_BUTTON}
    return Adapted(payload=payload, truncated=truncated, msgtype="textcard")
