"""Every sentence a person reads comes from the catalogue, and the Chinese catalogue is complete.

Two checks keep it so:

* the message ids extracted from the code and the templates, exactly as ``make translations``
  extracts them, all have a Chinese translation in ``messages.po`` (none fuzzy), and the compiled
  ``messages.mo`` holds what the ``.po`` says;
* no template holds user-visible text outside ``_()``/``{% trans %}``: the literal data Jinja's
  parser finds, once tags, comments, entities, numbers, punctuation, code and a few brand names are
  taken away, must be empty.
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from jinja2 import Environment, nodes

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "webapp" / "translations" / "zh" / "LC_MESSAGES"
TEMPLATES = ROOT / "templates"


# --------------------------------------------------------------------------------------------------
# (a) the catalogue covers every extracted message id
# --------------------------------------------------------------------------------------------------


def makefile_extract_arguments() -> list[str]:
    """The arguments of the ``pybabel extract`` line of the Makefile's ``translations`` target."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("translations:"))
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        words = shlex.split(line)
        if len(words) > 1 and words[0].endswith("pybabel") and words[1] == "extract":
            return words[2:]
    raise AssertionError("the Makefile's translations target has no pybabel extract line")


def extract_catalog(tmp_path: Path, arguments: list[str]):
    """Run ``pybabel extract`` in this process with ``arguments``, writing into ``tmp_path``."""
    arguments = list(arguments)
    output = tmp_path / "messages.pot"
    index = arguments.index("-o")
    arguments[index + 1] = str(output)
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        CommandLineInterface().run(["pybabel", "extract", *arguments])
    with output.open("rb") as handle:
        return read_po(handle)


def read_zh_po():
    """The Chinese catalogue as it is on disk."""
    with (CATALOG / "messages.po").open("rb") as handle:
        return read_po(handle, locale="zh")


def untranslated(template_catalog, zh_catalog) -> list[str]:
    """Message ids of ``template_catalog`` with no (or only a fuzzy) Chinese translation."""
    missing = []
    for message in template_catalog:
        if not message.id:
            continue
        translated = zh_catalog.get(message.id, message.context)
        strings = translated.string if translated is not None else None
        strings = strings if isinstance(strings, (tuple, list)) else (strings,)
        if translated is None or translated.fuzzy or not all(strings):
            missing.append(message.id if isinstance(message.id, str) else message.id[0])
    return missing


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """The message ids of the code and templates, extracted as the Makefile extracts them."""
    return extract_catalog(tmp_path_factory.mktemp("pot"), makefile_extract_arguments())


def test_makefile_extracts_the_protocol_marker():
    """``N_`` marks the protocol package's sentences, so the extraction must know it."""
    arguments = makefile_extract_arguments()
    keywords = {arguments[i + 1] for i, word in enumerate(arguments) if word == "-k"}
    assert "N_" in keywords


def test_every_extracted_message_has_a_chinese_translation(extracted):
    """A message id in the code or a template without a Chinese msgstr would show English on a Chinese page."""
    missing = untranslated(extracted, read_zh_po())
    assert not missing, "untranslated in messages.po (run `make translations` and translate):\n" + \
        "\n".join(f"  {m!r}" for m in missing)


def test_catalogue_has_no_fuzzy_entries():
    """``pybabel update`` may guess a translation and mark it fuzzy; gettext ignores those."""
    fuzzy = [m.id for m in read_zh_po() if m.id and m.fuzzy]
    assert not fuzzy, f"fuzzy entries in messages.po: {fuzzy}"


def test_compiled_catalogue_matches_the_po():
    """``messages.mo`` is what the pages read: it must hold exactly the translations of ``messages.po``."""
    def key(value):
        return tuple(value) if isinstance(value, (list, tuple)) else value

    wanted = {key(m.id): key(m.string) for m in read_zh_po() if m.id and m.string and not m.fuzzy}
    with (CATALOG / "messages.mo").open("rb") as handle:
        compiled = {key(m.id): key(m.string) for m in read_mo(handle) if m.id}
    stale = sorted(str(k) for k in set(wanted) ^ set(compiled) | {k for k in wanted if compiled.get(k) != wanted[k]})
    assert not stale, "messages.mo is out of date (run `make translations`): " + ", ".join(stale[:10])


def test_the_check_catches_an_untranslated_message(tmp_path):
    """A message id that is only in the code shows up as missing (the check is not vacuous)."""
    source = tmp_path / "webapp" / "probe.py"
    source.parent.mkdir()
    source.write_text('from flask_babel import gettext as _\n_("A sentence nobody has translated yet")\n'
                      'N_ = str\nN_("A protocol sentence nobody has translated yet")\n', encoding="utf-8")
    (tmp_path / "babel.cfg").write_text("[python: webapp/**.py]\n", encoding="utf-8")
    arguments = makefile_extract_arguments()
    arguments[arguments.index("-F") + 1] = str(tmp_path / "babel.cfg")
    arguments[-1] = str(tmp_path)
    probe = extract_catalog(tmp_path, arguments)
    assert set(untranslated(probe, read_zh_po())) == {
        "A sentence nobody has translated yet", "A protocol sentence nobody has translated yet"}


# --------------------------------------------------------------------------------------------------
# (b) templates hold no user-visible text outside gettext
# --------------------------------------------------------------------------------------------------

#: Attributes whose value a person reads (or a screen reader speaks).
VISIBLE_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description", "aria-roledescription",
                      "aria-valuetext", "label"}
#: Elements whose text is code, a sample or not shown as text at all. Any other element (and its
#: attributes) is left alone when marked ``translate="no"``, HTML's own way of saying so.
UNCHECKED_ELEMENTS = {"script", "style", "code", "pre", "kbd", "samp", "var"}
VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
#: Names that are the same in every language: brands, products, WeChat's own field names, units.
ALLOWED_WORDS = {
    "WeChat", "WeCom", "BlueKing", "CMSI", "English", "中文", "微信", "企业微信",
    "AppID", "AppSecret", "CorpID", "AgentId", "AgentID", "Secret", "Token", "EncodingAESKey", "OpenID",
    "openid", "UserID", "userid", "errcode", "errmsg", "JSON", "API", "URL", "IP", "QR", "HTTP", "HTTPS",
    "UTC", "ms", "s",
}
#: Code-like pieces of text: URLs and ``name="value"`` attribute syntax written by a macro.
CODE_PATTERNS = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*|[\w-]+=\"[^\"]*\"")
#: Placeholder for a Jinja expression or tag: it separates literal text like a tag does.
GAP = "\x00"


def template_document(source: str, environment: Environment) -> str:
    """The template's literal data as Jinja's parser sees it, on the template's own lines.

    Every expression, tag and comment becomes :data:`GAP`, so what is left is exactly what is
    written into the page without passing through Python (and so without gettext).
    """
    tree = environment.parse(source)
    parts: list[str] = []
    line = 1
    for data in tree.find_all(nodes.TemplateData):
        if data.lineno > line:
            parts.append("\n" * (data.lineno - line))
            line = data.lineno
        parts.append(GAP + data.data)
        line += data.data.count("\n")
    return "".join(parts) + GAP


def leftover_words(text: str) -> str:
    """``text`` without gaps, numbers, punctuation, symbols and allowed names; '' when nothing is left."""
    words = []
    for word in re.split(r"[\s\x00]+", CODE_PATTERNS.sub(" ", text)):
        word = "".join(c for c in word if unicodedata.category(c)[0] in "LM")
        if word and word not in ALLOWED_WORDS:
            words.append(word)
    return " ".join(words)


class LiteralTextFinder(HTMLParser):
    """Collects (line, text) of user-visible literal text in an HTML document."""

    def __init__(self):
        super().__init__(convert_charrefs=False)  # entities are markup, not words
        self.found: list[tuple[int, str]] = []
        self.unchecked: list[str] = []

    def check(self, text: str) -> None:
        if leftover_words(text):
            self.found.append((self.getpos()[0], " ".join(text.replace(GAP, " ").split())))

    def handle_starttag(self, tag, attrs):
        skipped = tag in UNCHECKED_ELEMENTS or dict(attrs).get("translate") == "no"
        if skipped or self.unchecked:
            if skipped and tag not in VOID_ELEMENTS:
                self.unchecked.append(tag)
            return
        for name, value in attrs:
            if value and (name in VISIBLE_ATTRIBUTES or
                          (name == "value" and tag == "input" and
                           dict(attrs).get("type") in ("submit", "button", "reset"))):
                self.check(value)

    def handle_endtag(self, tag):
        if tag in self.unchecked:
            while self.unchecked and self.unchecked.pop() != tag:
                pass

    def handle_data(self, data):
        if not self.unchecked:
            self.check(data)


def literal_text(path: Path, environment: Environment) -> list[tuple[int, str]]:
    """User-visible text written literally in the template at ``path``: (line, text) pairs."""
    finder = LiteralTextFinder()
    finder.feed(template_document(path.read_text(encoding="utf-8"), environment))
    finder.close()
    return finder.found


def jinja_environment() -> Environment:
    """An environment with the same syntax as the pages' (the i18n extension gives ``{% trans %}``)."""
    return Environment(extensions=["jinja2.ext.i18n", "jinja2.ext.do"])


ALL_TEMPLATES = sorted(TEMPLATES.rglob("*.html"))


@pytest.mark.parametrize("path", ALL_TEMPLATES, ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_template_text_goes_through_gettext(path):
    """Literal words in a template would be shown untranslated on Chinese (or English) pages."""
    found = literal_text(path, jinja_environment())
    where = path.relative_to(ROOT)
    assert not found, "text outside _() or {% trans %}:\n" + "\n".join(
        f"  {where}:{line}: {text}" for line, text in found)


def test_the_template_check_catches_literal_text(tmp_path):
    """Text, a title attribute and a button label written literally are found; gettext and code are not."""
    page = tmp_path / "page.html"
    page.write_text('<p>{{ _("Fine") }}</p>\n<p title="Hover me">{{ x }} 10 &amp; %</p>\n'
                    '<button>Send now</button>\n<code>flask --app wsgi run</code>\n'
                    '{# a comment #}{% trans %}Also fine{% endtrans %} WeChat\n', encoding="utf-8")
    assert literal_text(page, jinja_environment()) == [(2, "Hover me"), (3, "Send now")]


# --------------------------------------------------------------------------------------------------
# Sentences built in Python reach Chinese pages in Chinese
# --------------------------------------------------------------------------------------------------

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_a_live_check_failure_is_told_in_the_asked_language():
    """CheckFailed keeps the message id and parameters: any language on demand, English as str()."""
    from webapp.channel import QY_KEY_BY_KIND, CheckFailed, check_failure
    from webapp.wechat import WeChatAPIError, diagnose

    errmsg = "not allow to access from your ip, from ip: 203.0.113.9"
    failure = check_failure(WeChatAPIError(60020, errmsg, diagnose(60020, errmsg, channel="qywx")), QY_KEY_BY_KIND)
    assert failure.key == "wx_qy_corpsecret" and failure.ip == "203.0.113.9"
    assert str(failure) == failure.message("en") == failure.message(None)
    assert "the IP address 203.0.113.9" in str(failure) and "Trusted IPs" in str(failure)
    chinese = failure.message("zh_Hans_CN")
    assert "IP 地址 203.0.113.9" in chinese and "企业可信IP" in chinese and "IP address" not in chinese
    assert failure.message("zh") == chinese

    disabled = CheckFailed("The WeCom application is disabled. Enable it under 应用管理 → 应用.", "wx_qy_agentid")
    assert disabled.message("zh") == "该企业微信应用已停用。请在 应用管理 → 应用 中启用。"
    assert disabled.message_id == str(disabled)
    missing = CheckFailed("The template {template_id} is not among this account's templates ({count} found). "
                          "Copy the ID from 功能 → 模板消息 → 我的模板.", template_id="T-1", count=2)
    assert "T-1" in missing.message("zh") and "共 2 个" in missing.message("zh")
    assert str(missing).startswith("The template T-1 is not among this account's templates (2 found).")


def test_the_protocol_package_translates_without_flask():
    """webapp.wechat reads the compiled catalogue with the standard gettext module: Flask cannot be imported."""
    import subprocess
    import sys

    # The webapp package itself (create_app) needs Flask, so only its folder is made importable here.
    code = ("import sys, types\n"
            "sys.modules.update(flask=None, flask_babel=None, webapp=types.ModuleType('webapp'))\n"
            "sys.modules['webapp'].__path__ = ['webapp']\n"
            "from webapp.wechat.errors import diagnose\n"
            "d = diagnose(47003, 'argument invalid! data.thing1.value invalid')\n"
            "print(d.message('zh')); print(d.message('en'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    chinese, english = result.stdout.splitlines()
    assert "（字段 thing1）" in chinese and CJK.search(chinese)
    assert "(field thing1)" in english and not CJK.search(english.split("(e.g.")[0])


def test_mapping_warnings_on_a_chinese_page(app):
    """The parameter names and the way they are listed follow the page language."""
    from webapp.delivery.content import lost_text_warnings

    mapping = {"message": "keyword1", "heading": "keyword1", "date": "keyword1"}
    with app.test_request_context(headers={"Accept-Language": "zh-CN,zh;q=0.9"}):
        chinese = lost_text_warnings(mapping)
    with app.test_request_context(headers={"Accept-Language": "en"}):
        english = lost_text_warnings(mapping)
    shared = next(w for w in chinese if "keyword1" in w and "只会发送其中一个" in w)
    assert "正文（message）、标题（heading）和日期（date）" in shared and " and " not in shared
    assert any("message, heading, and date are all mapped to 'keyword1'" in w for w in english)
    assert any("未映射：备注（remark）" in w for w in chinese)


def test_simulator_seed_speaks_the_page_language():
    """Seed names and texts are shown in Chinese on Chinese pages; names set by a person stay as they are."""
    from webapp.simulator import create_standalone_app, get_world
    from webapp.simulator.world import OPENID_BOB

    app = create_standalone_app()
    get_world(app).upsert_mp_user(OPENID_BOB, nickname="Home")  # also a message id of the pages
    client = app.test_client()
    chinese = client.get("/simulator/", headers={"Accept-Language": "zh"}).get_data(as_text=True)
    for text in ("通知模拟器", "爱丽丝", "张三", "孙七", "模拟企业"):
        assert text in chinese
    for text in ("Notice Simulator", "Alice", "Zhang San", "Simulated Corp", "首页"):
        assert text not in chinese
    assert ">Home<" in chinese
    english = client.get("/simulator/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Notice Simulator" in english and "Alice" in english and "爱丽丝" not in english
