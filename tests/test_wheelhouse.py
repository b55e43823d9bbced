"""A room with no internet: `make wheelhouse` writes every wheel the labs need, and
`make setup-offline` installs a working seat from that folder alone (pip --no-index)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_a_seat_installs_from_the_wheelhouse_alone(tmp_path):
    wh, venv = tmp_path / "wheelhouse", tmp_path / "seat"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PIP_"))}
    made = subprocess.run(["make", "-C", str(ROOT), "wheelhouse", f"WHEELHOUSE={wh}"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    names = [p.name for p in wh.iterdir()]
    assert any(n.startswith("torch-2.13.0+cpu") for n in names), names     # the CPU build, not CUDA
    assert not any(n.startswith(("nvidia_cu", "nvidia_nccl", "triton")) for n in names)   # no CUDA
    assert any(n.startswith("gpuviz-") for n in names) and any(n.startswith("jupyterlab-") for n in names)
    seat = subprocess.run(["make", "-C", str(ROOT), "setup-offline", f"WHEELHOUSE={wh}", f"VENV={venv}"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert seat.returncode == 0, seat.stdout[-2000:] + seat.stderr[-2000:]
    assert "--no-index" in seat.stdout
    doctor = subprocess.run([str(venv / "bin" / "gpuviz"), "doctor", "--no-job"], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path,
                            env={**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"})
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "This seat is ready for the labs." in doctor.stdout
