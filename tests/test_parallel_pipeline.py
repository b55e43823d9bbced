"""Pipeline parallelism: the schedules, the bubble, and real 2- and 4-stage runs checked
against a single process and torch.distributed.pipelining."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import gpuviz
from gpuviz.parallel.pipeline import Pipeline, bubble_fraction, measured_bubble, schedule
from gpuviz.run.load import SPAN_COLUMNS, Run
from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData

# Float32 tolerance: micro-batching only reorders the sums of losses and gradients (float32
# rounds at 6e-8 relative), which moves a loss of ~4 by a few 1e-7 and, through three Adam
# steps, a parameter by ~1e-6. A schedule error (a micro-batch lost or counted twice, a
# wrong 1/m) moves the loss by far more, and parameters by about lr = 3e-3, since Adam's
# first steps move every coordinate by about lr.
LOSS_TOL, PARAM_TOL = 1e-5, 1e-4
M = 8                                   # micro-batches: more than either number of stages
SCRIPT_ARGS = ["--micro-batches", str(M), "--batch", "16", "--steps", "3"]
CFG = GPTConfig(layers=4, dim=32, heads=2, seq_len=16, vocab=64)   # the script's defaults


# -- the schedules, in plain Python ---------------------------------------------------------

def test_schedules_on_two_stages_written_out():
    assert schedule("gpipe", 0, 2, 3) == [("F", 0), ("F", 1), ("F", 2), ("B", 0), ("B", 1), ("B", 2)]
    assert schedule("1f1b", 0, 2, 4) == [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1),
                                         ("F", 3), ("B", 2), ("B", 3)]
    assert schedule("1f1b", 1, 2, 4) == [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2),
                                         ("B", 2), ("F", 3), ("B", 3)]


def _in_flight_peak(ops):
    held = peak = 0
    for op, _ in ops:
        held += 1 if op == "F" else -1
        peak = max(peak, held)
    return peak


@pytest.mark.parametrize("p", range(1, 7))
@pytest.mark.parametrize("m", [1, 2, 5, 8, 13])
def test_every_schedule_runs_each_microbatch_once_and_1f1b_holds_at_most_p_minus_s(p, m):
    for s in range(p):
        for name in ("gpipe", "1f1b"):
            ops = schedule(name, s, p, m)
            assert [i for op, i in ops if op == "F"] == list(range(m))
            assert [i for op, i in ops if op == "B"] == list(range(m))
            assert all(ops.index(("F", i)) < ops.index(("B", i)) for i in range(m))
        assert _in_flight_peak(schedule("gpipe", s, p, m)) == m
        ops = schedule("1f1b", s, p, m)      # p-s-1 warm-up forwards, then the first 1F1B pair
        assert [op for op, _ in ops[:min(p - s, m)]] == ["F"] * min(p - s, m)
        assert ops[min(p - s, m)][0] == "B"
        assert _in_flight_peak(ops) == min(p - s, m)


def _simulate(name: str, p: int, m: int, tf: float = 1.0, tb: float = 2.0) -> pd.DataFrame:
    """Ideal timing of a schedule (equal stages, free sends): each op starts when its stage
    is free and its input exists: F(s, i) after F(s-1, i), B(s, i) after B(s+1, i)."""
    orders = {s: schedule(name, s, p, m) for s in range(p)}
    done: dict[tuple, float] = {}
    free, pos, rows = [0.0] * p, [0] * p, []
    while any(pos[s] < len(orders[s]) for s in range(p)):
        moved = False
        for s in range(p):
            if pos[s] == len(orders[s]):
                continue
            op, i = orders[s][pos[s]]
            dep = ("F", s - 1, i) if op == "F" else ("B", s + 1, i)
            if (op == "F" and s == 0) or (op == "B" and s == p - 1):
                dep = None
            if dep is not None and dep not in done:
                continue
            start = max(free[s], done.get(dep, 0.0))
            end = start + (tf if op == "F" else tb)
            done[(op, s, i)], free[s], pos[s], moved = end, end, pos[s] + 1, True
            rows.append({"rank": s, "lane": "main", "step": 0, "cat": "compute", "start": start,
                         "name": "forward" if op == "F" else "backward", "end": end,
                         "dur": end - start, "bytes": None,
                         "args": {"microbatch": i, "stage": s, "schedule": name}})
        assert moved, f"{name} deadlocks on {p} stages"
    return pd.DataFrame(rows).reindex(columns=SPAN_COLUMNS)


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p, m", [(2, 2), (2, 8), (4, 4), (4, 8), (4, 16), (8, 9)])
def test_measured_bubble_of_an_ideal_pipeline_is_the_formula_on_every_stage(name, p, m):
    empty = pd.DataFrame()
    run = Run(path=Path("."), spans=_simulate(name, p, m), counters=empty, events=empty, meta={})
    b = measured_bubble(run)
    assert list(b["rank"]) == list(range(p)) and set(b["schedule"]) == {name}
    assert (b["stages"] == p).all() and (b["micro_batches"] == m).all()
    assert b["window"].iloc[0] == pytest.approx((m + p - 1) * 3.0)
    assert b["bubble"].to_numpy() == pytest.approx([(p - 1) / (m + p - 1)] * p, abs=1e-12)
    assert b["predicted"].to_numpy() == pytest.approx(b["bubble"].to_numpy(), abs=1e-12)


def test_bubble_fraction():
    assert bubble_fraction(1, 4) == 0.0
    assert bubble_fraction(4, 4) == pytest.approx(3 / 7)
    assert bubble_fraction(4, 16) == pytest.approx(3 / 19)
    assert bubble_fraction(8, 1000) < bubble_fraction(8, 100) < bubble_fraction(8, 10)
    for p, m, arg in [(0, 4, "stages=0"), (2.0, 4, "stages=2.0"), (4, 0, "micro_batches=0"),
                      (4, True, "micro_batches=True")]:
        with pytest.raises(ValueError, match=arg):
            bubble_fraction(p, m)


def test_bad_input_without_a_process_group():
    cfg = GPTConfig(layers=2, dim=16, heads=2, seq_len=8, vocab=16)
    with pytest.raises(ValueError, match="schedule='zb'.*'gpipe', '1f1b'"):
        Pipeline(GPT(cfg), schedule="zb")
    with pytest.raises(ValueError, match="schedule="):
        schedule("GPipe", 0, 1, 1)
    with pytest.raises(ValueError, match="micro_batches=0"):
        Pipeline(GPT(cfg), micro_batches=0)
    pipe = Pipeline(GPT(cfg), micro_batches=4)
    with pytest.raises(ValueError, match="batch=6 .*micro_batches=4"):
        pipe.train_step(*TokenData(cfg.vocab, cfg.seq_len).batch(0, 6))


def test_one_stage_is_gradient_accumulation_and_saves_every_microbatch():
    cfg = GPTConfig(layers=2, dim=16, heads=2, seq_len=8, vocab=16)
    x, y = TokenData(cfg.vocab, cfg.seq_len).batch(0, 8)
    mem = {}
    for name in ("gpipe", "1f1b"):
        pipe = Pipeline(GPT(cfg, seed=1), schedule=name, micro_batches=4)
        pipe.train_step(x, y)
        mem[name] = pipe.memory()
        assert set(pipe.full_parameters()) == {n for n, _ in GPT(cfg).named_parameters()}
    # one stage: 1F1B runs F0 B0 F1 B1 ..., so it holds one micro-batch, GPipe all four
    assert mem["1f1b"]["activations"] * 4 == mem["gpipe"]["activations"] > 0


# -- real runs: 2 and 4 stages ----------------------------------------------------------------

@pytest.fixture(scope="module", params=[2, 4], ids=["p2", "p4"])
def verified(request, tmp_path_factory):
    p = request.param
    run = gpuviz.launch("tests/scripts/verify_pipeline.py", nproc=p, args=SCRIPT_ARGS,
                        run_dir=tmp_path_factory.mktemp(f"pipeline{p}") / "run",
                        progress=False, stream=False, timeout=300)
    results = [json.loads((run.path / f"verify_pipeline_rank{r}.json").read_text())
               for r in range(p)]
    return p, run, results


STRATEGIES = ["gpipe", "1f1b", "torch gpipe", "torch 1f1b"]


@pytest.mark.slow
def test_every_pipeline_trains_like_the_single_process(verified):
    p, _, results = verified
    for res in results:
        assert res["world"] == p and len(res["single"]["losses"]) == 3
        for name in STRATEGIES:
            r = res[name]
            assert r["loss_diff"] <= LOSS_TOL, (res["rank"], name, r)
            assert r["param_diff"] <= PARAM_TOL, (res["rank"], name, r)
        for name in ("gpipe", "1f1b"):
            assert res[name]["full_names"] and res[name]["full_param_diff"] <= PARAM_TOL
    assert results[0]["single"]["losses"][-1] < results[0]["single"]["losses"][0]


@pytest.mark.slow
def test_1f1b_holds_fewer_activations_than_gpipe(verified):
    p, _, results = verified
    whole = GPT(CFG).num_params() * 4
    assert sum(res["gpipe"]["memory"]["params"] for res in results) == whole
    for s, res in enumerate(results):
        g, f = res["gpipe"]["memory"], res["1f1b"]["memory"]
        assert f["activations"] < g["activations"]
        # every micro-batch saves the same bytes: GPipe holds m of them, 1F1B p - s
        assert f["activations"] * M == g["activations"] * (p - s)
        assert f["params"] == g["params"] == f["grads"] and f["optimizer"] > 2 * f["params"]


@pytest.mark.slow
def test_spans_on_each_stage_follow_the_schedule(verified):
    p, run, results = verified
    sp = run.spans
    act_bytes = 16 // M * CFG.seq_len * CFG.dim * 4
    for name in ("gpipe", "1f1b"):
        steps = results[0][name]["steps"]
        assert len(steps) == 3 and all(res[name]["steps"] == steps for res in results)
        for s in range(p):
            for step in steps:
                mine = sp[(sp["rank"] == s) & (sp["step"] == step)]
                work = mine[mine["name"].isin(["forward", "backward"])].sort_values("start")
                got = [(n[0].upper(), a["microbatch"]) for n, a in zip(work["name"], work["args"],
                                                                        strict=True)]
                assert got == schedule(name, s, p, M), (name, s, step)
                if name == "gpipe":
                    assert got[:M] == [("F", i) for i in range(M)]
                sends = mine[mine["cat"] == "comm"]
                acts = sends[sends["name"] == "send activation"]
                grads = sends[sends["name"] == "send grad"]
                assert len(acts) == (M if s < p - 1 else 0) and len(grads) == (M if s > 0 else 0)
                assert (acts["bytes"] == act_bytes).all() and (grads["bytes"] == act_bytes).all()
                assert (sends[sends["name"].str.startswith("send")]["lane"] == "comm").all()
                waits = mine[mine["cat"] == "idle"]["name"]
                assert (waits == "wait for activation").sum() == (M if s > 0 else 0)
                assert (waits == "wait for grad").sum() == (M if s < p - 1 else 0)
                assert (mine["name"] == "optimizer step").sum() == 1


@pytest.mark.slow
def test_measured_bubble_of_real_runs(verified):
    p, run, results = verified
    b = measured_bubble(run)
    steps = results[0]["gpipe"]["steps"] + results[0]["1f1b"]["steps"]
    assert sorted(set(b["step"])) == steps and len(b) == len(steps) * p
    assert (b["predicted"] == bubble_fraction(p, M)).all() and (b["micro_batches"] == M).all()
    assert ((b["bubble"] > 0) & (b["bubble"] < 1)).all()
    assert ((b["busy"] < b["window"]) & (b["idle"] <= b["window"])).all()


@pytest.mark.slow
def test_bad_layouts_are_clear_errors_on_every_rank(verified):
    p, _, results = verified
    for res in results:
        e = res["errors"]
        assert f"layers={p + 1}" in e["layers"] and f"multiple of {p}" in e["layers"]
        assert f"micro_batches={p - 1}" in e["micro_batches"] and f">= {p}" in e["micro_batches"]
        assert f"batch={M + 1}" in e["batch"] and f"micro_batches={M}" in e["batch"]
