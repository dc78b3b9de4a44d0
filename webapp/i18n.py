"""Language selection shared by every part of the service that renders pages."""
from flask import has_request_context, request, session

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
