"""The planning lab's checks: the right answers pass (the lab's solutions), common mistakes are named."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gpuviz import checks
from gpuviz.plan import Config, transformer
from gpuviz.plan.prediction import predict

_SOL = Path(__file__).parent.parent / "labs" / "solutions" / "05_plan_a_training_run.py"
spec = importlib.util.spec_from_file_location("solutions05", _SOL)
solutions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(solutions)

#: The lab's plan: Llama 3 70B on 64 H100, 128 sequences of 8192 tokens per step.
PLAN = Config("llama3-70b", gpus=64, dp=8, tp=8, pp=1, global_batch=128, zero=1, recompute="selective")
#: The lab's exercise 3: GPT-3 on 1024 A100 with 16 stages and 8 micro-batches per replica.
DEEP = Config("gpt3-175b", gpus=1024, dp=8, tp=8, pp=16, global_batch=64, recompute="full",
              gpu="A100 SXM 80GB", inter_link="ib-hdr")


def test_fits_in_memory():
    # the plan at ZeRO-0 and -1, and the lab's exercise 1 (a) and (b)
    for c in (PLAN.replace(zero=0), PLAN, PLAN.replace(dp=16, tp=4, zero=2, recompute="full"),
              PLAN.replace(dp=64, tp=1, zero=3, recompute="selective")):
        assert checks.fits_in_memory(solutions.fits, c)
        assert checks.fits_in_memory(predict(c).fits, c)
        assert not checks.fits_in_memory(not predict(c).fits, c)
    assert not predict(PLAN.replace(zero=0)).fits and predict(PLAN).fits
    r = checks.fits_in_memory(True, PLAN.replace(zero=0))
    assert not r and "model state alone" in r.message and "ZeRO-0 shards nothing" in r.message
    r = checks.fits_in_memory(False, PLAN)
    assert not r and "Without ZeRO it would not" in r.message
    # the state fits, the activations do not
    acts = PLAN.replace(dp=16, tp=4, zero=3, micro_batch=8)
    assert not predict(acts).fits
    r = checks.fits_in_memory(True, acts)
    assert not r and "activations add" in r.message
    assert "True or False" in checks.fits_in_memory("yes", PLAN).message
    assert "None" in checks.fits_in_memory(None, PLAN).message
    with pytest.raises(ValueError, match="config="):
        checks.fits_in_memory(True, {"model": "llama3-70b"})


def test_the_hand_count_of_the_solutions_is_the_model_s():
    for zero in (0, 1, 2):
        for recompute in ("selective", "full"):
            c = PLAN.replace(zero=zero, recompute=recompute)
            assert solutions.memory_gb(c) == pytest.approx(predict(c).memory_per_gpu / 1e9, rel=1e-6)


def test_mfu_from_throughput():
    tps = predict(PLAN).tokens_per_s
    n, peak = transformer("llama3-70b").n_params, 989e12
    kw = dict(tokens_per_s=tps, model="llama3-70b", gpus=64)
    assert checks.mfu_from_throughput(solutions.mfu, **kw)
    assert checks.mfu_from_throughput(predict(PLAN).mfu, **kw)           # with the attention
    right = 6 * n * tps / (64 * peak)
    named = {"forward pass only": right / 3, "recomputed forward": right * 4 / 3,
             "one GPU's peak": right * 64, "percentage": right * 100, "fp32 peak": 6 * n * tps / (64 * 67e12),
             "sparsity": right / 2}
    for words, wrong in named.items():
        r = checks.mfu_from_throughput(wrong, **kw)
        assert not r and words in r.message, (words, r.message)
    assert "MFU = " in checks.mfu_from_throughput(0.123, **kw).message
    with pytest.raises(ValueError, match="tokens_per_s"):
        checks.mfu_from_throughput(0.5, tokens_per_s=0, model="llama3-70b", gpus=64)
    with pytest.raises(ValueError, match="gpus"):
        checks.mfu_from_throughput(0.5, tokens_per_s=1e5, model="llama3-70b", gpus=0)
    with pytest.raises(ValueError, match="not in the catalogue|unknown|known"):
        checks.mfu_from_throughput(0.5, tokens_per_s=1e5, model="llama3-70b", gpus=8, gpu="V100")


def test_dominant_term():
    assert checks.dominant_term(solutions.dominant, DEEP)
    r = checks.dominant_term("compute", DEEP)
    assert not r and "(p-1)/(m+p-1)" in r.message and "m = 8" in r.message
    r = checks.dominant_term("communication", DEEP)
    assert not r and "tp_comm, pp_comm" in r.message
    slow_net = DEEP.replace(dp=64, pp=2, global_batch=128, inter_link="eth-100g")
    assert predict(slow_net).dominant == "dp_comm"
    r = checks.dominant_term("compute", slow_net)
    assert not r and "gradient all-reduce" in r.message


def test_best_layout():
    kw = dict(model="llama3-70b", gpus=64, global_batch=128)
    assert checks.best_layout(solutions.best_layout, **kw)
    assert checks.best_layout(solutions.best_layout(), **kw)
    r = checks.best_layout({"dp": 8, "tp": 8, "pp": 2}, **kw)
    assert not r and "but there are 64 GPUs" in r.message
    r = checks.best_layout({"dp": 4, "tp": 16, "pp": 1}, **kw)
    assert not r and "more than one server" in r.message
    r = checks.best_layout({"dp": 64, "tp": 1, "pp": 1, "zero": 0}, **kw)
    assert not r and "Nothing with" in r.message and "fits in 79.6 GiB" in r.message
    r = checks.best_layout({"dp": 2, "tp": 4, "pp": 8}, **kw)
    assert not r and "loses most in" in r.message and "more per step" in r.message
    assert "Give a dict" in checks.best_layout("dp=8", **kw).message
    with pytest.raises(ValueError, match="tolerance"):
        checks.best_layout({"dp": 8, "tp": 8, "pp": 1}, tolerance=2, **kw)


def test_expert_weights_check_counts_as_the_model_and_names_the_slip():
    import math

    from gpuviz.plan import published

    moe = {r.name: r for r in published.RUNS}["Qwen3 235B-A22B, 256 H100, FP8 batch 8192"].config
    c = moe.replace(precision="bf16")
    m = c.model
    right = math.ceil(m.layers / c.pp) * m.routed_expert_params / c.ep * 2 / 2**30
    # the model holds the same count: taking the experts away from ep=1 leaves (1 - 1/ep) of them
    freed = predict(c.replace(ep=1)).mem_params - predict(c).mem_params
    assert freed / 2**30 == pytest.approx(right * c.ep * (1 - 1 / c.ep))
    assert checks.expert_weights_gib(right, c) and checks.expert_weights_gib(solutions.expert_gib, c)
    for wrong, says in ((right * c.ep, "divide by ep=32"), (right * c.pp, "not all of them"),
                        (right / c.tp, "not split again by tp=2"), (right * 2, "4 bytes is fp32"),
                        (right * 2**30 / 1e9, "give GiB"), (None, "Replace `None`"),
                        ("lots", "should be a number")):
        r = checks.expert_weights_gib(wrong, c)
        assert not r and says in r.message, (wrong, r.message)
    with pytest.raises(ValueError, match="has no experts"):
        checks.expert_weights_gib(1.0, Config("llama3-8b", gpus=8, dp=8, global_batch=64))
