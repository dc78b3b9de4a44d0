"""Callback signatures: the published vectors and junk that must simply fail."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.wechat.signature import check_msg_signature, check_signature, sign

M1_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHF"
    "VAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVti"
    "cbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe"
    "+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEP"
    "o5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)


def test_p1_plain_signature():
    """P1: token test, timestamp 1410685589, nonce test."""
    expected = "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
    assert sign("test", "1410685589", "test") == expected
    assert check_signature("test", expected, "1410685589", "test")
    # Timestamps arriving as ints sign the same.
    assert check_signature("test", expected, 1410685589, "test")


def test_p2_plain_signature():
    """P2: the plaintext-mode example of the official MP documentation."""
    expected = "899cf89e464efb63f54ddac96b0a0a235f53aa78"
    assert sign("AAAAA", "1714037059", "486452656") == expected
    assert check_signature("AAAAA", expected, "1714037059", "486452656")


def test_m1_plain_and_msg_signature():
    """M1: both the plain signature and the msg_signature of the same compatible-mode query."""
    assert check_signature("spamtest", "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a",
                           "1409735669", "1320562132")
    assert check_msg_signature("spamtest", "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
                               "1409735669", "1320562132", M1_ENCRYPT)
    # The classic bug: checking the plain signature where msg_signature is required.
    assert not check_msg_signature("spamtest", "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a",
                                   "1409735669", "1320562132", M1_ENCRYPT)


def test_sign_sorts_parts():
    """The order of the arguments does not matter, the sorted order does."""
    assert sign("b", "a", "c") == sign("c", "b", "a") == sign("a", "b", "c")


def test_uppercase_hex_accepted():
    """WeChat sends lowercase hex, but uppercase of the right digest is still the right digest."""
    assert check_signature("test", "F21891DE399B4E33A1A93C9A7B8A8FFFB5A443FF", "1410685589", "test")


@pytest.mark.parametrize("signature", [
    None, "", "0" * 40, "f21891de399b4e33a1a93c9a7b8a8fffb5a443f", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff0",
    "f21891de399b4e33a1a93c9a7b8a8fffb5a443fé", "签名", "\ud800", 12345, b"\xff\xfe", ["x"], {"a": 1},
])
def test_junk_signatures_fail_without_raising(signature):
    """Wrong length, non-ASCII, surrogates, wrong types: False, never an exception."""
    assert check_signature("test", signature, "1410685589", "test") is False
    assert check_msg_signature("test", signature, "1410685589", "test", "abc") is False


@pytest.mark.parametrize("token,timestamp,nonce", [
    (None, "1410685589", "test"), ("", "1410685589", "test"), ("test", None, "test"),
    ("test", "1410685589", None), ("test", "\udcff", "test"), ("test", b"\xff", "test"),
])
def test_junk_parts_fail_without_raising(token, timestamp, nonce):
    """Missing query parameters or an unset token never verify and never raise."""
    assert check_signature(token, "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", timestamp, nonce) is False
    assert check_msg_signature(token, "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", timestamp, nonce,
                               "x") is False


def test_empty_token_never_verifies():
    """An unconfigured token must not accept sha1(timestamp+nonce)."""
    assert not check_signature("", sign("", "1", "2"), "1", "2")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), st.text(), st.binary(), st.integers()),
       st.one_of(st.none(), st.text(), st.integers()),
       st.one_of(st.none(), st.text()))
def test_arbitrary_input_returns_bool(signature, timestamp, nonce):
    """Whatever arrives in the query string, the checks answer True or False."""
    assert check_signature("tok", signature, timestamp, nonce) in (True, False)
    assert check_msg_signature("tok", signature, timestamp, nonce, "enc") in (True, False)
