"""Small helpers shared by the blueprints: JSON-or-HTML answers and safe redirects."""
from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from flask import g, jsonify, make_response, render_template, request
from flask_babel import lazy_gettext as _l

# Paths whose clients are programs (or page scripts), which must get JSON and never an HTML redirect.
JSON_PATH_PREFIXES = ("/api/", "/console/user_center/weixin/")
# Pages under the JSON prefixes that a person opens in the browser.
HTML_PATHS = ("/console/user_center/weixin/", "/console/user_center/weixin/qy/login_callback/")
# WeChat's server calls: answered in plain text.
PLAIN_PATH_PREFIXES = ("/console/user_center/weixin/mp/callback/", "/console/user_center/weixin/qy/callback/")


def wants_json_response() -> bool:
    """Whether the current request comes from a program (or page script) rather than a person's browser."""
    path = request.path
    if path in HTML_PATHS:
        return False
    if path.startswith(JSON_PATH_PREFIXES) or path == "/healthz":
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def is_machine_path(path: str) -> bool:
    """Whether ``path`` is served to programs or WeChat (never redirected to a page such as set-up)."""
    return path.startswith(JSON_PATH_PREFIXES + PLAIN_PATH_PREFIXES) and path not in HTML_PATHS


def error_response(status: int, message: str, title: str | None = None):
    """An error answer in the shape the client expects: JSON for programs, a page for people."""
    if request.path.startswith(PLAIN_PATH_PREFIXES):
        return make_response((message, status, {"Content-Type": "text/plain; charset=utf-8"}))
    if wants_json_response():
        body = {"result": False, "code": status, "message": message}
        if request.path.startswith("/api/"):
            # The send API's answers always carry these (BlueKing callers log request_id).
            body.update(request_id=getattr(g, "request_id", None) or uuid.uuid4().hex, data=None)
        return make_response((jsonify(body), status))
    page = render_template("errors/error.html", status=status, title=title or message, message=message)
    return make_response((page, status))


def safe_next(target: str | None, default: str) -> str:
    """Return ``target`` if it is a path on this site, else ``default`` (no open redirects)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


# Pages offered in the navigation: (endpoint, label, administrators only). A page is listed only once
# its blueprint is registered, so each part of the service appears as it is switched on.
NAV_LINKS = (
    ("binding.index", _l("Bind WeChat"), False),
    ("simulator.index", _l("WeChat simulator"), True),
)


def nav_links() -> list[tuple[str, str]]:
    """The navigation entries the signed-in user may use, with translated labels."""
    from flask import current_app
    from flask_login import current_user

    links = []
    for endpoint, label, admin_only in NAV_LINKS:
        if endpoint in current_app.view_functions and (current_user.is_admin or not admin_only):
            links.append((endpoint, str(label)))
    return links
