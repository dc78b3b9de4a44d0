"""The prerequisites step says what WeChat's answer to its reachability check means.

The check asks for a token with no keys at all, so the API's refusal (40002 from the Official
Account API, 41002 from WeCom's) is the answer hoped for; the page says so instead of showing the
bare "HTTP 200, errcode 40002".
"""
import re
from html import unescape

import pytest

from tests.test_wizard import Wizard, check_prerequisites, service  # noqa: F401  (fixture)


def meaning(page: str) -> str:
    """The sentence under "WeChat API answers (HTTP)", as a person reads it."""
    found = re.search(r'<div class="small text-body-secondary" id="http-meaning">(.*?)</div>', page, re.S)
    assert found, "no sentence for the HTTP check"
    return " ".join(unescape(found.group(1)).split())


@pytest.mark.parametrize(("wx_type", "errcode", "reason"), [("mp", 40002, "no grant_type was given"),
                                                           ("qywx", 41002, "no CorpID was given")])
def test_the_expected_refusal_is_explained(service, wx_type, errcode, reason):
    app, base = service
    w = Wizard(base)
    w.post("channel", {"wx_type": wx_type})
    page = check_prerequisites(w).text
    assert 'data-probe-name="http" data-state="ok"' in page
    said = meaning(page)
    assert f"HTTP 200, errcode {errcode}: {reason}" in said
    assert "that refusal is the expected answer" in said and "Your keys are checked in the next step." in said
    assert re.search(r"· \d+ ms$", said)
    # The outcome kept in the draft is explained the same way when the page is opened again.
    assert meaning(w.get("prerequisites").text) == said
