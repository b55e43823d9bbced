"""Restart from checkpoint: a rank fails, torchrun restarts every worker, they resume from
the last checkpoint and finish with the parameters of an uninterrupted run. Also: a crash
in the middle of a save leaves the previous checkpoint as the latest."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import gpuviz
from gpuviz.sync import checkpoint, inject
from gpuviz.workloads.mlp import make_mlp, synthetic_regression
from tests.conftest import ROOT, assert_all_gone

CFG = {"steps": 9, "batch": 64, "dim": 16, "hidden": 32, "layers": 2, "lr": 0.05,
       "momentum": 0.9, "seed": 3}
# Checkpoint k holds the state after k steps, saved inside step k-1: here 3, 6 and 9 (the end).
# Rank 1 fails as step 5 starts; the restart resumes from checkpoint 3: steps 3, 4 run twice.
EVERY, FAIL_RANK, FAIL_STEP, RESUME = 3, 1, 5, 3
WORLD = 2


@pytest.fixture(scope="module")
def restarted(tmp_path_factory) -> gpuviz.Run:
    return gpuviz.launch("gpuviz.workloads.mlp:train", nproc=WORLD,
                         args={**CFG, "checkpoint_every": EVERY}, max_restarts=1,
                         inject=[inject.fail_at(FAIL_RANK, FAIL_STEP)],
                         run_dir=tmp_path_factory.mktemp("restart") / "run", progress=False, stream=False)


def uninterrupted(steps, batch, dim, hidden, layers, lr, momentum, seed):
    """The same training with no failure, each rank's part done in turn in this process, the
    gradients summed in rank order and divided as ``trace.all_reduce_grads`` does."""
    x_all, y_all = synthetic_regression(batch * steps, dim, seed)
    model = make_mlp(dim, hidden, layers, seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    params, local, losses = list(model.parameters()), batch // WORLD, []
    for step in range(steps):
        flat = None
        for rank in range(WORLD):
            lo = step * batch + rank * local
            loss = nn.functional.mse_loss(model(x_all[lo:lo + local]), y_all[lo:lo + local])
            grads = torch.autograd.grad(loss, params)
            g = torch.cat([t.reshape(-1) for t in grads])
            flat = g if flat is None else flat + g
            if rank == 0:
                losses.append(loss.item())
        flat /= WORLD
        offset = 0
        for p in params:
            p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model, opt, losses


def _step_ends(run, rank):
    e = run.events[(run.events["name"] == "step_end") & (run.events["rank"] == rank)]
    return e


@pytest.mark.slow
def test_the_job_succeeds_after_one_restart(restarted):
    run = restarted
    assert run.meta["status"] == "ok" and run.meta["restarts"] == 1 and run.meta["max_restarts"] == 1
    assert run.meta["inject"] == [inject.fail_at(FAIL_RANK, FAIL_STEP)]
    first = run.errors().iloc[0]
    assert (first["rank"], first["step"], first["attempt"]) == (FAIL_RANK, FAIL_STEP, 0)
    assert first["error"].startswith(f"InjectedFailure: injected failure on rank {FAIL_RANK} at the start of step {FAIL_STEP}")
    assert run.steps() == CFG["steps"]


@pytest.mark.slow
def test_no_step_is_lost_and_the_redone_ones_appear_twice(restarted):
    run = restarted
    for rank in range(WORLD):
        e = _step_ends(run, rank)
        assert list(e.loc[e["attempt"] == 0, "step"]) == list(range(FAIL_STEP))
        assert list(e.loc[e["attempt"] == 1, "step"]) == list(range(RESUME, CFG["steps"]))
        resumed = run.events[(run.events["name"] == "resumed") & (run.events["rank"] == rank)]
        assert list(resumed["step"]) == [RESUME] and list(resumed["attempt"]) == [1]
        # One time axis: attempt 1 starts after attempt 0 ended, on every rank.
        sp = run.spans[run.spans["rank"] == rank]
        assert sp.loc[sp["attempt"] == 1, "start"].min() > sp.loc[sp["attempt"] == 0, "end"].max()
    # A re-done step computes exactly what it computed the first time (state fully restored).
    e = _step_ends(run, 0)
    for step in range(RESUME, FAIL_STEP):
        again = [a["loss"] for a in e.loc[e["step"] == step, "args"]]
        assert len(again) == 2 and again[0] == again[1], (step, again)
    loads = run.spans[run.spans["name"] == "load checkpoint"]
    assert list(loads["attempt"]) == [1] * WORLD and list(loads["step"]) == [RESUME] * WORLD


@pytest.mark.slow
def test_final_parameters_equal_an_uninterrupted_run(restarted):
    torch.set_num_threads(1)  # as the workers (OMP_NUM_THREADS=1): the same float sums
    ref_model, ref_opt, ref_losses = uninterrupted(**CFG)
    model = make_mlp(CFG["dim"], CFG["hidden"], CFG["layers"], seed=99)  # other values
    opt = torch.optim.SGD(model.parameters(), lr=CFG["lr"], momentum=CFG["momentum"])
    assert checkpoint.load_latest(model, opt, directory=restarted.path / "checkpoints") == CFG["steps"]
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], ref_opt.state[q]["momentum_buffer"],
                                   rtol=1e-6, atol=1e-7)
    e = _step_ends(restarted, 0).drop_duplicates("step")
    assert [a["loss"] for a in e["args"]] == pytest.approx(ref_losses, rel=1e-6)


@pytest.mark.slow
def test_no_worker_of_either_attempt_is_left(restarted):
    attempts = restarted.meta["attempts"]
    assert [a["attempt"] for a in attempts] == [0, 1]
    pids = [p for a in attempts for p in a["pids"].values()]
    assert len(set(pids)) == 2 * WORLD
    assert_all_gone(pids)


@pytest.mark.slow
def test_perfetto_export_puts_both_attempts_on_one_axis(restarted, tmp_path):
    ev = json.loads(restarted.to_perfetto(tmp_path / "t.json").read_text())["traceEvents"]
    starts = sorted(e["ts"] / 1e6 for e in ev if e["ph"] == "X")
    assert starts == pytest.approx(sorted(restarted.spans["start"]), abs=1e-6)


@pytest.mark.slow
def test_the_timeline_marks_the_failure_and_the_restart(restarted):
    fig = gpuviz.plot.timeline(restarted)
    labels = [a.text for a in fig.layout.annotations]
    assert labels[-2:] == [f"failure: rank {FAIL_RANK} (InjectedFailure), step {FAIL_STEP}",
                           f"restart 1, resumed at step {RESUME}"]
    bars = sum(len(t.x) for t in fig.data if t.type == "bar" and not t.name.startswith("interrupted"))
    assert bars == len(restarted.spans)  # both attempts drawn
    assert "2 attempts" in fig.layout.title.subtitle.text
    # the dead time between the attempts (processes stopped and started again) is cut
    from gpuviz.plot.restarts import KEEP, attempt_shifts

    sp = restarted.spans
    by = sp.groupby("attempt").agg(start=("start", "min"), end=("end", "max"))
    gap = by.loc[1, "start"] - by.loc[0, "end"]
    drawn = (by["end"] - by["start"]).sum()
    shift = attempt_shifts(sp)[1]
    if gap > KEEP * drawn:                       # cut to KEEP of the drawn time, and labelled
        assert gap - shift == pytest.approx(KEEP * drawn)
        assert labels[0] == f"{gap:.1f} s cut" and "restarts cut" in fig.layout.xaxis.title.text
    band, failure, restart = ([s.x0 for s in fig.layout.shapes] if gap > KEEP * drawn
                              else [None] + [s.x0 for s in fig.layout.shapes])
    assert failure < restart == pytest.approx(by.loc[1, "start"] - shift
                                              if gap > KEEP * drawn
                                              else restarted.meta["attempts"][1]["offset_s"])


# -- checkpoints on their own (one process) --------------------------------------------------------

CRASH_IN_SAVE = r"""
import json, os, signal, sys
import torch
from torch.distributed.checkpoint import FileSystemWriter
from gpuviz.sync import checkpoint

d = sys.argv[1]
torch.manual_seed(0)
model = torch.nn.Linear(8, 4)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
model(torch.randn(2, 8)).sum().backward()
opt.step()
checkpoint.save(2, model, opt, directory=d)
with open(os.path.join(d, "expected.json"), "w") as f:
    json.dump([p.tolist() for p in model.parameters()], f)
with torch.no_grad():
    for p in model.parameters():
        p.add_(1.0)
FileSystemWriter.finish = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # data written, no index
checkpoint.save(4, model, opt, directory=d)
print("not reached")
"""


def test_a_crash_during_a_save_leaves_the_previous_checkpoint(tmp_path):
    d = tmp_path / "checkpoints"
    out = subprocess.run([sys.executable, "-c", CRASH_IN_SAVE, str(d)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == -9 and "not reached" not in out.stdout, out.stderr
    assert (d / ".step4.tmp").is_dir() and any((d / ".step4.tmp").iterdir())  # the half save is there
    assert checkpoint.list_checkpoints(d) == [2]
    model = torch.nn.Linear(8, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert checkpoint.load_latest(model, opt, directory=d) == 2
    expected = json.loads((d / "expected.json").read_text())
    for p, want in zip(model.parameters(), expected, strict=True):
        assert p.tolist() == want
    assert set(opt.state[model.weight]) == {"momentum_buffer"}
    checkpoint.save(4, model, opt, directory=d)  # the next save replaces the half one
    assert checkpoint.list_checkpoints(d) == [2, 4] and not (d / ".step4.tmp").exists()


def test_no_checkpoint_and_bad_input(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.clone() for p in model.parameters()]
    assert checkpoint.load_latest(model, opt, directory=tmp_path) is None
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    (tmp_path / "step9").mkdir()  # no index: not a complete checkpoint
    assert checkpoint.list_checkpoints(tmp_path) == []
    with pytest.raises(ValueError, match="step=-1"):
        checkpoint.save(-1, model, opt, directory=tmp_path)
    monkeypatch.delenv("GPUVIZ_RUN_DIR", raising=False)
    with pytest.raises(ValueError, match="directory is not given"):
        checkpoint.save(1, model, opt)
    with pytest.raises(ValueError, match="checkpoint_every=-2"):
        from gpuviz.workloads.mlp import _check
        _check(4, 8, 2, checkpoint_every=-2)
