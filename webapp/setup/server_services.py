"""The set-up wizard's WeCom server step: the application's 接收消息 server (Token, EncodingAESKey, URL).

WeCom lets an administrator add this server's address as the application's 企业可信IP only once the
application has a verified 接收消息 server URL or a verified trusted domain (which needs an ICP
filing); without a trusted IP every API call fails with 60020. So the step gives the Token and
EncodingAESKey to enter under 应用管理 → 应用 → 接收消息 → 设置API接收, tests the URL through the
administrator's reverse proxy with the very request WeCom makes (before they press Save there), and
then watches for WeCom's own check, as the callback records it. An application that needs none (it
has its trusted IP already) may leave the server out.
"""
from __future__ import annotations

import hashlib

from flask import current_app, request
from flask_babel import gettext as _

from webapp import channel as channel_config
from webapp.models import CHANNEL_QYWX, WizardDraft, utcnow
from webapp.setup.drafts import answers, checks, read_secrets
from webapp.setup.wizard_services import probe_callback_url, public_base, update, verification_after
from webapp.wechat import generate_encoding_aes_key, generate_token

CALLBACK_PATH = "/console/user_center/weixin/qy/callback/"
#: The draft's answer when the administrator leaves the 接收消息 server out.
LEFT_OUT = "none"


def callback_url() -> str:
    """The URL to enter on WeCom's 设置API接收 page (it reaches this service through the admin's proxy)."""
    return public_base() + CALLBACK_PATH


def service_url() -> str:
    """The WeCom callback as the admin's browser reaches this service (the target of the reverse proxy)."""
    return request.host_url.rstrip("/") + CALLBACK_PATH


def server_values(draft: WizardDraft) -> dict:
    """What the page offers: the draft's Token (or a fresh one), and its EncodingAESKey in full while it is
    not the saved configuration's (a fresh one when there is none), or masked when it is.

    Fresh values are suggestions only (a GET stores nothing): the Test button posts them.
    """
    values = read_secrets(draft)
    token = values.get("wx_qy_token") or generate_token()
    key = values.get("wx_qy_encoding_aes_key")
    configured = channel_config.load()
    saved = configured.wx_qy_encoding_aes_key if configured is not None and configured.wx_type == CHANNEL_QYWX else None
    if key and key == saved:
        return {"token": token, "key": "", "masked_key": channel_config.masked(key), "have_key": True}
    return {"token": token, "key": key or generate_encoding_aes_key(), "masked_key": "", "have_key": False}


def left_out(draft: WizardDraft) -> bool:
    """Whether the administrator left the 接收消息 server out."""
    return answers(draft).get("qy_server") == LEFT_OUT


def _fingerprint(token: str, key: str, url: str) -> str:
    """What a passed test vouches for, without keeping the secrets in the draft's checks twice."""
    return hashlib.sha256(f"{token}\n{key}\n{url}".encode()).hexdigest()[:32]


def test_server(draft: WizardDraft, public_url: str, token: str, key: str | None) -> dict:
    """Keep the answers in the draft, then send WeCom's URL check to the public URL and to the service
    itself; keep and return the outcome (``passed`` when the public URL answered it)."""
    before = read_secrets(draft)
    changed = before.get("wx_qy_token") != token or bool(key and key != before.get("wx_qy_encoding_aes_key"))
    draft = update(draft, answers_update={"qy_server": "yes", "qy_public_url": public_url},
                   secrets_update={"wx_qy_token": token, "wx_qy_encoding_aes_key": key},
                   undone=("server",) if changed else ())
    key = read_secrets(draft).get("wx_qy_encoding_aes_key", "")
    corpid = answers(draft).get("wx_qy_corpid", "")
    targets = [("public", public_url)]
    own = service_url()
    if own.rstrip("/") != public_url.rstrip("/"):
        targets.append(("service", own))
    ca_bundle = current_app.config.get("CALLBACK_TEST_CA_BUNDLE") or None
    results = []
    for name, url in targets:
        outcome = probe_callback_url(url, token, ca_bundle=ca_bundle, wecom=(key, corpid))
        outcome["target"] = name
        results.append(outcome)
    # Recorded after both requests: WeCom's own check is the first verification after this instant.
    test = {"passed": results[0]["ok"], "results": results, "at": utcnow().isoformat(), "url": public_url,
            "service_url": own, "fingerprint": _fingerprint(token, key, public_url)}
    update(draft, checks_update={"qy_server": test})
    return test


def last_test(draft: WizardDraft) -> dict | None:
    """The outcome of the draft's last test of the URL, or None."""
    return checks(draft).get("qy_server")


def tested(draft: WizardDraft, public_url: str, token: str, key: str | None) -> bool:
    """Whether the last test passed for this URL with this Token and EncodingAESKey (a blank ``key``
    is the draft's), and the draft holds them: what the page shows now is what was tested."""
    test = last_test(draft) or {}
    values = read_secrets(draft)
    held = values.get("wx_qy_token", ""), values.get("wx_qy_encoding_aes_key", "")
    if (token, key or held[1]) != held:
        return False
    return bool(test.get("passed")) and test.get("fingerprint") == _fingerprint(*held, public_url)


def holds_key(draft: WizardDraft) -> bool:
    """Whether the draft holds an EncodingAESKey (the page's field may then be left blank)."""
    return bool(read_secrets(draft).get("wx_qy_encoding_aes_key"))


def leave_out(draft: WizardDraft) -> None:
    """The application gets no 接收消息 server: the configuration is saved without one."""
    update(draft, answers_update={"qy_server": LEFT_OUT})


def keep(draft: WizardDraft, public_url: str) -> None:
    """The tested server is the one to save."""
    update(draft, answers_update={"qy_server": "yes", "qy_public_url": public_url})


def wecom_verification(since: str | None) -> dict:
    """WeCom's own URL check after ``since`` (ISO time): waiting, verified, or failed with what to do."""
    return verification_after(since, CHANNEL_QYWX, {
        "bad_signature": _("WeCom's check reached this service but its signature does not match: the Token on "
                           "WeCom's 设置API接收 page must be exactly the one shown above."),
        "wrong_corpid": _("WeCom's check was encrypted for another CorpID: the keys step must name the CorpID of "
                          "the company whose application you are setting up."),
        "decrypt_failed": _("WeCom's check does not decrypt: the EncodingAESKey on WeCom's 设置API接收 page must be "
                            "exactly the one shown above."),
        "stale_timestamp": _("WeCom's check was refused because this server's clock is wrong: set the time (enable "
                             "NTP), then press Save on WeCom's page again."),
        "missing_parameters": _("WeCom's check arrived without its parameters: your reverse proxy drops the query "
                                "string. Forward the whole URL, query included."),
        "not_configured": _("WeCom's check arrived, but this draft has no Token yet: press \"Test the URL\" first."),
    })
