"""Browser-facing hardening: security headers on every answer, and cookies marked Secure behind HTTPS.

The pages load only our own scripts and style sheets (and Bootstrap's, served from this host), so the
Content-Security-Policy can forbid every inline script, event handler and ``style`` attribute. Bind
QR codes are SVG ``data:`` URIs, and Bootstrap's CSS draws a few icons from ``data:`` images, hence
``img-src 'self' data:``.
"""
from __future__ import annotations

from flask import Flask, Response, g, request
from werkzeug.routing import IntegerConverter

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))

# Features no page of this service uses; denying them means an injected script cannot use them either.
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

# One year; sent only on HTTPS answers (browsers ignore it on HTTP,
# and sending it from a plain-HTTP trial install would be misleading).
HSTS = "max-age=31536000; includeSubDomains"

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Bind pages and message detail pages (/m/<token>) carry tokens in their path: never send the
    # path to another site, not even the origin of a link the message points to.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
}
_HEADERS_LOWER = tuple((name.lower(), name, value) for name, value in HEADERS.items())


# The largest id an INTEGER column holds on every supported database (PostgreSQL's is 32-bit).
MAX_ID = 2**31 - 1


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` in routes, matching only numbers a database id can be: larger ones are a 404.

    Without the bound, /console/apps/99999999999999999999/rotate reached the database, which refused the
    number with an overflow error: a 500 instead of "no such application".
    """

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False):  # noqa: A002 (werkzeug's names)
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def init_app(app: Flask) -> None:
    """Bound integer URL parts, mark cookies Secure behind HTTPS, and add the headers to every answer.

    Call it before the blueprints are registered: their routes take the ``int`` converter in force then.
    """
    app.url_map.converters["int"] = BoundedIntConverter
    for key in ("SESSION_COOKIE_SECURE", "REMEMBER_COOKIE_SECURE"):
        app.config[key] = secure_cookie(app.config, key)
    app.after_request(add_security_headers)


def secure_cookie(config, key: str) -> bool:
    """Whether the cookie configured by ``key`` (e.g. SESSION_COOKIE_SECURE) is to be sent over HTTPS only.

    COOKIE_SECURE, when set to true or false, decides for both cookies. Otherwise a cookie is Secure
    when PUBLIC_URL is an https:// address, or when its own key was set to true.
    """
    from webapp.config import as_bool

    explicit = config.get("COOKIE_SECURE")
    if explicit is not None and explicit != "":
        return as_bool(explicit)
    return as_bool(config.get(key, False)) or str(config.get("PUBLIC_URL") or "").lower().startswith("https://")


def allow_connect(*origins: str) -> None:
    """Let the page of this request's answer ``fetch()`` the given origins too (``connect-src``).

    Only the wizard needs it: its prerequisites step checks, from the administrator's own browser,
    that WeChat's sites load. Every other page may connect to this service only.
    """
    g.csp_connect_src = [*getattr(g, "csp_connect_src", []), *origins]


def content_security_policy() -> str:
    """The policy for the current answer: CONTENT_SECURITY_POLICY, plus origins allowed by allow_connect()."""
    extra = getattr(g, "csp_connect_src", None)
    if not extra:
        return CONTENT_SECURITY_POLICY
    return f"{CONTENT_SECURITY_POLICY}; connect-src 'self' {' '.join(sorted(set(extra)))}"


def add_security_headers(response: Response) -> Response:
    """Set the security headers on ``response`` (views may set their own stricter values first)."""
    headers = response.headers
    # One pass over the answer's headers, not one per header set: this runs on every answer.
    present = {name.lower() for name in headers.keys()}
    if "content-security-policy" not in present:
        headers.add("Content-Security-Policy", content_security_policy())
    for lower, name, value in _HEADERS_LOWER:
        if lower not in present:
            headers.add(name, value)
    # request.is_secure also holds behind a TLS-terminating proxy when PROXY_COUNT is set (ProxyFix).
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response
