"""Language selection and the showing of moments, shared by every part of the service that renders pages."""
from datetime import datetime, timezone

from flask import has_request_context, request, session
from markupsafe import Markup

#: Languages the service is translated into (Babel locale codes).
LANGUAGES = {"en": "English", "zh": "中文"}


def select_locale() -> str:
    """Pick the page language: the user's explicit choice, else the browser's preference.

    Outside a request (commands, background jobs) sentences are in English.
    """
    if not has_request_context():
        return "en"
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES), default="en")


#: How much of a moment each kind of ``<time>`` shows, and its text without the page script.
TIME_FORMATS = {"datetime": "%Y-%m-%d %H:%M", "precise": "%Y-%m-%d %H:%M:%S", "time": "%H:%M", "date": "%Y-%m-%d"}


def human_time(value, kind: str = "datetime") -> Markup:
    """A moment as people read it (the ``human_time`` template filter): a ``<time>`` element whose text is
    the moment in UTC, which static/js/localtime.js turns into the reader's own time zone and language.

    ``value`` is a datetime (naive ones are UTC, as the database stores them) or an ISO 8601 string;
    ``kind`` is one of TIME_FORMATS ("precise" adds the seconds, "time" leaves out the day).
    """
    if value is None or value == "":
        return Markup("")
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return Markup.escape(value)
    moment = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    text = moment.strftime(TIME_FORMATS.get(kind, TIME_FORMATS["datetime"]))
    return Markup('<time datetime="{iso}" data-local="{kind}" title="{full}">{text} UTC</time>').format(
        iso=moment.strftime("%Y-%m-%dT%H:%M:%SZ"), kind=kind, full=moment.strftime("%Y-%m-%d %H:%M:%S UTC"), text=text)
