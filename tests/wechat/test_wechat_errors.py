"""Errcode catalogue, IP extraction, transport diagnoses and redaction."""
import re
import socket
import ssl

import pytest
import requests
import urllib3

from webapp.wechat.errors import (CryptoError, Diagnosis, WeChatAPIError, WeChatTransportError,
                                  catalogued_codes, classify_transport, diagnose,
                                  diagnose_transport, extract_ip)
from webapp.wechat.http import redact

CJK = re.compile(r"[\u4e00-\u9fff]")

MP_CODES = [-1, 40001, 40003, 40013, 40014, 40029, 40036, 40037, 40058, 40125, 40164, 41001, 41033,
            42001, 43004, 45009, 45015, 47003, 48001, 89503]
QY_CODES = [-1, 40001, 40013, 40014, 40029, 40056, 40058, 41001, 41033, 42001, 45009, 48002, 50001,
            60020, 80001, 81013, 82001, 301002]
CRYPTO_CODES = [-40001, -40002, -40003, -40004, -40005, -40006, -40007, -40008]


# -- IP extraction ------------------------------------------------------------------------------

@pytest.mark.parametrize("errmsg,ip", [
    ("invalid ip 120.244.112.8 ipv6 ::ffff:120.244.112.8, not in whitelist rid: 5fa26c60-1a0ebdd5-32fd1cd0",
     "120.244.112.8"),
    ("invalid ip 101.45.43.100 ipv6 ::ffff:101.45.43.100, not in whitelist hint: [jotvMa01143580]",
     "101.45.43.100"),
    ("not allow to access from your ip, hint: [1706848717432011565347844], from ip: 1.2.3.4, more info at "
     "https://open.work.weixin.qq.com/devtool/query?e=60020", "1.2.3.4"),
    ("invalid ip 2408:8207:1850:1ac0::5 ipv6 2408:8207:1850:1ac0::5, not in whitelist rid: 6501-aa",
     "2408:8207:1850:1ac0::5"),
    ("not allow to access from your ip, hint: [17068], from ip: 240e:3b7:3272:d8d0::1, more info at "
     "https://open.work.weixin.qq.com/devtool/query?e=60020", "240e:3b7:3272:d8d0::1"),
    ("invalid ip  ipv6 ::ffff:8.8.4.4, not in whitelist rid: x", "8.8.4.4"),
    ("invalid ip , not in whitelist rid: 5fa26c60-1a0ebdd5-32fd1cd0", None),
    ("not allow to access from your ip, hint: [1706848717432011565347844], more info at x", None),
    ("", None), (None, None),
])
def test_extract_ip(errmsg, ip):
    """Every errmsg shape seen in the wild: IPv4, mapped IPv6, plain IPv6, no IP."""
    assert extract_ip(errmsg) == ip


def test_40164_names_the_whitelist_page_and_ip():
    """40164: the refused IP and the exact Official Account console page, in both languages."""
    d = diagnose(40164, "invalid ip 120.244.112.8 ipv6 ::ffff:120.244.112.8, not in whitelist rid: 5fa2",
                 channel="mp", context="token")
    assert d.kind == "ip" and d.ip == "120.244.112.8" and not d.transient
    assert "IP白名单" in d.message("zh") and "开发 → 基本配置 → IP白名单" in d.message("zh")
    assert "Development → Basic configuration → IP whitelist" in d.message("en")
    assert "120.244.112.8" in d.message("en") and "120.244.112.8" in d.message("zh")


def test_60020_names_the_trusted_ip_page():
    """60020: the refused IP and WeCom's 企业可信IP page."""
    d = diagnose(60020, "not allow to access from your ip, hint: [1706848717432011565347844], from ip: "
                        "203.0.113.9, more info at https://open.work.weixin.qq.com/devtool/query?e=60020",
                 channel="qywx")
    assert d.kind == "ip" and d.ip == "203.0.113.9"
    assert "企业可信IP" in d.message("zh") and "应用管理" in d.message("zh")
    assert "Trusted IPs" in d.message("en") and "203.0.113.9" in d.message("en")


def test_ip_missing_still_gives_advice():
    """Without an IP in errmsg, the advice speaks of the server's egress IP."""
    d = diagnose(40164, "invalid ip , not in whitelist", channel="mp")
    assert d.ip is None
    assert "egress" in d.message("en") and "出口" in d.message("zh")


# -- the catalogue ------------------------------------------------------------------------------

@pytest.mark.parametrize("channel,codes", [("mp", MP_CODES), ("qywx", QY_CODES)])
def test_required_codes_are_catalogued(channel, codes):
    """Every errcode of PROTOCOL.md (and the crypto codes) has a specific entry."""
    catalogued = set(catalogued_codes(channel))
    assert set(codes) <= catalogued
    assert set(CRYPTO_CODES) <= catalogued


@pytest.mark.parametrize("channel", ["mp", "qywx"])
def test_every_catalogued_code_has_both_sentences(channel):
    """Each entry tells a person what to do, in English and in Simplified Chinese."""
    for code in catalogued_codes(channel):
        for context in (None, "token"):
            d = diagnose(code, "some errmsg rid: 1", channel=channel, context=context)
            assert isinstance(d, Diagnosis)
            assert d.errcode == code
            assert len(d.message("en")) > 20 and len(d.message("zh")) > 8, code
            assert CJK.search(d.message("zh")), code
            assert d.message("en") != d.message("zh")
            assert "{" not in d.message("en") and "{" not in d.message("zh"), code
            assert d.message("zh-CN") == d.message("zh") == d.message("zh_Hans_CN")
            assert d.message(None) == d.message("en")


@pytest.mark.parametrize("code,transient,kind", [
    (-1, True, "busy"), (40014, True, "token"), (42001, True, "token"), (40001, True, "token"),
    (45009, True, "quota"), (43004, False, "user"), (40003, False, "user"), (40037, False, "template"),
    (47003, False, "template"), (40125, False, "secret"), (40164, False, "ip"), (48001, False, "permission"),
])
def test_mp_classification(code, transient, kind):
    """Transient errors are retried (token errors after one refresh); permanent ones fail at once."""
    d = diagnose(code, "", channel="mp")
    assert (d.transient, d.kind) == (transient, kind)
    assert d.refresh_token == (kind == "token")


def test_40001_at_token_time_is_the_app_secret():
    """40001 on a token fetch means a wrong AppSecret and names the console page."""
    d = diagnose(40001, "invalid credential", channel="mp", context="token")
    assert d.kind == "secret" and not d.transient
    assert "AppSecret" in d.message("en") and "开发 → 基本配置" in d.message("zh")
    d2 = diagnose(40125, "invalid appsecret rid: 65b8bf7b", channel="mp", context="token")
    assert d2.kind == "secret" and "AppSecret" in d2.message("en")


def test_43004_user_unfollowed():
    """43004: the user no longer follows the account."""
    d = diagnose(43004, "require subscribe rid: 1", channel="mp")
    assert "no longer follows" in d.message("en") and "关注" in d.message("zh")


def test_47003_names_the_field():
    """47003 points at the template field WeChat complained about."""
    d = diagnose(47003, "argument invalid! data.thing1.value invalid rid: 67bc14e4-", channel="mp")
    assert "thing1" in d.message("en") and "thing1" in d.message("zh")


@pytest.mark.parametrize("code,transient,kind", [
    (40001, False, "secret"), (40014, True, "token"), (42001, True, "token"), (60020, False, "ip"),
    (81013, False, "user"), (82001, False, "parameter"), (301002, False, "config"), (45009, True, "quota"),
    (48002, False, "permission"), (50001, False, "config"), (40056, False, "config"),
])
def test_qywx_classification(code, transient, kind):
    """WeCom: 40001 is the corpsecret whatever the context."""
    d = diagnose(code, "", channel="qywx")
    assert (d.transient, d.kind) == (transient, kind)
    assert d.channel == "qywx"
    assert diagnose(code, "", channel="qy").kind == kind


def test_unknown_code_generic_sentence_with_redacted_errmsg():
    """An unknown code mentions the code and the errmsg, with secrets masked."""
    d = diagnose(99999, "strange thing access_token=ABCDEF123456 secret=hunter2", channel="mp")
    assert d.kind == "other" and not d.transient
    assert "99999" in d.message("en") and "99999" in d.message("zh")
    assert "strange thing" in d.message("en")
    assert "ABCDEF123456" not in d.message("en") + d.message("zh") + d.errmsg
    assert "hunter2" not in d.message("en") + d.message("zh")


def test_junk_errcode():
    """A non-numeric errcode does not crash the diagnosis."""
    d = diagnose("abc", None)
    assert d.errcode is None and "abc" in d.message("en")


# -- exceptions ---------------------------------------------------------------------------------

def test_api_error_str_is_redacted():
    """WeChatAPIError keeps errcode and a redacted errmsg."""
    exc = WeChatAPIError(40125, 'invalid appsecret, {"secret": "s3cr3t"} access_token=TOK123 rid: 1')
    assert exc.errcode == 40125 and exc.diagnosis.kind == "secret"
    assert "s3cr3t" not in str(exc) and "TOK123" not in str(exc) and "s3cr3t" not in repr(exc)
    assert "40125" in str(exc)


def test_transport_error_str_is_redacted():
    """WeChatTransportError redacts its detail."""
    exc = WeChatTransportError("refused", "Max retries exceeded with url: /cgi-bin/token?grant_type=x&"
                                          "appid=wx1&secret=TOPSECRET (Caused by ...)")
    assert "TOPSECRET" not in str(exc)
    assert exc.transient and exc.diagnosis.kind == "network"
    http = WeChatTransportError("http", "bad gateway", status=502)
    assert http.transient and "502" in http.diagnosis.message("en")
    not_found = WeChatTransportError("http", "not found", status=404)
    assert not not_found.transient


def test_crypto_errors_carry_tencent_codes():
    """Crypto exceptions expose Tencent's code, which diagnose() explains."""
    from webapp.wechat.errors import BadPadding, InvalidSignature, ReceiveIdMismatch
    for cls, code in ((InvalidSignature, -40001), (ReceiveIdMismatch, -40005), (BadPadding, -40007)):
        assert cls.code == code and issubclass(cls, CryptoError)
        assert diagnose(cls.code).kind == "crypto"


# -- transport classification -----------------------------------------------------------------

def _wrapped(inner):
    """A requests.ConnectionError wrapping ``inner`` the way urllib3 does."""
    try:
        try:
            raise inner
        except Exception as exc:
            raise urllib3.exceptions.MaxRetryError(None, "/x?access_token=T", exc) from exc
    except urllib3.exceptions.MaxRetryError as mre:
        return requests.exceptions.ConnectionError(mre)


@pytest.mark.parametrize("exc,kind", [
    (_wrapped(socket.gaierror(-2, "Name or service not known")), "dns"),
    (_wrapped(ConnectionRefusedError(111, "Connection refused")), "refused"),
    (requests.exceptions.ReadTimeout("read timed out"), "timeout"),
    (requests.exceptions.ConnectTimeout("connect timed out"), "timeout"),
    (requests.exceptions.SSLError("certificate verify failed"), "tls"),
    (_wrapped(ssl.SSLCertVerificationError("certificate verify failed")), "tls"),
    (requests.exceptions.ConnectionError("Connection reset by peer"), "connection"),
    (requests.exceptions.MissingSchema("no schema"), "url"),
])
def test_classify_transport(exc, kind):
    """DNS failure, refusal, timeout and TLS errors are told apart, each with advice."""
    assert classify_transport(exc) == kind
    d = diagnose_transport(exc)
    assert d.kind == "network" and d.message("en") and CJK.search(d.message("zh"))
    assert d.transient == (kind != "url")


def test_transport_sentences():
    """The sentences say what to check."""
    assert "DNS" in diagnose_transport(WeChatTransportError("dns")).message("en")
    assert "refused" in diagnose_transport(WeChatTransportError("refused")).message("en")
    assert "TLS" in diagnose_transport(WeChatTransportError("tls")).message("en")
    assert "超时" in diagnose_transport(WeChatTransportError("timeout")).message("zh")


# -- redaction -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,secret", [
    ("GET /cgi-bin/message/send?access_token=ACCESS123&x=1", "ACCESS123"),
    ("/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=APPSECRET9", "APPSECRET9"),
    ("/cgi-bin/gettoken?corpid=ww1&corpsecret=CORP_SECRET-x", "CORP_SECRET-x"),
    ('{"grant_type":"client_credential","appid":"wx1","secret":"SEC\\"RET","force_refresh":false}', 'SEC\\"RET'),
    ('{"access_token": "TOKEN_A", "expires_in": 7200}', "TOKEN_A"),
    ("{'secret': 'PYREPR', 'appid': 'wx1'}", "PYREPR"),
    ("url: https://h/x?ACCESS_TOKEN=UPPER1", "UPPER1"),
    ('{"wx_secret": "WXS", "wx_qy_corpsecret": "QYS"}', "WXS"),
    ('{"wx_encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}', "abcdefghijklmnop"),
])
def test_redact(text, secret):
    """Tokens, secrets and keys vanish from any string; the rest stays readable."""
    out = redact(text)
    assert secret not in out
    assert "***" in out


def test_redact_keeps_other_text():
    """Non-secret parameters survive, so logs stay useful."""
    out = redact("/cgi-bin/token?grant_type=client_credential&appid=wx123&secret=S")
    assert "appid=wx123" in out and "grant_type=client_credential" in out and out.endswith("secret=***")
    assert redact(None) == "" and redact(42) == "42"
