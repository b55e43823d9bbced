"""The cluster model: configurations, predictions, presets, search, and bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gpuviz import plan
from gpuviz.parallel.zero import zero_memory
from gpuviz.plan import Config, Efficiency, Transformer
from gpuviz.plan.prediction import predict
from gpuviz.plan.search import layouts, search
from gpuviz.plan.terms import TIME_TERMS, ring_time
from gpuviz.plan.transformer import transformer
from gpuviz.sharing import accelerators, hardware

L70 = dict(model="llama3-70b", gpus=64, dp=8, tp=8, pp=1, global_batch=512, zero=1,
           recompute="selective", gpu="H100 SXM")


# -- hardware catalogue ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(accelerators.ACCELERATORS))
def test_every_accelerator_has_sourced_positive_numbers(name):
    a = accelerators.ACCELERATORS[name]
    for k in ("bf16_flops", "fp32_flops", "memory_bytes", "memory_bytes_per_s", "tdp_w"):
        assert a[k] > 0 and math.isfinite(a[k]), k
    assert "http" in a["source"] and "http" in a["tdp_source"]
    assert a["intra_link"] in accelerators.INTERCONNECTS
    assert a["bf16_flops"] > a["fp32_flops"]


def test_interconnects_reuse_the_ladder_and_have_sources():
    assert {"nvlink3", "nvlink4", "nvlink5", "pcie4", "pcie5", "ib-hdr", "ib-ndr", "ib-xdr",
            "eth-400g"} <= set(accelerators.INTERCONNECTS)
    assert accelerators.interconnect("nvlink4")["bytes_per_s"] == hardware.link(
        "NVLink 4 (H100 SXM, per GPU)")["bytes_per_s"]
    assert all(v["source"] for v in accelerators.INTERCONNECTS.values())


def test_unknown_hardware_names_list_the_known_ones():
    with pytest.raises(ValueError, match="gpu='V100'.*'A100 SXM 80GB'.*'H100 SXM'"):
        Config(**{**L70, "gpu": "V100"})
    with pytest.raises(ValueError, match="inter_link='ib-qdr'.*'ib-hdr'"):
        Config(**{**L70, "inter_link": "ib-qdr"})
    with pytest.raises(ValueError, match="intra_link='nvlink9'.*'nvlink4'"):
        Config(**{**L70, "intra_link": "nvlink9"})
    with pytest.raises(ValueError, match="model='gpt5'.*'gpt3-175b'"):
        Config(**{**L70, "model": "gpt5"})


# -- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"dp": 4}, r"dp\*tp\*pp\*cp = 4\*8\*1\*1 = 32 but gpus=64"),
    ({"gpus": 0, "dp": 0}, "gpus=0: must be an integer >= 1"),
    ({"global_batch": -8}, "global_batch=-8"),
    ({"micro_batch": 0}, "micro_batch=0"),
    ({"zero": 4}, "zero=4"),
    ({"recompute": "some"}, "recompute='some'"),
    ({"precision": "fp4"}, "precision='fp4'"),
    ({"precision": "fp8", "gpu": "A100 SXM 80GB"}, "precision='fp8': A100 SXM 80GB has no FP8 peak"),
    ({"cp": 3, "dp": 8, "gpus": 192}, "cp=3 does not divide the model's seq=8192"),
    ({"attention": "sparse"}, "attention='sparse'"),
    ({"reserved_gib": -1}, "reserved_gib=-1"),
    ({"tp": 3, "dp": 1, "gpus": 3}, "tp=3 does not divide"),
    ({"pp": 128, "tp": 1, "dp": 1, "gpus": 128}, "pp=128 is more stages than"),
    ({"bucket_mb": 0}, "bucket_mb=0"),
])
def test_bad_configurations_say_what_is_wrong(change, message):
    with pytest.raises(ValueError, match=message):
        Config(**{**L70, **change})


@pytest.mark.parametrize("kwargs, message", [
    ({"layers": 0}, "layers=0"), ({"hidden": -1}, "hidden=-1"), ({"vocab": 2.5}, "vocab=2.5"),
    ({"hidden": 100, "heads": 3}, "not a multiple of heads"),
])
def test_non_positive_model_sizes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Transformer(**{"layers": 2, "hidden": 64, "heads": 4, "seq": 16, "vocab": 32, **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    ({"compute": 0}, "compute=0"), ({"bandwidth": 1.5}, "bandwidth=1.5"),
    ({"overlap": -0.1}, "overlap=-0.1"), ({"overhead_s": -1}, "overhead_s=-1"),
])
def test_bad_efficiencies_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Efficiency(**kwargs)


def test_presets_match_their_published_parameter_counts():
    counts = {"gpt3-175b": 175e9, "llama3-8b": 8e9, "llama3-70b": 70e9, "llama3-405b": 405e9,
              "mt-nlg-530b": 530e9, "bloom-176b": 176e9, "megatron-1t": 1008e9}
    for name, n in counts.items():
        assert plan.PRESETS[name].n_params == pytest.approx(n, rel=0.04), name
        assert plan.PRESETS[name].source


def test_the_workload_gpt_matches_its_torch_parameter_count():
    from gpuviz.workloads.gpt import GPT
    true = GPT().num_params()            # biases and positions included there, not here
    assert plan.PRESETS["gpuviz-gpt"].n_params == pytest.approx(true, rel=0.02)


# -- prediction -----------------------------------------------------------------------------------

def test_terms_add_up_and_flops_follow_the_6n_rule():
    p = predict(Config(**L70))
    assert sum(p.terms[k] for k in TIME_TERMS) == pytest.approx(p.step_s)
    assert p.table()["share"].sum() == pytest.approx(1.0)
    assert set(p.table()["kind"]) == {plan.MODELLED}
    m = plan.PRESETS["llama3-70b"]
    L, h, s = m.layers, m.hidden, m.seq                # Kaplan et al.: 6N (the input embedding
    n = m.n_params - m.vocab * h - 4 * h * L - 2 * h   # and LayerNorms do no matmul) + attention
    assert p.model_flops_per_token == pytest.approx(6 * n + 12 * L * s * h)
    assert p.hw_flops_per_token > p.model_flops_per_token          # selective recomputation
    assert p.tokens_per_s == pytest.approx(512 * 8192 / p.step_s)
    assert p.mfu == pytest.approx(p.model_flops_per_token * p.tokens_per_s / 64 / 989e12)
    assert p.energy_j == pytest.approx(64 * 700 * p.step_s)


def test_narayanan_flops_formula_with_full_recomputation():
    """Narayanan et al. 2021 eq. 3: 96 B s l h^2 (1 + s/6h + V/16lh) per step."""
    c = Config("gpt3-175b", gpus=8, dp=1, tp=8, global_batch=8, recompute="full")
    p = predict(c)
    B, s, n_layers, h, V = 8, 2048, 96, 12288, 50257
    expected = 96 * B * s * n_layers * h**2 * (1 + s / (6 * h) + V / (16 * n_layers * h))
    assert p.hw_flops_per_token * B * s == pytest.approx(expected, rel=0.01)


def test_memory_follows_zero_and_korthikanti():
    base = dict(model="gpt3-175b", gpus=64, dp=8, tp=8, pp=1, global_batch=64, precision="bf16")
    for stage in range(4):
        p = predict(Config(**base, zero=stage, recompute="full"))
        n = 175e9 / 8                                                      # per tp rank, roughly
        want = zero_memory(n, 8, stage, 2, 2, 12)
        assert p.mem_params + p.mem_grads + p.mem_optimizer == pytest.approx(want["total"], rel=0.03)
    s, b, h, a, t = 2048, 1, 12288, 96, 8
    none = predict(Config(**base, recompute="none", attention="materialised"))
    flash = predict(Config(**base, recompute="none"))
    sel = predict(Config(**base, recompute="selective"))
    full = predict(Config(**base, recompute="full"))
    logits = 4 * s * b * 50257 / t
    assert none.mem_activations - logits == pytest.approx(96 * s * b * h * (34 / t + 5 * a * s / (h * t)))
    assert sel.mem_activations - logits == pytest.approx(96 * s * b * h * 34 / t)
    assert flash.mem_activations == pytest.approx(sel.mem_activations)   # FlashAttention stores no scores
    assert full.mem_activations - logits == pytest.approx(96 * 2 * s * b * h / t)


def test_pipeline_bubble_is_p_minus_1_over_m_plus_p_minus_1():
    c = Config("gpt3-175b", gpus=8, dp=1, tp=1, pp=8, global_batch=24, recompute="full")
    p = predict(c)
    pipeline = p.compute + p.tp_comm + p.pp_comm + p.zero3_comm + p.bubble
    assert p.bubble / pipeline == pytest.approx(7 / (24 + 7))
    inter = predict(c.replace(virtual_stages=2))
    assert inter.bubble < p.bubble


def test_hierarchical_ring_uses_the_slow_link_only_between_servers():
    hw = {"intra_bytes_per_s": 100.0, "inter_bytes_per_s": 10.0, "intra_latency_s": 0.0,
          "inter_latency_s": 0.0}
    from gpuviz.plan.terms import hierarchical_time
    # 16 ranks, 8 per server: inside 2*7/8*n/100, between 2*1/2*(n/8)/10
    assert hierarchical_time(800.0, 16, 8, hw) == pytest.approx(2 * 7 / 8 * 8 + 2 * 0.5 * 100 / 10)
    assert float(ring_time(800.0, 8, 100.0, 0.0)) == pytest.approx(
        plan.ring_allreduce_seconds(800.0, 8, 100.0))


def test_data_parallel_sync_hides_behind_backward_only_with_overlap():
    c = Config("llama3-8b", gpus=64, dp=64, global_batch=512, micro_batch=1, gpu="A100 SXM 80GB",
               inter_link="eth-100g", recompute="selective", zero=1)
    hidden = predict(c.replace(efficiency=Efficiency(compute=0.6, overlap=1.0)))
    shown = predict(c.replace(efficiency=Efficiency(compute=0.6, overlap=0.0)))
    assert shown.dp_comm == pytest.approx(shown.dp_comm_total) and shown.dp_comm > 0
    assert hidden.dp_comm < shown.dp_comm


def test_bigger_model_needs_more_memory_and_time_and_faster_links_help():
    small = predict(Config(**L70))
    big = predict(Config(**{**L70, "model": "llama3-405b"}))
    assert big.memory_per_gpu > small.memory_per_gpu and big.step_s > small.step_s
    assert not big.fits and small.fits
    slow = predict(Config(**{**L70, "tp": 8, "dp": 8, "intra_link": "pcie4"}))
    assert slow.tp_comm > small.tp_comm


# -- search ---------------------------------------------------------------------------------------

def test_search_marks_layouts_that_do_not_fit_and_explains_the_winner():
    t = search("llama3-70b", gpus=128, global_batch=256, gpu="H100 SXM")
    assert t["fits"].iloc[0] and (~t["fits"]).any()              # marked, not dropped
    fit = t[t["fits"]]
    assert fit["tokens_per_s"].is_monotonic_decreasing
    assert (t["dp"] * t["tp"] * t["pp"] == 128).all()
    assert "faster than the runner-up" in t.attrs["reason"] and "(modelled)" in t.attrs["reason"]
    best = t.attrs["best"]
    assert predict(best).step_s == pytest.approx(t["step_s"].iloc[0])
    assert set(t["zero"]) == {0, 1, 2, 3} and set(t["recompute"]) == {"none", "selective", "full"}


def test_search_agrees_with_predict_row_by_row():
    t = search("gpt3-175b", gpus=64, global_batch=128, gpu="A100 SXM 80GB", inter_link="ib-hdr")
    for _, r in t.sample(20, random_state=0).iterrows():
        c = Config("gpt3-175b", gpus=64, dp=int(r["dp"]), tp=int(r["tp"]), pp=int(r["pp"]),
                   global_batch=128, micro_batch=int(r["micro_batch"]), zero=int(r["zero"]),
                   recompute=r["recompute"], gpu="A100 SXM 80GB", inter_link="ib-hdr",
                   virtual_stages=int(r["virtual_stages"]))
        assert predict(c).step_s == pytest.approx(r["step_s"])
        assert predict(c).memory_per_gpu / 2**30 == pytest.approx(r["memory_GiB"])


def test_a_model_that_fits_nowhere_is_a_clear_error():
    with pytest.raises(ValueError, match="fits nowhere on gpus=8 x A100 SXM 80GB .* smallest layout needs"):
        search("llama3-405b", gpus=8, global_batch=64, gpu="A100 SXM 80GB")


def test_search_checks_its_arguments():
    with pytest.raises(ValueError, match="gpus=0"):
        search("llama3-8b", gpus=0, global_batch=64)
    with pytest.raises(ValueError, match="no valid layout"):
        search({"layers": 2, "hidden": 64, "heads": 4, "seq": 16, "vocab": 32}, gpus=3,
               global_batch=64)
    with pytest.raises(ValueError, match="gpu='TPU'"):
        search("llama3-8b", gpus=8, global_batch=64, gpu="TPU")


def test_layouts_enumerate_every_split():
    t = layouts("gpt3-175b", gpus=16, global_batch=32, zero=(0,), recompute=("none",))
    triples = set(map(tuple, t[["dp", "tp", "pp"]].to_numpy()))
    assert (16, 1, 1) in triples and (1, 8, 2) in triples and (2, 8, 1) in triples
    assert all(tp <= 8 for _, tp, _ in triples)
    assert np.all(32 % (t["dp"] * t["micro_batch"]) == 0)


def test_search_tries_interleaved_schedules_and_beats_the_llama3_405b_layout():
    from gpuviz.plan.published import RUNS

    pub = next(r.config for r in RUNS if r.name == "Llama 3 405B, 16384 H100")   # tp8 pp16 v2
    t = search("llama3-405b", gpus=16384, global_batch=2048, gpu="H100 SXM")
    same = t[(t["tp"] == pub.tp) & (t["pp"] == pub.pp) & (t["virtual_stages"] == pub.virtual_stages)]
    row = same[(same["micro_batch"] == pub.micro_batch) & (same["zero"] == pub.zero)
               & (same["recompute"] == pub.recompute)]
    assert len(row) == 1                                        # the published layout is searched
    assert row["mfu"].iloc[0] == pytest.approx(predict(pub).mfu)
    assert bool(row["fits"].iloc[0]) == predict(pub).fits
    # the winner is at least as good as the published layout in every setting of it that fits
    win = t.iloc[0]
    assert win["fits"] and win["mfu"] >= same.loc[same["fits"], "mfu"].max()
    if predict(pub).fits:
        assert win["mfu"] >= predict(pub).mfu
    # and better than the best plain 1F1B layout, which the search used to return
    plain = search("llama3-405b", gpus=16384, global_batch=2048, gpu="H100 SXM", virtual_stages=1)
    assert set(plain["virtual_stages"]) == {1}
    assert win["virtual_stages"] > 1 and win["mfu"] > plain["mfu"].iloc[0]
    best = t.attrs["best"]
    assert best.virtual_stages == win["virtual_stages"]
    assert predict(best).step_s == pytest.approx(win["step_s"])
    assert f"v={win['virtual_stages']}" in t.attrs["reason"]


def test_interleaving_only_where_megatron_can_run_it():
    t = layouts("llama3-405b", gpus=4096, global_batch=2048, zero=(0,), recompute=("none",),
                virtual_stages=(1, 2, 4, 8))
    inter = t[t["virtual_stages"] > 1]
    assert not inter.empty and (inter["pp"] > 1).all()
    m = 2048 // (inter["dp"] * inter["micro_batch"])
    assert (m % inter["pp"] == 0).all()                          # micro-batches: a multiple of pp
    stage_layers = -(-126 // inter["pp"])
    assert (stage_layers % inter["virtual_stages"] == 0).all()   # whole layers per chunk
    assert (inter["pp"] * inter["virtual_stages"] <= 126).all()  # no empty chunk
    assert not ((t["pp"] == 16) & (t["virtual_stages"] == 8)).any()   # 128 chunks > 126 layers
    assert ((t["pp"] == 16) & (t["virtual_stages"] == 4)).any()
    gpipe = layouts("llama3-405b", gpus=4096, global_batch=2048, schedule="gpipe")
    assert set(gpipe["virtual_stages"]) == {1}
    for bad in (0, (1, 2.5), (), True):
        with pytest.raises(ValueError, match="virtual_stages="):
            search("llama3-8b", gpus=8, global_batch=64, virtual_stages=bad)



# -- what published runs need: capacities, rounding, context parallelism, FP8 ------------------

def test_capacities_are_what_nvidia_smi_reports():
    assert accelerators.accelerator("H100 SXM")["memory_bytes"] == 81559 * 2**20
    assert accelerators.accelerator("A100 SXM 80GB")["memory_bytes"] == 80 * 2**30
    assert all(a["memory_source"] for a in accelerators.ACCELERATORS.values())


def test_fits_leaves_the_reserved_allowance_and_says_the_margin():
    p = predict(Config(**L70))
    cap = accelerators.accelerator("H100 SXM")["memory_bytes"]
    assert p.margin_bytes == pytest.approx(cap - p.memory_per_gpu - 2**30)
    tight = Config(**L70).replace(reserved_gib=(cap - p.memory_per_gpu) / 2**30 + 0.01)
    assert p.fits and not predict(tight).fits
    assert predict(tight).margin_bytes == pytest.approx(-0.01 * 2**30)
    assert list(p.memory_table()["kind"]) == list(plan.prediction.MEMORY_KINDS)


def test_an_uneven_batch_is_rounded_and_says_so():
    c = Config("gpt3-175b", gpus=992, dp=124, tp=8, global_batch=1024)
    assert c.global_batch == 992 and c.requested_batch == 1024
    assert "rounded to 992" in c.notes[0]
    again = c.replace(micro_batch=2)                  # rounds what was asked, not 992
    assert again.global_batch == 992 and again.requested_batch == 1024
    assert Config(**L70).notes == []


def test_context_parallelism_splits_tokens_and_adds_its_ring():
    base = dict(model="llama3-70b", tp=8, global_batch=64, zero=1, recompute="selective")
    one = predict(Config(**base, gpus=64, dp=8))
    four = predict(Config(**base, gpus=256, dp=8, cp=4))
    assert four.mem_activations == pytest.approx(one.mem_activations / 4, rel=0.01)
    assert four.terms["cp_comm_total"] > 0 and one.terms["cp_comm_total"] == 0
    assert four.compute == pytest.approx(one.compute / 4, rel=0.05)


def test_fp8_runs_the_matmuls_at_the_fp8_peak_and_counts_mfu_against_bf16():
    bf = predict(Config(**L70, efficiency=Efficiency(compute=0.5)))
    f8 = predict(Config(**{**L70, "precision": "fp8"}, efficiency=Efficiency(compute=0.5)))
    # the weights' matmuls at twice the rate; the attention's products (FlashAttention, 16-bit)
    # as before: forward, backward (2x) and the selective recomputation, per token and layer
    m = transformer("llama3-70b")
    tokens = 512 * m.seq / 8                                   # per data-parallel replica
    peak = accelerators.accelerator("H100 SXM")["bf16_flops"]
    scores_s = tokens * m.layers * 4 * (4 * m.seq * m.heads * m.head_dim) / 8 / (peak * 0.5)
    assert f8.compute == pytest.approx((bf.compute - scores_s) / 2 + scores_s, rel=0.01)
    assert f8.mfu > bf.mfu and f8.mem_params > bf.mem_params        # the FP8 copy of the weights


def test_materialised_attention_costs_memory_bandwidth_time():
    eff = Efficiency(compute=0.5, memory=0.8)
    flash = predict(Config(**L70, efficiency=eff))
    old = predict(Config(**L70, efficiency=eff, attention="materialised"))
    assert old.terms["memory_bound_s"] > flash.terms["memory_bound_s"] > 0
    assert predict(Config(**L70, efficiency=Efficiency(compute=0.5))).terms["memory_bound_s"] == 0


def test_links_carry_nccl_s_latencies():
    assert accelerators.interconnect("nvlink4")["latency_s"] == accelerators.NCCL_LATENCY["nvlink"]
    assert accelerators.interconnect("ib-ndr")["latency_s"] == accelerators.NCCL_LATENCY["net"]
    assert "tuning.cc" in accelerators.interconnect("ib-ndr")["latency_source"]


def test_search_names_a_bad_context_parallel_choice():
    with pytest.raises(ValueError, match=r"context_parallel=\(0,\): give an integer >= 1"):
        search("llama3-70b", gpus=64, global_batch=128, context_parallel=(0,))


# -- mixtures of experts -------------------------------------------------------------------------

Q30 = dict(model="qwen3-30b-a3b", gpus=16, dp=8, tp=1, pp=2, global_batch=256, zero=1,
           recompute="selective", gpu="H100 SXM")


def test_moe_presets_count_all_and_active_parameters():
    q30, q235 = transformer("qwen3-30b-a3b"), transformer("qwen3-235b-a22b")
    # the models' cards on Hugging Face: 30.5B in all, 3.3B activated; 235B and 22B
    assert round(q30.n_params / 1e9, 1) == 30.5 and abs(q30.n_active_params / 1e9 - 3.3) < 0.1
    assert (round(q235.n_params / 1e9), round(q235.n_active_params / 1e9)) == (235, 22)
    assert q30.moe and not transformer("llama3-70b").moe
    assert transformer("llama3-70b").n_active_params == transformer("llama3-70b").n_params
    # the model's FLOPs per token follow the active parameters, not all of them
    p = predict(Config(**Q30))
    attention = 3 * q30.layers * 4 * q30.seq * q30.heads * q30.head_dim
    embedding = q30.vocab * q30.hidden                     # the input lookup is not a matmul
    assert p.model_flops_per_token == pytest.approx(
        6 * (q30.n_active_params - embedding) + attention, rel=0.01)


def test_banded_attention_layers_count_the_window_not_the_sequence():
    """gpt-oss: every other layer attends within 128 tokens; the preset's sizes give the
    model card's 116.8B parameters, and only the banded layers' attention FLOPs change."""
    oss = transformer("gpt-oss-120b")
    assert round(oss.n_params / 1e9, 1) == 116.8 and oss.windowed_layers == oss.layers // 2
    whole = dataclasses.replace(oss, window=None, windowed_layers=0)
    cfg = dict(gpus=64, dp=16, pp=4, ep=8, global_batch=256, zero=1, gpu="H100 SXM")
    banded, full = predict(Config(oss, **cfg)), predict(Config(whole, **cfg))
    q_dim = oss.heads * oss.head_dim
    saved = 3 * 4 * q_dim * (oss.seq - oss.window) * oss.windowed_layers
    assert full.model_flops_per_token - banded.model_flops_per_token == pytest.approx(saved)
    assert banded.compute < full.compute and banded.mem_params == full.mem_params


@pytest.mark.parametrize("fields, match", [
    (dict(window=0), "window=0: must be an integer >= 1"),
    (dict(windowed_layers=1), "windowed_layers=1: .* needs a window"),
    (dict(window=8, windowed_layers=3), "windowed_layers=3: must be at most layers=2"),
    (dict(experts=8, top_k=9), "top_k=9 is more than the experts=8"),
    (dict(experts=-1), "experts=-1"),
    (dict(hidden=100, heads=3), "or give head_dim"),
])
def test_transformer_rejects_impossible_experts_and_heads(fields, match):
    base = dict(layers=2, hidden=96, heads=4, seq=16, vocab=32)
    with pytest.raises(ValueError, match=match):
        Transformer(**{**base, **fields})


@pytest.mark.parametrize("changes, match", [
    (dict(model="llama3-70b", ep=2), "ep=2: the model llama3-70b has no experts"),
    (dict(ep=256), "ep=256 must divide the model's experts=128"),
    (dict(gpus=12, dp=6, ep=4), r"ep=4 must divide .* tp\*cp\*dp = 6"),
    (dict(ep=0), "ep=0: must be an integer >= 1"),
    (dict(ep=8, ep_overlap="yes"), "ep_overlap='yes': must be True or False"),
])
def test_config_names_a_bad_expert_layout(changes, match):
    with pytest.raises(ValueError, match=match):
        Config(**{**Q30, **changes})


def test_expert_parallelism_splits_the_experts_and_pays_all_to_alls():
    one, eight = predict(Config(**Q30)), predict(Config(**Q30, ep=8))
    assert one.ep_comm == 0 < eight.ep_comm
    # the experts (nearly all of the weights) split 8 ways: params, grads and optimizer state
    assert eight.mem_params < one.mem_params / 5
    # the compute is the same: each token meets its experts wherever they are
    assert eight.compute == pytest.approx(one.compute)
    # 16 ranks span two servers: half the copies cross the network, slower than NVLink
    wide = predict(Config(**{**Q30, "pp": 1, "dp": 16}, ep=16))
    eight = predict(Config(**{**Q30, "pp": 1, "dp": 16}, ep=8))
    assert wide.ep_comm > 2 * eight.ep_comm
    assert wide.mem_params < eight.mem_params


def test_overlapped_all_to_alls_count_only_what_compute_does_not_cover():
    """ep_overlap (Megatron-Core's overlap_moe_expert_parallel_comm): each micro-batch's
    all-to-alls hide behind another's compute, as far as the overlap fraction allows; the
    rest stays on the step, and nothing else changes."""
    eff = Efficiency(overlap=0.5)
    kw = {**Q30, "pp": 1, "dp": 16, "ep": 16, "efficiency": eff}
    plain, hidden = predict(Config(**kw)), predict(Config(**kw, ep_overlap=True))
    m = plain.micro_batches
    expected = max(0.0, plain.ep_comm / m - 0.5 * plain.compute / m) * m
    assert hidden.ep_comm == pytest.approx(expected) and 0 < hidden.ep_comm < plain.ep_comm
    assert hidden.ep_comm_total == pytest.approx(plain.ep_comm)   # the traffic is the same
    assert hidden.compute == pytest.approx(plain.compute)
    assert hidden.step_s == pytest.approx(plain.step_s - plain.ep_comm + hidden.ep_comm, rel=1e-9)
    # all of it hidden where the compute is longer (one server: NVLink all-to-alls)
    inside = predict(Config(**{**kw, "ep": 8}, ep_overlap=True).replace(
        efficiency=Efficiency(overlap=1.0)))
    assert inside.ep_comm == 0 < inside.ep_comm_total
    # search passes it to every layout
    t = search("qwen3-30b-a3b", gpus=16, global_batch=64, zero=(1,), recompute=("none",),
               virtual_stages=(1,), ep_overlap=True)
    assert t.attrs["best"].ep_overlap is True


def test_search_tries_expert_parallelism_for_moe_models_only():
    t = layouts("qwen3-30b-a3b", gpus=16, global_batch=64, zero=(1,), recompute=("none",),
                virtual_stages=(1,))
    assert set(t["ep"]) == {1, 2, 4, 8, 16}
    assert all((r.tp * r.cp * r.dp) % r.ep == 0 for r in t.itertuples())
    assert set(layouts("llama3-8b", gpus=16, global_batch=64)["ep"]) == {1}
    with pytest.raises(ValueError, match="expert_parallel=.*has no experts"):
        layouts("llama3-8b", gpus=16, global_batch=64, expert_parallel=(1, 2))
    best = search("qwen3-235b-a22b", gpus=256, global_batch=1024, precision="fp8")
    assert best.attrs["best"].ep == best.iloc[0]["ep"] and best.iloc[0]["fits"]
