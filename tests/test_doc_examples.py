"""Every example in README.md and docs/*.md is run or checked, so a wrong example fails the suite.

Each fenced code block is sorted by what it is and checked with real parts:

* ``curl`` commands run with the real ``curl`` against the service and its simulator over HTTP,
  and the JSON answer shown next to one must have the shape of the real answer;
* channel configurations go through ``flask weixin-config --no-check``; ``/healthz`` and log
  examples are compared with what the service really answers and writes;
* shell commands: ``make`` targets (``make -n``), ``flask`` commands and their options
  (``--help``), ``python -m`` modules, pytest selections (``--collect-only``), environment
  variables (real configuration keys), files and units the commands name;
* nginx snippets pass ``nginx -t``; YAML parses; Prometheus configurations have sane keys and
  their expressions use metrics a real ``/metrics`` scrape has.

A block that fits no rule fails :func:`test_every_block_has_a_check`: add a check here (or, for a
diagram or prose, an entry in ``NOT_EXECUTABLE``). Inline commands in the text (`` `flask --app
wsgi ...` ``, `` `make ...` ``) and the README's command table are checked like shell commands.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
import yaml
from flask import Flask

from tests.api_support import bind, service  # noqa: F401  (fixtures)
from tests.binding_support import KEY, connect_mp
from tests.test_deploy_files import nginx_binary, nginx_conf, nginx_test
from webapp import channel, heartbeat
from webapp.config import Defaults
from webapp.extensions import db
from webapp.simulator.world import MP_APPID, OPENID_ALICE, QY_CORPSECRET, TEMPLATE_NOTIFICATION_ID

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
FLASK = [PYTHON, "-m", "flask", "--app", "wsgi"]

# Blocks that are not meant to be run: (file, first line of the block) -> why.
NOT_EXECUTABLE = {
    ("docs/deployment.md", "people's browsers ─┐"): "a diagram of the deployment",
}

# Blocks checked by a test of their own: (file, first line, or "*" for every block of the file) -> test file.
# The test file must exist and name the document.
DELEGATED: dict[tuple[str, str], str] = {
    ("docs/operations.md", "*"): "tests/test_operator_backup.py",
    ("docs/alerting.md", "*"): "tests/test_webhooks.py",
    ("docs/first-ten-minutes.md", "*"): "tests/browser/test_first_ten_minutes.py",
}

# Placeholders the documents use in configuration examples, and a valid value for each.
PLACEHOLDERS = {
    "43 letters and digits from 服务器配置 ...": KEY,
    "your template ID": TEMPLATE_NOTIFICATION_ID,
    "the app's Secret": QY_CORPSECRET,
}

# Commands of a Debian host's administration: not run here, but what they name is checked.
HOST_COMMANDS = {"apt-get", "useradd", "install", "cp", "ln", "systemctl", "nginx", "sudo", "journalctl",
                 "sqlite3", "pg_dump", "pg_restore"}
# Environment variables of the test suite (not service settings) that the documents may show.
TEST_VARIABLES_IN = ROOT / "tests"

TEXT_LOG = re.compile(r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                      r"\[(?P<rid>[^\]\s]+)\] (?P<logger>[\w.]+): (?P<message>.+)$")


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block of a document."""

    path: str
    line: int
    lang: str
    text: str

    @property
    def first(self) -> str:
        """The block's first non-empty line, stripped: its key in the allow-lists."""
        return next((line.strip() for line in self.text.splitlines() if line.strip()), "")

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def read_blocks() -> list[Block]:
    """Every fenced code block of README.md and docs/*.md, un-indented."""
    found = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            opening = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[index])
            if opening:
                indent, fence, lang = opening.groups()
                end = index + 1
                while end < len(lines) and not re.match(rf"^\s*{re.escape(fence)}\s*$", lines[end]):
                    end += 1
                body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[index + 1:end]]
                found.append(Block(str(doc.relative_to(ROOT)), index + 1, lang.lower(), "\n".join(body)))
                index = end
            index += 1
    return found


BLOCKS = read_blocks()


def kind(block: Block) -> str | None:
    """What a block is, which decides its check; None when no rule fits."""
    if any(block.path == path and block.first.startswith(first) for path, first in NOT_EXECUTABLE):
        return "not-executable"
    if (block.path, block.first) in DELEGATED or (block.path, "*") in DELEGATED:
        return "delegated"
    text = block.text.strip()
    if block.lang == "json":
        data = json.loads(text) if text.startswith("{") and "\n{" not in text else None
        if data is None:
            return None
        if "wx_type" in data:
            return "channel-config"
        if isinstance(data.get("data"), dict) and "deliveries" in data["data"]:
            return "send-answer"
        if {"database", "scheduler", "status"} <= set(data):
            return "healthz"
        if {"logger", "request_id"} <= set(data):
            return "json-log"
        return None
    if block.lang == "nginx":
        return "nginx"
    if block.lang in ("yaml", "yml"):
        data = yaml.safe_load(textwrap.dedent(block.text))
        if isinstance(data, dict) and "groups" in data:
            return "prometheus-rules"
        if (isinstance(data, dict) and "scrape_configs" in data) or (
                isinstance(data, list) and all(isinstance(job, dict) and "job_name" in job for job in data)):
            return "prometheus-scrape"
        return None
    if block.lang in ("", "text") and all(TEXT_LOG.match(line) for line in text.splitlines()):
        return "text-log"
    if block.lang in ("", "env") and all(re.match(r"^[A-Z][A-Z0-9_]*=\S", line) for line in text.splitlines()):
        return "env"
    if block.lang in ("sh", "shell", "bash", "console"):
        return "shell"
    return None


def blocks_of(*kinds: str) -> list:
    """The blocks of these kinds, as pytest parameters named by file and line."""
    return [pytest.param(block, id=str(block)) for block in BLOCKS if kind(block) in kinds]


def test_every_block_has_a_check():
    unchecked = [f"{block} ({block.lang or 'no language'}): {block.first[:60]}" for block in BLOCKS if kind(block) is None]
    assert not unchecked, (
        "These code blocks fit no check of tests/test_doc_examples.py. Add a check there for what the block is "
        "(or, for a diagram or prose, an entry in NOT_EXECUTABLE):\n" + "\n".join(unchecked))


def test_the_allow_lists_name_existing_blocks_and_tests():
    keys = {(block.path, block.first) for block in BLOCKS}
    stale = [key for key in NOT_EXECUTABLE if not any(p == key[0] and f.startswith(key[1]) for p, f in keys)]
    stale += [key for key in DELEGATED if key[1] != "*" and key not in keys]
    assert not stale, f"allow-list entries whose block is gone: {stale}"
    for (path, _first), test_file in DELEGATED.items():
        assert (ROOT / test_file).exists() and Path(path).name in (ROOT / test_file).read_text(), (
            f"{path} is delegated to {test_file}, which does not exist or does not mention it")


def test_the_documents_have_blocks_of_every_kind():
    # Guards the reader itself: a regression in read_blocks would otherwise check nothing.
    kinds = {kind(block) for block in BLOCKS}
    assert {"shell", "channel-config", "send-answer", "nginx", "prometheus-rules", "text-log"} <= kinds, kinds


# --- the service the examples run against ------------------------------------------------------------

@pytest.fixture
def doc_service(service):  # noqa: F811  (the fixture imported above)
    """The README's situation: the simulator's Official Account connected, alice bound, bob not."""
    app, base, api = service
    connect_mp(app, base)
    bind(app, "alice", "mp", MP_APPID, OPENID_ALICE)
    return service


def shape_errors(doc, real, where: str = "answer", values: bool = True) -> list[str]:
    """How ``real`` differs from the documented ``doc``: keys always, values too when ``values``.

    A documented string with "…" stands for any non-empty string (an id, a random value).
    """
    if isinstance(doc, dict):
        if not isinstance(real, dict):
            return [f"{where}: documented an object, the service answers {real!r}"]
        errors = []
        if set(doc) != set(real):
            errors.append(f"{where}: documented keys {sorted(doc)}, real keys {sorted(real)}")
        for key in set(doc) & set(real):
            errors += shape_errors(doc[key], real[key], f"{where}.{key}", values)
        return errors
    if isinstance(doc, list) and values:
        if not isinstance(real, list) or len(doc) != len(real):
            return [f"{where}: documented {doc!r}, the service answers {real!r}"]
        return [e for i, (d, r) in enumerate(zip(doc, real)) for e in shape_errors(d, r, f"{where}[{i}]", values)]
    if isinstance(doc, str) and "…" in doc:
        return [] if isinstance(real, str) and real else [f"{where}: documented some text, the service answers {real!r}"]
    if values and doc != real:
        return [f"{where}: documented {doc!r}, the service answers {real!r}"]
    if not values and doc is not None and real is not None and type(doc) is not type(real) and not (
            isinstance(doc, (int, float)) and isinstance(real, (int, float))):
        return [f"{where}: documented a {type(doc).__name__}, the service answers {real!r}"]
    return []


# --- shell commands ----------------------------------------------------------------------------------

def commands(text: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines left out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading NAME=value assignments of a command, and the rest."""
    env = {}
    while words and re.match(r"^[A-Z][A-Z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def check_variable(name: str) -> None:
    """A FLASK_ variable must be a configuration key; another one must be read by the test suite."""
    if name.startswith("FLASK_"):
        key = name[len("FLASK_"):]
        assert hasattr(Defaults, key) or key in Flask.default_config, f"{name} is not a configuration key (webapp/config.py)"
    else:
        assert any(name in path.read_text() for path in TEST_VARIABLES_IN.rglob("*.py") if path.name != Path(__file__).name), (
            f"{name} is read neither by the service nor by the tests")


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a program in the project folder, with a throwaway database and key for the service."""
    env = {**os.environ, "FLASK_SECRET_KEY": "doc-examples", "FLASK_DATABASE_URL": "sqlite:///" + str(kwargs.pop("db", "/nonexistent/x")),
           **kwargs.pop("env", {})}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=kwargs.pop("timeout", 120), **kwargs)


_HELP: dict[str, str] = {}


def flask_help(command: str, tmp_path: Path) -> str:
    """``flask --app wsgi COMMAND --help``, which must exit 0."""
    if command not in _HELP:
        done = run([*FLASK, command, "--help"], db=tmp_path / "help.sqlite3")
        assert done.returncode == 0, f"`flask --app wsgi {command} --help` failed:\n{done.stdout}{done.stderr}"
        _HELP[command] = done.stdout
    return _HELP[command]


def check_flask(words: list[str], tmp_path: Path) -> None:
    """A ``flask --app wsgi COMMAND ...`` call: the command exists and takes the options shown."""
    assert words, "a flask call without a command"
    help_text = flask_help(words[0], tmp_path)
    for word in words[1:]:
        option = word.strip("[]").split("=")[0]
        if option.startswith("--"):
            assert re.search(rf"(^|[\s,/]){re.escape(option)}\b", help_text), f"`{words[0]}` has no option {option}"
        elif "://" in word:
            from sqlalchemy.engine import make_url

            make_url(word.strip("[]."))  # a database URL the command is shown with must be one


def check_pytest(words: list[str]) -> None:
    """A pytest call: its files exist and it selects at least one test."""
    args = [word for word in words if word != "-s"]
    for word in args:
        if word.startswith("tests/"):
            assert (ROOT / word.split("::")[0]).exists(), f"{word} does not exist"
    done = run([PYTHON, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args], timeout=300)
    selected = [line for line in done.stdout.splitlines() if "::" in line]
    assert done.returncode == 0 and selected, f"`pytest {' '.join(args)}` selects no test:\n{done.stdout[-2000:]}"


def check_python_module(module: str, flags: list[str]) -> None:
    """``python -m MODULE [flags]``: the module exists; with flags, its ``--help`` lists them."""
    path = ROOT / (module.replace(".", "/") + ".py")
    assert path.exists(), f"python -m {module}: there is no {path.relative_to(ROOT)}"
    done = run([PYTHON, "-c", f"import {module}"])
    assert done.returncode == 0, f"{module} does not import:\n{done.stderr}"
    if flags:
        done = run([PYTHON, "-m", module, "--help"])
        assert done.returncode == 0, f"`python -m {module} --help` failed:\n{done.stderr}"
        for flag in flags:
            if flag.startswith("-"):
                assert flag.split("=")[0] in done.stdout, f"`python -m {module}` has no option {flag}"


def check_repository_paths(words: list[str]) -> None:
    """Files of the installation that a host command names must be files of the repository."""
    for word in words:
        if word.startswith("/opt/weixin-notify/"):
            rel = word[len("/opt/weixin-notify/"):]
            if rel.split("/")[0] not in (".venv", "instance"):
                assert (ROOT / rel).exists(), f"{word}: there is no {rel} in the repository"


def check_host_command(words: list[str], tmp_path: Path) -> None:
    """A command of the Debian installation: the files, units and options it names exist."""
    check_repository_paths(words)
    program = words[0]
    if program in ("systemctl", "journalctl"):
        units = [w for w in words[1:] if w.startswith("weixin-notify")]
        for unit in units:
            assert (ROOT / "deploy" / "systemd" / f"{unit.removesuffix('.service')}.service").exists(), f"no unit {unit}"
    if program == "sudo" and words[1:3] == ["-u", "postgres"]:
        words = words[3:]
        program = words[0]
    if program in ("useradd", "createuser", "createdb") and shutil.which(program):
        help_text = subprocess.run([program, "--help"], capture_output=True, text=True).stdout
        for word in words[1:]:
            if word.startswith("--"):
                assert word in help_text, f"{program} has no option {word}"


def check_command(command: str, tmp_path: Path) -> str:
    """Check one shell command; return what was checked (for the test's report)."""
    env, words = split_env(shlex.split(command, comments=True))
    for name in env:
        check_variable(name)
    program = words[0]
    if program == "curl":
        return "run by test_curl_examples"
    if program == "make":
        for target in words[1:]:
            done = run(["make", "-n", target])
            assert done.returncode == 0, f"`make {target}` is not a target of the Makefile:\n{done.stderr}"
        return "make -n"
    if words[:3] == ["flask", "--app", "wsgi"] or words[:3] == [".venv/bin/flask", "--app", "wsgi"]:
        check_flask(words[3:], tmp_path)
        return "flask --help"
    if program == "/opt/weixin-notify/deploy/weixin-notify":
        assert (ROOT / "deploy" / "weixin-notify").exists()
        check_flask(words[1:], tmp_path)
        return "flask --help"
    if program.endswith("python") or program.endswith("python3"):
        if words[1:3] == ["-m", "pytest"]:
            check_pytest(words[3:])
            return "pytest --collect-only"
        if words[1] == "-c":
            done = subprocess.run([PYTHON, "-c", words[2]], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0 and done.stdout.strip(), f"`{command}` failed: {done.stderr}"
            return "run"
        if words[1:3] == ["-m", "venv"]:
            return "host set-up"
        if words[1] == "-m":
            check_python_module(words[2], words[3:])
            return "python -m --help"
    if program.endswith("/pip") and words[1] == "install":
        check_repository_paths(words)
        return "files exist"
    if program in HOST_COMMANDS:
        check_host_command(words, tmp_path)
        return "host command"
    raise AssertionError(f"no check for the command `{command}`: add one to tests/test_doc_examples.py")


@pytest.mark.parametrize("block", blocks_of("shell"))
def test_shell_commands(block, tmp_path):
    for command in commands(block.text):
        check_command(command, tmp_path)


def inline_commands() -> list:
    """Commands quoted in the text (`flask --app wsgi ...`, `make ...`, `.venv/bin/python -m ...`) and the
    README's command table, as pytest parameters."""
    found = []
    for doc in DOCS:
        rel = str(doc.relative_to(ROOT))
        text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
        for span in re.findall(r"`([^`\n]+)`", text):
            if re.match(r"^(flask --app wsgi [a-z]|make [a-z]|\.venv/bin/python -m \w)", span) and "..." not in span.split()[-1:]:
                found.append(pytest.param(span, id=f"{rel}:{span}"))
            elif re.match(r"^flask --app wsgi [a-z]", span):
                found.append(pytest.param(" ".join(w for w in span.split() if "..." not in w), id=f"{rel}:{span}"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    for cell in re.findall(r"^\| `([a-z][a-z-]+(?: [^`]*)?)` \|", table, flags=re.M):
        found.append(pytest.param("flask --app wsgi " + cell, id=f"README.md table:{cell}"))
    return found


@pytest.mark.parametrize("command", inline_commands())
def test_inline_commands(command, tmp_path):
    # Words in capitals (NAME, FILE.json) are the reader's values; options in brackets are optional.
    check_command(" ".join(w for w in command.split() if w not in ("COMMAND",)), tmp_path)


def test_the_readme_command_table_lists_every_command(tmp_path):
    done = run([*FLASK, "--help"], db=tmp_path / "help.sqlite3")
    ours = set(re.findall(r"^  ([a-z][a-z-]+)\s", done.stdout.split("Commands:", 1)[1], flags=re.M)) - {"routes", "run", "shell"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z][a-z-]+)", table, flags=re.M))
    assert ours <= listed, f"commands missing from the README's command table: {sorted(ours - listed)}"


# --- curl against the live service -------------------------------------------------------------------

def curl_examples() -> list:
    """(block, command, the JSON answer block right after it or None) for every curl command."""
    found = []
    for index, block in enumerate(BLOCKS):
        if kind(block) != "shell":
            continue
        following = BLOCKS[index + 1] if index + 1 < len(BLOCKS) and BLOCKS[index + 1].path == block.path else None
        answer = following if following is not None and kind(following) == "send-answer" else None
        for command in commands(block.text):
            if command.split()[0] == "curl":
                found.append(pytest.param(block, command, answer, id=str(block)))
    return found


def test_every_send_answer_follows_its_curl_example():
    paired = {str(param.values[2]) for param in curl_examples() if param.values[2] is not None}
    alone = [str(block) for block in BLOCKS if kind(block) == "send-answer" and str(block) not in paired]
    assert not alone, f"answer examples without the curl command that produces them right before: {alone}"


@pytest.mark.parametrize("block,command,answer", curl_examples())
def test_curl_examples(block, command, answer, doc_service):
    assert shutil.which("curl"), "curl is needed"
    app, base, api = doc_service
    words = [re.sub(r"^https?://(127\.0\.0\.1|localhost)(:\d+)?", base, word) for word in shlex.split(command)]
    words = [word.replace('"SECRET"', json.dumps(api.secret)) for word in words]
    done = subprocess.run(words, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{block}: `{command}` failed ({done.returncode}): {done.stderr}{done.stdout}"
    real = json.loads(done.stdout)
    if answer is not None:
        errors = shape_errors(json.loads(answer.text), real)
        assert not errors, f"{answer} does not match what `{command[:60]}...` answers:\n" + "\n".join(errors)


# --- JSON ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", blocks_of("channel-config"))
def test_channel_configurations_load(block, make_app, tmp_path):
    text = block.text
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(json.dumps(placeholder, ensure_ascii=False), json.dumps(value))
    config = json.loads(text)
    variants = [config]
    if config["wx_type"] == "qywx":
        # The README: "qy" is accepted for "qywx", and wx_qy_agentid may be a string of digits.
        variants.append({**config, "wx_type": "qy", "wx_qy_agentid": str(config["wx_qy_agentid"])})
    app = make_app()
    for number, variant in enumerate(variants):
        path = tmp_path / f"config{number}.json"
        path.write_text(json.dumps(variant, ensure_ascii=False), encoding="utf-8")
        result = app.test_cli_runner().invoke(args=["weixin-config", str(path), "--no-check"])
        assert result.exit_code == 0, f"{block}: weixin-config refuses the example:\n{result.output}"
        with app.app_context():
            stored = channel.load()
            assert stored is not None and stored.wx_type == config["wx_type"], stored


@pytest.mark.parametrize("block", blocks_of("healthz"))
def test_healthz_examples(block, doc_service):
    app, base, api = doc_service
    # The example is taken after one send, so the account's token is in it.
    assert api.send({"receiver__username": "alice", "data": {"heading": "h", "message": "m"}}).json()["result"]
    real = requests.get(base + "/healthz", timeout=10).json()
    errors = shape_errors(json.loads(block.text), real, "healthz", values=False)
    assert not errors, f"{block} does not match /healthz:\n" + "\n".join(errors)


@pytest.mark.parametrize("block", blocks_of("json-log"))
def test_json_log_examples(block, make_app, capsys):
    documented = json.loads(block.text)
    client = make_app(LOG_FORMAT="json").test_client()
    try:
        capsys.readouterr()
        client.get(documented.get("path", "/healthz"), headers={"X-Request-Id": documented["request_id"]})
        entries = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    finally:
        make_app()  # back to text lines for the tests that follow
    real = next(entry for entry in entries if entry["logger"] == documented["logger"])
    errors = shape_errors(documented, real, "log line", values=False)
    assert not errors, f"{block} does not match a real JSON log line {real}:\n" + "\n".join(errors)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", documented["time"]) and re.match(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", real["time"]), (documented["time"], real["time"])


# --- logs as text -------------------------------------------------------------------------------------

def skeleton(message: str) -> str:
    """A log message with its variable parts (numbers, ids, request ids) blanked, to compare shapes."""
    message = re.sub(r"rid: \S+", "rid: R", message)
    message = re.sub(r"\b(wx|ww|o)[0-9A-Za-z_-]{8,}\b", "ID", message)
    return re.sub(r"\d+(\.\d+)?", "N", message)


@pytest.mark.parametrize("block", blocks_of("text-log"))
def test_text_log_examples(block, doc_service, capsys):
    app, base, api = doc_service
    documented = [TEXT_LOG.match(line).groupdict() for line in block.text.splitlines()]
    rid = documented[0]["rid"]
    capsys.readouterr()
    # What the example shows: one send that fetches a token, with one receiver WeChat refuses (40003).
    requests.post(base + "/api/c/compapi/cmsi/send_weixin/", headers={**api.headers(), "X-Request-Id": rid}, timeout=60,
                  json={"receiver": "oUnknownOpenid000000000001", "data": {"heading": "h", "message": "m"}})
    err = capsys.readouterr().err
    real = [match.groupdict() for match in map(TEXT_LOG.match, err.splitlines()) if match]
    assert real, f"no log line of the service has the documented format:\n{err[:2000]}"
    for line in documented:
        shapes = {skeleton(r["message"]) for r in real if (r["level"], r["rid"], r["logger"]) == (line["level"], rid, line["logger"])}
        assert skeleton(line["message"]) in shapes, (
            f"{block}: the service writes no line like\n  {line}\nreal lines of that request:\n" + "\n".join(
                f"  {r['level']} {r['logger']}: {r['message']}" for r in real if r["rid"] == rid))


# --- environment examples -----------------------------------------------------------------------------

@pytest.mark.parametrize("block", blocks_of("env"))
def test_environment_examples(block, make_app, monkeypatch):
    for line in block.text.splitlines():
        name, _, value = line.partition("=")
        check_variable(name)
        generator = re.search(r'<[^>]*?(python3 -c "[^"]+")[^>]*>', value)
        if generator:  # a placeholder that says how to make the value: make it
            done = subprocess.run([PYTHON, "-c", shlex.split(generator.group(1))[2]], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            value = done.stdout.strip()
        assert "<" not in value, f"{block}: a placeholder without a way to make its value: {value}"
        # Read the value the way the service reads its environment, then start the service with it.
        monkeypatch.setenv(name, value)
        reader = Flask("doc-examples")
        reader.config.from_prefixed_env()
        key = name[len("FLASK_"):]
        app = make_app(**{key: reader.config[key]})
        assert app.config[key] == reader.config[key]


# --- nginx --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", blocks_of("nginx"))
def test_nginx_snippets(block, tmp_path):
    nginx_binary()
    text = block.text
    if not text.lstrip().startswith(("server", "upstream", "map")):
        text = "server {\n    listen 127.0.0.1:8089;\n" + text + "\n}\n"
    done = nginx_test(nginx_conf(tmp_path / "nginx", {"snippet.conf": text}))
    assert done.returncode == 0, f"{block}: nginx -t refuses the snippet:\n{done.stderr}"


# --- Prometheus ---------------------------------------------------------------------------------------

SCRAPE_KEYS = {"job_name", "scheme", "metrics_path", "scrape_interval", "scrape_timeout", "authorization", "basic_auth",
               "static_configs", "tls_config", "params", "honor_labels", "relabel_configs", "metric_relabel_configs",
               "bearer_token_file", "follow_redirects"}


@pytest.mark.parametrize("block", blocks_of("prometheus-scrape"))
def test_prometheus_scrape_configurations(block):
    data = yaml.safe_load(textwrap.dedent(block.text))
    jobs = data["scrape_configs"] if isinstance(data, dict) else data
    for job in jobs:
        assert set(job) <= SCRAPE_KEYS, f"{block}: unknown scrape keys {set(job) - SCRAPE_KEYS}"
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert job.get("scheme", "http") in ("http", "https")
        if "scrape_interval" in job:
            assert re.match(r"^\d+[smh]$", job["scrape_interval"])
        if "authorization" in job:
            assert job["authorization"].get("type") == "Bearer", "the service takes Authorization: Bearer <token>"
        for static in job["static_configs"]:
            assert static["targets"] and all(re.match(r"^[\w.-]+(:\d+)?$", target) for target in static["targets"])


def scrape_names(base: str) -> set[str]:
    """Every metric name a real scrape of the service shows (HELP/TYPE names and sample names)."""
    text = requests.get(base + "/metrics", timeout=10).text
    names = set(re.findall(r"^# (?:HELP|TYPE) (\w+)", text, flags=re.M)) | set(re.findall(r"^(\w+)[{ ]", text, flags=re.M))
    return names | {name + "_total" for name in names}


@pytest.mark.parametrize("block", blocks_of("prometheus-rules"))
def test_prometheus_rules_use_real_metrics(block, doc_service):
    app, base, api = doc_service
    api.send({"receiver__username": "alice", "data": {"heading": "h", "message": "m"}})
    with app.app_context():
        heartbeat.beat()  # a scheduler has run: the heartbeat gauge is there
        db.session.remove()
    names = scrape_names(base)
    rules = [rule for group in yaml.safe_load(block.text)["groups"] for rule in group["rules"]]
    assert rules
    for rule in rules:
        assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
        assert ("alert" in rule) != ("record" in rule) and rule["expr"], rule
        if "for" in rule:
            assert re.match(r"^\d+[smh]$", rule["for"]), rule
        used = set(re.findall(r"\b(weixin_\w+)", rule["expr"]))
        assert used and used <= names, f"{block}: {rule.get('alert')} uses metrics the service does not have: {used - names}"
