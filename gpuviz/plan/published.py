"""Published large-scale training runs, each with its source, and the cluster model's
prediction of each: how far :mod:`gpuviz.plan.prediction` can be trusted, and where not.

Every run states a model, a GPU count, a layout and what was measured: TFLOP/s per GPU
(counting recomputation, as Megatron-LM's papers do: "hardware" FLOPs), MFU (model
FLOPs only, as Llama 3's paper does) or tokens/s per GPU (Megatron-Bridge's benchmarks).
Where a source leaves a setting out, the run says what is assumed (``assumed``).

What is fixed and what is fitted: peak FLOP/s, memory, link bandwidths and power come from
the datasheets (:mod:`gpuviz.sharing.hardware`), link latencies from NCCL's cost model;
the bandwidth efficiency 0.8 is assumed (:class:`gpuviz.plan.config.Efficiency`). Three
parameters are fitted, each on named runs (:data:`FIT_ON`) and checked on every other:
the fraction of peak the matmuls reach, one value per GPU type; the fraction of memory
bandwidth the memory-bound kernels reach, one value for all; and the fraction of compute
that hides communication (``overlap``), one value for all. Every other run is held out.

>>> t = validation_table()
>>> held = t[t["role"] == "validation"]
>>> bool(held["error"].abs().median() <= 0.10)
True
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from gpuviz.plan.config import FAMILY, Config, Efficiency
from gpuviz.plan.prediction import predict
from gpuviz.plan.transformer import Transformer

_NARAYANAN = ("Narayanan et al. 2021, 'Efficient Large-Scale Language Model Training on GPU "
              "Clusters Using Megatron-LM', SC21, arXiv:2104.04473")
_T1 = _NARAYANAN + (", Table 1 (weak scaling on Selene, DGX A100 80GB with 8 HDR ports per server; "
                    "vocabulary 51,200, sequence 2048)")
_T2 = _NARAYANAN + (", Table 2 (PTD parallelism against ZeRO-3 without model parallelism, "
                    "DeepSpeed; same cluster)")
_KORTHIKANTI = ("Korthikanti et al. 2022, 'Reducing Activation Recomputation in Large Transformer "
                "Models', arXiv:2205.05198, abstract: 530B on 2240 A100, MFU 54.2% with sequence "
                "parallelism and selective recomputation, 42.1% with full recomputation")
_SMITH = ("Smith et al. 2022, 'Using DeepSpeed and Megatron to Train Megatron-Turing NLG 530B', "
          "arXiv:2201.11990, Section 2.4: global batch 1920 on 280, 350 and 420 DGX A100 servers, "
          "60.1, 50.2 and 44.4 s per iteration, 126, 121 and 113 TFLOP/s per GPU; 8-way tensor "
          "and 35-way pipeline parallelism (Section 2.3)")
_BLOOM = ("BigScience, 'BigScience 176B Model' training page, https://bigscience.notion.site/"
          "BigScience-176B-Model-ad073ca07cdf479398d5f95d88e218c4: 384 A100 80GB, one model copy "
          "on 48 GPUs, 'training throughput: about 150 TFLOPs'; layout TP=4, PP=12, DP=8 with "
          "ZeRO stage 1 (S. Bekman, 'The Technology Behind BLOOM Training', "
          "https://huggingface.co/blog/bloom-megatron-deepspeed); Jean Zay: 4 Omni-Path "
          "100 Gb/s links per node (Le Scao et al. 2022, arXiv:2211.05100)")
_OPT = ("Zhang et al. 2022, 'OPT: Open Pre-trained Transformer Language Models', arXiv:2205.01068, "
        "Section 2.4: 992 80GB A100, Fully Sharded Data Parallel with Megatron-LM tensor "
        "parallelism, 'up to 147 TFLOP/s per GPU'; Table 1: 96 layers, 96 heads, hidden 12288, "
        "batch 2M tokens (sequence 2048)")
_LLAMA = ("Dubey et al. 2024, 'The Llama 3 Herd of Models', arXiv:2407.21783, Table 4: "
          "405B on H100, 16M tokens per batch; TP 8, PP 16 with CP 1 (sequence 8192) or CP 16 "
          "(sequence 131072)")
_BRIDGE = ("NVIDIA Megatron-Bridge, docs/performance-summary-archive.md, "
           "https://github.com/NVIDIA-NeMo/Megatron-Bridge (commit 0a25f91): pre-training on "
           "DGX-H100, tokens/s per GPU; 'we force-balance the token distribution among experts "
           "and all benchmarks are token-dropless'")
_BRIDGE_RECIPE = ("; its H100 recipe for this layout (scripts/performance/configs/qwen/"
                  "qwen3_workload_base_configs.py, QWEN3_235B_A22B_PRETRAIN_CONFIG_H100_FP8_CS_V1 "
                  "and _V2: global batch 2048 and 8192, commits f29a269 and 01b2977) sets "
                  "moe_a2a_overlap=True, which scripts/performance/utils/overrides.py turns into "
                  "Megatron-Core's overlap_moe_expert_parallel_comm (an earlier version, "
                  "configs/qwen3/workload_base_configs.py at commit 0fa501a, gives the layout "
                  "without it)")
_BRIDGE_NO_OVERLAP = ("; none of its H100 recipes for this model found (configs/qwen3/"
                      "workload_base_configs.py at commit 0fa501a: PP 2, VP 12, EP 8; "
                      "configs/qwen/qwen3_workload_base_configs.py at f29a269: EP 16) sets "
                      "moe_a2a_overlap")
_BRIDGE_OSS = ("NVIDIA Megatron-Bridge, docs/performance-summary-archive.md, "
               "https://github.com/NVIDIA-NeMo/Megatron-Bridge (commit 0a25f91): pre-training on "
               "DGX-H100 in BF16, tokens/s per GPU, balanced routing (26.02 container); its recipe "
               "(scripts/performance/configs/gpt_oss/gpt_oss_workload_base_configs.py at commit "
               "07eea52, GPT_OSS_120B_PRETRAIN_CONFIG_H100_BF16_V2): PP 4, EP 8, micro-batch 1, "
               "global batch 1280, recompute_modules layernorm and moe_act, no moe_a2a_overlap")
_BRIDGE_DENSE = ("NVIDIA Megatron-Bridge, docs/performance-summary-archive.md, "
                 "https://github.com/NVIDIA-NeMo/Megatron-Bridge (commit 0a25f91): pre-training "
                 "on DGX-H100 in FP8, sequence 8192, tokens/s per GPU")
_SELENE = dict(gpu="A100 SXM 80GB", inter_link="ib-hdr")     # DGX A100: 8 HDR ports per node
_OLD = dict(attention="materialised", sequence_parallel=False)  # Megatron-LM before FlashAttention


def _gpt(params: str, heads: int, hidden: int, layers: int, vocab: int = 51200) -> Transformer:
    return Transformer(layers, hidden, heads, 2048, vocab, name=f"gpt-{params}",
                       source=_T1 if vocab == 51200 else "")


#: Categories the closing table groups runs by.
CATEGORIES = ("dense Megatron-style", "small models", "ZeRO-3/FSDP", "long context", "MoE")


@dataclasses.dataclass(frozen=True)
class PublishedRun:
    """One published training run: its configuration and the number it reports."""

    name: str
    config: Config
    metric: str
    """"tflops_per_gpu" (counting recomputation), "mfu" (model FLOPs only) or
    "tokens_per_s_per_gpu" (no FLOP convention: Megatron-Bridge counts causal attention
    at half, the model at whole)."""
    value: float
    source: str
    assumed: str = ""
    """Settings the source does not state, and what is assumed for them."""
    category: str = "dense Megatron-style"
    """One of :data:`CATEGORIES`."""


def _run(name, model, gpus, tp, pp, batch, metric, value, source, assumed="", category=None,
         cp=1, **kw) -> PublishedRun:
    kw = {**_SELENE, **kw} if kw.get("gpu", "A100 SXM 80GB").startswith("A100") else kw
    cfg = Config(model, gpus=gpus, dp=gpus // (tp * pp * cp), tp=tp, pp=pp, cp=cp,
                 global_batch=batch, **kw)
    if category is None:
        small = cfg.model.n_params < 20e9
        category = ("MoE" if cfg.model.moe else "ZeRO-3/FSDP" if cfg.zero == 3
                    else "small models" if small
                    else "long context" if cp > 1 else "dense Megatron-style")
    return PublishedRun(name, cfg, metric, value, source, assumed, category)


_MEGATRON = dict(recompute="full", micro_batch=1, **_OLD)
_T1_ASSUMED = "micro-batch 1; full recomputation; no interleaving (Table 1 does not give them)"

#: The published runs, each with its source.
RUNS = (
    # Narayanan et al. 2021, Table 1: one model per row, weak scaling
    *(_run(f"Megatron-LM {size}, {g} A100", _gpt(size.lower(), heads, hidden, layers), g, tp, pp,
           batch, "tflops_per_gpu", v, _T1, _T1_ASSUMED, **_MEGATRON)
      for size, heads, hidden, layers, tp, pp, g, batch, v in (
          ("1.7B", 24, 2304, 24, 1, 1, 32, 512, 137), ("3.6B", 32, 3072, 30, 2, 1, 64, 512, 138),
          ("7.5B", 32, 4096, 36, 4, 1, 128, 512, 142), ("18.4B", 48, 6144, 40, 8, 1, 256, 1024, 135),
          ("39.1B", 64, 8192, 48, 8, 2, 512, 1536, 138), ("76.1B", 80, 10240, 60, 8, 4, 1024, 1792, 140),
          ("145.6B", 96, 12288, 80, 8, 8, 1536, 2304, 148),
          ("310.1B", 128, 16384, 96, 8, 16, 1920, 2160, 155),
          ("529.6B", 128, 20480, 105, 8, 35, 2520, 2520, 163))),
    _run("Megatron-LM 1T, 3072 A100", "megatron-1t", 3072, 8, 64, 3072, "tflops_per_gpu", 163,
         _T1, _T1_ASSUMED, **_MEGATRON),
    # Narayanan et al. 2021, Table 2: the same models with PTD parallelism and with ZeRO-3
    *(_run(f"PTD 174.6B, {g} A100", _gpt("174.6b", 96, 12288, 96), g, 8, 12, 1536,
           "tflops_per_gpu", v, _T2, "full recomputation; no interleaving", **_MEGATRON)
      for g, v in ((384, 153), (768, 149), (1536, 141))),
    *(_run(f"PTD 529.6B, {g} A100", _gpt("529.6b", 128, 20480, 105), g, 8, 35, 2240,
           "tflops_per_gpu", v, _T2, "full recomputation; no interleaving", **_MEGATRON)
      for g, v in ((560, 171), (1120, 167), (2240, 159))),
    *(_run(f"ZeRO-3 174.6B, {g} A100", _gpt("174.6b", 96, 12288, 96), g, 1, 1, 1536,
           "tflops_per_gpu", v, _T2, "full recomputation", zero=3, micro_batch=mb,
           recompute="full", **_OLD)
      for g, mb, v in ((384, 4, 144), (768, 2, 88), (1536, 1, 44))),
    *(_run(f"ZeRO-3 529.6B, {g} A100", _gpt("529.6b", 128, 20480, 105), g, 1, 1, batch,
           "tflops_per_gpu", v, _T2, "full recomputation", zero=3, micro_batch=mb,
           recompute="full", **_OLD)
      for g, mb, batch, v in ((640, 4, 2560, 138), (1120, 2, 2240, 98), (2240, 1, 2240, 48))),
    # Korthikanti et al. 2022: the 530B model end to end, with and without their techniques
    _run("Megatron-LM 530B selective, 2240 A100", "mt-nlg-530b", 2240, 8, 35, 2240, "mfu", 0.542,
         _KORTHIKANTI, "global batch 2240 and micro-batch 1 (the abstract does not give them); "
         "no interleaving", recompute="selective", micro_batch=1, attention="materialised",
         sequence_parallel=True),
    _run("Megatron-LM 530B full recompute, 2240 A100", "mt-nlg-530b", 2240, 8, 35, 2240, "mfu",
         0.421, _KORTHIKANTI, "global batch 2240 and micro-batch 1 (the abstract does not give "
         "them); no interleaving", **_MEGATRON),
    # other stacks on A100
    *(_run(f"MT-NLG 530B, {g} A100", "mt-nlg-530b", g, 8, 35, 1920, "tflops_per_gpu", v, _SMITH,
           "micro-batch 1; full recomputation", **_MEGATRON)
      for g, v in ((2240, 126), (2800, 121), (3360, 113))),
    _run("BLOOM 176B, 384 A100", "bloom-176b", 384, 4, 12, 2048, "tflops_per_gpu", 150, _BLOOM,
         "micro-batch 2; full recomputation", recompute="full", micro_batch=2, zero=1,
         gpu="A100 SXM 80GB", inter_link="omni-path-100", nics_per_node=4, **_OLD),
    _run("OPT 175B, 992 A100", "gpt3-175b", 992, 8, 1, 1024, "tflops_per_gpu", 147, _OPT,
         "'up to' 147; batch 2M tokens as 1024 sequences; micro-batch 8; full recomputation; "
         "FSDP as ZeRO-3 (parameters gathered per micro-batch)", zero=3, micro_batch=8,
         recompute="full", **_OLD),
    # Llama 3 405B on H100 (FlashAttention, sequence parallelism)
    _run("Llama 3 405B, 8192 H100", "llama3-405b", 8192, 8, 16, 2048, "mfu", 0.43, _LLAMA,
         "micro-batch 1; interleaved schedule with 2 virtual stages (the paper interleaves but "
         "does not give the count); selective recomputation; ZeRO-2-like FSDP",
         gpu="H100 SXM", inter_link="ib-ndr", recompute="selective", zero=2, virtual_stages=2),
    _run("Llama 3 405B, 16384 H100", "llama3-405b", 16384, 8, 16, 2048, "mfu", 0.41, _LLAMA,
         "micro-batch 1; interleaved schedule with 2 virtual stages (the paper interleaves but "
         "does not give the count); selective recomputation; ZeRO-2-like FSDP",
         gpu="H100 SXM", inter_link="ib-ndr", recompute="selective", zero=2, virtual_stages=2),
    _run("Llama 3 405B long context, 16384 H100",
         Transformer(126, 16384, 128, 131072, 128000, 8, 53248, True, False, "llama3-405b-128k",
                     _LLAMA), 16384, 8, 16, 128, "mfu", 0.38, _LLAMA,
         "micro-batch 1; interleaved schedule with 2 virtual stages; selective recomputation; "
         "ZeRO-2-like FSDP", cp=16, gpu="H100 SXM", inter_link="ib-ndr", recompute="selective",
         zero=2, virtual_stages=2),
    # dense models in FP8 on H100 (Megatron-Bridge's benchmarks): FSDP > 0 there is ZeRO-3 here
    *(_run(f"Llama {version} {name}, {g} H100, FP8 batch {batch}", f"llama3-{name.lower()}", g,
           tp, pp, batch, "tokens_per_s_per_gpu", v, _BRIDGE_DENSE + f" ({release} container)",
           "selective recomputation; distributed optimizer as ZeRO-1 (FSDP as ZeRO-3)",
           category="ZeRO-3/FSDP" if zero == 3 else "dense Megatron-style", cp=cp,
           gpu="H100 SXM", inter_link="ib-ndr", micro_batch=1, virtual_stages=vp,
           precision="fp8", recompute="selective", zero=zero)
      for version, name, g, batch, zero, tp, pp, cp, vp, v, release in (
          ("3", "70B", 64, 256, 1, 4, 8, 1, 5, 1621, "26.02"),
          ("3.1", "405B", 1024, 1536, 1, 8, 8, 2, 8, 311, "26.02"),
          ("3", "8B", 8, 128, 3, 1, 1, 1, 1, 14451, "25.11"),
          ("3", "70B", 64, 128, 1, 4, 8, 1, 5, 1602, "25.11"),
          ("3.1", "405B", 1024, 512, 1, 8, 8, 2, 8, 292, "25.11"))),
    # mixtures of experts on H100 (Megatron-Bridge's benchmarks, balanced routing); the
    # all-to-alls overlapped where the benchmark's recipe says so (235B), not where none does
    *(_run(f"Qwen3 {name}, {g} H100, {prec} batch {batch}", f"qwen3-{name.lower()}", g, tp, pp, batch,
           "tokens_per_s_per_gpu", v, _BRIDGE + f" ({release} container)"
           + (_BRIDGE_RECIPE if overlapped else _BRIDGE_NO_OVERLAP),
           "selective recomputation; distributed optimizer as ZeRO-1; all-to-all token "
           + ("dispatch overlapped with compute, as the later recipes say" if overlapped
              else "dispatch, not overlapped"), gpu="H100 SXM", inter_link="ib-ndr",
           micro_batch=mb, virtual_stages=vp, ep=ep, ep_overlap=overlapped,
           precision=prec.lower(), recompute="selective", zero=1)
      for name, g, prec, batch, mb, tp, pp, vp, ep, overlapped, v, release in (
          ("30B-A3B", 16, "FP8", 1024, 1, 1, 2, 12, 8, False, 5113, "26.02"),
          ("30B-A3B", 16, "FP8", 512, 2, 1, 2, 24, 8, False, 5275, "25.11"),
          ("235B-A22B", 256, "FP8", 8192, 1, 2, 8, 4, 32, True, 1633, "26.02"),
          ("235B-A22B", 256, "FP8", 2048, 1, 2, 8, 4, 32, True, 1575, "25.11"))),
    # (its 25.11 row is left out: the archive gives micro-batch 4 for global batch 512, the
    # recipe found micro-batch 1, and with neither the recomputation is known)
    _run("GPT-OSS 120B, 64 H100, BF16 batch 1280", "gpt-oss-120b", 64, 1, 4, 1280,
         "tokens_per_s_per_gpu", 5993, _BRIDGE_OSS, "no recomputation (the recipe recomputes "
         "LayerNorm and the experts' activation, memory-bound work the model does not repeat); "
         "distributed optimizer as ZeRO-1; all-to-all token dispatch, not overlapped; attention "
         "sinks left out", gpu="H100 SXM", inter_link="ib-ndr", micro_batch=1, ep=8,
         recompute="none", zero=1),
)

#: The runs each fitted parameter is fitted on; every other run is held out. ``compute``:
#: the matmuls' fraction of peak, per GPU type; ``memory``: the memory-bound kernels'
#: fraction of memory bandwidth, one value for every GPU.
FIT_ON = {"compute": {"A100 SXM 80GB": ("Megatron-LM 1T, 3072 A100",),
                      "H100 SXM": ("Llama 3 405B, 8192 H100",)},
          "memory": ("Megatron-LM 1.7B, 32 A100",),
          "overlap": ("ZeRO-3 174.6B, 768 A100",)}
#: The single parameters :func:`fit_efficiency` fits besides ``compute``, with their range.
_SCALARS = {"memory": (0.05, 1.0), "overlap": (0.0, 1.0)}


def _fitted(names) -> set[str]:
    return {n for k in _SCALARS for n in names[k]} | {n for v in names["compute"].values() for n in v}


def _gpu_name(run: PublishedRun) -> str:
    g = run.config.gpu
    return g if isinstance(g, str) else g.get("name", "custom")


def _with(run: PublishedRun, compute: float, memory: float, overlap: float) -> Config:
    return run.config.replace(efficiency=Efficiency(compute=compute, memory=memory, overlap=overlap,
                                                    source="published fit"))


def _log_error(runs, fit: dict) -> float:
    return sum(math.log(getattr(predict(_with(r, fit["compute"][_gpu_name(r)], fit["memory"],
                                              fit["overlap"])), r.metric) / r.value) ** 2
               for r in runs)


def _golden(f, lo=0.05, hi=1.0, steps=40) -> float:
    g = (math.sqrt(5) - 1) / 2
    for _ in range(steps):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if f(a) <= f(b):
            hi = b
        else:
            lo = a
    return (lo + hi) / 2


def fit_efficiency(runs=RUNS, fit_on: dict | None = None) -> dict:
    """The fitted parameters: ``{"compute": {gpu: fraction}, "memory": fraction, "overlap":
    fraction}``, each the value that minimises the squared log ratio of predicted to
    published over the runs :data:`FIT_ON` names for it (golden-section search, in turn
    until they settle): the matmuls' fraction of peak per GPU type, the memory-bound
    kernels' fraction of memory bandwidth, and the fraction of compute that hides
    data-parallel and ZeRO-3 communication.

    >>> fit = fit_efficiency()
    >>> round(fit["compute"]["A100 SXM 80GB"], 1), round(fit["memory"], 1)
    (0.7, 0.8)
    """
    fit_on = FIT_ON if fit_on is None else fit_on
    by_name = {r.name: r for r in runs}
    for what, names in [*((k, fit_on[k]) for k in _SCALARS), *fit_on["compute"].items()]:
        missing = [n for n in names if n not in by_name]
        if missing or not names:
            raise ValueError(f"fit_on[{what!r}]: {missing or names} not among the runs "
                             f"({', '.join(by_name)})")
    fit = {"compute": {gpu: 0.6 for gpu in fit_on["compute"]}, "memory": 0.6, "overlap": 1.0}
    for k in _SCALARS:
        for gpu in {_gpu_name(by_name[n]) for n in fit_on[k]} - set(fit["compute"]):
            raise ValueError(f"fit_on[{k!r}]: {gpu!r} has no compute fit in fit_on['compute']")
    for _ in range(4):
        for gpu, names in fit_on["compute"].items():
            chosen = [by_name[n] for n in names]
            fit["compute"][gpu] = _golden(lambda c, chosen=chosen, gpu=gpu: _log_error(
                chosen, {**fit, "compute": {**fit["compute"], gpu: c}}))
        for k, (lo, hi) in _SCALARS.items():
            chosen = [by_name[n] for n in fit_on[k]]
            fit[k] = _golden(lambda v, chosen=chosen, k=k: _log_error(chosen, {**fit, k: v}), lo, hi)
    return fit


def validation_table(runs=RUNS, efficiency: dict | None = None) -> pd.DataFrame:
    """Predicted against published for every run: run, category, gpu, gpus, layout, metric,
    published, predicted, ratio (predicted / published), error (ratio - 1), role ("fit"
    for a run a parameter was fitted on, else "validation"), fits (in memory, with the
    margin_GiB it has), dominant term, step_s, notes (what the config rounded), source,
    assumed. ``efficiency``: as :func:`fit_efficiency` returns (default: that fit).
    """
    eff = fit_efficiency(runs) if efficiency is None else efficiency
    fitted = _fitted(FIT_ON)
    rows = []
    for r in runs:
        c = r.config
        gpu = _gpu_name(r)
        key = gpu if gpu in eff["compute"] else FAMILY.get(gpu)   # the same chip, other memory
        if key not in eff["compute"]:
            raise ValueError(f"efficiency: no compute efficiency for {gpu!r}; give one")
        p = predict(_with(r, eff["compute"][key], eff["memory"], eff["overlap"]))
        got = getattr(p, r.metric)
        rows.append({"run": r.name, "category": r.category, "gpu": gpu, "gpus": c.gpus,
                     "layout": f"dp={c.dp} tp={c.tp} pp={c.pp}"
                               + (f" cp={c.cp}" if c.cp > 1 else "")
                               + (f" ep={c.ep}" + (" overlapped" if c.ep_overlap else "")
                                  if c.ep > 1 else "")
                               + (f" v={c.virtual_stages}" if c.virtual_stages > 1 else "")
                               + f" mb={c.micro_batch} zero={c.zero}",
                     "metric": r.metric, "published": r.value, "predicted": float(got),
                     "ratio": float(got / r.value), "error": float(got / r.value - 1),
                     "role": "fit" if r.name in fitted else "validation",
                     "fits": p.fits, "margin_GiB": p.margin_bytes / 2**30,
                     "dominant": p.dominant, "step_s": float(p.step_s),
                     "notes": "; ".join(c.notes), "source": r.source, "assumed": r.assumed})
    return pd.DataFrame(rows)


def error_by_category(table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Median and largest |error| of the held-out runs, per category and over all of them.

    >>> int(error_by_category().loc["all held out", "runs"]) > 20
    True
    """
    t = validation_table() if table is None else table
    held = t[t["role"] == "validation"].assign(abs_error=lambda d: d["error"].abs())
    rows = {cat: g["abs_error"] for cat, g in held.groupby("category")}
    rows["all held out"] = held["abs_error"]
    return pd.DataFrame({k: {"runs": len(v), "median_abs_error": v.median(),
                             "max_abs_error": v.max()} for k, v in rows.items()}).T
