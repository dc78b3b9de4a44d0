"""Every Prometheus alert rule shown in the docs, checked with promtool against a real ``/metrics`` scrape.

* ``promtool check rules`` on each rule group of the docs (syntax and PromQL);
* every metric a rule names exists in a scrape of the running service, with the label values it
  selects;
* ``promtool test rules`` evaluates the rules on series taken from real scrapes: the failed-delivery
  alert fires when receivers are refused before WeChat is called, and stays quiet when all is sent.

promtool comes with Debian's ``prometheus`` package (``make test-tools`` installs it).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.api_support import mp, service  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
SELECTOR = re.compile(r"\b(weixin_[a-z_]+)(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed: `apt-get install prometheus` (or `make test-tools`)")
    return found


def documented_groups() -> list[tuple[Path, dict]]:
    """The rule files shown in the docs: YAML blocks with a top-level ``groups`` key."""
    found = []
    for page in DOCS:
        for block in re.findall(r"```ya?ml\n(.*?)```", page.read_text(), re.S):
            document = yaml.safe_load(block)
            if isinstance(document, dict) and "groups" in document:
                found.append((page, document))
    return found


def rules() -> list[dict]:
    return [rule for _, document in documented_groups() for group in document["groups"] for rule in group["rules"]]


def test_the_docs_show_alert_rules():
    names = [rule.get("alert") for rule in rules()]
    assert "WeixinDeliveriesFailing" in names and "WeixinApiCredentialsThrottled" in names, names


def test_promtool_accepts_every_documented_rule_group(tmp_path):
    tool = promtool()
    for number, (page, document) in enumerate(documented_groups()):
        path = tmp_path / f"rules-{number}.yml"
        path.write_text(yaml.safe_dump(document))
        done = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "SUCCESS" in done.stdout, f"{page.name}:\n{done.stdout}\n{done.stderr}"


def samples_of(text: str) -> tuple[set[str], list[tuple[str, dict, float]]]:
    """The metric names a scrape declares (families and samples) and its samples (name, labels, value)."""
    names, samples = set(), []
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
            samples.append((sample.name, dict(sample.labels), sample.value))
    names |= set(re.findall(r"^# (?:HELP|TYPE) (\S+)", text, re.M))
    return names, samples


def scrape(base: str) -> str:
    answer = requests.get(base + "/metrics", timeout=10)
    assert answer.status_code == 200
    return answer.text


def series(samples, used: set[str], before) -> list[dict]:
    """promtool input series for the samples of the metrics the rules use: a counter grows per minute by
    what it gained since the ``before`` samples (the process's counters also hold earlier tests' work)."""
    earlier = {(name, tuple(sorted(labels.items()))): value for name, labels, value in before}
    found = []
    for name, labels, value in samples:
        if name not in used or name.endswith("_created"):
            continue
        selector = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        if name.endswith("_total"):
            gained = value - earlier.get((name, tuple(sorted(labels.items()))), 0.0)
            found.append({"series": selector, "values": f"0+{gained:g}x60"})
        else:
            found.append({"series": selector, "values": f"{value:g}x60"})
    return found


def test_the_rules_match_the_real_metrics_and_fire_on_refused_deliveries(mp, tmp_path):
    tool = promtool()
    app, base, api = mp
    data = {"heading": "Disk alert", "message": "disk /data 91% full"}
    before = samples_of(scrape(base))[1]
    assert api.send({"receiver__username": "alice", "data": data}).json()["result"] is True
    all_sent = scrape(base)
    # Receivers that fail before WeChat is called (not bound, no such user), and a throttled caller.
    answer = api.send({"receiver__username": "dave,nobody", "data": data}).json()
    assert [d["status"] for d in answer["data"]["deliveries"]] == ["failed", "failed"]
    for _ in range(app.config["API_AUTH_MAX_FAILURES_PER_APP"] + 1):
        requests.post(base + "/api/c/compapi/cmsi/send_weixin/", json={}, timeout=10,
                      headers={"X-Bkapi-Authorization": '{"bk_app_code": "guessed", "bk_app_secret": "nope"}'})
    troubled = scrape(base)

    names, samples = samples_of(troubled)
    used = set()
    for rule in rules():
        for name, braces in SELECTOR.findall(rule["expr"]):
            used.add(name)
            assert name in names, f"{rule['alert']} names {name}, which /metrics does not have"
            for key, wanted in MATCHER.findall(braces or ""):
                assert any(n == name and labels.get(key) == wanted for n, labels, _ in samples), \
                    f"{rule['alert']} selects {name}{{{key}=\"{wanted}\"}}, which no sample of /metrics has"

    groups = []
    for number, (_, document) in enumerate(documented_groups()):
        path = tmp_path / f"rules-{number}.yml"
        path.write_text(yaml.safe_dump(document))
        groups.append(path.name)
    cases = []
    for text, firing in ((troubled, True), (all_sent, False)):
        alerts = [{"exp_labels": {}}] if firing else []
        cases.append({
            "interval": "1m",
            "input_series": series(samples_of(text)[1], used, before),
            "alert_rule_test": [
                {"eval_time": "30m", "alertname": "WeixinDeliveriesFailing", "exp_alerts": alerts},
                {"eval_time": "30m", "alertname": "WeixinApiCredentialsThrottled", "exp_alerts": alerts},
                {"eval_time": "30m", "alertname": "WeixinQueueStuck", "exp_alerts": []},
            ],
        })
    tests = tmp_path / "tests.yml"
    tests.write_text(yaml.safe_dump({"rule_files": groups, "evaluation_interval": "1m", "tests": cases}))
    done = subprocess.run([tool, "test", "rules", str(tests)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
