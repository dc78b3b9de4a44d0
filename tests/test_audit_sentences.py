"""Every audit code the service writes has a sentence (webapp/audit.py), in English and in Chinese.

The codes are read from the source: any string literal shaped like an audit code ("binding.bind")
that is not the name of a page (Flask endpoints look the same: "setup.wizard_keys").
"""
import ast
import pathlib
import re

from flask_babel import force_locale

from webapp import audit

CODE = re.compile(r"^(setup|channel|secrets|user|api_app|delivery|binding)\.[a-z_]+$")
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def codes_in(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str) and CODE.match(n.value)}


def written_codes(app) -> set[str]:
    """The audit codes in the service's source (the simulator writes none): those given to an AuditEntry
    (or binding's _audit) where it is made, and any other literal of that shape that names no page."""
    endpoints = set(app.view_functions)
    given, elsewhere = set(), set()
    for path in pathlib.Path(app.root_path).rglob("*.py"):
        if "simulator" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        elsewhere |= codes_in(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in ("AuditEntry", "_audit"):
                given |= codes_in(node)
    return given | {code for code in elsewhere if not any(endpoint.startswith(code) for endpoint in endpoints)}


def test_every_written_code_has_a_sentence_and_every_sentence_a_code(app):
    codes = written_codes(app)
    assert {"binding.bind", "channel.configure", "user.create"} <= codes  # the scan finds them
    assert codes - set(audit.SENTENCES) == set(), "audit codes without a sentence in webapp/audit.py"
    assert set(audit.SENTENCES) - codes == set(), "sentences for codes nothing writes"


def test_sentences_are_said_in_both_languages(app):
    with app.test_request_context():
        with force_locale("en"):
            english = {code: audit.sentence(code) for code in audit.SENTENCES}
        with force_locale("zh"):
            chinese = {code: audit.sentence(code) for code in audit.SENTENCES}
        assert audit.sentence("no.such_code") is None  # shown as the code itself
    for code in audit.SENTENCES:
        assert english[code] and " " in english[code] and code not in english[code], code
        assert CHINESE.search(chinese[code]) and chinese[code] != english[code], (code, chinese[code])
