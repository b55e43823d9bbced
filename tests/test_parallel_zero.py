"""ZeRO stages 1-3: the paper's memory formula, bad input, and real runs on 2 and 4 ranks
against one process, torch's ZeroRedundancyOptimizer and FSDP2."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest
import torch
import torch.distributed as dist
from torch import nn

import gpuviz
from gpuviz.parallel.strategy import SingleProcess
from gpuviz.parallel.zero import ZeRO, zero_memory
from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData

OURS = ("zero1", "zero2", "zero3")
# Every stage sums the same gradients in another order (N local means averaged, gloo's
# reduction order), so it differs from one process by float32 rounding: a few ulps of
# the largest gradient (float32 epsilon 1.2e-7). GRAD_RTOL allows 1e-5 of it.
GRAD_RTOL = 1e-5
# Adam divides by sqrt(v), so a rounding difference in a small gradient is not scaled
# down with it: after 5 steps at lr 3e-3 parameters differ by ~5e-6 (measured). A real
# mistake (a wrong shard, a missing update) moves a parameter by O(lr) = 3e-3 per step.
PARAM_TOL = 1e-4
LOSS_RTOL = 1e-6        # the loss of the first steps is within float32 rounding
F32 = 4                 # bytes per float32


# -- the formula ----------------------------------------------------------------------------

def test_zero_memory_reproduces_figure_1_of_the_paper():
    # Rajbhandari et al. 2020, Figure 1: Ψ = 7.5 B, N_d = 64, K = 12, fp16 params and grads
    psi, n = 7.5e9, 64
    got = [zero_memory(psi, n, s, param_bytes=2, grad_bytes=2, optim_bytes=12) for s in range(4)]
    assert got[0] == {"params": 2 * psi, "grads": 2 * psi, "optimizer": 12 * psi, "total": 16 * psi}
    assert got[1]["total"] == 4 * psi + 12 * psi / n == 31.40625e9
    assert got[2]["total"] == 2 * psi + 14 * psi / n == 16.640625e9
    assert got[3]["total"] == 16 * psi / n == 1.875e9


@pytest.mark.parametrize("world", [1, 2, 3, 8, 64])
def test_each_stage_shards_one_more_state(world):
    m = [zero_memory(1_000_003, world, s) for s in range(4)]
    assert m[0]["total"] == 16 * 1_000_003
    assert m[3]["total"] * world == pytest.approx(m[0]["total"])
    for s in range(1, 4):           # stage s divides the s-th state (optimizer, grads, params)
        key = ("optimizer", "grads", "params")[s - 1]
        assert m[s][key] * world == pytest.approx(m[s - 1][key])
        assert m[s]["total"] <= m[s - 1]["total"]
        assert m[s]["total"] == pytest.approx(m[s]["params"] + m[s]["grads"] + m[s]["optimizer"])


@pytest.mark.parametrize("kwargs, arg", [
    ({"n_params": 0}, "n_params="), ({"n_params": -5}, "n_params="),
    ({"n_params": True}, "n_params="), ({"n_params": "10"}, "n_params="),
    ({"world": 0}, "world="), ({"world": 2.0}, "world="), ({"world": True}, "world="),
    ({"stage": 4}, "stage="), ({"stage": -1}, "stage="), ({"stage": True}, "stage="),
    ({"stage": 1.0}, "stage="), ({"param_bytes": -1}, "param_bytes="),
    ({"grad_bytes": None}, "grad_bytes="), ({"optim_bytes": float("nan")}, "optim_bytes="),
])
def test_zero_memory_bad_input_names_the_argument(kwargs, arg):
    args = {"n_params": 1000, "world": 4, "stage": 1} | kwargs
    with pytest.raises(ValueError, match=arg):
        zero_memory(**args)


# -- bad input to the strategy (checked before it looks for a process group) -------------------

TINY = GPTConfig(vocab=16, seq_len=8, dim=8, heads=2, layers=1)


@pytest.mark.parametrize("stage", [0, 4, -1, True, "1", 1.0, None])
def test_stage_must_be_1_2_or_3(stage):
    with pytest.raises(ValueError, match="stage="):
        ZeRO(GPT(TINY), stage)


@pytest.mark.parametrize("model", ["a model", nn.ReLU(), nn.Linear(2, 2).requires_grad_(False)])
def test_model_must_be_a_module_with_trainable_parameters(model):
    with pytest.raises(ValueError, match="model=.*trainable parameters"):
        ZeRO(model, 1)


@pytest.mark.parametrize("lr", [0, -1e-3, True, "3e-3"])
def test_lr_must_be_positive(lr):
    with pytest.raises(ValueError, match="lr="):
        ZeRO(GPT(TINY), 2, lr=lr)


def test_needs_a_process_group():
    if dist.is_initialized():
        pytest.skip("a process group is already running in this test process")
    with pytest.raises(RuntimeError, match="no process group"):
        ZeRO(GPT(TINY), 3)


# -- one rank, in this process: exact, and stage 3 really frees --------------------------------

def test_one_rank_equals_the_reference_and_stage_3_frees_its_units(one_rank):
    cfg = GPTConfig(vocab=32, seq_len=8, dim=12, heads=2, layers=2)
    data = TokenData(cfg.vocab, cfg.seq_len)
    ref, zero3 = SingleProcess(GPT(cfg)), ZeRO(GPT(cfg), 3)
    assert [u.name for u in zero3.units] == ["blocks.0", "blocks.1", "root"]
    for step in range(2):
        x, y = data.batch(step, 4)
        assert zero3.train_step(x, y) == ref.train_step(x, y)
        assert all(p.untyped_storage().nbytes() == 0 for u in zero3.units for p in u.params)
    theirs = ref.full_parameters()
    assert all(torch.equal(p, theirs[n]) for n, p in zero3.full_parameters().items())
    assert all(not u.gathered for u in zero3.units)       # full_parameters() freed them again
    mem, n = zero3.memory(), GPT(cfg).num_params()
    assert mem["params"] == mem["grads"] == F32 * n
    biggest_block = max(u.full.numel() for u in zero3.units[:-1])
    assert mem["gathered params"] == F32 * (zero3.units[-1].full.numel() + biggest_block)


# -- real runs: 2 and 4 ranks, one job each ----------------------------------------------------

@pytest.fixture(scope="module", params=[2, 4], ids=lambda n: f"{n}ranks")
def verify(request, tmp_path_factory):
    """``tests/scripts/verify_zero.py`` on ``n`` ranks: the run and each rank's results."""
    n = request.param
    run = gpuviz.launch("tests/scripts/verify_zero.py", nproc=n, args=["--steps", "5"],
                        run_dir=tmp_path_factory.mktemp(f"zero{n}") / "run", progress=False,
                        stream=False, timeout=300)
    results = {r: json.loads((run.path / f"verify_zero_rank{r}.json").read_text()) for r in range(n)}
    return run, results


def _strategies(results, names):
    for rank, res in results.items():
        for name in names:
            if name in res["strategies"]:
                yield rank, name, res["strategies"][name], res["strategies"]["single"]


@pytest.mark.slow
def test_every_stage_trains_what_one_process_trains(verify):
    _, results = verify
    for rank, name, res, single in _strategies(results, (*OURS, "torch_zero1")):
        assert res["losses"] == pytest.approx(single["losses"], rel=LOSS_RTOL), (rank, name)
        assert res["losses"] == results[0]["strategies"][name]["losses"]    # the same on every rank
        assert res["param_diff"] <= PARAM_TOL, (rank, name, res["param_diff"])
        assert res["replica_diff"] == 0.0, (rank, name)
    assert results[0]["strategies"]["single"]["losses"][-1] < results[0]["strategies"]["single"]["losses"][0]


@pytest.mark.slow
def test_each_rank_steps_its_slice_of_the_whole_batch_gradient(verify):
    _, results = verify
    for rank, name, res, _ in _strategies(results, OURS):
        assert res["grad_diff"] <= GRAD_RTOL * res["grad_scale"], (rank, name, res["grad_diff"])


@pytest.mark.slow
def test_fsdp2_trains_what_one_process_trains(verify):
    _, results = verify
    if "torch_fsdp2" in results[0]["skipped"]:
        pytest.skip(f"FSDP2 fully_shard does not run here: {results[0]['skipped']['torch_fsdp2']}")
    for rank, name, res, single in _strategies(results, ("torch_fsdp2",)):
        assert res["losses"] == pytest.approx(single["losses"], rel=LOSS_RTOL), rank
        assert res["param_diff"] <= PARAM_TOL, (rank, name, res["param_diff"])


@pytest.mark.slow
def test_model_state_per_rank_is_the_papers_formula_up_to_padding(verify):
    _, results = verify
    for rank, name, res, single in _strategies(results, OURS):
        world, n_params, stage = results[rank]["world"], results[rank]["num_params"], int(name[-1])
        pad, mem = res["padding"], res["memory"]
        assert pad == sum(res["flat"].values()) - n_params
        assert 0 < pad < world * len(res["flat"])          # sizes chosen so no vector divides
        want = zero_memory(n_params + pad, world, stage)     # exact for the padded vectors
        assert mem["params"] == want["params"], (rank, name)
        assert mem["grads"] == want["grads"], (rank, name)
        # plus Adam's step counter: one float32 scalar per shard tensor
        assert mem["optimizer"] == want["optimizer"] + F32 * res["shards"], (rank, name)
        loose = zero_memory(n_params, world, stage)
        assert all(0 <= mem[k] - loose[k] <= 16 * pad + F32 * res["shards"]
                   for k in ("params", "grads", "optimizer"))
        assert mem["activations"] == results[rank]["strategies"]["zero1"]["memory"]["activations"]
        assert mem["activations"] < single["memory"]["activations"]        # a 1/N batch
        if stage == 3:   # the root stays gathered while one block at a time joins it
            flat = res["flat"]
            biggest = max(v for k, v in flat.items() if k != "root")
            assert mem["gathered params"] == F32 * (flat["root"] + biggest)
    # torch's ZeroRedundancyOptimizer hands out whole tensors: every rank's part adds up
    # to one copy of the optimizer state, nothing duplicated
    opt = [res["strategies"]["torch_zero1"]["memory"]["optimizer"] for res in results.values()]
    assert sum(opt) == results[0]["strategies"]["single"]["memory"]["optimizer"]


def _steps(run, rank):
    """(step index, strategy) of every training step of ``rank`` (not the checks)."""
    ev = run.events[(run.events["name"] == "step_end") & (run.events["rank"] == rank)]
    return [(int(s), a["strategy"]) for s, a in zip(ev["step"], ev["args"], strict=True)
            if not a.get("check")]


@pytest.mark.slow
def test_trace_has_each_stages_collectives(verify):
    run, results = verify
    sp = run.spans
    for rank, res in results.items():
        steps = _steps(run, rank)
        assert Counter(name for _, name in steps) == Counter({n: res["steps"] for n in res["strategies"]})
        for step, name in steps:
            if name not in OURS:
                continue
            s = sp[(sp["rank"] == rank) & (sp["step"] == step)].sort_values("start")
            flat = res["strategies"][name]["flat"]
            comm = s[s["cat"].isin(["comm", "idle"])]
            assert set(comm[comm["cat"] == "idle"]["name"]) == {"wait for others"}
            got = Counter((n, None if pd.isna(b) else int(b))
                          for n, b in zip(comm["name"], comm["bytes"], strict=True))
            if name == "zero3":
                want = Counter({("wait for others", None): 1, ("all_reduce loss", F32): 1})
                for unit, numel in flat.items():
                    want[(f"all_gather params {unit}", F32 * numel)] = 1 if unit == "root" else 2
                    want[(f"reduce_scatter grads {unit}", F32 * numel)] = 1
                _check_stage3_order(s, flat)
            else:
                reduce = "all_reduce grads" if name == "zero1" else "reduce_scatter grads"
                want = Counter({("wait for others", None): 1, (reduce, F32 * flat["all"]): 1,
                                ("all_gather params", F32 * flat["all"]): 1, ("all_reduce loss", F32): 1})
                order = [n for n in s["name"] if n != "all_reduce loss"]
                assert order == ["forward", "backward", "wait for others", reduce, "optimizer step",
                                 "all_gather params"], (rank, step, order)
            assert got == want, (rank, step, name)


def _check_stage3_order(s, flat):
    """Forward gathers root then each block; backward gathers the blocks in reverse, and
    reduce-scatters each unit after its last gather, the root last."""
    def inside(phase):
        p = s[s["name"] == phase].iloc[0]
        return s[(s["start"] >= p["start"]) & (s["end"] <= p["end"]) & (s["cat"] == "comm")]
    blocks = [k for k in flat if k != "root"]
    fwd, bwd = inside("forward"), inside("backward")
    assert list(fwd["name"]) == [f"all_gather params {u}" for u in ["root", *blocks]]
    assert [n for n in bwd["name"] if n.startswith("all_gather")] == \
        [f"all_gather params {u}" for u in reversed(blocks)]
    reduces = [n.removeprefix("reduce_scatter grads ") for n in bwd["name"] if n.startswith("reduce")]
    assert sorted(reduces) == sorted(flat) and reduces[-1] == "root"
    names = list(bwd["name"])
    for u in blocks:
        assert names.index(f"reduce_scatter grads {u}") > names.index(f"all_gather params {u}")
