"""The cluster model against published large-scale runs and against this machine's own runs."""

from __future__ import annotations

import numpy as np
import pytest

import gpuviz
from gpuviz.plan import calibrate as cb
from gpuviz.plan import published
from gpuviz.plan.config import FITTED_COMPUTE
from gpuviz.plan.prediction import predict

# -- published runs ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def table():
    return published.validation_table()


def test_every_published_run_fits_in_memory_with_its_source(table):
    assert table["fits"].all(), table.loc[~table["fits"], ["run", "margin_GiB"]]
    for r in published.RUNS:
        assert ("arXiv" in r.source or "http" in r.source) and r.category in published.CATEGORIES


def test_held_out_runs_meet_the_median_goal_and_name_the_worst(table):
    held = table[table["role"] == "validation"]
    assert len(held) >= 25 and set(published.CATEGORIES) <= set(held["category"])
    assert held["error"].abs().median() <= 0.10
    by = published.error_by_category(table)
    assert by.loc["all held out", "runs"] == len(held)
    for cat in ("dense Megatron-style", "small models", "ZeRO-3/FSDP"):
        assert by.loc[cat, "median_abs_error"] <= 0.10, cat
    # the runs beyond 25% are MT-NLG's (the same model and cluster as Korthikanti et al.'s
    # full-recomputation run, which the model predicts within 10%) and the narrow MoEs'
    far = held.loc[held["error"].abs() > 0.25, "run"]
    assert all(n.startswith(("MT-NLG", "Qwen3 30B-A3B", "GPT-OSS")) for n in far), list(far)
    k = table.set_index("run").loc["Megatron-LM 530B full recompute, 2240 A100", "error"]
    assert abs(k) <= 0.10


def test_moe_runs_large_experts_within_25_percent_small_ones_overpredicted(table):
    """What the chapter says of the MoE rows: Qwen3 235B-A22B (experts 1536 wide, EP over
    4 servers, its all-to-alls overlapped with compute as its recipe says) within 25%; Qwen3
    30B-A3B (768 wide, hidden 2048) predicted more than twice as fast as published: the model
    has no cost for a MoE layer's routing and permutation; GPT-OSS 120B (hidden 2880, BF16)
    predicted more than 1.5 times as fast."""
    moe = table[table["category"] == "MoE"].set_index("run")
    assert len(moe) == 5 and (moe["role"] == "validation").all() and moe["fits"].all()
    assert moe.loc["GPT-OSS 120B, 64 H100, BF16 batch 1280", "ratio"] > 1.5
    big = moe[moe.index.str.startswith("Qwen3 235B")]
    small = moe[moe.index.str.startswith("Qwen3 30B")]
    assert len(big) == 2 and (big["error"].abs() <= 0.25).all()
    assert (big["dominant"] == "ep_comm").all()                  # 24 of 32 EP ranks off-server
    runs = {r.name: r for r in published.RUNS}
    assert all(runs[n].config.ep_overlap and "moe_a2a_overlap=True" in runs[n].source for n in big.index)
    assert big["layout"].str.contains("ep=32 overlapped").all()
    assert not any(runs[n].config.ep_overlap for n in small.index)
    assert len(small) == 2 and (small["ratio"] > 2).all()


def test_dense_fp8_runs_held_out_within_the_goal(table):
    """What the chapter says of Megatron-Bridge's dense runs in FP8 on H100 (Llama 3 8B and
    70B, Llama 3.1 405B; two containers): held out, they fit, and each is predicted within
    25% (the model runs their matmuls at the FP8 peak)."""
    fp8 = table[table["run"].str.contains("FP8") & table["run"].str.startswith("Llama 3")]
    assert len(fp8) == 5 and (fp8["role"] == "validation").all() and fp8["fits"].all()
    assert (fp8["error"].abs() <= 0.25).all(), fp8[["run", "error"]]
    assert set(fp8["metric"]) == {"tokens_per_s_per_gpu"}


def test_zero3_throughput_falls_with_scale_as_published(table):
    z = table[table["run"].str.startswith("ZeRO-3 174.6B")].set_index("gpus")["predicted"]
    assert z[384] > z[768] > z[1536] and z[384] / z[1536] > 2.5      # published: 144, 88, 44


def test_only_the_named_runs_are_fitted_on(table):
    fitted = {n for k in ("memory", "overlap") for n in published.FIT_ON[k]}
    fitted |= {n for names in published.FIT_ON["compute"].values() for n in names}
    assert set(table.loc[table["role"] == "fit", "run"]) == fitted and len(fitted) == 4


def test_the_model_s_default_efficiency_is_the_published_fit():
    from gpuviz.plan.config import FITTED_MEMORY, FITTED_OVERLAP

    fit = published.fit_efficiency()
    for gpu, value in FITTED_COMPUTE.items():
        assert value == pytest.approx(fit["compute"][gpu], abs=0.005)
    assert FITTED_MEMORY == pytest.approx(fit["memory"], abs=0.005)
    assert FITTED_OVERLAP == pytest.approx(fit["overlap"], abs=0.005)


def test_fit_on_names_must_be_runs():
    with pytest.raises(ValueError, match="not among the runs"):
        published.fit_efficiency(fit_on={**published.FIT_ON, "compute": {"H100 SXM": ("GPT-5",)}})


# -- calibration on this machine --------------------------------------------------------------

def _synthetic_table(truth: cb.Calibration):
    """Configurations as a sweep makes them, step times from the model itself."""
    import pandas as pd

    rows = [{"strategy": c["strategy"], "ranks": c["ranks"], "batch": c["batch"],
             "micro_batches": c.get("micro_batches", 4), "bucket_mb": 1.0, "cores": 2}
            for c in cb.calibration_configs(batches=(8, 16, 32))]
    table = cb.measured_table(pd.DataFrame(rows).assign(step_s=np.nan))
    table["step_s"] = [predict(truth.config(r["strategy"], r["ranks"], r["batch"],
                                            r["micro_batches"])).step_s for _, r in table.iterrows()]
    return table


def test_calibration_recovers_the_parameters_that_made_the_times():
    truth = cb.Calibration(3e10, 3e8, 2e-4, 8e-3, 5e-4, 2e-4, 0.5, cores=2, model=cb.gpt_model())
    table = _synthetic_table(truth)
    cal = cb.calibrate(table)
    assert cal.predict_table(table)["error"].abs().max() < 1e-3
    assert cal.flops_per_s == pytest.approx(truth.flops_per_s, rel=0.02)
    assert cal.bytes_per_s == pytest.approx(truth.bytes_per_s, rel=0.05)


def test_calibration_checks_its_input():
    import pandas as pd

    with pytest.raises(ValueError, match="give a Run"):
        cb.calibrate("runs/x")
    bad = pd.DataFrame([{"strategy": "naive_dp", "ranks": 2, "batch": 8, "micro_batches": 4,
                         "bucket_mb": 1.0, "cores": 2, "step_s": 0.1}])
    with pytest.raises(ValueError, match=r"strategies \['naive_dp'\] are not modelled"):
        cb.measured_table(bad)
    truth = cb.Calibration(3e10, 3e8, 2e-4, 8e-3, 5e-4, 2e-4, 0.5, cores=2, model=cb.gpt_model())
    with pytest.raises(ValueError, match="fit_on: labels"):
        cb.calibrate(_synthetic_table(truth), fit_on=["nothing"])


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """One real sweep job on 4 ranks: ddp, zero1, tp and 1f1b on 1, 2 and 4 ranks, twice each."""
    configs = cb.calibration_configs(batches=(8, 32), ranks=(2, 4), steps=2,
                                     strategies=("ddp", "zero1", "tp", "1f1b"), rounds=2)
    return gpuviz.launch("gpuviz.workloads.parallelism:sweep", nproc=4, args={"configs": configs},
                         run_dir=tmp_path_factory.mktemp("calibration"), progress=False,
                         stream=False, timeout=300)


def test_calibrated_model_predicts_this_machine_s_runs(cpu_run):
    table = cb.measured_table(cpu_run)
    assert set(table["strategy"]) == {"single", "ddp", "zero1", "tp", "1f1b"}
    assert set(table["ranks"]) == {1, 2, 4}
    cal = cb.calibrate(table)
    fitted = cal.predict_table(table)
    held_out = cb.leave_one_out(table)
    print(fitted[["label", "measured_ms", "predicted_ms", "error"]].to_string())
    print("leave-one-out:", held_out.attrs["median_abs_error"])
    assert (table["repeats"] == 2).all()
    # The goal: the calibrated model predicts this machine's runs within 10% (median). Each
    # configuration left out of the fit is predicted less well (about 10-20% on 2 noisy cores).
    assert fitted["error"].abs().median() <= 0.10
    assert held_out.attrs["median_abs_error"] < 0.5
    assert 1e8 < cal.flops_per_s < 1e12 and cal.bytes_per_s > 1e6
