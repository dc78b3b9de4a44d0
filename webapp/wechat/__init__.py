"""The WeChat protocol: signatures, message crypto, callback XML, errcode diagnoses and API clients.

Nothing here knows about Flask or the database, so every part can be tested on its own.
"""
from .crypto import (KEY_CURRENT, KEY_PREVIOUS, MessageCrypto, generate_encoding_aes_key,
                     generate_token, validate_encoding_aes_key, validate_token)
from .errors import (BadPadding, CryptoError, DecryptError, Diagnosis, EncryptError,
                     IllegalBuffer, InvalidAESKey, InvalidBase64, InvalidSignature,
                     ReceiveIdMismatch, WeChatAPIError, WeChatError, WeChatRequestError,
                     WeChatTransportError, XMLMessageError, catalogued_codes, diagnose,
                     diagnose_transport, extract_ip)
from .http import make_session, redact, shared_session
from .mp import MpClient, template_keys
from .signature import check_msg_signature, check_signature, sign
from .work import WorkClient
from .xmlmsg import build_text_reply, build_xml, parse_message

__all__ = [
    "KEY_CURRENT", "KEY_PREVIOUS", "MessageCrypto", "generate_encoding_aes_key", "generate_token",
    "validate_encoding_aes_key", "validate_token",
    "BadPadding", "CryptoError", "DecryptError", "Diagnosis", "EncryptError", "IllegalBuffer",
    "InvalidAESKey", "InvalidBase64", "InvalidSignature", "ReceiveIdMismatch", "WeChatAPIError",
    "WeChatError", "WeChatRequestError", "WeChatTransportError", "XMLMessageError",
    "catalogued_codes", "diagnose", "diagnose_transport", "extract_ip",
    "make_session", "redact", "shared_session",
    "MpClient", "template_keys", "WorkClient",
    "check_msg_signature", "check_signature", "sign",
    "build_text_reply", "build_xml", "parse_message",
]
