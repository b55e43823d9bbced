"""Shared fixtures: real multi-process runs, made once per session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil
import pytest

import gpuviz

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "scripts"

# Scripts that jobs run (targets, not tests): never imported by the collector.
collect_ignore_glob = ["scripts/*"]

# The checks the tests call record a learner's progress: not into the repository.
_PROGRESS = tempfile.mkdtemp(prefix="gpuviz-tests-")
atexit.register(shutil.rmtree, _PROGRESS, ignore_errors=True)
os.environ.setdefault("GPUVIZ_PROGRESS_FILE", os.path.join(_PROGRESS, "gpuviz-progress.jsonl"))


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    """Jobs resolve script paths from the repository root."""
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory) -> gpuviz.Run:
    """A real 4-rank gloo job: the MLP with one flat gradient all-reduce per step."""
    return gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4, args={"steps": 6},
                         run_dir=tmp_path_factory.mktemp("mlp") / "run", progress=False)


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory) -> gpuviz.Run:
    """A real 4-rank DDP job with small buckets, so bucket all-reduces overlap backward."""
    return gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4,
                         args={"steps": 6, "ddp": True, "bucket_cap_mb": 0.1},
                         run_dir=tmp_path_factory.mktemp("ddp") / "run", progress=False)


@pytest.fixture
def one_rank():
    """A gloo process group of one rank in this process (no ports: a HashStore)."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already running in this test process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def assert_all_gone(pids, timeout: float = 5.0) -> None:
    """Every pid has exited (zombies awaiting their parent count as gone)."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"worker processes still running: {alive}"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_for_steps(run_dir: Path, steps: int, timeout: float = 120.0) -> bool:
    """Wait until rank 0 of a running job has finished ``steps`` steps; False on timeout."""
    deadline = time.monotonic() + timeout
    rank0 = Path(run_dir) / "rank0.jsonl"
    while time.monotonic() < deadline:
        if rank0.exists() and rank0.read_text().count('"step_end"') >= steps:
            return True
        time.sleep(0.1)
    return False


def worker_pids(run: gpuviz.Run) -> list[int]:
    pids = [p for p in run.meta["pids"].values() if p]
    assert pids, "the run recorded no worker pids"
    return pids


os.environ.setdefault("OMP_NUM_THREADS", "1")
