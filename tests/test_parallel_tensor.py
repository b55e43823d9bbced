"""Tensor parallelism (Megatron-LM): its layers in one process, and real 2- and 4-rank jobs
that compare it with the single-process reference and with torch's own tensor parallelism."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import gpuviz
from gpuviz.parallel.tensor import (
    ColumnParallelLinear,
    RowParallelLinear,
    TensorParallel,
    TensorParallelAttention,
    TensorParallelMLP,
)
from gpuviz.workloads.gpt import GPT, MLP, Attention, GPTConfig

LR = 3e-3
# How far the final parameters may be from the reference's. Each rank sums over its slice of
# a matrix and the all-reduce adds the slices, so sums run in another order than in one
# matmul and differ in the last bits. Adam's step lr * m / sqrt(v) depends on a gradient's
# relative value, so an element that is a near-cancelling sum carries that rounding into
# the weights at up to a fraction of lr: measured 1.5e-5 to 2e-5 in float32 (about 150
# machine epsilons, 2^-23 = 1.2e-7), and 3e-14 in float64 (150 epsilons, 2^-52 = 2.2e-16):
# rounding, scaling with the precision. A real error (a missing all-reduce, a wrong slice)
# moves a weight by about one Adam step, lr = 3e-3, after the first step.
PARAM_TOL = {"float32": LR / 30, "float64": 1e-11}
# Losses: the same logits up to rounding (they were equal to the last bit in float32 here).
LOSS_TOL = {"float32": 1e-5, "float64": 1e-12}


# -- the layers, in one process ------------------------------------------------------------------

def test_column_slices_side_by_side_are_the_whole_output():
    lin = nn.Linear(12, 8)
    x = torch.randn(2, 5, 12)
    parts = [ColumnParallelLinear(lin, rank=r, world=4) for r in range(4)]
    assert all(p.weight.shape == (2, 12) and p.bias.shape == (2,) for p in parts)
    torch.testing.assert_close(torch.cat([p(x) for p in parts], dim=-1), lin(x))


def test_row_partial_sums_plus_one_bias_are_the_whole_output():
    lin = nn.Linear(12, 8)
    x = torch.randn(2, 5, 12)
    parts = [RowParallelLinear(lin, rank=r, world=3) for r in range(3)]
    assert all(p.weight.shape == (8, 4) and p.bias.shape == (8,) for p in parts)
    partial = sum(nn.functional.linear(xr, p.weight) for xr, p in zip(x.chunk(3, -1), parts, strict=True))
    torch.testing.assert_close(partial + parts[0].bias, lin(x))


def test_each_rank_owns_whole_heads():
    attn = Attention(dim=32, heads=4)                    # head_dim 8
    for rank in range(2):
        tp = TensorParallelAttention(attn, rank=rank, world=2)
        assert tp.heads == 2 and tp.head_dim == 8
        rows = slice(16 * rank, 16 * (rank + 1))          # heads 2r and 2r+1
        for name in ("q", "k", "v"):
            assert torch.equal(getattr(tp, name).weight, getattr(attn, name).weight[rows])
        assert torch.equal(tp.proj.weight, attn.proj.weight[:, rows])
        assert torch.equal(tp.proj.bias, attn.proj.bias)


def test_layers_are_copies_not_views_of_the_model():
    lin = nn.Linear(4, 4)
    col = ColumnParallelLinear(lin, rank=0, world=2)
    with torch.no_grad():
        col.weight.zero_()
    assert lin.weight.abs().sum() > 0


@pytest.mark.parametrize("build, match", [
    (lambda: TensorParallelAttention(Attention(24, 6), rank=0, world=4),
     r"heads=6 cannot be split evenly over world size 4.*one of 1, 2, 3, 6"),
    (lambda: TensorParallelMLP(MLP(8, 10), rank=0, world=4),
     r"hidden width=10 cannot be split evenly over world size 4.*one of 1, 2, 5, 10"),
    (lambda: ColumnParallelLinear(nn.Linear(4, 6), rank=0, world=4), r"out_features=6"),
    (lambda: RowParallelLinear(nn.Linear(6, 4), rank=0, world=4), r"in_features=6"),
    (lambda: ColumnParallelLinear(nn.Linear(4, 8), rank=2, world=2), r"rank=2 .* 0 to 1"),
    (lambda: RowParallelLinear(nn.Linear(8, 4), rank=-1, world=2), r"rank=-1"),
    (lambda: ColumnParallelLinear(nn.Linear(4, 8), rank=0, world=0), r"world size=0"),
    (lambda: ColumnParallelLinear(nn.Linear(4, 8), rank=0, world=2.0), r"world size=2.0"),
    (lambda: TensorParallel(nn.Linear(4, 4)), r"model: needs a `blocks` list"),
])
def test_sizes_the_ranks_cannot_split_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_tensor_parallel_needs_a_process_group():
    with pytest.raises(RuntimeError, match="no process group"):
        TensorParallel(GPT(GPTConfig(layers=1, dim=16, seq_len=8, vocab=16)))


# -- real runs: 2 and 4 ranks ----------------------------------------------------------------------

@pytest.fixture(scope="module", params=[2, 4], ids=["2 ranks", "4 ranks"])
def tp_run(request, tmp_path_factory):
    """One job per world size: single, ours and torch's, in float32 and float64."""
    world = request.param
    run = gpuviz.launch("tests/scripts/verify_tensor.py", nproc=world,
                        args=["--steps", "3", "--heads", "4", "--layers", "2"],
                        run_dir=tmp_path_factory.mktemp(f"tp{world}") / "run",
                        progress=False, stream=False, timeout=240)
    results = {r: json.loads((run.path / f"verify_tensor_rank{r}.json").read_text())
               for r in range(world)}
    return world, run, results


@pytest.mark.slow
def test_tp_trains_like_one_process(tp_run):
    world, _, results = tp_run
    for res in results.values():
        assert res["world"] == world
        for dtype, runs in res["runs"].items():
            single, tp = runs["single"], runs["tp"]
            assert single["losses"][-1] < single["losses"][0]
            for a, b in zip(tp["losses"], single["losses"], strict=True):
                assert abs(a - b) <= LOSS_TOL[dtype], (dtype, tp["losses"], single["losses"])
            assert tp["param_diff"] <= PARAM_TOL[dtype], (dtype, tp["param_diff"])
            assert tp["rank_diff"] == 0.0    # replicated weights stay identical on every rank
    assert len({json.dumps(r["runs"]["float32"]["tp"]["losses"]) for r in results.values()}) == 1


@pytest.mark.slow
def test_two_all_reduces_forward_and_two_backward_per_block(tp_run):
    _, run, results = tp_run
    res = results[0]
    layers, tokens = res["layers"], res["batch"] * res["seq_len"]
    ends = run.events[run.events["name"] == "step_end"]
    sp = run.spans
    for dtype in res["runs"]:
        size = torch.tensor([], dtype=getattr(torch, dtype)).element_size()
        steps = {int(s) for s, a in zip(ends["step"], ends["args"], strict=True)
                 if a.get("strategy") == "tp" and a.get("dtype") == dtype and "phase" not in a}
        assert len(steps) == res["steps"]
        for (rank, step), mine in sp[sp["step"].isin(steps)].groupby(["rank", "step"]):
            ar = mine[mine["name"].str.startswith("all_reduce")]
            assert (ar["cat"] == "comm").all()
            assert sorted(ar["name"].value_counts().items()) == [
                ("all_reduce (f backward)", 2 * layers), ("all_reduce (g forward)", 2 * layers)]
            # each all-reduce carries the activations of the whole batch: b x s x h values
            assert (ar["bytes"] == tokens * res["dim"] * size).all()
            for kind, phase in (("g forward", "forward"), ("f backward", "backward")):
                outer = mine[mine["name"] == phase].iloc[0]
                inner = ar[ar["name"] == f"all_reduce ({kind})"]
                assert (inner["start"] >= outer["start"]).all(), (rank, step, kind)
                assert (inner["end"] <= outer["end"]).all(), (rank, step, kind)


@pytest.mark.slow
def test_split_weights_take_one_nth_of_the_memory(tp_run):
    world, _, results = tp_run
    for res in results.values():
        for runs in res["runs"].values():
            tp, single = runs["tp"], runs["single"]
            assert len(tp["sharded"]) == res["layers"] * 10   # q k v fc (w, b), both proj (w)
            assert tp["sharded_bytes"] * world == tp["sharded_full_bytes"]
            replicated = tp["full_params_bytes"] - tp["sharded_full_bytes"]
            assert tp["memory"]["params"] == replicated + tp["sharded_bytes"]
            assert single["memory"]["params"] == tp["full_params_bytes"]
            assert tp["memory"]["grads"] == tp["memory"]["params"]
            # Adam's two moments shrink with the weights; its step counters do not
            saved = single["memory"]["params"] - tp["memory"]["params"]
            assert single["memory"]["optimizer"] - tp["memory"]["optimizer"] == 2 * saved
            assert 0 < tp["memory"]["activations"] < single["memory"]["activations"]


@pytest.mark.slow
def test_torch_tensor_parallel_agrees(tp_run):
    _, _, results = tp_run
    for res in results.values():
        layers = res["layers"]
        for dtype, runs in res["runs"].items():
            theirs = runs["torch_tp"]
            assert "skipped" not in theirs, theirs.get("skipped")
            for a, b in zip(theirs["losses"], runs["single"]["losses"], strict=True):
                assert abs(a - b) <= LOSS_TOL[dtype]
            assert theirs["param_diff"] <= PARAM_TOL[dtype]
            assert theirs["vs_tp"] <= PARAM_TOL[dtype]
            # torch 2.13: the same 2 all-reduces per block forward; backward, q, k and v
            # each all-reduce their input's gradient (no shared f), so 4 per block, not 2.
            assert theirs["all_reduces"] == [[2 * layers, 4 * layers]] * res["steps"]


@pytest.mark.slow
def test_heads_the_ranks_cannot_share_are_refused_in_a_job(tp_run):
    world, _, results = tp_run
    for res in results.values():
        refused = res["refused"]
        assert refused["error"] is not None, "TensorParallel accepted heads=world+1"
        assert f"heads={world + 1}" in refused["error"] and f"world size {world}" in refused["error"]
        assert refused["untouched"]
