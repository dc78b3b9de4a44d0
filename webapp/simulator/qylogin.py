"""Simulated WeCom sign-in pages (PROTOCOL.md section 6): the web QR login that
``FLASK_WEIXIN_QY_LOGIN_URL`` points at, the in-app OAuth2 authorize page, and a "Scan with the
WeCom app" page that opens either from a pasted URL.

**Web login** ``GET /simulator/qy/login?login_type=CorpApp&appid=CORPID&agentid=AGENTID&
redirect_uri=...&state=...[&lang=zh|en]`` stands in for ``login.work.weixin.qq.com/wwlogin/sso/
login``. **OAuth2** ``GET /simulator/qy/oauth2/authorize?appid=CORPID&redirect_uri=...&
response_type=code&scope=snsapi_base&state=...&agentid=AGENTID`` stands in for
``open.weixin.qq.com/connect/oauth2/authorize`` opened inside the WeCom app.

Both check their parameters as WeCom does and answer a WeCom-style error page (HTTP 400) naming
the errcode when something is wrong; most importantly 50001 when the host[:port] of
``redirect_uri`` is not exactly the application's trusted domain (``redirect_domain``, settable
with ``POST /simulator/_control/qy/apps``). Otherwise they show who could be holding the phone:
the corp's members (marked by whether they can see the application) and one personal WeChat
user who is not a member. Choosing one (a POST to the same URL) issues a single-use code, as
``POST /simulator/_control/qy/codes`` does, and redirects (302) the browser to
``redirect_uri?code=CODE&state=STATE``; "Cancel" redirects with the state and no code, as when
the person declines.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import abort, redirect, render_template, request, url_for
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from webapp.i18n import LANGUAGES
from webapp.simulator.blueprint import bp, service_host
from webapp.simulator.gate import current_world
from webapp.simulator.pages import _back

#: The personal WeChat user (not a member of the corp) offered on the choice page: exchanging
#: their code with getuserinfo gives this openid instead of a userid.
QY_OUTSIDER_OPENID = "oSimQyOutsider7rT2vB9nL6cW1y"
#: ``state`` of the in-app OAuth2 URL: letters and digits only, at most this many bytes.
STATE_MAX_BYTES = 128
_STATE = re.compile(r"^[A-Za-z0-9]*$")
LOGIN_TYPES = ("CorpApp",)
OAUTH_SCOPES = ("snsapi_base", "snsapi_privateinfo")

#: The headline WeCom's error page shows for each errcode (in WeCom's words).
PAGE_ERRMSG = {
    40013: "不合法的CorpID",
    40056: "不合法的agentid",
    40058: "不合法的参数",
    41002: "缺少corpid参数",
    41010: "缺少redirect_uri参数",
    41011: "缺少agentid参数",
    50001: "redirect_uri 与配置的授权完成回调域名不一致",
    50002: "成员不在权限范围",
    50003: "应用已禁用",
}


class LoginRefused(Exception):
    """WeCom refuses the sign-in request: an errcode, what is wrong, and the values involved."""

    def __init__(self, errcode: int, explain: str, details: list[tuple[str, str]] | None = None,
                 headline: str | None = None, fix: dict[str, Any] | None = None) -> None:
        super().__init__(errcode)
        self.errcode = errcode
        self.headline = headline or PAGE_ERRMSG.get(errcode, "参数错误")
        self.explain = explain
        self.details = details or []
        self.fix = fix


@dataclass
class Flow:
    """A sign-in request that passed the checks."""

    kind: str  # "login" or "oauth"
    corpid: str
    corp_name: str
    app: dict[str, Any] | None
    redirect_uri: str
    state: str | None
    scope: str = ""
    members: list[dict[str, Any]] = field(default_factory=list)

    @property
    def privateinfo(self) -> bool:
        return self.scope == "snsapi_privateinfo"


def redirect_host(uri: str) -> str:
    """The host[:port] of a redirect URI as WeCom compares it with the trusted domain."""
    return urlsplit(uri).netloc.rpartition("@")[2].lower()


def with_params(uri: str, params: list[tuple[str, str]]) -> str:
    """``uri`` with ``params`` appended to its query (``?`` or ``&``), before any fragment."""
    if not params:
        return uri
    base, hash_mark, fragment = uri.partition("#")
    separator = "" if base.endswith(("?", "&")) else ("&" if "?" in base else "?")
    return base + separator + urlencode(params) + hash_mark + fragment


def check_request(kind: str, args: Any) -> Flow:
    """Check a web login (``kind`` "login") or OAuth2 (``kind`` "oauth") request as WeCom does;
    raise :class:`LoginRefused` with WeCom's errcode for the first problem."""
    info = current_world().describe(served_at=service_host())["qy"]
    scope = ""
    if kind == "login":
        login_type = args.get("login_type", "")
        if login_type not in LOGIN_TYPES:
            raise LoginRefused(40058, _("login_type must be CorpApp for a self-built "
                                        "application (ServiceApp is for third-party ones)."),
                               [("login_type", login_type or "—")], headline="login_type参数错误")
    appid = args.get("appid", "")
    if not appid:
        raise LoginRefused(41002, _("The appid parameter (the CorpID) is missing."))
    if appid != info["corpid"]:
        raise LoginRefused(40013, _("The appid is not the CorpID of this corp."),
                           [("appid", appid), (_("CorpID"), info["corpid"])])
    state = args.get("state")
    if kind == "oauth":
        response_type = args.get("response_type", "")
        if response_type != "code":
            raise LoginRefused(40058, _("response_type must be code."),
                               [("response_type", response_type or "—")],
                               headline="response_type参数错误")
        scope = args.get("scope", "")
        if scope not in OAUTH_SCOPES:
            raise LoginRefused(40058, _("scope must be snsapi_base or snsapi_privateinfo."),
                               [("scope", scope or "—")], headline="scope参数错误")
        if state is not None and (not _STATE.match(state)
                                  or len(state.encode("utf-8")) > STATE_MAX_BYTES):
            raise LoginRefused(40058, _("state may hold letters a-z, A-Z and digits only, at "
                                        "most %(n)s bytes.", n=STATE_MAX_BYTES),
                               [("state", state)], headline="state参数错误")
    raw_agentid = args.get("agentid", "")
    app = None
    if raw_agentid == "":
        # WeCom asks for agentid with web login and with snsapi_privateinfo; snsapi_base
        # works without it.
        if kind == "login" or scope == "snsapi_privateinfo":
            raise LoginRefused(41011, _("The agentid parameter is missing."))
    else:
        apps = {str(a["agentid"]): a for a in info["apps"]}
        app = apps.get(raw_agentid.strip())
        if app is None:
            raise LoginRefused(40056, _("No application of this corp has this AgentID."),
                               [("agentid", raw_agentid)])
        if app["close"]:
            raise LoginRefused(50003, _("The application %(name)s is disabled.",
                                        name=app["name"]), [("agentid", raw_agentid)])
    redirect_uri = args.get("redirect_uri", "")
    if not redirect_uri:
        raise LoginRefused(41010, _("The redirect_uri parameter is missing."))
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LoginRefused(40058, _("redirect_uri must be a whole http:// or https:// address "
                                    "(URL-encoded in the query)."),
                           [("redirect_uri", redirect_uri)], headline="redirect_uri参数错误")
    host = redirect_host(redirect_uri)
    candidates = [app] if app else [a for a in info["apps"] if not a["close"]]
    if not any(host == a["redirect_domain"].strip().lower() for a in candidates):
        trusted = ", ".join(a["redirect_domain"] for a in candidates) or "—"
        target = app or (candidates[0] if candidates else None)
        raise LoginRefused(
            50001,
            _("The redirect URI does not match the app's trusted domain: WeCom only sends "
              "people back to the exact host and port the administrator registered."),
            [(_("Host of redirect_uri"), host or "—"),
             (_("Trusted domain of the application"), trusted),
             ("redirect_uri", redirect_uri)],
            fix={"agentid": target["agentid"], "name": target["name"], "domain": host,
                 "current": target["redirect_domain"]} if target and host else None)
    visible = set(app["allow_users"]) if app else set()
    members = [{**m, "visible": m["userid"] in visible if app else None}
               for m in info["members"]]
    return Flow(kind=kind, corpid=info["corpid"], corp_name=info["name"], app=app,
                redirect_uri=redirect_uri, state=state, scope=scope, members=members)


def _language() -> str | None:
    lang = request.args.get("lang", "")
    return lang if lang in LANGUAGES else None


def _render(template: str, status: int, **context: Any) -> tuple[str, int]:
    """Render in the language ``lang`` asks for (as WeCom's pages do), else the usual one."""
    lang = _language()
    if lang:
        with force_locale(lang):
            return render_template(template, lang=lang, **context), status
    return render_template(template, lang=str(get_locale() or "en"), **context), status


def _error_page(error: LoginRefused, kind: str) -> tuple[str, int]:
    return _render("simulator/qy_error.html", 400, error=error, kind=kind,
                   here=request.full_path)


def _flow_page(kind: str) -> Response | tuple[str, int]:
    """The GET and POST of both sign-in pages."""
    try:
        flow = check_request(kind, request.args)
    except LoginRefused as error:
        return _error_page(error, kind)
    if request.method == "GET":
        return _render("simulator/qy_choose.html", 200, flow=flow, action=request.full_path,
                       outsider=QY_OUTSIDER_OPENID)
    state = [("state", flow.state)] if flow.state is not None else []
    form = request.form
    if "cancel" in form:
        return redirect(with_params(flow.redirect_uri, state), code=302)
    world = current_world()
    if form.get("outsider"):
        if flow.privateinfo:
            return _error_page(LoginRefused(50002, _(
                "snsapi_privateinfo needs a member who can see the application; a personal "
                "WeChat user is not a member.")), kind)
        code = world.qy_issue_code(openid=QY_OUTSIDER_OPENID)["code"]
    else:
        userid = form.get("userid", "").lower()
        member = next((m for m in flow.members if m["userid"] == userid), None)
        if member is None:
            return _error_page(LoginRefused(40058, _("Choose a member of the corp."),
                                            [("userid", userid or "—")],
                                            headline="不合法的UserID"), kind)
        if flow.privateinfo and not member["visible"]:
            return _error_page(LoginRefused(50002, _(
                "%(name)s cannot see the application, and snsapi_privateinfo needs a member "
                "in its visibility.", name=member["name"]), [("userid", member["userid"])]),
                kind)
        code = world.qy_issue_code(userid=member["userid"])["code"]
    return redirect(with_params(flow.redirect_uri, [("code", code)] + state), code=302)


@bp.route("/qy/login", methods=["GET", "POST"])
def qy_login() -> Response | tuple[str, int]:
    """WeCom's web QR login panel (``wwlogin/sso/login``): choose who scans, get sent back."""
    return _flow_page("login")


@bp.route("/qy/oauth2/authorize", methods=["GET", "POST"])
def qy_oauth_authorize() -> Response | tuple[str, int]:
    """WeCom's in-app OAuth2 authorize (``connect/oauth2/authorize``): choose who holds the
    phone, get sent back with a code."""
    return _flow_page("oauth")


# ---- scanning with the WeCom app ----------------------------------------------------------------

def route_scanned(text: str) -> str | None:
    """Where the simulator opens a URL the WeCom app scanned: the OAuth2 page for a
    ``connect/oauth2/authorize`` URL, the login page for a ``wwlogin/sso/login`` (or the older
    ``wwopen/sso/qrConnect``) URL, with the same query; None for anything else. The simulator's
    own addresses (``.../simulator/qy/oauth2/authorize``, ``.../simulator/qy/login``) work too."""
    text = (text or "").strip()
    if "&amp;" in text:  # copied from a page's HTML source
        text = html.unescape(text)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    path = parts.path.rstrip("/")
    query = parts.query
    if path.endswith(("/connect/oauth2/authorize", "/qy/oauth2/authorize")):
        endpoint = "simulator.qy_oauth_authorize"
    elif path.endswith(("/wwlogin/sso/login", "/qy/login")):
        endpoint = "simulator.qy_login"
    elif path.endswith("/wwopen/sso/qrConnect"):
        endpoint = "simulator.qy_login"
        if "login_type" not in dict(parse_qsl(query)):
            query = "login_type=CorpApp" + ("&" + query if query else "")
    else:
        return None
    return url_for(endpoint) + ("?" + query if query else "")


def _scan_context() -> dict[str, Any]:
    world = current_world()
    info = world.describe(served_at=service_host())["qy"]
    root = request.url_root.rstrip("/")
    return {"version": world.version, "corp": info,
            "login_url": root + url_for("simulator.qy_login"),
            "oauth_url": root + url_for("simulator.qy_oauth_authorize")}


@bp.get("/qy/scan")
def qy_scan_page() -> tuple[str, int]:
    """Scan with the WeCom app: paste the URL a QR code holds (the bind page's OAuth2 link, or a
    web login URL) to open it as the app would."""
    return render_template("simulator/qy_scan.html", error=None, pasted="",
                           lang=str(get_locale() or "en"), **_scan_context()), 200


@bp.post("/panel/qy/scan")
def panel_qy_scan() -> Response | tuple[str, int]:
    """Open the pasted URL on the member-choice page, or say why it cannot be opened."""
    pasted = request.form.get("url", "")
    target = route_scanned(pasted)
    if target is None:
        error = _("This is not a WeCom sign-in URL: expected an address ending in "
                  "/connect/oauth2/authorize or /wwlogin/sso/login, with its query.")
        return render_template("simulator/qy_scan.html", error=error, pasted=pasted,
                               lang=str(get_locale() or "en"), **_scan_context()), 400
    return redirect(target, code=303)


@bp.post("/panel/qy/redirect-domain")
def panel_qy_redirect_domain() -> Response:
    """Set an application's trusted domain (the fix the 50001 page offers), then go back."""
    domain = request.form.get("redirect_domain", "").strip()
    if not domain:
        abort(400, description="redirect_domain is required")
    try:
        current_world().upsert_qy_app({"agentid": request.form.get("agentid", ""),
                                       "redirect_domain": domain})
    except ValueError as exc:
        abort(400, description=str(exc))
    return _back()
