"""Check the pinned dependencies for known vulnerabilities with pip-audit, without failing on a dead network.

Usage: ``python scripts/audit_dependencies.py -r requirements.txt -r requirements-dev.txt`` (``make audit``).

Exit status: 0 when no known vulnerability was found, or when no vulnerability service could be
reached (a loud warning says so); 1 when a pinned package has a known vulnerability (the report
lists it with the fixed versions); 2 when pip-audit itself failed for another reason (e.g. a
requirements file that does not resolve). Set ``AUDIT_REQUIRE_SERVICE=1`` to turn "no service
reachable" into exit 3, for machines that are expected to have the network.

Why a wrapper: pip-audit's default service asks ``https://pypi.org/pypi/NAME/VERSION/json``. Where
only the package registry is reachable (as on the machines this project is built on), that URL
answers 404, and pip-audit then *skips* every package ("Dependency not found on PyPI") and still
reports "No known vulnerabilities found" with exit 0: a silent false pass. This script probes the
services first, runs pip-audit with one that answers, treats "everything skipped" as "not
checked", and, when neither PyPI's per-version JSON nor OSV answers, falls back to PyPI's
per-project JSON (``/pypi/NAME/json``), whose ``vulnerabilities`` list is that of the latest
release: it is exact for every package pinned at its latest release and the others are named as
not checked.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import requests

PYPI = "https://pypi.org/pypi"
OSV = "https://api.osv.dev/v1/query"
TIMEOUT = 15
NO_SERVICE, FOUND, FAILED = 3, 1, 2


def say(text: str = "") -> None:
    """Print to stderr, where make shows it next to the command."""
    print(text, file=sys.stderr, flush=True)


def warn_block(lines: list[str]) -> None:
    """A warning nobody scrolling through CI output can miss."""
    bar = "!" * 78
    say(bar)
    for line in lines:
        say(f"!! {line}")
    say(bar)


def pins(files: list[str]) -> list[tuple[str, str]]:
    """``(name, version)`` of every ``name==version`` line in the requirement files (following ``-r``)."""
    found: list[tuple[str, str]] = []
    for file in files:
        path = Path(file)
        for raw in path.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line.startswith("-r "):
                found += pins([str(path.parent / line[3:].strip())])
            elif "==" in line:
                name, version = line.split("==", 1)
                found.append((name.split("[", 1)[0].strip(), version.split(";", 1)[0].strip()))
    return found


def reachable_service(name: str, version: str) -> str | None:
    """The first vulnerability service that answers for ``name==version``: "pypi", "osv", or None."""
    try:
        if requests.get(f"{PYPI}/{name}/{version}/json", timeout=TIMEOUT).status_code == 200:
            return "pypi"
    except requests.RequestException:
        pass
    try:
        answer = requests.post(OSV, json={"package": {"name": name, "ecosystem": "PyPI"}, "version": version},
                               timeout=TIMEOUT)
        if answer.status_code == 200:
            return "osv"
    except requests.RequestException:
        pass
    return None


def run_pip_audit(files: list[str], service: str) -> int:
    """Run pip-audit with ``service``; report findings; return this script's exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip_audit", "--progress-spinner", "off", "--vulnerability-service", service,
                   "--format", "json", "--output", str(out), "--desc", "off"]
        for file in files:
            command += ["-r", file]
        say(f"pip-audit ({service}): {' '.join(files)}")
        completed = subprocess.run(command, capture_output=True, text=True)  # nosec B603
        if not out.exists() or not out.read_text().strip():
            say(completed.stderr.strip())
            if any(word in completed.stderr for word in ("ConnectionError", "Timeout", "Max retries", "NameResolution")):
                return no_service(f"pip-audit lost its connection to {service}")
            say("pip-audit failed (see above): fix the requirement files or the environment.")
            return FAILED
        report = json.loads(out.read_text())
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    for dep in skipped:
        say(f"  not checked: {dep['skip_reason']}")
    if vulnerable:
        return report_findings([(d["name"], d["version"], v["id"], v.get("fix_versions") or []) for d in vulnerable for v in d["vulns"]])
    if dependencies and len(skipped) == len(dependencies):
        return no_service(f"{service} answered, but pip-audit could check none of the {len(skipped)} packages")
    say(f"No known vulnerabilities in {len(dependencies) - len(skipped)} pinned packages ({service}).")
    return 0


def report_findings(findings: list[tuple[str, str, str, list[str]]]) -> int:
    """List the vulnerable pins and what to upgrade to; return FOUND."""
    say("Known vulnerabilities in pinned packages:")
    for name, version, vuln_id, fixes in findings:
        say(f"  {name}=={version}  {vuln_id}  fixed in: {', '.join(fixes) or 'no fixed release yet'}")
    say("Bump these pins to a fixed version in requirements*.txt, then run `make test`.")
    return FOUND


def latest_release_check() -> int:
    """Fallback: check installed packages against PyPI's per-project JSON (exact for latest-release pins)."""
    installed = {dist.metadata["Name"].lower(): dist.version for dist in metadata.distributions() if dist.metadata["Name"]}

    def look(item):
        name, version = item
        try:
            answer = requests.get(f"{PYPI}/{name}/json", timeout=TIMEOUT)
            answer.raise_for_status()
            data = answer.json()
        except (requests.RequestException, ValueError):
            return name, version, None, []
        return name, version, data["info"]["version"], data.get("vulnerabilities") or []

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(look, sorted(installed.items())))
    if all(latest is None for _, _, latest, _ in results):
        return no_service("PyPI's per-project JSON does not answer either")
    checked = [(n, v, vulns) for n, v, latest, vulns in results if latest == v]
    unchecked = [(n, v, latest) for n, v, latest, _ in results if latest != v]
    findings = [(n, v, vuln.get("id", "?"), vuln.get("fixed_in") or []) for n, v, vulns in checked for vuln in vulns]
    warn_block([
        "No vulnerability service (PyPI per-version JSON, OSV) is reachable from this machine.",
        f"Fallback: {len(checked)} installed packages pinned at their latest release were checked",
        "against PyPI's per-project JSON; the packages below could not be checked:",
        *[f"  {n}=={v} (latest {latest or 'unknown'})" for n, v, latest in unchecked],
        "Run `make audit` where https://pypi.org/pypi/NAME/VERSION/json or https://api.osv.dev answers.",
    ])
    if findings:
        return report_findings(findings)
    return NO_SERVICE if os.environ.get("AUDIT_REQUIRE_SERVICE") == "1" else 0


def no_service(reason: str) -> int:
    """Warn that the dependencies were not audited; exit 0 unless AUDIT_REQUIRE_SERVICE=1."""
    strict = os.environ.get("AUDIT_REQUIRE_SERVICE") == "1"
    warn_block([
        f"DEPENDENCY AUDIT NOT DONE: {reason}.",
        "No vulnerability service (PyPI per-version JSON, OSV) answered from this machine.",
        "The pins were NOT checked for known vulnerabilities; run `make audit` with network access.",
        "Continuing, so that a network outage does not fail the build." if not strict
        else "AUDIT_REQUIRE_SERVICE=1: failing.",
    ])
    return NO_SERVICE if strict else 0


def main() -> int:
    """Parse the arguments, pick a service, audit."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("-r", "--requirement", action="append", required=True, help="a pinned requirements file")
    files = parser.parse_args().requirement
    pinned = pins(files)
    if not pinned:
        say("No name==version pins found in " + ", ".join(files))
        return FAILED
    service = reachable_service(*pinned[0])
    if service is None:
        return latest_release_check()
    return run_pip_audit(files, service)


if __name__ == "__main__":
    sys.exit(main())
