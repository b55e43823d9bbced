"""Training scripts with no gpuviz in them run unchanged under gpuviz: a script that makes
its own process group makes it (its backend and timeout win), one that destroys it at the
end is followed, and argparse, ``__main__``, sibling imports, ``LOCAL_RANK``/``RANK`` and
``sys.exit(0)`` behave as under plain torchrun; with no annotations, their timelines show
steps, compute, communication with its bytes, and the wait for other ranks."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import gpuviz
from gpuviz.run.intervals import split_exposed_backward, split_waits
from gpuviz.run.scripts import makes_its_own_group, plain_script
from tests.conftest import ROOT, SCRIPTS

OWN = SCRIPTS / "own"


def test_a_script_that_makes_its_group_is_told_from_one_that_does_not():
    assert makes_its_own_group(str(OWN / "plain_ddp.py"))
    assert makes_its_own_group(str(OWN / "plain_allreduce.py"))
    assert not makes_its_own_group(str(SCRIPTS / "slow_steps.py"))   # relies on the worker's
    assert plain_script(str(OWN / "plain_ddp.py"))                   # no gpuviz: auto timeline
    assert not plain_script(str(SCRIPTS / "slow_steps.py"))          # annotated itself


def test_a_collectives_wait_for_the_last_rank_is_split_off_as_idle():
    def row(rank, start, end):
        return {"rank": rank, "lane": "main", "step": 0, "name": "all_reduce", "cat": "comm",
                "start": start, "end": end, "dur": end - start, "bytes": 64, "attempt": 0,
                "args": {"auto": True, "collective": True, "seq": 1, "group": None},
                "interrupted": False}

    sp = pd.DataFrame([row(0, 1.0, 3.0), row(1, 2.5, 3.0)])
    out = split_waits(sp)
    wait = out[out["name"] == "wait for others"]
    assert list(wait["rank"]) == [0] and wait["start"].iloc[0] == 1.0 and wait["end"].iloc[0] == 2.5
    comm = out[out["cat"] == "comm"].set_index("rank")
    assert comm.loc[0, "start"] == 2.5 and comm.loc[0, "dur"] == 0.5   # the transfer itself
    assert comm.loc[1, "start"] == 2.5                                   # the last one waits not


def test_splitting_waits_can_consume_its_input_column_by_column():
    """The loader hands its spans over (``consume=True``): the same result, and the input's
    columns are dropped as they are copied, so a run's spans are never held twice whole."""
    mark = {"auto": True, "collective": True, "seq": 1, "group": None}
    rows = [_span(0, "main", "all_reduce", 1.0, 3.0, **mark), _span(0, "main", "fwd", 0.0, 1.0),
            _span(1, "main", "all_reduce", 2.5, 3.0, **mark), _span(1, "main", "fwd", 0.0, 2.5)]
    kept = split_waits(pd.DataFrame(rows))
    given = pd.DataFrame(rows)
    out = split_waits(given, consume=True)
    assert out.drop(columns="args").equals(kept.drop(columns="args")) and len(given.columns) == 0
    assert out["name"].tolist() == ["fwd", "wait for others", "all_reduce", "fwd", "all_reduce"]


def _span(rank, lane, name, start, end, **args):
    return {"rank": rank, "lane": lane, "step": 0, "name": name,
            "cat": "comm" if "all_" in name else "compute", "start": start, "end": end,
            "dur": end - start, "bytes": 64 if "all_" in name else pd.NA, "attempt": 0,
            "args": args, "interrupted": False}


def test_calls_of_different_collectives_are_not_taken_for_one_call():
    """A broadcast and an all-reduce both numbered 1 in their group are different calls."""
    mark = {"auto": True, "collective": True, "seq": 1, "group": None}
    sp = pd.DataFrame([_span(0, "main", "broadcast", 1.0, 1.2, **mark),
                       _span(1, "main", "broadcast", 1.1, 1.2, **mark),
                       _span(0, "main", "all_reduce", 2.0, 2.4, **mark),
                       _span(1, "main", "all_reduce", 2.3, 2.4, **mark)])
    wait = split_waits(sp).query("name == 'wait for others'")
    assert list(zip(wait["rank"], wait["start"], wait["end"], strict=True)) == [(0, 1.0, 1.1), (0, 2.0, 2.3)]


def test_a_ddp_backward_ends_where_its_last_bucket_leaves_and_then_waits():
    """Rank 0's gradients are ready at 1.0, rank 1's at 2.0; both transfers end at 3.0."""
    mark = {"auto": True, "collective": True, "group": None}
    sp = pd.DataFrame([_span(0, "main", "backward", 0.0, 3.0, auto=True),
                       _span(0, "comm", "all_reduce bucket 0", 1.0, 3.0, seq=1, **mark),
                       _span(1, "main", "backward", 0.5, 3.0, auto=True),
                       _span(1, "comm", "all_reduce bucket 0", 2.0, 3.0, seq=1, **mark)])
    out = split_exposed_backward(sp)
    main = out[out["lane"] == "main"]
    got = {(r, n): (a, z) for r, n, a, z in zip(main["rank"], main["name"], main["start"], main["end"], strict=True)}
    assert got == {(0, "backward"): (0.0, 1.0), (0, "wait for others"): (1.0, 2.0),
                   (0, "all-reduce (exposed)"): (2.0, 3.0),
                   (1, "backward"): (0.5, 2.0), (1, "all-reduce (exposed)"): (2.0, 3.0)}
    assert main.set_index("name").loc["wait for others", "cat"] == "idle"
    # an annotated backward (no "auto") is the workload's own span: left as it is
    sp.at[0, "args"] = {}
    assert split_exposed_backward(sp).query("rank == 0 and lane == 'main'")["name"].tolist() == ["backward"]


@pytest.mark.slow
@pytest.mark.parametrize("script, args, says, steps, comm", [
    # DDP, destroys its group at the end: gradient buckets on the comm lane
    ("plain_ddp.py", ["--lr", "0.05"], "plain_ddp done: local rank 0, loss", 10, "all_reduce bucket 0"),
    # FSDP2 with its own timeout: its all-gathers and reduce-scatters
    ("plain_fsdp2.py", [], "plain_fsdp2 done", 5, "all_gather_single"),
    # env reads, a DataLoader with worker processes, a hand-written all-reduce per
    # parameter, sys.exit(0)
    ("plain_allreduce.py", [], "plain_allreduce done", 5, "all_reduce"),
])
def test_an_ordinary_script_runs_unchanged_and_shows_its_timeline(tmp_path, capsys, script, args,
                                                                 says, steps, comm):
    run = gpuviz.launch(str(OWN / script), nproc=2, args=args, run_dir=tmp_path / "r",
                        progress=False, timeout=180)
    assert says in capsys.readouterr().out
    assert run.meta["status"] == "ok" and run.ranks == [0, 1]
    assert run.meta["backend"] == "gloo" and run.meta["clock"] != "not aligned"
    assert run.steps() == steps
    sp = run.spans
    for rank in run.ranks:
        mine = sp[sp["rank"] == rank]
        assert {"forward", "backward", "optimizer step"} <= set(mine["name"])
        c = mine[mine["name"] == comm]
        assert len(c) and (c["bytes"] > 0).all()
    total = run.summary()
    assert (total["compute"] > 0).all() and (total["optimizer"] > 0).all()
    # the wait for the last rank is idle (for DDP: after the last bucket left, in backward)
    assert (sp["name"] == "wait for others").any() and total["idle"].sum() > 0
    assert (total[["compute", "comm", "optimizer", "data", "idle", "io", "untraced"]].sum(axis=1)
            - total["wall"]).abs().max() < 1e-6
    c = run.comm()   # every recorded collective with its bus bandwidth
    assert len(c) and c["collective"].isin(["all_reduce", "all_gather", "reduce_scatter"]).all()
    assert (c["busbw"] > 0).all()
    if script == "plain_ddp.py":
        assert (sp["name"] == "all-reduce (exposed)").any()
    if script == "plain_allreduce.py":
        # a batch a step, and the last call that finds the loader empty; on each rank, the
        # epoch's start (its 2 worker processes started) before the first batch
        assert (sp[sp["cat"] == "data"]["name"] == "load batch").sum() == 2 * (steps + 1)
        start = sp[sp["name"] == "start loader"]
        assert sorted(start["rank"]) == [0, 1] and (start["cat"] == "data").all()
        assert [a["workers"] for a in start["args"]] == [2, 2]
        first_batch = sp[sp["name"] == "load batch"].groupby("rank")["start"].min()
        assert (start.set_index("rank")["end"] <= first_batch).all()


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


@pytest.mark.slow
def test_a_scripts_own_annotations_nest_inside_the_automatic_spans(tmp_path):
    run = gpuviz.launch(str(OWN / "annotated_inside.py"), nproc=2, run_dir=tmp_path / "r",
                        progress=False, auto=True, timeout=180)
    sp = run.spans[run.spans["lane"] == "main"]
    assert run.steps() == 4
    for rank in run.ranks:
        mine = sp[sp["rank"] == rank]
        fwd, own = mine[mine["name"] == "forward"], mine[mine["name"] == "my hidden layer"]
        assert len(own) == len(fwd) == 4
        for (_, f), (_, o) in zip(fwd.iterrows(), own.iterrows(), strict=True):
            assert f["start"] <= o["start"] and o["end"] <= f["end"]   # inside its forward
    total = run.summary()   # nested time counted once
    assert (total[["compute", "comm", "optimizer", "data", "idle", "io", "untraced"]].sum(axis=1)
            - total["wall"]).abs().max() < 1e-6


def test_the_next_optimizer_ends_steps_once_the_first_is_gone(tmp_path):
    # a script that trains in phases, each with an optimizer of its own
    import gc

    import torch

    from gpuviz.run import auto, trace

    t = trace.Tracer(tmp_path, rank=0, world_size=1)
    t.started = True   # auto records once the clock is aligned; one process needs no aligning
    trace.set_tracer(t)
    uninstall = auto.install()
    try:
        model = torch.nn.Linear(4, 1)
        for phase, steps in ((1, 3), (2, 2)):
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            other = torch.optim.SGD(model.parameters(), lr=0.1)   # steps too: ends nothing
            for _ in range(steps):
                model(torch.ones(2, 4)).sum().backward()
                opt.step()
                other.step()
            assert t.step_index == {1: 3, 2: 5}[phase]
            del opt, other
            gc.collect()
    finally:
        uninstall()
        trace.set_tracer(None)
        t.close()
