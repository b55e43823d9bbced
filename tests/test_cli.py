"""The ``gpuviz`` command: run, summary, perfetto, and an interrupt from the terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import gpuviz
from tests.conftest import ROOT, assert_all_gone, wait_for_steps, worker_pids

pytestmark = pytest.mark.slow
GPUVIZ = str(Path(sys.executable).with_name("gpuviz"))


def test_console_script_runs_a_job_then_summary_and_perfetto(tmp_path):
    run_dir = tmp_path / "r"
    out = subprocess.run([GPUVIZ, "run", "gpuviz.workloads.mlp:train", "--nproc", "2",
                          "--arg", "steps=3", "--run-dir", str(run_dir), "--no-progress"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "world_size=2" in out.stdout and "compute" in out.stdout
    assert gpuviz.load_run(run_dir).steps() == 3
    s = subprocess.run([GPUVIZ, "summary", str(run_dir)], capture_output=True, text=True, check=True)
    assert "overlap" in s.stdout
    subprocess.run([GPUVIZ, "perfetto", str(run_dir), str(tmp_path / "t.json")], check=True,
                   capture_output=True)
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]


def test_bad_input_exits_2_with_the_reason():
    out = subprocess.run([GPUVIZ, "run", "nope:main", "--nproc", "0"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2
    assert "nproc=0" in out.stderr


def test_interrupt_stops_every_worker_and_keeps_the_trace(tmp_path):
    run_dir = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "gpuviz.cli", "run", "tests/scripts/slow_steps.py",
                             "--nproc", "2", "--run-dir", str(run_dir), "--no-progress"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if not wait_for_steps(run_dir, 3):
        proc.kill()
        pytest.fail("the job did not start")
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    run = gpuviz.load_run(run_dir)
    assert run.meta["status"] == "interrupted"
    assert run.steps() >= 3
    assert_all_gone(worker_pids(run))
