"""The parallelism workload and its analysis: configurations, one real 2-rank sweep, the tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch.distributed as dist

import gpuviz
from gpuviz.parallel import memory, scaling
from gpuviz.parallel.pipeline import bubble_fraction
from gpuviz.parallel.zero import zero_memory
from gpuviz.workloads import parallelism
from gpuviz.workloads.gpt import GPTConfig

TINY = {"layers": 2, "dim": 32, "heads": 4, "seq_len": 16, "vocab": 32}


# -- checking configurations (no job) ----------------------------------------------------------

@pytest.mark.parametrize("config, message", [
    ({"strategy": "fsdp"}, "use one of single, naive_dp, ddp"),
    ({"steps": 0}, "steps=0: must be an integer >= 1"),
    ({"warmup": -1}, "warmup=-1"),
    ({"batch": 2.5}, "batch=2.5"),
    ({"ranks": 8}, "ranks=8: the job has only 4 ranks"),
    ({"strategy": "zero2", "batch": 6}, "batch=6 cannot be split over ranks=4 by zero2"),
    ({"strategy": "gpipe", "batch": 16, "micro_batches": 3}, "micro_batches=3 equal"),
    ({"strategy": "1f1b", "batch": 16, "micro_batches": 2}, "fewer than the 4 pipeline stages"),
    ({"bucket_mb": 0}, "bucket_mb=0"),
    ({"tag": 3}, "tag=3"),
    ({"lr": 0.1}, "config keys ['lr'] are unknown"),
])
def test_bad_configurations_say_what_is_allowed(config, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parallelism.check_config(config, world=4)


def test_configuration_checks_against_the_model():
    with pytest.raises(ValueError, match="layers=3 cannot be split into 2 pipeline stages"):
        parallelism.check_config({"strategy": "gpipe"}, world=2, model=GPTConfig(layers=3))
    with pytest.raises(ValueError, match="heads=4 .* ranks=3 by tp"):
        parallelism.check_config({"strategy": "tp"}, world=3, model=GPTConfig())
    with pytest.raises(ValueError, match="GPTConfig fields"):
        parallelism.model_config({"depth": 2})
    assert parallelism.check_config({}, world=2)["ranks"] == 2


def test_make_strategy_names_the_allowed_ones():
    with pytest.raises(ValueError, match="strategy='zero4': use one of single"):
        parallelism.make_strategy("zero4", None)


def test_sweep_in_one_process_equals_the_reference():
    """ddp and 1f1b on a one-rank group train exactly like the single process."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        losses = parallelism.sweep([{"strategy": s, "steps": 2, "batch": 4, "micro_batches": 2}
                                    for s in ("single", "ddp", "zero2", "1f1b")], model=TINY)
    finally:
        dist.destroy_process_group()
    assert len(losses) == 4 and all(len(x) == 3 for x in losses)
    for other in losses[1:]:
        np.testing.assert_allclose(other, losses[0], rtol=1e-5)
    assert losses[0][-1] < losses[0][0]


def test_scaling_configs_interleave_rounds_and_scale_the_batch():
    c = scaling.scaling_configs("ddp", ranks=(4, 1, 2), mode="both", batch=8, rounds=2,
                                baseline=True)
    first = [(x["tag"], x["strategy"], x["ranks"], x["batch"]) for x in c[:12]]
    assert first[:6] == [("strong", "ddp", 1, 8), ("strong", "single", 1, 8), ("strong", "ddp", 2, 8),
                         ("strong", "single", 2, 4), ("strong", "ddp", 4, 8), ("strong", "single", 4, 2)]
    assert first[6:] == [("weak", "ddp", 1, 8), ("weak", "single", 1, 8), ("weak", "ddp", 2, 16),
                         ("weak", "single", 2, 8), ("weak", "ddp", 4, 32), ("weak", "single", 4, 8)]
    assert c[12:] == c[:12][::-1]                 # the second round runs backwards


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "medium"}, "mode='medium'"),
    ({"ranks": ()}, "ranks=()"),
    ({"ranks": (1, "2")}, "give rank counts"),
    ({"rounds": 0}, "rounds=0"),
    ({"strategy": "pp"}, "strategy='pp'"),
    ({"batch": 6, "ranks": (1, 4)}, "batch=6 cannot be split over ranks=4"),
    ({"strategy": "1f1b", "model": {"layers": 3}, "ranks": (1, 2)}, "layers=3"),
])
def test_measure_scaling_checks_before_launching(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scaling.measure_scaling(**kwargs)


# -- the analysis on a hand-written trace (exact numbers) -------------------------------------

def _fake_run(path, durations):
    """A run directory as the sweep writes it: per (config, ranks, tag), each rank's step
    times in ms; every config has one warm-up step of 1 s first."""
    import json

    events = {0: [], 1: []}
    t, step = 0.0, 0
    for config, (ranks, tag, times) in enumerate(durations):
        for i, per_rank in enumerate([[1000.0] * ranks, *times]):
            for r in range(2):
                args = {"step": step, "config": config, "strategy": "ddp", "tag": tag, "ranks": ranks,
                        "batch": 8, "micro_batches": 4, "bucket_mb": 1.0, "member": r < ranks,
                        "setup": False, "warmup": i == 0}
                if r < ranks:
                    args |= {"loss": 1.0, "tokens": 8 * 16 * (2 if tag == "weak" and ranks == 2 else 1),
                             "n_params": 100, "memory": {"params": 400, "grads": 400 // ranks}}
                    events[r].append({"ph": "X", "name": "load batch", "cat": "data", "ts": t * 1e3,
                                      "dur": 1.0, "pid": r, "tid": 0, "args": {"step": step}})
                    events[r].append({"ph": "i", "name": "step_end", "cat": "step", "pid": r, "tid": 0,
                                      "ts": (t + per_rank[r]) * 1e3, "args": args})
                else:
                    events[r].append({"ph": "i", "name": "step_end", "cat": "step", "pid": r,
                                      "tid": 0, "ts": t * 1e3, "args": args})
            t += max(per_rank) + 5
            step += 1
    for r, evs in events.items():
        meta = {"ph": "M", "name": "gpuviz_meta", "pid": r, "args": {"world_size": 2, "cpu_count": 2}}
        (path / f"rank{r}.jsonl").write_text("\n".join(json.dumps(e) for e in [meta, *evs]) + "\n")
    return gpuviz.load_run(path)


def test_scaling_table_on_known_step_times(tmp_path):
    run = _fake_run(tmp_path, [(1, "strong", [[100.0], [120.0], [110.0]]),
                               (2, "strong", [[60.0, 70.0], [65.0, 80.0], [75.0, 50.0]]),
                               (1, "weak", [[100.0]]), (2, "weak", [[150.0, 160.0]])])
    ct = scaling.config_table(run)
    # the slowest rank sets each step: 70, 80, 75 ms -> median 75 ms
    np.testing.assert_allclose(ct["step_s"], [0.110, 0.075, 0.100, 0.160], rtol=1e-6)
    assert ct["steps"].tolist() == [3, 3, 1, 1] and ct["cores"].tolist() == [2] * 4
    t = scaling.scaling_table(run).set_index(["mode", "ranks"])
    assert t.loc[("strong", 2), "efficiency"] == pytest.approx(110 / (2 * 75))      # T1 / (N TN)
    assert t.loc[("strong", 2), "speedup"] == pytest.approx(110 / 75)
    assert t.loc[("weak", 2), "efficiency"] == pytest.approx(100 / 160)             # T1 / TN
    assert t.loc[("weak", 2), "tokens_per_s"] == pytest.approx(256 / 0.160)
    assert t.loc[("strong", 2), "per_rank_batch"] == 4
    m = memory.memory_table(run)
    assert m.loc[m["kind"] == "grads", "bytes"].tolist() == [400, 200, 400, 200]
    assert m["label"].unique().tolist() == ["ddp (1 rank, strong)", "ddp (2 ranks, strong)",
                                            "ddp (1 rank, weak)", "ddp (2 ranks, weak)"]


def test_tables_refuse_runs_of_other_workloads(tmp_path):
    import json

    (tmp_path / "rank0.jsonl").write_text(json.dumps(
        {"ph": "i", "name": "step_end", "cat": "step", "ts": 1.0, "pid": 0, "args": {"step": 0}}) + "\n")
    run = gpuviz.load_run(tmp_path)
    for table in (scaling.step_table, scaling.config_table, scaling.scaling_table,
                  memory.memory_table, memory.bubble_sweep):
        with pytest.raises(ValueError, match="no training step tagged with a strategy"):
            table(run)


def test_bubble_sweep_needs_a_pipeline(tmp_path):
    run = _fake_run(tmp_path, [(1, "strong", [[100.0]])])
    with pytest.raises(ValueError, match="no gpipe or 1f1b configuration"):
        memory.bubble_sweep(run)
    with pytest.raises(ValueError, match="no configuration is tagged 'strong' or 'weak' \\(mode='weak'\\)"):
        scaling.scaling_table(run, mode="weak")


# -- one real 2-rank job -----------------------------------------------------------------------

STEPS = 2


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    """ddp strong and weak on 1 and 2 ranks with the no-communication baseline, then ZeRO-1
    and -3, tensor parallelism and both pipeline schedules, in one 2-rank job."""
    configs = scaling.scaling_configs("ddp", ranks=(1, 2), mode="both", steps=STEPS, batch=4,
                                      rounds=1, baseline=True)
    configs += [{"strategy": s, "steps": STEPS, "batch": 4} for s in ("zero1", "zero3", "tp")]
    configs += [{"strategy": s, "steps": STEPS, "batch": 4, "micro_batches": m}
                for s, m in (("gpipe", 2), ("1f1b", 2), ("1f1b", 4))]
    return gpuviz.launch("gpuviz.workloads.parallelism:sweep", nproc=2,
                         args={"configs": configs, "model": TINY},
                         run_dir=tmp_path_factory.mktemp("parallelism") / "run",
                         progress=False, stream=False)


@pytest.mark.slow
def test_every_strategy_trains_the_same_model(sweep_run):
    st = scaling.step_table(sweep_run)
    assert set(st["strategy"]) == {"single", "ddp", "zero1", "zero3", "tp", "gpipe", "1f1b"}
    # Same weights, same batches of 4: every such configuration's loss curve is the same one.
    lead = st[(st["batch"] == 4) & (st["rank"] == st.groupby("config")["rank"].transform("min"))]
    curves = lead.groupby("config")["loss"].apply(list)
    assert len(curves) == 12
    for curve in curves:
        np.testing.assert_allclose(curve, curves.iloc[0], rtol=2e-4)
    # Step numbers stay aligned: a 1-rank configuration's steps exist on rank 1 too (member=False).
    ev = sweep_run.events[sweep_run.events["name"] == "step_end"]
    assert (ev.groupby("rank").size().nunique()) == 1
    lone = ev[[a.get("ranks") == 1 for a in ev["args"]]]
    assert {a["member"] for a in lone[lone["rank"] == 1]["args"]} == {False}
    assert st[st["ranks"] == 1]["rank"].unique().tolist() == [0]


@pytest.mark.slow
def test_loss_table_puts_every_configuration_beside_the_reference(sweep_run):
    losses = scaling.loss_table(sweep_run)
    assert len(losses.columns) == 14 and len(losses) >= STEPS
    diffs = losses.attrs["max_diff"]
    assert diffs[losses.columns[0]] == 0.0
    same_batch = [c for c, b in zip(losses.columns, scaling.config_table(sweep_run)["batch"], strict=True)
                  if b == 4]
    assert max(diffs[c] for c in same_batch) < 1e-3                 # same model, same data
    assert max(diffs.values()) > 1e-3                                # weak scaling's bigger batches differ
    with pytest.raises(ValueError, match="reference=99"):
        scaling.loss_table(sweep_run, reference=99)


@pytest.mark.slow
def test_config_table_reads_step_times_from_the_trace(sweep_run):
    ct = scaling.config_table(sweep_run)
    assert len(ct) == 8 + 6 and (ct["steps"] == STEPS).all()
    assert (ct["step_s"] > 0).all() and (ct["step_s_lo"] <= ct["step_s_hi"]).all()
    st = scaling.step_table(sweep_run)
    one = st[(st["config"] == 2) & ~st["warmup"]]            # ddp strong on 2 ranks
    assert ct.loc[ct["config"] == 2, "step_s"].iloc[0] == pytest.approx(
        one.groupby("step")["step_s"].max().median())
    # tokens: the global batch (4 x 16); single on 2 ranks trains 2 batches of 2
    assert ct.loc[ct["config"] == 2, "tokens"].iloc[0] == 4 * 16
    assert ct.loc[ct["config"] == 3, "tokens"].iloc[0] == 2 * 2 * 16
    assert ct["cores"].iloc[0] >= 1


@pytest.mark.slow
def test_scaling_table_computes_speedup_and_efficiency(sweep_run):
    t = scaling.scaling_table(sweep_run)
    assert set(zip(t["mode"], t["strategy"], strict=True)) == {
        ("strong", "ddp"), ("strong", "single"), ("weak", "ddp"), ("weak", "single")}
    for (mode, _), g in t.groupby(["mode", "strategy"]):
        one, two = g.set_index("ranks").loc[1], g.set_index("ranks").loc[2]
        assert one["efficiency"] == 1 and one["speedup"] == 1
        assert two["speedup"] == pytest.approx(two["tokens_per_s"] / one["tokens_per_s"])
        if mode == "strong":     # T1 / (N TN): the same tokens per step
            assert two["efficiency"] == pytest.approx(one["step_ms"] / (2 * two["step_ms"]))
            assert two["batch"] == one["batch"] == 4
        else:                    # T1 / TN: twice the tokens per step on 2 ranks
            assert two["efficiency"] == pytest.approx(one["step_ms"] / two["step_ms"])
            assert two["batch"] == 2 * one["batch"] and two["per_rank_batch"] == one["per_rank_batch"]
    assert scaling.scaling_table(sweep_run, mode="weak")["mode"].unique().tolist() == ["weak"]
    with pytest.raises(ValueError, match="mode='both'"):
        scaling.scaling_table(sweep_run, mode="both")


@pytest.mark.slow
def test_memory_table_matches_the_zero_formula(sweep_run):
    m = memory.memory_table(sweep_run)
    n = int(m["n_params"].iloc[0])
    for label, world, stage in (("zero1", 2, 1), ("zero3", 2, 3), ("single (2 ranks, strong)", 1, 0)):
        rows = m[m["label"] == label].set_index("kind")
        pred = zero_memory(n, world, stage)
        for kind in ("params", "grads", "optimizer"):
            assert rows.loc[kind, "predicted"] == pred[kind]
            # Adam also keeps a 4-byte step count per tensor: within 0.1 %
            assert rows.loc[kind, "bytes"] == pytest.approx(pred[kind], rel=1e-3)
    tp = m[m["label"] == "tp"]
    assert tp["predicted"].isna().all() and (tp["bytes"] > 0).all()
    # 1F1B holds fewer micro-batches' activations than GPipe
    act = m[m["kind"] == "activations"].set_index("label")["bytes"]
    assert act["1f1b (m=4)"] < act["gpipe"]
    per = memory.memory_table({"sweep": sweep_run}, per_rank=True)
    assert set(per["rank"]) == {0, 1} and per["label"].str.startswith("sweep: ").all()
    with pytest.raises(ValueError, match="give a Run"):
        memory.memory_table("runs/x")


@pytest.mark.slow
def test_bubble_sweep_beside_the_formula(sweep_run):
    b = memory.bubble_sweep(sweep_run)
    assert b[["schedule", "micro_batches"]].values.tolist() == [["gpipe", 2], ["1f1b", 2], ["1f1b", 4]]
    assert (b["stages"] == 2).all()
    assert b["predicted"].tolist() == [bubble_fraction(2, m) for m in (2, 2, 4)]
    assert ((b["measured"] > 0) & (b["measured"] < 1)).all()
    assert ((b["measured_lo"] <= b["measured"]) & (b["measured"] <= b["measured_hi"])).all()
    assert not math.isnan(b["step_ms"].sum())
