"""Error answers: friendly pages for people, JSON for programs, plain text for WeChat's callbacks."""
from __future__ import annotations

import logging

from flask import Flask, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from webapp.extensions import db
from webapp.web import error_response

log = logging.getLogger(__name__)


def _messages() -> dict[int, tuple[str, str]]:
    # Built per request so the sentences come out in the reader's language.
    return {
        400: (_("Bad request"), _("The request could not be understood. Check what was sent and try again.")),
        401: (_("Sign-in required"), _("Please sign in to continue.")),
        403: (_("Not allowed"), _("Your account is not allowed to open this page. Ask an administrator if you need it.")),
        404: (_("Page not found"), _("There is nothing at this address. Check the link, or go back to the home page.")),
        405: (_("Method not allowed"), _("This address does not accept that kind of request.")),
        413: (_("Request too large"), _("What was sent is larger than this service accepts.")),
        429: (_("Too many requests"), _("Too many requests in a short time. Wait a moment and try again.")),
        500: (_("Something went wrong"), _("The service met an unexpected error. Try again; if it persists, tell your administrator.")),
    }


def register(app: Flask) -> None:
    """Install the error handlers on ``app``, and refuse NUL characters in query strings and forms."""

    @app.before_request
    def refuse_nul_characters():
        # No page or API takes a NUL character, and PostgreSQL text cannot store one: refuse it here
        # with a clear 400 rather than fail later with a database error.
        values = [request.path]
        query = request.query_string
        if b"%00" in query or b"\x00" in query:  # the only ways a NUL gets into the query's values
            values += [*request.args.keys(), *request.args.values()]
        # The API and its webhooks read their own bodies (JSON whatever the Content-Type, curl -d
        # sends JSON as a form) and refuse a NUL in their own shape: their forms are not parsed here.
        if request.blueprint not in ("api", "webhooks") and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            values += [*request.form.keys(), *request.form.values()]
        if any("\x00" in value for value in values):
            return error_response(400, _("The request contains a NUL character, which no field accepts."))
        return None

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        title, message = _csrf_refusal(exc.description or "")
        return error_response(400, message, title)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        title, message = _messages().get(exc.code, (exc.name, exc.description or exc.name))
        response = error_response(exc.code or 500, message, title)
        if getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    @app.errorhandler(DBAPIError)
    def database_unavailable(exc: Exception):
        # The database is down, restarting or unreachable (or every connection is busy): nothing the
        # caller did wrong, and nothing was half done (the transaction rolled back). Say so, and when
        # to come back, rather than answer 500 with the driver's text.
        if isinstance(exc, DBAPIError) and not isinstance(exc, (OperationalError, InterfaceError)) \
                and not exc.connection_invalidated:
            return unexpected_error(exc)
        _rollback_quietly()
        log.warning("database unavailable: %s", type(getattr(exc, "orig", None) or exc).__name__)
        response = error_response(503, _("The database is unavailable at the moment. Retry in a few seconds; "
                                          "if it persists, tell your administrator."), _("Database unavailable"))
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        # Never hand the exception's text to the client: it may hold internals or secrets.
        _rollback_quietly()
        log.exception("unhandled error")
        title, message = _messages()[500]
        return error_response(500, message, title)


def _csrf_refusal(reason: str) -> tuple[str, str]:
    """Title and sentence for a form Flask-WTF refused, by its reason: only an old or missing token is
    an expired form; over HTTPS a missing or foreign Referer, or a missing session cookie, is something else."""
    if reason == "The referrer header is missing.":
        return _("Referer missing"), _(
            "Your browser sent this form without a Referer header. Over HTTPS this site accepts a form only "
            "with a Referer that shows it was sent from this site. Allow the Referer for this site (a privacy "
            "setting or browser extension may remove it), then reload the page and submit it again.")
    if reason == "The referrer does not match the host.":
        return _("Form sent from another address"), _(
            "The form was sent from a page that is not at this site's address (%(host)s). Open the site at "
            "%(host)s and submit the form there. If that is the address you used, the reverse proxy must pass "
            "the Host header and FLASK_PROXY_COUNT must count it.", host=request.host)
    if reason == "The CSRF session token is missing.":
        return _("Session cookie missing"), _(
            "Your browser did not send this site's session cookie with the form. Allow cookies for this site "
            "and use its https:// address if it has one, then reload the page and submit it again.")
    return _("Form expired"), _("The form has expired or was not sent from this site. Reload the page and submit it again.")


def _rollback_quietly() -> None:
    """Roll the request's session back; on a dead database connection that may fail too."""
    try:
        db.session.rollback()
    except Exception:  # the connection is gone: the pool discards it, nothing is left to undo
        log.debug("rollback after an error failed", exc_info=True)
