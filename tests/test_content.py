"""Content adaptation: every channel limit holds for any Unicode input, plus the cases people rely on."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webapp.delivery import content
from webapp.delivery.content import (
    DEFAULT_TEMPLATE_FIELDS,
    ELLIPSIS,
    Notification,
    cut_chars,
    cut_utf8,
    default_date,
    escape_markdown,
    lost_text_warnings,
    one_line,
    template_message,
    template_preview,
    wecom_message,
)

NOW = datetime(2024, 3, 1, 4, 5, tzinfo=timezone.utc)
CST = timezone(timedelta(hours=8))
# Every character str.splitlines() breaks on, so "no line breaks" is checked against the real set.
LINE_BREAKS = set("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
TRICKY = ["\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\t", "  ", "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇨🇳",
          "e\u0301", "\u0301", "中文", "告警", "\ufe0f", "*", "_", "`", "[x](y)", "<b>", "# ", "> ", "- ", "1. ",
          "\\", "…", "\x00"]

pieces = st.one_of(st.characters(), st.sampled_from(TRICKY), st.text(max_size=8))
unicode_text = st.lists(pieces, max_size=40).map("".join)
# Long inputs are needed to reach the 512/2048-byte limits; repeating keeps generation fast.
long_text = st.one_of(
    unicode_text,
    st.tuples(unicode_text, st.integers(1, 120)).map(lambda t: t[0] * t[1]),
)
optional_text = st.one_of(st.none(), long_text)
urls = st.one_of(st.none(), st.just(""), st.just("https://example.com/a?b=1"), st.just("ftp://nope"),
                 unicode_text)
notifications = st.builds(Notification, heading=long_text, message=long_text, date=optional_text,
                          remark=optional_text, url=urls)
DETAIL = "https://notify.example.com/m/abc123"
details = st.one_of(st.none(), st.just(DETAIL))
fast = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def blen(text: str) -> int:
    return len(text.encode("utf-8"))


# --- primitives ------------------------------------------------------------------------------------

@fast
@given(text=long_text, max_bytes=st.integers(0, 3000))
def test_cut_utf8_holds_the_byte_limit_and_keeps_a_prefix(text, max_bytes):
    out, cut = cut_utf8(text, max_bytes)
    text = re.sub("[\ud800-\udfff]", "\ufffd", text)  # lone surrogates are documented to become U+FFFD
    data = out.encode("utf-8")  # would raise on anything not encodable
    assert data.decode("utf-8") == out
    assert cut == (blen(text) > max_bytes)
    if not cut:
        assert out == text
        return
    assert len(data) <= max_bytes
    kept = out[: -len(ELLIPSIS)] if out.endswith(ELLIPSIS) and max_bytes >= 3 else out
    assert text.startswith(kept)
    if max_bytes >= 3:
        assert out.endswith(ELLIPSIS)


@fast
@given(text=long_text, limit=st.integers(0, 300))
def test_cut_chars_never_exceeds_the_limit(text, limit):
    out, cut = cut_chars(text, limit)
    assert len(out) <= limit
    assert cut == (len(text) > limit)
    if cut and limit:
        assert out.endswith(ELLIPSIS) and text.startswith(out[:-1])
    if not cut:
        assert out == text


@fast
@given(text=long_text)
def test_one_line_has_no_breaks_and_no_runs(text):
    out = one_line(text)
    assert not LINE_BREAKS & set(out)
    assert "  " not in out and out == out.strip()
    assert out.splitlines() in ([out], [])


def test_cut_utf8_keeps_graphemes_and_characters_whole():
    assert cut_utf8("ab👍🏽cd", 10) == ("ab…", True)            # never half a skin-toned thumb
    assert cut_utf8("abcde\u0301fg", 8) == ("abcd…", True)      # e + combining acute stay together
    assert cut_utf8("a🇨🇳🇯🇵", 12) == ("a🇨🇳…", True)           # flags are pairs
    assert cut_utf8("中文告警信息", 10) == ("中文…", True)        # 3 bytes per character
    assert cut_utf8("short", 5) == ("short", False)
    assert cut_utf8("abc", 2) == ("ab", True)                  # no room for the marker
    out, cut = cut_utf8("x\ud800y" * 10, 8)                    # a lone surrogate is not UTF-8
    assert cut and out.encode("utf-8") and blen(out) <= 8


def test_one_line_examples():
    assert one_line(" disk\r\nfull\u2028on  host\t1 \n") == "disk full on host 1"
    assert one_line("") == "" and one_line(None) == ""


def test_default_date_uses_the_given_time_zone():
    assert default_date(NOW, CST) == "2024-03-01 12:05"
    assert default_date(datetime(2024, 3, 1, 9, 7)) == "2024-03-01 09:07"   # naive: already local
    before = datetime.now(CST)
    shown = default_date(tz=CST)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", shown)
    assert before.replace(second=0, microsecond=0) <= datetime.strptime(shown, "%Y-%m-%d %H:%M").replace(tzinfo=CST)


# --- template messages -----------------------------------------------------------------------------

mappings = st.one_of(
    st.none(),
    st.just(DEFAULT_TEMPLATE_FIELDS),
    st.just({"message": "thing1", "date": "time2"}),
    st.dictionaries(st.sampled_from(content.PARAMETERS), st.sampled_from(["first", "keyword1", "keyword2", "remark",
                                                                          "thing1", ""]), max_size=4),
)


@fast
@given(n=notifications, fields=mappings, detail=details)
def test_template_values_fit_and_truncated_is_exact(n, fields, detail):
    adapted = template_message(n, fields, detail, now=NOW, tz=CST)
    data = adapted.payload["data"]
    for value in data.values():
        assert isinstance(value, str) and value
        assert len(value) <= content.TEMPLATE_VALUE_LIMIT
        assert not LINE_BREAKS & set(value)
    with mock.patch.object(content, "TEMPLATE_VALUE_LIMIT", 10**9):
        whole = template_message(n, fields, detail, now=NOW, tz=CST)
    cut = any(len(v) > content.TEMPLATE_VALUE_LIMIT for v in whole.payload["data"].values())
    assert adapted.truncated == (cut or whole.truncated)
    expected_url = detail if adapted.truncated and detail else (n.url or None)
    assert adapted.payload["url"] == expected_url


def test_default_blueking_mapping():
    n = Notification("CPU alarm", "cpu > 90% on web-1", "2024-03-01 10:00", "ops team", "https://bk.example.com/a")
    adapted = template_message(n)
    assert adapted.payload == {
        "data": {"first": "CPU alarm", "keyword1": "cpu > 90% on web-1", "keyword2": "2024-03-01 10:00",
                 "remark": "ops team"},
        "url": "https://bk.example.com/a",
    }
    assert adapted.truncated is False


def test_category_template_mapping_drops_unmapped_text_to_the_detail_page():
    n = Notification("告警", "磁盘满了", "2024-03-01 10:00", url="https://bk.example.com/a")
    fields = {"message": "thing1", "date": "time2"}
    adapted = template_message(n, fields, DETAIL)
    assert adapted.payload["data"] == {"thing1": "磁盘满了", "time2": "2024-03-01 10:00"}
    assert adapted.truncated is True                      # the heading is not in the template
    assert adapted.payload["url"] == DETAIL
    # Nothing of the caller's is lost without a heading: the caller's url stays.
    quiet = template_message(Notification("", "磁盘满了", url="https://bk.example.com/a"), fields, DETAIL,
                             now=NOW, tz=CST)
    assert quiet.payload == {"data": {"thing1": "磁盘满了", "time2": "2024-03-01 12:05"},
                             "url": "https://bk.example.com/a"}
    assert quiet.truncated is False


def test_missing_date_is_now_in_the_given_zone_and_empty_remark_is_not_sent():
    adapted = template_message(Notification("h", "m", date="", remark=None), now=NOW, tz=CST)
    assert adapted.payload["data"] == {"first": "h", "keyword1": "m", "keyword2": "2024-03-01 12:05"}
    assert adapted.payload["url"] is None and adapted.truncated is False


def test_chinese_text_is_cut_at_twenty_characters_and_made_one_line():
    message = "服务器磁盘使用率超过百分之九十，\n请尽快清理日志文件以免服务中断"
    adapted = template_message(Notification("告警", message, "2024-03-01 10:00"), detail_url=DETAIL)
    value = adapted.payload["data"]["keyword1"]
    assert value == "服务器磁盘使用率超过百分之九十， 请尽…"
    assert len(value) == 20
    assert adapted.truncated is True and adapted.payload["url"] == DETAIL


def test_detail_url_only_when_something_was_cut():
    n = Notification("h", "short", "2024-03-01 10:00", url="https://bk.example.com/a")
    assert template_message(n, detail_url=DETAIL).payload["url"] == "https://bk.example.com/a"
    for msgtype in ("text", "markdown"):
        adapted = wecom_message(n, msgtype, DETAIL)
        assert DETAIL not in adapted.payload["content"] and not adapted.truncated
    long = Notification("h", "x" * 3000, "2024-03-01 10:00")
    assert wecom_message(long, "text", DETAIL).payload["content"].endswith("\n" + DETAIL)
    assert wecom_message(long, "markdown", DETAIL).payload["content"].endswith(f"[详情 / Details]({DETAIL})")
    assert wecom_message(long, "text").payload["content"].endswith(ELLIPSIS + "\nDate: 2024-03-01 10:00")


def test_remark_without_mapping_counts_as_left_out():
    fields = {"heading": "first", "message": "keyword1", "date": "keyword2"}
    with_remark = template_message(Notification("h", "m", "d", remark="see runbook"), fields, DETAIL)
    assert with_remark.truncated and with_remark.payload["url"] == DETAIL
    assert "remark" not in with_remark.payload["data"]
    without = template_message(Notification("h", "m", "d", remark="  "), fields, DETAIL)
    assert not without.truncated


def test_two_parameters_on_one_key_keep_the_message():
    adapted = template_message(Notification("head", "body", "d"), {"heading": "thing1", "message": "thing1"})
    assert adapted.payload["data"] == {"thing1": "body"}
    assert adapted.truncated is True


def test_preview_marks_first_and_remark_as_not_shown_and_reports_lost_text():
    n = Notification("CPU alarm", "服务器磁盘使用率超过百分之九十请尽快清理日志", "2024-03-01 10:00", "ops")
    rows = template_preview(n, DEFAULT_TEMPLATE_FIELDS)
    by_key = {row["key"]: row for row in rows}
    assert [row["key"] for row in rows] == ["first", "keyword1", "keyword2", "remark"]
    assert by_key["first"] == {"key": "first", "parameter": "heading", "value": "CPU alarm", "shown": False,
                               "cut": False, "lost": "CPU alarm"}
    assert by_key["remark"]["shown"] is False and by_key["remark"]["lost"] == "ops"
    assert by_key["keyword1"]["shown"] is True and by_key["keyword1"]["cut"] is True
    assert by_key["keyword1"]["value"] == "服务器磁盘使用率超过百分之九十请尽快清…"
    assert by_key["keyword1"]["lost"] == "理日志"
    assert by_key["keyword2"] == {"key": "keyword2", "parameter": "date", "value": "2024-03-01 10:00",
                                  "shown": True, "cut": False, "lost": ""}


def test_preview_follows_the_template_keys():
    rows = template_preview(Notification("h", "m", "2024-03-01 10:00"), {"message": "thing1", "heading": "thing9"},
                            template_keys=["thing1", "time2"])
    assert [(r["key"], r["parameter"], r["shown"]) for r in rows] == [
        ("thing1", "message", True), ("time2", None, True), ("thing9", "heading", False)]
    assert rows[2]["lost"] == "h"


@fast
@given(n=notifications, fields=mappings)
def test_preview_values_match_the_payload(n, fields):
    payload = template_message(n, fields, now=NOW, tz=CST).payload["data"]
    for row in template_preview(n, fields, now=NOW, tz=CST):
        if row["value"]:
            assert payload[row["key"]] == row["value"]
        assert row["shown"] or row["value"] == "" or row["lost"]


def test_lost_text_warnings():
    default = lost_text_warnings(DEFAULT_TEMPLATE_FIELDS)
    assert any("heading" in w and "'first'" in w for w in default)
    assert any("remark" in w and "'remark'" in w for w in default)
    assert not any(w.startswith("The message") for w in default)
    hidden = lost_text_warnings({"message": "first", "heading": "keyword1"})
    assert any(w.startswith("The message is mapped to 'first'") for w in hidden)
    twice = lost_text_warnings({"message": "keyword1", "heading": "keyword1", "date": "keyword2"})
    assert any("'keyword1'" in w and "only one is sent" in w for w in twice)
    assert any("character string" in w for w in lost_text_warnings({"message": "character_string1"}))
    assert any("not a key of this template" in w
               for w in lost_text_warnings({"message": "thing3"}, template_keys=["thing1"]))
    clean = lost_text_warnings({"heading": "thing1", "message": "thing2", "date": "time3", "remark": "thing4"},
                               template_keys=["thing1", "thing2", "time3", "thing4"])
    assert clean == []


# --- WeCom -----------------------------------------------------------------------------------------

HUGE = 10**9


def _unlimited():
    return mock.patch.multiple(content, WECOM_TEXT_LIMIT=HUGE, WECOM_MARKDOWN_LIMIT=HUGE,
                               WECOM_TEXTCARD_TITLE_LIMIT=HUGE, WECOM_TEXTCARD_DESCRIPTION_LIMIT=HUGE)


@fast
@given(n=notifications, msgtype=st.sampled_from(["text", "markdown"]), detail=details)
def test_wecom_text_and_markdown_hold_their_byte_limits(n, msgtype, detail):
    adapted = wecom_message(n, msgtype, detail, now=NOW, tz=CST)
    limit = content.WECOM_TEXT_LIMIT if msgtype == "text" else content.WECOM_MARKDOWN_LIMIT
    body = adapted.payload["content"]
    assert adapted.msgtype == msgtype and set(adapted.payload) == {"content"}
    assert body.encode("utf-8").decode("utf-8") == body and blen(body) <= limit
    with _unlimited():
        whole = wecom_message(n, msgtype, detail, now=NOW, tz=CST).payload["content"]
    assert adapted.truncated == (blen(whole) > limit)
    if not adapted.truncated:
        assert body == whole
    assert (detail is not None and detail in body) == (adapted.truncated and detail is not None)


@fast
@given(n=notifications, detail=details)
def test_wecom_textcard_holds_its_byte_limits(n, detail):
    adapted = wecom_message(n, "textcard", detail, now=NOW, tz=CST)
    payload = adapted.payload
    if adapted.msgtype == "text":
        assert not (n.url or "").strip().lower().startswith(("http://", "https://")) and detail is None
        assert blen(payload["content"]) <= content.WECOM_TEXT_LIMIT
        return
    assert adapted.msgtype == "textcard"
    assert blen(payload["title"]) <= content.WECOM_TEXTCARD_TITLE_LIMIT
    assert not LINE_BREAKS & set(payload["title"])
    assert 0 < blen(payload["description"]) <= content.WECOM_TEXTCARD_DESCRIPTION_LIMIT
    assert re.match(r"https?://", payload["url"], re.I) and blen(payload["url"]) <= content.WECOM_TEXTCARD_URL_LIMIT
    assert payload["btntxt"] == "详情"
    with _unlimited():
        whole = wecom_message(n, "textcard", detail, now=NOW, tz=CST).payload
    heading_cut = bool(one_line(n.heading)) and blen(whole["title"]) > content.WECOM_TEXTCARD_TITLE_LIMIT
    description_cut = blen(whole["description"]) > content.WECOM_TEXTCARD_DESCRIPTION_LIMIT
    assert adapted.truncated == (heading_cut or description_cut)
    if adapted.truncated and detail:
        assert payload["url"] == detail


def test_wecom_text_layout_matches_blueking():
    n = Notification("CPU alarm", "cpu > 90%\non web-1", "2024-03-01 10:00", "ops team")
    adapted = wecom_message(n, "text")
    assert adapted.payload == {"content": "CPU alarm\ncpu > 90%\non web-1\nDate: 2024-03-01 10:00\nops team"}
    assert adapted.msgtype == "text" and not adapted.truncated
    no_date = wecom_message(Notification("h", "m"), now=NOW, tz=CST)
    assert no_date.payload["content"] == "h\nm\nDate: 2024-03-01 12:05"


def test_wecom_text_keeps_the_short_parts_when_the_message_is_long():
    n = Notification("告警", "中" * 1000, "2024-03-01 10:00", "请处理")
    body = wecom_message(n, "text", DETAIL).payload["content"]
    assert blen(body) <= 2048
    assert body.startswith("告警\n中中") and body.endswith(f"…\nDate: 2024-03-01 10:00\n请处理\n{DETAIL}")


def test_textcard_uses_the_callers_url_then_the_detail_page():
    n = Notification("CPU alarm", "cpu > 90%", "2024-03-01 10:00", url="https://bk.example.com/a")
    card = wecom_message(n, "textcard", DETAIL)
    assert card.msgtype == "textcard" and not card.truncated
    assert card.payload == {"title": "CPU alarm", "description": "cpu > 90%\nDate: 2024-03-01 10:00",
                            "url": "https://bk.example.com/a", "btntxt": "详情"}
    cut = wecom_message(Notification("h" * 200, "m", "d", url="https://bk.example.com/a"), "textcard", DETAIL)
    assert cut.truncated and cut.payload["url"] == DETAIL and cut.payload["title"].endswith(ELLIPSIS)
    only_detail = wecom_message(Notification("h", "m", "d"), "textcard", DETAIL)
    assert only_detail.msgtype == "textcard" and only_detail.payload["url"] == DETAIL


def test_textcard_without_any_url_falls_back_to_text():
    adapted = wecom_message(Notification("CPU alarm", "cpu > 90%", "2024-03-01 10:00"), "textcard")
    assert adapted.msgtype == "text"
    assert adapted.payload == {"content": "CPU alarm\ncpu > 90%\nDate: 2024-03-01 10:00"}
    not_http = wecom_message(Notification("h", "m", "d", url="bk.example.com/a"), "textcard")
    assert not_http.msgtype == "text"


def test_markdown_layout_and_escaping():
    n = Notification("**disk** [full]", "# not a title\n> not a quote\n- item\n1. one\nuse `rm` on a_b*c <br>",
                     "2024-03-01 10:00", "ops\nteam")
    adapted = wecom_message(n, "markdown")
    assert adapted.msgtype == "markdown" and not adapted.truncated
    assert adapted.payload["content"] == (
        "**\\*\\*disk\\*\\* \\[full\\]**\n"
        "\\# not a title\n\\> not a quote\n\\- item\n1\\. one\nuse \\`rm\\` on a\\_b\\*c \\<br>\n"
        "> Date: 2024-03-01 10:00\n"
        "> ops\n> team"
    )
    assert escape_markdown("plain 中文 text #1") == "plain 中文 text #1"


def test_markdown_cut_never_leaves_half_an_escape():
    adapted = wecom_message(Notification("h", "*" * 3000, "2024-03-01 10:00"), "markdown", DETAIL)
    body = adapted.payload["content"]
    assert adapted.truncated and blen(body) <= 2048
    line = body.split("\n")[1]
    assert line.endswith("\\*…") and not line.endswith("\\…")


def test_unknown_msgtype_is_refused():
    with pytest.raises(ValueError):
        wecom_message(Notification("h", "m"), "news")
