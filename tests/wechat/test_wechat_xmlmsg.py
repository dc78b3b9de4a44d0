"""Callback XML: safe parsing of hostile bodies and well-formed replies."""
import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.wechat.errors import XMLMessageError
from webapp.wechat.xmlmsg import build_text_reply, build_xml, cdata, parse_message

SUBSCRIBE = (
    b"<xml><ToUserName><![CDATA[gh_xxx]]></ToUserName><FromUserName><![CDATA[OPENID]]></FromUserName>\n"
    b"<CreateTime>123456789</CreateTime><MsgType><![CDATA[event]]></MsgType>\n"
    b"<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_123123]]></EventKey>"
    b"<Ticket><![CDATA[TICKET]]></Ticket></xml>"
)


def test_subscribe_event():
    """The QR subscribe event of PROTOCOL.md section 3."""
    assert parse_message(SUBSCRIBE) == {
        "ToUserName": "gh_xxx", "FromUserName": "OPENID", "CreateTime": "123456789",
        "MsgType": "event", "Event": "subscribe", "EventKey": "qrscene_123123", "Ticket": "TICKET",
    }


def test_template_send_job_finish():
    """TEMPLATESENDJOBFINISH carries MsgID (capital D) and a Status with spaces kept."""
    body = ("<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>"
            "<CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>"
            "<Status><![CDATA[failed: system failed]]></Status></xml>")
    fields = parse_message(body)
    assert fields["MsgID"] == "200163836"
    assert fields["Status"] == "failed: system failed"


def test_empty_event_key_and_str_input():
    """An empty element gives ''; str bodies are accepted too."""
    fields = parse_message("<xml><Event>subscribe</Event><EventKey><![CDATA[]]></EventKey><X/></xml>")
    assert fields == {"Event": "subscribe", "EventKey": "", "X": ""}


def test_wecom_safe_mode_envelope():
    """The WeCom envelope: ToUserName, Encrypt, AgentID."""
    fields = parse_message(b"<xml><ToUserName>ww1</ToUserName><Encrypt>abc+/=</Encrypt>"
                           b"<AgentID>1000002</AgentID></xml>")
    assert fields == {"ToUserName": "ww1", "Encrypt": "abc+/=", "AgentID": "1000002"}


def test_menu_event_nesting_is_flattened():
    """Menu events nest a little; those leaves come back with dotted names."""
    body = ("<xml><MsgType>event</MsgType><Event>location_select</Event><SendLocationInfo>"
            "<Location_X><![CDATA[23]]></Location_X><Label><![CDATA[Here]]></Label></SendLocationInfo>"
            "<SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum>a</PicMd5Sum></item>"
            "<item><PicMd5Sum>b</PicMd5Sum></item></PicList></SendPicsInfo></xml>")
    fields = parse_message(body)
    assert fields["SendLocationInfo.Location_X"] == "23"
    assert fields["SendLocationInfo.Label"] == "Here"
    assert fields["SendPicsInfo.PicList.item.PicMd5Sum"] == "a"
    assert fields["Event"] == "location_select"


@pytest.mark.parametrize("body", [
    b"", b"   ", b"not xml", b"<xml>", b"<xml></xmk>", b"<root><a>1</a></root>",
    b"<xml><a>1</a></xml><xml/>", b"<xml><a><b><c><d><e>deep</e></d></c></b></a></xml>",
    b"<xml><FromUserName>a</FromUserName><FromUserName>b</FromUserName></xml>",
    b'<xml xmlns:x="urn:x"><x:a>1</x:a></xml>', b"<xml><a>&amp;</a><b>&unknown;</b></xml>",
    b"\xff\xfe<\x00x\x00", b'<?xml version="1.0" encoding="no-such-codec"?><xml/>',
    "<xml>\ud800</xml>", None, 42, ["<xml/>"],
    b"<xml>" + b"<a>1</a>" * 300 + b"</xml>",
])
def test_refused_bodies(body):
    """Malformed, wrong root, too deep, ambiguous, namespaced, too many elements: XMLMessageError."""
    with pytest.raises(XMLMessageError):
        parse_message(body)


def test_size_limit():
    """Bodies over the limit are refused before parsing."""
    big = b"<xml><Content>" + b"a" * 70_000 + b"</Content></xml>"
    with pytest.raises(XMLMessageError):
        parse_message(big)
    assert parse_message(big, max_bytes=100_000)["Content"] == "a" * 70_000
    with pytest.raises(XMLMessageError):
        parse_message(SUBSCRIBE, max_bytes=50)


def _quick_refusal(body: bytes) -> None:
    """Assert the body is refused, and fast."""
    started = time.monotonic()
    with pytest.raises(XMLMessageError):
        parse_message(body)
    assert time.monotonic() - started < 0.5


def test_xxe_file_entity_refused():
    """An external entity pointing at a local file is refused, and the file never read."""
    _quick_refusal(b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                   b"<xml><Content>&xxe;</Content></xml>")


def test_xxe_parameter_entity_and_external_dtd_refused():
    """Parameter entities and an external DTD are refused."""
    _quick_refusal(b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><xml/>')
    _quick_refusal(b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd"><xml><a>1</a></xml>')


def test_billion_laughs_refused():
    """The exponential entity bomb is refused before any expansion."""
    lol = [b'<!ENTITY lol0 "lol">']
    for i in range(1, 10):
        lol.append(b'<!ENTITY lol%d "' % i + (b"&lol%d;" % (i - 1)) * 10 + b'">')
    _quick_refusal(b"<?xml version=\"1.0\"?><!DOCTYPE xml [" + b"".join(lol) + b"]><xml><a>&lol9;</a></xml>")


def test_plain_dtd_refused():
    """Even a harmless internal DTD is refused: WeChat never sends one."""
    _quick_refusal(b"<!DOCTYPE xml><xml><a>1</a></xml>")
    _quick_refusal(b'<!DOCTYPE xml [<!ELEMENT xml ANY>]><xml/>')


XMLISH = st.lists(st.sampled_from([
    "<xml>", "</xml>", "<a>", "</a>", "<Content>", "</Content>", "<![CDATA[", "]]>", "&amp;", "&x;",
    "<!DOCTYPE xml [", "<!ENTITY x \"y\">", "]>", "<?xml version=\"1.0\"?>", "text", "\x00", "é",
    "<!--", "-->", "<?pi?>", "<b/>", "\"", "'", "<x:a xmlns:x='u'>", "</x:a>", "&#0;", "&#x41;",
]), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=400), XMLISH.map(lambda s: s.encode("utf-8")),
                 XMLISH.map(lambda s: s.encode("utf-16"))))
def test_arbitrary_bytes_raise_only_xml_message_error(body):
    """For any bytes, parse_message returns flat str fields or raises XMLMessageError."""
    try:
        fields = parse_message(body)
    except XMLMessageError:
        return
    assert isinstance(fields, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


# -- building --------------------------------------------------------------------------------

def test_text_reply_round_trip():
    """A text reply parses back to what went in."""
    xml = build_text_reply("OPENID", "gh_x", "绑定成功", 1700000000)
    assert parse_message(xml) == {"ToUserName": "OPENID", "FromUserName": "gh_x",
                                  "CreateTime": "1700000000", "MsgType": "text", "Content": "绑定成功"}
    assert "<CreateTime>1700000000</CreateTime>" in xml


@pytest.mark.parametrize("content", [
    "a]]>b", "]]>", "]]]]>", "<![CDATA[x]]>", "</Content></xml><xml>", "&amp; <b>", "]]>]]>",
])
def test_cdata_terminator_stays_well_formed(content):
    """Content containing ']]>' (or markup) still yields well-formed XML with the same text."""
    xml = build_text_reply("u", "gh", content, 1)
    ET.fromstring(xml)  # well-formed
    assert parse_message(xml)["Content"] == content


def test_control_characters_dropped():
    """Characters XML 1.0 cannot carry are dropped rather than producing broken XML."""
    xml = build_text_reply("u", "gh", "a\x00b\x07c\ttab", 1)
    assert parse_message(xml)["Content"] == "abc\ttab"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_build_is_always_well_formed(text):
    """Any text survives build → parse, minus XML-illegal characters."""
    fields = parse_message(build_xml({"Content": text, "N": 5}))
    expected = "".join(ch for ch in text if ch in "\t\n\r" or ch >= " ")
    # XML parsers normalise a bare CR (and CRLF) to LF.
    assert fields["Content"] == expected.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "").replace("\uffff", "")
    assert fields["N"] == "5"


def test_build_xml_nested_and_lists():
    """Nested mappings and lists (Articles/item) render as elements; None is skipped."""
    xml = build_xml({"MsgType": "news", "ArticleCount": 1,
                     "Articles": [{"Title": "t", "Url": "http://x/?a=1&b=2"}], "Skip": None})
    assert xml == ("<xml><MsgType><![CDATA[news]]></MsgType><ArticleCount>1</ArticleCount><Articles><item>"
                   "<Title><![CDATA[t]]></Title><Url><![CDATA[http://x/?a=1&b=2]]></Url></item></Articles></xml>")


@pytest.mark.parametrize("key", ["", "a b", "<x>", "x:y", 1, "1abc"])
def test_build_xml_rejects_bad_names(key):
    """Element names are checked so keys cannot inject markup."""
    with pytest.raises(XMLMessageError):
        build_xml({key: "v"})


def test_cdata_helper():
    """cdata() splits the terminator across sections."""
    assert cdata("a]]>b") == "<![CDATA[a]]]]><![CDATA[>b]]>"
