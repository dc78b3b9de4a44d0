"""Message crypto: every vector of PROTOCOL.md section 7, tampering, key rotation, round trips."""
import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.wechat.crypto import (KEY_CURRENT, KEY_PREVIOUS, MessageCrypto,
                                  generate_encoding_aes_key, generate_token,
                                  validate_encoding_aes_key, validate_token)
from webapp.wechat.errors import (BadPadding, CryptoError, DecryptError, IllegalBuffer,
                                  InvalidAESKey, InvalidBase64, InvalidSignature,
                                  ReceiveIdMismatch, WeChatError, XMLMessageError)
from webapp.wechat.signature import sign
from webapp.wechat.xmlmsg import parse_message

# -- M1: Official Account compatible mode ---------------------------------------------------------
M1_TOKEN = "spamtest"
M1_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
M1_APPID = "wx2c2769f8efd9abc2"
M1_TIMESTAMP, M1_NONCE = "1409735669", "1320562132"
M1_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
M1_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHF"
    "VAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVti"
    "cbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe"
    "+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEP"
    "o5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)
M1_PLAIN = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    "<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    "<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>"
)
M1_BODY = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]>"
    "</FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]>"
    "</Content><MsgId>6054768590064713728</MsgId><Encrypt><![CDATA[" + M1_ENCRYPT + "]]></Encrypt></xml>"
).encode()

# -- W1: WeCom reference example -------------------------------------------------------------------
W1_TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
W1_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
W1_CORPID = "ww1436e0e65a779aee"
W1_ECHOSTR = "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="
W1_ENCRYPT = (
    "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNsh"
    "w2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh0"
    "10wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSs"
    "PGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+"
)
W1_PLAIN = (
    "<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName>"
    "<CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>你好</Content>"
    "<MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>"
)

# -- W2: WeCom documentation example -------------------------------------------------------------
W2_TOKEN = "QDG6eK"
W2_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
W2_CORPID = "wx5823bf96d3bd56c7"
W2_ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
W2_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W"
    "/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+"
    "HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrX"
    "JB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3f"
    "VKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)
W2_PLAIN = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    "<FromUserName><![CDATA[mycreate]]></FromUserName>\n<CreateTime>1409659813</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n"
    "<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>"
)

# -- W3: encrypted reply with fixed random, timestamp and nonce -----------------------------------
W3_TOKEN = "123456"
W3_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
W3_ID = "wx49f0ab532d5d035a"
W3_REPLY = (
    "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n"
    "<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n"
    "<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>"
)
W3_ENCRYPT = (
    "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgU"
    "RnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIX"
    "rx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOu"
    "iR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
)
W3_SIGNATURE = "407518b7649e86ef23978113f92d27afa9296533"

OTHER_KEY = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg"


def m1_crypto(**kwargs):
    """The M1 account's crypto."""
    return MessageCrypto(M1_TOKEN, M1_KEY, M1_APPID, **kwargs)


def flip(b64: str, index: int, mask: int = 0x01) -> str:
    """Flip bits of one ciphertext byte and re-encode."""
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= mask
    return base64.b64encode(bytes(raw)).decode()


def raw_encrypt(key43: str, plaintext: bytes) -> str:
    """Encrypt already-padded bytes under a key, for crafting malformed payloads."""
    key = base64.b64decode(key43 + "=")
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plaintext) + enc.finalize()).decode()


# -- the published vectors -------------------------------------------------------------------------

def test_m1_decrypt_with_msg_signature():
    """M1: msg_signature verifies and the payload decrypts to the published plaintext."""
    plaintext, key = m1_crypto().decrypt_message(M1_MSG_SIGNATURE, M1_TIMESTAMP, M1_NONCE, M1_ENCRYPT)
    assert plaintext == M1_PLAIN
    assert len(plaintext.encode()) == 280
    assert key == KEY_CURRENT


def test_m1_decrypt_xml_body():
    """M1: the compatible-mode body, from bytes to the inner message's fields."""
    fields, key = m1_crypto().decrypt_xml(M1_BODY, M1_MSG_SIGNATURE, M1_TIMESTAMP, M1_NONCE)
    assert fields["Content"] == "abcdteT"
    assert fields["MsgId"] == "6054768590064713728"
    assert fields["FromUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
    assert key == KEY_CURRENT


def test_m1_plain_signature_is_not_a_msg_signature():
    """M1: the query's plain signature must not pass as msg_signature."""
    with pytest.raises(InvalidSignature):
        m1_crypto().decrypt_message("16120ec1b8dbb870f510d87ce6bc2463eae6ca1a", M1_TIMESTAMP,
                                    M1_NONCE, M1_ENCRYPT)


def test_m2_deterministic_encrypt():
    """M2: the documented deterministic vector (fixed random prefix)."""
    crypto = MessageCrypto(M1_TOKEN, M1_KEY, "wxb11529c136998cb6")
    expected = ("jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==")
    assert crypto.encrypt("我是中文abcd123", random_bytes=b"aaaabbbbccccdddd") == expected
    assert crypto.encrypt("我是中文abcd123".encode(), random_bytes="aaaabbbbccccdddd") == expected
    assert crypto.decrypt(expected) == ("我是中文abcd123", KEY_CURRENT)


def test_w1_url_check_and_post():
    """W1: WeCom URL verification returns the echostr plaintext; the POST decrypts."""
    crypto = MessageCrypto(W1_TOKEN, W1_KEY, W1_CORPID)
    assert crypto.decrypt_echostr("012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "1476416373",
                                  "47744683", W1_ECHOSTR) == "1288432023552776189"
    plaintext, key = crypto.decrypt_message("0c3914025cb4b4d68103f6bfc8db550f79dcf48e", "1476422779",
                                            "1597212914", W1_ENCRYPT)
    assert plaintext == W1_PLAIN
    assert parse_message(plaintext)["Content"] == "你好"
    assert parse_message(plaintext)["AgentID"] == "1000002"


def test_w2_url_check_and_post():
    """W2: the WeCom documentation example."""
    crypto = MessageCrypto(W2_TOKEN, W2_KEY, W2_CORPID)
    assert crypto.decrypt_echostr("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589",
                                  "263014780", W2_ECHOSTR) == "1616140317555161061"
    body = (f"<xml><ToUserName><![CDATA[{W2_CORPID}]]></ToUserName><Encrypt><![CDATA[{W2_ENCRYPT}]]>"
            f"</Encrypt><AgentID><![CDATA[218]]></AgentID></xml>").encode()
    fields, key = crypto.decrypt_xml(body, "477715d11cdb4164915debcba66cb864d751f3e6", "1409659813",
                                     "1372623149")
    assert fields["Content"] == "hello"
    assert fields["MsgId"] == "4561255354251345929"
    assert crypto.decrypt(W2_ENCRYPT)[0] == W2_PLAIN


def test_w2_echostr_wrong_signature():
    """W2: an echostr with a wrong msg_signature is refused before decryption."""
    crypto = MessageCrypto(W2_TOKEN, W2_KEY, W2_CORPID)
    with pytest.raises(InvalidSignature):
        crypto.decrypt_echostr("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd4", "1409659589",
                               "263014780", W2_ECHOSTR)


def test_w3_encrypt_reply():
    """W3: fixed random/timestamp/nonce give the exact Encrypt and MsgSignature."""
    crypto = MessageCrypto(W3_TOKEN, W3_KEY, W3_ID)
    envelope = crypto.encrypt_reply(W3_REPLY, 1411525903, "461056294", random_bytes="1234567890123456")
    fields = parse_message(envelope.encode())
    assert fields == {"Encrypt": W3_ENCRYPT, "MsgSignature": W3_SIGNATURE,
                      "TimeStamp": "1411525903", "Nonce": "461056294"}
    assert envelope.startswith("<xml><Encrypt><![CDATA[")
    # And it is something the other side can open again.
    assert crypto.decrypt_message(W3_SIGNATURE, "1411525903", "461056294", W3_ENCRYPT)[0] == W3_REPLY


# -- tampering -------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", [0, 5, 15, 16, 40, -17, -1])
def test_bit_flips_never_yield_the_message(index):
    """A flipped ciphertext bit never decrypts to the original message.

    CBC without a MAC is malleable: a flip in one block can turn into a chosen flip in the next
    plaintext block and still decrypt. That is why decrypt_message checks msg_signature first.
    """
    crypto = m1_crypto()
    tampered = flip(M1_ENCRYPT, index)
    try:
        plaintext, _ = crypto.decrypt(tampered)
    except (DecryptError, ReceiveIdMismatch):
        pass
    else:
        assert plaintext != M1_PLAIN
    with pytest.raises(InvalidSignature):
        crypto.decrypt_message(M1_MSG_SIGNATURE, M1_TIMESTAMP, M1_NONCE, tampered)


def test_bit_flip_in_last_block_is_bad_padding():
    """The last block carries the padding; corrupting it is caught."""
    with pytest.raises(DecryptError):
        m1_crypto().decrypt(flip(M1_ENCRYPT, -1, 0xFF))


def test_tampered_ciphertext_fails_signature_first():
    """With decrypt_message, tampering is caught by the signature before any decryption."""
    with pytest.raises(InvalidSignature):
        m1_crypto().decrypt_message(M1_MSG_SIGNATURE, M1_TIMESTAMP, M1_NONCE, flip(M1_ENCRYPT, 40))


def test_wrong_receive_id():
    """A message for another AppID is refused with the dedicated error (Tencent -40005)."""
    crypto = MessageCrypto(M1_TOKEN, M1_KEY, "wx0000000000000000")
    with pytest.raises(ReceiveIdMismatch) as info:
        crypto.decrypt(M1_ENCRYPT)
    assert info.value.code == -40005
    assert isinstance(info.value, CryptoError) and isinstance(info.value, WeChatError)


@pytest.mark.parametrize("pad", [
    b"\x00" * 32,                         # pad value 0
    b"\x21" * 32,                         # pad value 33 > block
    b"A" * 29 + b"\x03\x04\x03",          # inconsistent pad bytes
    b"A" * 30 + b"\x01\x02",              # pad 2 but previous byte is 1
])
def test_invalid_padding_is_refused(pad):
    """Padding is validated strictly: value 1..32 and every pad byte equal."""
    body = b"R" * 16 + struct.pack(">I", 3) + b"abc" + M1_APPID.encode()
    body = body + b"x" * (-len(body) % 32)  # align so only our tail decides
    with pytest.raises(BadPadding):
        m1_crypto().decrypt(raw_encrypt(M1_KEY, body + pad))


def test_padding_of_32_is_valid():
    """A message that is already block-aligned carries a full block of 32s."""
    crypto = m1_crypto()
    msg = "x" * (64 - 20 - len(M1_APPID))
    encrypted = crypto.encrypt(msg)
    assert len(base64.b64decode(encrypted)) == 64 + 32
    assert crypto.decrypt(encrypted)[0] == msg


def test_length_field_beyond_data_is_illegal_buffer():
    """A length prefix pointing past the end is refused (Tencent -40008)."""
    body = b"R" * 16 + struct.pack(">I", 10_000) + b"abc" + M1_APPID.encode()
    n = 32 - len(body) % 32
    with pytest.raises(IllegalBuffer) as info:
        m1_crypto().decrypt(raw_encrypt(M1_KEY, body + bytes([n]) * n))
    assert info.value.code == -40008


def test_non_utf8_message_is_illegal_buffer():
    """The message part must be UTF-8 text."""
    body = b"R" * 16 + struct.pack(">I", 2) + b"\xff\xfe" + M1_APPID.encode()
    n = 32 - len(body) % 32
    with pytest.raises(IllegalBuffer):
        m1_crypto().decrypt(raw_encrypt(M1_KEY, body + bytes([n]) * n))


@pytest.mark.parametrize("payload", [
    "", "not base64!!", "abc", M1_ENCRYPT[:-4], M1_ENCRYPT[:50], "A" * 43, "é" * 44,
    base64.b64encode(b"x" * 16).decode(), base64.b64encode(b"x" * 33).decode(), None, 42, b"\xff\xfe",
    M1_ENCRYPT.replace("+", " "), M1_ENCRYPT + "\n\x00",
])
def test_truncated_or_garbage_payloads(payload):
    """Garbage never leaks a ValueError or binascii.Error: only CryptoError subclasses."""
    with pytest.raises(CryptoError) as info:
        m1_crypto().decrypt(payload)
    assert M1_KEY not in str(info.value)
    assert not isinstance(info.value, ValueError)


def test_bad_base64_code():
    """Undecodable Base64 is reported with Tencent's -40010."""
    with pytest.raises(InvalidBase64) as info:
        m1_crypto().decrypt("not base64!!")
    assert info.value.code == -40010 and isinstance(info.value, DecryptError)


def test_wrong_key():
    """Another EncodingAESKey cannot decrypt, and the message says nothing about the key."""
    crypto = MessageCrypto(M1_TOKEN, OTHER_KEY, M1_APPID)
    with pytest.raises(DecryptError) as info:
        crypto.decrypt(M1_ENCRYPT)
    assert OTHER_KEY not in str(info.value) and M1_KEY not in str(info.value)
    assert OTHER_KEY not in repr(crypto) and M1_TOKEN not in repr(crypto)


# -- key rotation --------------------------------------------------------------------------------

def test_rotation_accepts_previous_key_and_reports_it():
    """After the console key changes, messages under the old key still decrypt, labelled 'previous'."""
    crypto = MessageCrypto(M1_TOKEN, OTHER_KEY, M1_APPID, previous_encoding_aes_key=M1_KEY)
    plaintext, key = crypto.decrypt_message(M1_MSG_SIGNATURE, M1_TIMESTAMP, M1_NONCE, M1_ENCRYPT)
    assert plaintext == M1_PLAIN
    assert key == KEY_PREVIOUS


def test_rotation_reply_uses_the_key_that_decrypted():
    """A reply encrypted with key='previous' opens only with the old key."""
    rotating = MessageCrypto(M1_TOKEN, OTHER_KEY, M1_APPID, previous_encoding_aes_key=M1_KEY)
    envelope = rotating.encrypt_reply("<xml><Content>hi</Content></xml>", "123", "456", key=KEY_PREVIOUS)
    fields = parse_message(envelope)
    old_only = m1_crypto()
    text, key = old_only.decrypt_message(fields["MsgSignature"], "123", "456", fields["Encrypt"])
    assert text == "<xml><Content>hi</Content></xml>" and key == KEY_CURRENT
    new_only = MessageCrypto(M1_TOKEN, OTHER_KEY, M1_APPID)
    with pytest.raises(DecryptError):
        new_only.decrypt(fields["Encrypt"])


def test_rotation_current_key_preferred():
    """Messages under the new key report 'current'."""
    crypto = MessageCrypto(M1_TOKEN, M1_KEY, M1_APPID, previous_encoding_aes_key=OTHER_KEY)
    assert crypto.decrypt(M1_ENCRYPT)[1] == KEY_CURRENT


def test_rotation_receive_id_mismatch_wins_over_padding():
    """When one key decrypts but the AppID is wrong, that is what gets reported."""
    crypto = MessageCrypto(M1_TOKEN, OTHER_KEY, "wxsomeoneelse", previous_encoding_aes_key=M1_KEY)
    with pytest.raises(ReceiveIdMismatch):
        crypto.decrypt(M1_ENCRYPT)


def test_rotation_neither_key():
    """A third key fails with both configured."""
    third = "Z" * 43
    crypto = MessageCrypto(M1_TOKEN, OTHER_KEY, M1_APPID, previous_encoding_aes_key=third)
    with pytest.raises(DecryptError):
        crypto.decrypt(M1_ENCRYPT)


def test_reply_with_unconfigured_previous_key():
    """Asking for the previous key when none is configured is a CryptoError, not a KeyError."""
    with pytest.raises(CryptoError):
        m1_crypto().encrypt_reply("<xml/>", "1", "2", key=KEY_PREVIOUS)


# -- keys and tokens ----------------------------------------------------------------------------

@pytest.mark.parametrize("key,ok", [
    (M1_KEY, True), (W1_KEY, True), (M1_KEY[:-1], False), (M1_KEY + "A", False),
    (M1_KEY[:-1] + "+", False), (M1_KEY[:-1] + "=", False), ("é" * 43, False), (None, False),
    ("", False), (123, False),
])
def test_validate_encoding_aes_key(key, ok):
    """43 letters/digits only."""
    assert validate_encoding_aes_key(key) is ok


def test_invalid_key_raises_crypto_error_without_echoing_it():
    """A bad key at construction is InvalidAESKey and the message does not contain it."""
    bad = "secret-key-material-" + "x" * 20
    with pytest.raises(InvalidAESKey) as info:
        MessageCrypto("tok", bad, "wx1")
    assert bad not in str(info.value)
    with pytest.raises(InvalidAESKey):
        MessageCrypto("tok", M1_KEY, "wx1", previous_encoding_aes_key="short")


def test_generated_keys_and_tokens():
    """Generated keys validate and differ; tokens are 3..32 letters/digits."""
    keys = {generate_encoding_aes_key() for _ in range(20)}
    assert len(keys) == 20 and all(validate_encoding_aes_key(k) for k in keys)
    for length in (3, 16, 32):
        token = generate_token(length)
        assert len(token) == length and token.isalnum() and token.isascii() and validate_token(token)
    assert len(generate_token()) == 32
    for bad in (2, 33, 0):
        with pytest.raises(ValueError):
            generate_token(bad)
    assert not validate_token("ab") and not validate_token("a" * 33) and not validate_token("ab_c")


# -- properties ---------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=600), receive_id=st.text(min_size=0, max_size=40))
def test_round_trip_arbitrary_text(text, receive_id):
    """Anything encrypted decrypts to itself, for any receiveid (WeCom bots use '')."""
    crypto = MessageCrypto("tok", W3_KEY, receive_id)
    encrypted = crypto.encrypt(text)
    assert len(base64.b64decode(encrypted)) % 32 == 0
    assert crypto.decrypt(encrypted) == (text, KEY_CURRENT)
    envelope = crypto.encrypt_reply(text, "1700000000", "nonce]]>x")
    fields = parse_message(envelope)
    assert crypto.decrypt_message(fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"],
                                  fields["Encrypt"])[0] == text


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_decrypt_arbitrary_input_raises_only_crypto_errors(payload):
    """decrypt() on any input either works or raises a CryptoError."""
    try:
        m1_crypto().decrypt(payload)
    except CryptoError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=160).filter(lambda b: len(b) % 16 == 0))
def test_decrypt_random_ciphertext(raw):
    """Random well-sized ciphertexts fail cleanly (or, astronomically rarely, decrypt)."""
    try:
        m1_crypto().decrypt(base64.b64encode(raw).decode())
    except CryptoError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_decrypt_xml_arbitrary_body(body):
    """Any body gives XMLMessageError or a CryptoError, nothing else."""
    try:
        m1_crypto().decrypt_xml(body, M1_MSG_SIGNATURE, M1_TIMESTAMP, M1_NONCE)
    except (XMLMessageError, CryptoError):
        pass


def test_signature_helper_matches_sign():
    """msg_signature() is sign() over token, timestamp, nonce and payload."""
    assert m1_crypto().msg_signature(M1_TIMESTAMP, M1_NONCE, M1_ENCRYPT) == \
        sign(M1_TOKEN, M1_TIMESTAMP, M1_NONCE, M1_ENCRYPT) == M1_MSG_SIGNATURE
