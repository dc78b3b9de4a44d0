"""The set-up wizard's work: drafts, the checks of each step, and writing the configuration.

An administrator's answers are kept in a :class:`~webapp.models.WizardDraft` (one per administrator,
read and written through :mod:`webapp.setup.drafts`) until the "Save" step writes them as the channel
configuration, its audit entry and the draft's new state in one transaction. Secret answers are
stored encrypted and never handed to a page in full. Showing a page writes nothing and calls nobody:
the checks run when the administrator posts (or a page's script posts for them), and a page shows
the last outcome. Each step's check is here, so that routes only parse forms and render:

- prerequisites: can this server reach the WeChat API host (DNS, TLS, HTTP)?
- keys: a live token fetch with exactly the entered keys (and, for the Official Account, its templates);
- template: the chosen template and mapping, previewed under WeChat's rules since 2023-05-04;
- callback: a correctly signed URL check sent to the public URL and to the service itself, with a
  diagnosis of what is wrong; then WeChat's own verification as recorded by the callback;
- domain (WeCom): the application's trusted domain against the address this service is reached at.
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app, request
from flask_babel import get_locale
from flask_babel import gettext as _
from sqlalchemy import select

from webapp import channel as channel_config
from webapp.channel import DEFAULT_TEMPLATE_FIELDS, SECRET_KEYS, CheckFailed, ConfigInvalid
from webapp.extensions import db
from webapp.models import CHANNEL_MP, CHANNEL_QYWX, AuditEntry, WizardDraft, utcnow
from webapp.setup import drafts
from webapp.setup.drafts import (DONE, DRAFT_SECRETS, MP_ANSWERS, OPEN, QY_ANSWERS, SAVED, answers, checks,
                                 current_draft, read_secrets)
from webapp.clients import http_session, mp_client
from webapp.tokens import TokenSource, call_with_token
from webapp.wechat import MessageCrypto, WeChatError, diagnose, sign, template_keys
from webapp.wechat.errors import classify_transport

CALLBACK_PATH = "/console/user_center/weixin/mp/callback/"

# --- the steps ------------------------------------------------------------------------------------

#: Every step, in order, per channel. "save" and "test" share position 6 of the progress indicator.
FLOWS = {
    CHANNEL_MP: ("channel", "prerequisites", "keys", "template", "callback", "save", "test", "done"),
    CHANNEL_QYWX: ("channel", "prerequisites", "keys", "server", "domain", "save", "test", "done"),
}
#: Position of each step in the 7-step progress indicator.
POSITION = {"channel": 1, "prerequisites": 2, "keys": 3, "template": 4, "server": 4, "callback": 5, "domain": 5,
            "save": 6, "test": 6, "done": 7}
#: Steps answered while the draft is open (the rest come after the configuration is written).
DRAFT_STEPS = ("channel", "prerequisites", "keys", "template", "callback", "server", "domain")


def flow(wx_type: str | None) -> tuple[str, ...]:
    """The steps for the channel (the Official Account's until a channel is chosen)."""
    return FLOWS.get(wx_type or CHANNEL_MP, FLOWS[CHANNEL_MP])


def lang() -> str:
    """The page language ('zh' or 'en'), for the sentences that come in both languages."""
    try:
        return get_locale().language
    except Exception:  # outside a request
        return "en"


# --- drafts ---------------------------------------------------------------------------------------
# Reading a draft never writes: a page shows the stored draft, or a new one that is stored only when
# the administrator answers (a POST).

def draft_for_page(user_id: int, step: str | None = None) -> tuple[WizardDraft, str | None]:
    """The draft a page of the wizard shows, without writing anything, and why it is a new one.

    The stored draft; a new one (pre-filled from the configuration) when there is none, when the
    stored one is finished and ``step`` is one of the answering steps, or when its configuration was
    removed meanwhile (another administrator, the CLI). The reason is None, or "unsaved" in that last case.
    """
    stored_draft = current_draft(user_id)
    if stored_draft is not None and stored_draft.state in (SAVED, DONE) and channel_config.load() is None:
        return drafts.new_draft(user_id), "unsaved"
    if stored_draft is None or stored_draft.state == DONE and (step is None or step in DRAFT_STEPS):
        return drafts.new_draft(user_id, channel_config.load()), None
    return stored_draft, None


def start_draft(user_id: int) -> WizardDraft:
    """Store a fresh draft for the administrator, pre-filled from the configuration when one exists.

    Replaces any draft the administrator had (one per administrator).
    """
    draft = drafts.new_draft(user_id, channel_config.load())
    with db.transaction() as session:
        drafts.replace(session, draft)
    return draft


def update(draft: WizardDraft, **changes) -> WizardDraft:
    """Change the draft in one transaction (see :func:`webapp.setup.drafts.record` for the changes).

    A draft not stored yet (see :func:`draft_for_page`) is stored first, replacing the administrator's old one.
    """
    with db.transaction() as session:
        if not drafts.is_stored(draft):
            drafts.replace(session, draft)
        return drafts.record(session, draft.id, **changes)


def masked_secrets(draft: WizardDraft) -> dict[str, str]:
    """The secret answers as pages may show them (last four characters); the Token in full."""
    values = read_secrets(draft)
    shown = {key: channel_config.masked(values.get(key)) for key in DRAFT_SECRETS}
    shown["wx_token"] = values.get("wx_token", "")
    return shown


def drop_refused_secret(draft: WizardDraft, key: str, before: str | None) -> None:
    """WeChat refused the secret ``key`` the draft's keys were checked with: keep the value the draft
    held before this answer when it was another one, else none. A refused secret is never kept."""
    refused = read_secrets(draft).get(key)
    if before and before != refused:
        update(draft, secrets_update={key: before})
    else:
        update(draft, secrets_forget=(key,))


def later_steps(wx_type: str | None, step: str) -> tuple[str, ...]:
    """The draft steps after ``step`` (their checks no longer hold when ``step``'s answers change)."""
    steps = flow(wx_type)
    return tuple(s for s in steps[steps.index(step) + 1:] if s in DRAFT_STEPS) if step in steps else ()


def first_open_step(draft: WizardDraft) -> str:
    """The first step of the draft that is not done yet."""
    if draft.state in (SAVED, DONE):
        return "test" if draft.state == SAVED else "done"
    done = checks(draft)["done"]
    for step in flow(draft.wx_type):
        if step not in done:
            return step
    return "save"


def reachable(draft: WizardDraft, step: str) -> bool:
    """Whether ``step`` may be shown: every step before it is done (and the configuration saved for test/done)."""
    steps = flow(draft.wx_type)
    if step not in steps:
        return False
    if step in ("test", "done"):
        return draft.state in (SAVED, DONE)
    if draft.state != OPEN:
        return False
    done = checks(draft)["done"]
    return all(s in done for s in steps[:steps.index(step)])


def config_of(draft: WizardDraft) -> dict[str, Any]:
    """The draft as a configuration in the contract's keys (secrets included), for normalize/save."""
    values = read_secrets(draft)
    given = answers(draft)
    data: dict[str, Any] = {"wx_type": draft.wx_type}
    if draft.wx_type == CHANNEL_MP:
        for key in MP_ANSWERS:
            if given.get(key) not in (None, ""):
                data[key] = given[key]
        for key in ("wx_secret", "wx_token", "wx_encoding_aes_key"):
            if values.get(key):
                data[key] = values[key]
    else:
        for key in QY_ANSWERS:
            if given.get(key) not in (None, ""):
                data[key] = given[key]
        if values.get("wx_qy_corpsecret"):
            data["wx_qy_corpsecret"] = values["wx_qy_corpsecret"]
        # The application's 接收消息 server, unless the administrator left it out (the server step).
        if given.get("qy_server") != "none":
            for key in ("wx_qy_token", "wx_qy_encoding_aes_key"):
                if values.get(key):
                    data[key] = values[key]
    return data


# --- step 2: can this server reach the WeChat API? -------------------------------------------------

PROBE_PATHS = {CHANNEL_MP: "/cgi-bin/token", CHANNEL_QYWX: "/cgi-bin/gettoken"}
API_HOSTS = {CHANNEL_MP: "https://api.weixin.qq.com", CHANNEL_QYWX: "https://qyapi.weixin.qq.com"}
#: Sites the admin's (and users') browsers must load, per channel (send_weixin guide, "Prerequisites").
BROWSER_SITES = {
    CHANNEL_MP: ("https://mp.weixin.qq.com",),
    CHANNEL_QYWX: ("https://open.work.weixin.qq.com", "https://rescdn.qqmail.com", "https://js.aq.qq.com"),
}


def api_base(wx_type: str) -> str:
    """The configured WeChat API base URL of the channel."""
    key = "WEIXIN_MP_API_BASE" if wx_type == CHANNEL_MP else "WEIXIN_QY_API_BASE"
    return current_app.config[key]


def using_simulator(wx_type: str | None = None) -> bool:
    """Whether the channel's API base is the built-in simulator (the WeChat-side advice then differs)."""
    bases = [api_base(wx_type)] if wx_type else [api_base(CHANNEL_MP), api_base(CHANNEL_QYWX)]
    return any("/simulator/" in base + "/" for base in bases)


def simulator_url(wx_type: str | None = None) -> str | None:
    """The simulator's page (its accounts' keys, its 服务器配置 form), when the API base is the simulator."""
    base = api_base(wx_type or CHANNEL_MP)
    if "/simulator/" not in base + "/":
        return None
    return base.split("/simulator/")[0] + "/simulator/"


@dataclass
class Probe:
    """One step of the reachability check: ``state`` ok, failed or skipped, and what was found."""

    name: str
    state: str
    detail: str = ""
    kind: str | None = None   # the failure kind (dns, refused, timeout, tls, http, bad_response, ip)
    ms: int = 0
    extra: dict = field(default_factory=dict)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def check_api_host(wx_type: str, timeout: float = 5.0) -> list[Probe]:
    """Check that this server reaches the channel's API host: DNS, then TLS (https), then HTTP.

    When an HTTP proxy from the environment is used for the API, the proxy resolves and connects,
    so only the HTTP step is made (through it), as the real calls are.
    """
    base = api_base(wx_type)
    parts = urlsplit(base)
    host, scheme = parts.hostname or "", parts.scheme
    port = parts.port or (443 if scheme == "https" else 80)
    probes: list[Probe] = []
    proxies = requests.utils.get_environ_proxies(base)
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy:
        probes.append(Probe("dns", "skipped", extra={"proxy": proxy}))
        probes.append(Probe("tls", "skipped", extra={"proxy": proxy}))
    else:
        started = time.monotonic()
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            probes.append(Probe("dns", "failed", detail=str(exc)[:200], kind="dns", ms=_ms(started)))
            probes.append(Probe("tls", "skipped"))
            probes.append(Probe("http", "skipped"))
            return probes
        addresses = sorted({info[4][0] for info in infos})
        probes.append(Probe("dns", "ok", detail=", ".join(addresses[:4]), ms=_ms(started)))
        if scheme == "https":
            started = time.monotonic()
            try:
                with socket.create_connection((host, port), timeout=timeout) as raw:
                    context = ssl.create_default_context()
                    with context.wrap_socket(raw, server_hostname=host) as tls:
                        cert = tls.getpeercert() or {}
                        version = tls.version() or "TLS"
                expires = cert.get("notAfter", "")
                probes.append(Probe("tls", "ok", detail=f"{version}" + (f", {expires}" if expires else ""), ms=_ms(started)))
            except ssl.SSLError as exc:
                probes.append(Probe("tls", "failed", detail=str(exc)[:200], kind="tls", ms=_ms(started)))
                probes.append(Probe("http", "skipped"))
                return probes
            except OSError as exc:
                kind = classify_transport(exc)
                probes.append(Probe("tls", "failed", detail=str(exc)[:200], kind=kind, ms=_ms(started)))
                probes.append(Probe("http", "skipped"))
                return probes
        else:
            probes.append(Probe("tls", "skipped", extra={"plain_http": True}))
    started = time.monotonic()
    try:
        answer = http_session().get(base + PROBE_PATHS[wx_type], timeout=(timeout, timeout), allow_redirects=False)
    except requests.RequestException as exc:
        probes.append(Probe("http", "failed", detail=str(exc)[:200], kind=classify_transport(exc), ms=_ms(started)))
        return probes
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "errcode" not in body:
        probes.append(Probe("http", "failed", detail=f"HTTP {answer.status_code}", kind="bad_response",
                            ms=_ms(started), extra={"status": answer.status_code}))
        return probes
    errcode = body.get("errcode")
    diagnosis = diagnose(errcode, str(body.get("errmsg", "")), wx_type)
    if diagnosis.kind == "ip":
        # The errcode and WeChat's errmsg are kept (not a sentence), so the page says it in its language.
        probes.append(Probe("http", "failed", kind="ip", ms=_ms(started),
                            extra={"errcode": errcode, "errmsg": diagnosis.errmsg, "ip": diagnosis.ip}))
        return probes
    probes.append(Probe("http", "ok", detail=f"HTTP {answer.status_code}, errcode {errcode}", ms=_ms(started),
                        extra={"status": answer.status_code, "errcode": errcode}))
    return probes


def probes_passed(probes: list[Probe]) -> bool:
    """Whether the API answered (the HTTP step passed)."""
    return any(p.name == "http" and p.state == "ok" for p in probes)


def check_prerequisites(draft: WizardDraft) -> list[Probe]:
    """Probe the API host of the draft's channel now and keep the outcome in the draft (for its page)."""
    probes = check_api_host(draft.wx_type)
    update(draft, checks_update={"prerequisites": {
        "passed": probes_passed(probes), "api_base": api_base(draft.wx_type), "at": utcnow().isoformat(),
        "probes": [asdict(p) for p in probes]}})
    return probes


def stored_probes(draft: WizardDraft) -> list[Probe] | None:
    """The outcome of the last reachability check of the draft's API host (None: not checked yet).

    A check of another API host (the channel or FLASK_WEIXIN_*_API_BASE changed since) does not count.
    """
    found = checks(draft).get("prerequisites") or {}
    if found.get("api_base") != api_base(draft.wx_type) or not isinstance(found.get("probes"), list):
        return None
    return [Probe(**p) for p in found["probes"]]


def probe_advice(probe: Probe, wx_type: str) -> str:
    """What a refused IP address means and where to whitelist it, in the page language."""
    extra = probe.extra or {}
    return diagnose(extra.get("errcode"), extra.get("errmsg") or "", wx_type).message(lang())


# --- step 3: the keys -----------------------------------------------------------------------------

def describe_template(template: dict) -> dict:
    """The parts of a WeChat template the wizard uses: id, title, content, keys and each key's label."""
    content = str(template.get("content") or "")
    keys = template_keys(content)
    labels = {}
    for line in content.splitlines():
        match = re.search(r"\{\s*\{\s*([A-Za-z0-9_]+)\.DATA\s*\}\s*\}", line)
        if match and match.group(1) not in labels:
            labels[match.group(1)] = line[:match.start()].strip().rstrip(":：").strip()
    return {"template_id": str(template.get("template_id") or ""), "title": str(template.get("title") or ""),
            "content": content, "example": str(template.get("example") or ""), "keys": keys, "labels": labels}


def check_mp_keys(appid: str, secret: str) -> list[dict]:
    """The account's templates, read with a token of exactly these keys; raise CheckFailed.

    The first half of ``channel.check_live`` (the same function), before a template is chosen.
    """
    return [describe_template(t) for t in channel_config.account_templates(appid, secret)]


def fetch_templates(draft: WizardDraft) -> list[dict]:
    """The Official Account's templates, fetched again (token through the broker); raise CheckFailed."""
    values, given = read_secrets(draft), answers(draft)
    source = TokenSource.official_account(given.get("wx_app_id", ""), values.get("wx_secret", ""))
    try:
        templates = call_with_token(source, lambda token: mp_client().get_all_private_template(token))
    except WeChatError as exc:
        raise channel_config.check_failure(exc, channel_config.MP_KEY_BY_KIND) from None
    return [describe_template(t) for t in templates]


def check_qy_keys(corpid: str, corpsecret: str, agentid: str, msgtype: str) -> dict:
    """``channel.check_live`` for the WeCom keys: a token, and the application visible to someone."""
    clean = channel_config.normalize({"wx_type": CHANNEL_QYWX, "wx_qy_corpid": corpid, "wx_qy_corpsecret": corpsecret,
                                      "wx_qy_agentid": agentid, "wx_qy_msgtype": msgtype})
    return channel_config.check_live(clean)


def failure_view(exc: CheckFailed | ConfigInvalid) -> dict:
    """A failed check as the page shows it: the sentence in the page language, the key, the refused IP."""
    if isinstance(exc, ConfigInvalid):
        # The forms check the same rules first, so this is rare: the sentences of channel.normalize.
        key = next(iter(exc.errors), None)
        return {"message": "; ".join(f"{k}: {v}" for k, v in exc.errors.items()), "key": key, "errcode": None,
                "ip": None, "ip_refused": False}
    return {"message": exc.message(lang()), "key": exc.key, "errcode": exc.errcode,
            "ip": exc.ip, "ip_refused": exc.errcode in (40164, 60020) or bool(exc.ip)}


def attempt(check, *args) -> tuple[Any, dict | None]:
    """Run one of the checks: ``(its result, None)``, or ``(None, the failure as the page shows it)``."""
    try:
        return check(*args), None
    except (CheckFailed, ConfigInvalid) as exc:
        return None, failure_view(exc)


# --- step 4: the template -------------------------------------------------------------------------

_FREE_TEXT = ("thing", "keyword")
_TIME = ("time", "date")


def suggest_mapping(keys: list[str]) -> dict[str, str]:
    """A mapping that shows as much as WeChat allows: BlueKing's one on a legacy template; else, with
    two free-text keys, the heading on the first and the message on the second (a notification reads
    "Disk alert", then what happened), with one the message on it; the date on a time key, or on a
    free-text key left over."""
    if {"first", "keyword1", "keyword2", "remark"} <= set(keys):
        return dict(DEFAULT_TEMPLATE_FIELDS)
    free = [k for k in keys if k.rstrip("0123456789") in _FREE_TEXT]
    times = [k for k in keys if k.rstrip("0123456789") in _TIME]
    mapping: dict[str, str] = {}
    if len(free) > 1:
        mapping["heading"], mapping["message"] = free[0], free[1]
    elif free:
        mapping["message"] = free[0]
    elif keys:
        mapping["message"] = next((k for k in keys if k not in ("first", "remark")), keys[0])
    spare = [k for k in free if k not in mapping.values()]
    if times:
        mapping["date"] = times[0]
    elif spare:
        mapping["date"] = spare[0]
    return mapping


SAMPLE = {
    "heading": "Disk usage above 90% on web-01",
    "message": "The disk /data on web-01 is 93% full: clean up old logs or grow the volume.",
    "remark": "Sent by bk_monitor",
}


def preview(template: dict | None, fields: dict[str, str], sample: dict[str, str] | None = None) -> dict:
    """What a follower will see with this template and mapping, and the warnings about lost text."""
    from webapp.delivery.content import Notification, lost_text_warnings, template_preview

    sample = {**SAMPLE, **{k: v for k, v in (sample or {}).items() if v}}
    keys = template["keys"] if template else None
    note = Notification(heading=sample["heading"][:500], message=sample["message"][:2000], date=sample.get("date") or None,
                        remark=sample["remark"][:500])
    rows = template_preview(note, fields, keys)
    labels = template["labels"] if template else {}
    for row in rows:
        row["label"] = labels.get(row["key"], row["key"])
    warnings = lost_text_warnings(fields, keys)
    return {"rows": rows, "warnings": warnings, "lost": any(r["lost"] for r in rows) or bool(warnings)}


# --- step 5: the callback (Official Account) ------------------------------------------------------

def public_base() -> str:
    """FLASK_PUBLIC_URL, or the scheme and host the admin's browser reached this service at."""
    return current_app.config.get("PUBLIC_URL") or request.host_url.rstrip("/")


def public_url_set() -> bool:
    """Whether FLASK_PUBLIC_URL is set (messages then carry a link to their detail page)."""
    return bool(current_app.config.get("PUBLIC_URL"))


def callback_url() -> str:
    """The URL to enter on WeChat's 服务器配置 page (it reaches this service through the admin's proxy)."""
    return public_base() + CALLBACK_PATH


def service_url() -> str:
    """This service's callback as the admin's browser reaches it (the target of the reverse proxy)."""
    return request.host_url.rstrip("/") + CALLBACK_PATH


def unsaved_aes_key(draft: WizardDraft) -> str | None:
    """The draft's EncodingAESKey in full while it is not the saved configuration's (the administrator
    still has to enter it on WeChat's page); None when there is none or it is the saved one."""
    key = read_secrets(draft).get("wx_encoding_aes_key") or ""
    configured = channel_config.load()
    saved = getattr(configured, "wx_encoding_aes_key", None) if configured is not None else None
    return key if key and key != saved else None


def simulator_server_form() -> str | None:
    """Where the callback step's "fill in the simulator's form" button posts, or None.

    Only for the built-in simulator served by this service itself: the page may post to its own
    origin only (Content-Security-Policy ``form-action 'self'``).
    """
    base = simulator_url(CHANNEL_MP)
    if base is None:
        return None
    parts, here = urlsplit(base), urlsplit(request.host_url)
    if (parts.scheme, parts.netloc) != (here.scheme, here.netloc):
        return None
    return parts.path + "panel/server/fill"


def _digits(n: int) -> str:
    return str(10 ** (n - 1) + secrets.randbelow(9 * 10 ** (n - 1)))


def probe_callback_url(url: str, token: str, timeout: float = 5.0, ca_bundle: str | None = None,
                       wecom: tuple[str, str] | None = None) -> dict:
    """Send WeChat's signed URL check to ``url`` and say what came back.

    The request is the one WeChat makes when the admin presses Submit on 服务器配置: GET with
    ``signature = sha1(sorted(token, timestamp, nonce))``, ``timestamp``, ``nonce``, ``echostr``,
    no redirects followed. ``kind`` is ok, url, dns, refused, timeout, tls, tls_plain (https to a
    port that speaks plain HTTP), ca_bundle (``ca_bundle`` cannot be read), connection, redirect,
    not_found (404), proxy (502/503/504), signature (403 from a service with another Token), http
    (another status) or wrong_echo.

    With ``wecom`` (EncodingAESKey, CorpID) the request is WeCom's URL check of an application's
    接收消息 server instead, judged the same way.

    Certificates are checked against the public CAs bundled with the service, as WeChat checks them.
    When that fails and ``ca_bundle`` (a PEM file: the company CA) is given, the request is made again
    trusting it; ``private_ca`` is then true in the result, since WeChat would still refuse it.
    """
    result: dict[str, Any] = {"url": url, "ok": False, "kind": None, "status": None, "answer": "", "location": ""}
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        result["kind"] = "url"
        return result
    result["port"] = parts.port
    timestamp, nonce, echostr = str(int(time.time())), _digits(10), _digits(19)
    params = {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "echostr": echostr}
    if wecom is not None:
        # WeCom's check (``wecom`` is the EncodingAESKey and the CorpID): msg_signature over the
        # encrypted echostr, whose plaintext alone must come back.
        encrypted = MessageCrypto(token, wecom[0], wecom[1]).encrypt(echostr)
        params = {"msg_signature": sign(token, timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce,
                  "echostr": encrypted}
    started = time.monotonic()
    with requests.Session() as session:
        # WeChat calls from the Internet, not through this server's outgoing proxy.
        session.trust_env = False
        session.headers["User-Agent"] = "Mozilla/4.0"
        try:
            try:
                answer = session.get(url, params=params, timeout=(timeout, timeout), allow_redirects=False)
            except requests.exceptions.SSLError as exc:
                if not ca_bundle or "certificate verify failed" not in str(exc).lower():
                    raise
                if not os.path.isfile(ca_bundle) or not os.access(ca_bundle, os.R_OK):
                    result.update(kind="ca_bundle", ca_bundle=ca_bundle)
                    return result
                # Not trusted by the public CAs: perhaps by the company CA the operator configured.
                answer = session.get(url, params=params, timeout=(timeout, timeout), allow_redirects=False,
                                     verify=ca_bundle)
                result["private_ca"] = True
        except requests.exceptions.SSLError as exc:
            text = str(exc).lower()
            result["kind"] = "tls_plain" if "wrong version number" in text or "record layer failure" in text \
                or "packet length too long" in text else "tls"
            result["detail"] = str(exc)[:300]
            # Signed by a CA the public bundle does not hold (a company CA, or none): worth a hint.
            result["unknown_issuer"] = any(mark in text for mark in ("local issuer", "self-signed", "self signed"))
            return result
        except requests.RequestException as exc:
            kind = classify_transport(exc)
            result["kind"] = kind if kind in ("dns", "refused", "timeout", "tls", "url") else "connection"
            result["detail"] = str(exc)[:300]
            return result
    result["ms"] = _ms(started)
    result["status"] = answer.status_code
    body = answer.content[:2000]
    result["answer"] = body[:200].decode("utf-8", errors="replace")
    if answer.status_code in (301, 302, 303, 307, 308):
        result["kind"] = "redirect"
        result["location"] = answer.headers.get("Location", "")
    elif answer.status_code == 404:
        result["kind"] = "not_found"
    elif answer.status_code in (502, 503, 504):
        result["kind"] = "proxy"
    elif answer.status_code == 403 and b"signature" in body.lower():
        result["kind"] = "signature"
    elif answer.status_code != 200:
        result["kind"] = "http"
    elif body != echostr.encode():
        # WeChat compares byte for byte: quotes, a BOM or a newline around the echo fail too.
        result["kind"] = "wrong_echo"
    else:
        result["ok"], result["kind"] = True, "ok"
    return result


def run_callback_test(public: str, token: str) -> dict:
    """Test the public URL (through the admin's reverse proxy) and the service itself; return both."""
    targets = [("public", public)]
    own = service_url()
    if own.rstrip("/") != public.rstrip("/"):
        targets.append(("service", own))
    results = []
    ca_bundle = current_app.config.get("CALLBACK_TEST_CA_BUNDLE") or None
    for name, url in targets:
        outcome = probe_callback_url(url, token, ca_bundle=ca_bundle)
        outcome["target"] = name
        results.append(outcome)
    public_ok = results[0]["ok"]
    # Recorded after both requests: WeChat's own check is the first verification after this instant.
    return {"passed": public_ok, "results": results, "at": utcnow().isoformat(),
            "url": public, "service_url": own}


def callback_sentence(result: dict, service: str) -> str:
    """What a callback test outcome means and what to do, in the page language."""
    url = result.get("url", "")
    parts = urlsplit(url)
    host = parts.hostname or url
    kind = result.get("kind")
    status = result.get("status")
    if kind == "ok":
        if result.get("private_ca"):
            return _("%(url)s answered WeChat's check correctly, but its certificate is trusted here only "
                     "through CALLBACK_TEST_CA_BUNDLE (your company CA). WeChat trusts only publicly trusted "
                     "certificates: give this address a certificate from a public CA, or let WeChat call it "
                     "over plain http:// on port 80.", url=url)
        return _("%(url)s answered WeChat's check correctly.", url=url)
    if kind == "ca_bundle":
        return _("The CA bundle %(path)s named by CALLBACK_TEST_CA_BUNDLE cannot be read: correct the setting "
                 "or let the service's user read the file.", path=result.get("ca_bundle") or "?")
    if kind == "url":
        return _("Enter the full address, starting with http:// or https://, for example https://paas.example.com%(path)s.",
                 path=CALLBACK_PATH)
    if kind == "dns":
        return _("The name %(host)s cannot be resolved. WeChat looks it up on the Internet: create a DNS record "
                 "(A or CNAME) for it that points at your reverse proxy, or correct the spelling.", host=host)
    if kind == "refused":
        hint = ""
        if parts.port is None and urlsplit(service).port:
            hint = " " + _("This service itself listens on port %(port)s: if your proxy does too, the port is "
                           "missing from the address (write %(host)s:%(port)s).",
                           port=urlsplit(service).port, host=host)
        return _("Nothing accepts connections at %(host)s on port %(port)s: start the reverse proxy there or "
                 "correct the address (http:// is port 80, https:// port 443).",
                 host=host, port=parts.port or (443 if parts.scheme == "https" else 80)) + hint
    if kind == "timeout":
        return _("%(host)s did not answer within 5 seconds: a firewall may drop the connection. If this server "
                 "cannot reach its own public address (some networks block that), press Submit on WeChat anyway "
                 "and watch below whether WeChat's check arrives.", host=host)
    if kind == "tls_plain":
        return _("The server at %(host)s speaks plain HTTP on that port, not HTTPS: use http:// in the address, "
                 "or enable TLS in your reverse proxy.", host=host)
    if kind == "tls":
        sentence = _("The HTTPS connection to %(host)s failed (certificate or TLS settings). WeChat needs a valid "
                     "certificate for this name: renew or fix it in your reverse proxy, or use http://.", host=host)
        if result.get("unknown_issuer"):
            sentence += " " + _("If the certificate comes from your company CA, set CALLBACK_TEST_CA_BUNDLE to the "
                                "CA's PEM file so that this test can check the service behind it; WeChat itself "
                                "still needs a publicly trusted certificate, or plain http:// on port 80.")
        return sentence
    if kind == "connection":
        return _("The connection to %(host)s broke off without an answer: check the reverse proxy's logs.", host=host)
    if kind == "redirect":
        return _("%(url)s answered with a redirect (HTTP %(status)s) to %(location)s. WeChat does not follow "
                 "redirects: enter the final address instead (mind the trailing slash and http/https).",
                 url=url, status=status, location=result.get("location") or "?")
    if kind == "not_found":
        return _("A web server answered at %(host)s but not this service (HTTP 404): the path is wrong. Your "
                 "reverse proxy must forward %(path)s to %(service)s.", host=host, path=parts.path or "/",
                 service=service)
    if kind == "proxy":
        return _("The reverse proxy at %(host)s answered HTTP %(status)s: it cannot reach this service. Check "
                 "its upstream address: it must be %(service)s.", host=host, status=status, service=service)
    if kind == "signature":
        return _("The request reached a service that refused the signature: it uses another Token. Make sure "
                 "the address leads to this service, which expects the Token shown above.")
    if kind == "http":
        return _("%(url)s answered HTTP %(status)s instead of the echo: check that your reverse proxy forwards "
                 "GET requests with their query string to %(service)s.", url=url, status=status, service=service)
    if kind == "wrong_echo":
        return _("%(url)s answered, but not with the echo WeChat expects (it answered \"%(answer)s\"). Another "
                 "program (perhaps with another Token) answers this address: forward it to %(service)s.",
                 url=url, answer=(result.get("answer") or "")[:60], service=service)
    return _("The check failed.")


def port_warning(url: str) -> str | None:
    """WeChat only calls ports 80 and 443: a sentence when ``url`` names another port."""
    parts = urlsplit(url)
    if parts.port and parts.port not in (80, 443):
        return _("WeChat only calls port 80 (http://) or 443 (https://), so it will refuse %(url)s (port %(port)s). "
                 "Let your reverse proxy listen on 80 or 443 and forward to this service.", url=url, port=parts.port)
    return None


def wechat_verification(since: str | None) -> dict:
    """WeChat's own URL check after ``since`` (ISO time): waiting, verified, or failed with the reason."""
    return verification_after(since, CHANNEL_MP, {
        "bad_signature": _("WeChat's check reached this service but its signature does not match: the Token on "
                           "WeChat's 服务器配置 page must be exactly the one shown above."),
        "stale_timestamp": _("WeChat's check was refused because this server's clock is wrong: set the time "
                             "(enable NTP), then press Submit on WeChat again."),
        "missing_parameters": _("WeChat's check arrived without its parameters: your reverse proxy drops the "
                                "query string. Forward the whole URL, query included."),
        "not_configured": _("WeChat's check arrived, but this draft has no Token: go back to the keys."),
    })


def verification_after(since: str | None, channel: str, reasons: dict[str, str]) -> dict:
    """The platform's own URL check of ``channel``'s callback after ``since`` (ISO time): waiting,
    verified, or failed with the sentence ``reasons`` gives for its outcome."""
    if not since:
        return {"state": "waiting"}
    try:
        after = datetime.fromisoformat(since)
    except ValueError:
        return {"state": "waiting"}
    from webapp.callback.services import recent_attempts

    db.session.expire_all()
    # The newest URL check since the self-test passed (the self-test's own requests came before).
    attempt = next((a for a in recent_attempts(50, channel=channel) if a.kind == "verification" and a.at > after),
                   None)
    if attempt is None:
        return {"state": "waiting"}
    at = attempt.at.isoformat(timespec="seconds")
    if attempt.outcome == "verified":
        return {"state": "verified", "at": at, "from": attempt.remote_addr}
    return {"state": "failed", "at": at, "from": attempt.remote_addr, "outcome": attempt.outcome,
            "message": reasons.get(attempt.outcome, attempt.detail or attempt.outcome)}


# --- step 5: the trusted domain (WeCom) -----------------------------------------------------------

def expected_domain() -> str:
    """The domain (with the port unless 80/443) WeCom must trust: where people reach this service."""
    parts = urlsplit(public_base())
    host = parts.hostname or ""
    if parts.port and parts.port not in (80, 443):
        return f"{host}:{parts.port}"
    return host


def check_domain(draft: WizardDraft) -> dict:
    """Fetch the application again, keep what WeCom said in the draft, and compare its trusted domain
    with this service's (see :func:`domain_result`); raise CheckFailed."""
    data = config_of(draft)
    agent = check_qy_keys(data.get("wx_qy_corpid", ""), data.get("wx_qy_corpsecret", ""),
                          str(data.get("wx_qy_agentid", "")), data.get("wx_qy_msgtype", "text"))
    update(draft, checks_update={"agent": agent})
    return domain_result(agent)


def domain_result(agent: dict | None) -> dict | None:
    """The application as WeCom last described it (None: not read yet), with its trusted domain
    compared with the one people reach this service at."""
    if not agent:
        return None
    expected = expected_domain()
    actual = (agent.get("redirect_domain") or "").strip()
    return {**agent, "expected": expected, "actual": actual, "match": actual.lower() == expected.lower()}


# --- step 6: save ---------------------------------------------------------------------------------

def clean_config(draft: WizardDraft) -> dict:
    """The draft normalized as the configuration (raise ConfigInvalid)."""
    return channel_config.normalize(config_of(draft), current=channel_config.load())


def save(draft: WizardDraft, actor: str) -> int:
    """Check the draft live once more, then write it as the configuration; return the audit entry's id.

    The configuration, its audit entry and the draft's new state are written in one transaction:
    all of them or (on any failure) none. Raises ConfigInvalid or CheckFailed with nothing written.
    """
    clean = clean_config(draft)
    # Checked before the transaction: no database lock is held while WeChat answers.
    channel_config.check_live(clean)
    with db.transaction() as session:
        _row, audit = channel_config.store(session, clean, actor=actor)
        drafts.record(session, draft.id, state=SAVED, step="test", done="save",
                      checks_update={"saved_at": utcnow().isoformat(timespec="seconds"), "audit_id": audit.id})
        audit_id = audit.id
    channel_config.forget_cached()
    return audit_id


def finish(draft: WizardDraft) -> WizardDraft:
    """Close the wizard: the draft is done (the next visit starts a new one from the configuration)."""
    return update(draft, state=DONE, step="done", done="test")


# --- step 6: the test message ---------------------------------------------------------------------

def send_test(user) -> dict:
    """Send the administrator a test message through the delivery engine, as a real delivery.

    Returns ``{"message_id"}`` or ``{"error"}`` (not bound / no configuration).
    """
    from webapp.binding.services import active_binding
    from webapp.delivery import engine
    from webapp.delivery.content import Notification
    from webapp.models import new_public_id

    configured = channel_config.load()
    if configured is None:
        return {"error": _("No configuration is saved yet: go back to the Save step.")}
    binding = active_binding(user.id, configured.wx_type, configured.account)
    if binding is None:
        return {"error": _("Bind your WeChat first (above), then send the test message.")}
    note = Notification(heading=_("WeChat Notify test"), message=_("Set-up works"),
                        remark=_("Sent by %(name)s from the set-up wizard", name=user.username))
    message = engine.accept(api_app_id=None, request_id=new_public_id(), configured=configured, notification=note,
                            targets=[engine.Target(receiver=binding.wx_id, username=user.username)])
    engine.send_now(message)
    return {"message_id": message.public_id}


def delivery_report(message_id: str | None) -> dict | None:
    """The test message's deliveries with a sentence per failure (None when there is no such message)."""
    from webapp.delivery import answers
    from webapp.models import Message

    if not message_id:
        return None
    db.session.expire_all()
    message = db.session.scalar(select(Message).where(Message.public_id == message_id))
    if message is None:
        return None
    data = answers.describe(message)
    for delivery in data["deliveries"]:
        delivery["advice"] = None
        if delivery["status"] == "failed":
            if delivery["errcode"] is not None:
                delivery["advice"] = diagnose(delivery["errcode"], delivery["errmsg"] or "", message.channel).message(lang())
            else:
                delivery["advice"] = delivery["errmsg"]
    data["channel"] = message.channel
    data["finished"] = all(d["status"] != "queued" for d in data["deliveries"]) and (
        message.channel != CHANNEL_MP or all(d["receipt"] or d["status"] == "failed" for d in data["deliveries"]))
    return data


def audit_entry(audit_id: int | None) -> AuditEntry | None:
    """The audit entry written when the configuration was saved."""
    return db.session.get(AuditEntry, audit_id) if audit_id else None


def secret_keys() -> tuple[str, ...]:
    """The secret configuration keys (never shown in full)."""
    return SECRET_KEYS
