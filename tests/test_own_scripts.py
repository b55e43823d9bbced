"""Training scripts with no gpuviz in them run unchanged under gpuviz: a script that makes
its own process group makes it (its backend and timeout win), one that destroys it at the
end is followed, and argparse, ``__main__``, sibling imports, ``LOCAL_RANK``/``RANK`` and
``sys.exit(0)`` behave as under plain torchrun."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gpuviz
from gpuviz.run.scripts import makes_its_own_group
from tests.conftest import ROOT, SCRIPTS

OWN = SCRIPTS / "own"


def test_a_script_that_makes_its_group_is_told_from_one_that_does_not():
    assert makes_its_own_group(str(OWN / "plain_ddp.py"))
    assert makes_its_own_group(str(OWN / "plain_allreduce.py"))
    assert not makes_its_own_group(str(SCRIPTS / "slow_steps.py"))   # relies on the worker's


@pytest.mark.slow
@pytest.mark.parametrize("script, args, says", [
    ("plain_ddp.py", ["--lr", "0.05"], "plain_ddp done: local rank 0, loss"),   # DDP, destroys
    ("plain_fsdp2.py", [], "plain_fsdp2 done"),               # FSDP2, its own timeout
    ("plain_allreduce.py", [], "plain_allreduce done"),       # env reads, sys.exit(0)
])
def test_an_ordinary_script_runs_unchanged(tmp_path, capsys, script, args, says):
    run = gpuviz.launch(str(OWN / script), nproc=2, args=args, run_dir=tmp_path / "r",
                        progress=False, timeout=180)
    assert says in capsys.readouterr().out
    assert run.meta["status"] == "ok" and run.ranks == [0, 1]
    assert run.meta["backend"] == "gloo" and run.meta["clock"] != "not aligned"


@pytest.mark.slow
def test_an_ordinary_script_runs_under_torchrun_and_the_worker(tmp_path):
    """The cluster recipe: ``torchrun -m gpuviz.run.worker SCRIPT --run-dir DIR -- ARGS``."""
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "2", "-m", "gpuviz.run.worker",
                          str(OWN / "plain_ddp.py"), "--run-dir", str(tmp_path / "r"),
                          "--", "--lr", "0.1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "lr 0.1" in out.stdout
    run = gpuviz.load_run(tmp_path / "r")
    assert run.ranks == [0, 1] and run.meta["backend"] == "gloo"
