"""The benchmarks run, briefly, so that they never rot: each one's ``--quick`` mode, without timing targets."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_quick(module: str, timeout: int = 300) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    done = subprocess.run([sys.executable, "-m", module, "--quick"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout)


def test_the_fan_out_benchmark_sends_to_every_receiver_in_one_call():
    figures = run_quick("bench.fanout")
    service = figures["service_one_call"]
    assert service["statuses"] == {"sent": 40} and service["template_send_calls"] == 40
    assert figures["legacy_sequential_loop"]["sent"] == 40 and "cpu_ms_per_delivery" in figures


def test_the_queue_drain_benchmark_drains_exactly_once():
    figures = run_quick("bench.queue_drain")
    assert figures["variants"]["scheduler"]["exactly_once"] is True


@pytest.mark.parametrize("module", ["bench.callback_throughput", "bench.api_overhead"])
def test_the_request_benchmarks_run(module):
    run_quick(module)
