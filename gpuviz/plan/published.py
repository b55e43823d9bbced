"""Published large-scale training runs, each with its source, and the cluster model's
prediction of each: the check that :mod:`gpuviz.plan.prediction` is worth trusting at scale.

Every run states a model, a GPU count, a layout and what was measured: TFLOP/s per GPU
(counting recomputation, as Megatron-LM's papers do: "hardware" FLOPs) or MFU (model
FLOPs only, as Llama 3's paper does). Where a paper leaves a setting out, the run says
what is assumed (``assumed``).

Which model parameters are fixed and which fitted: peak FLOP/s, memory, link
bandwidths and power come from the datasheets (:mod:`gpuviz.sharing.hardware`); the bandwidth
efficiency 0.8 and full overlap of the data-parallel reduction are assumed
(:class:`gpuviz.plan.prediction.Efficiency`); the compute efficiency (the fraction of peak the
matmuls reach) is the one fitted parameter, one value per GPU type, each fitted on one
or two runs (:data:`FIT_ON`) and checked on the others.

>>> t = validation_table()
>>> bool((t["ratio"].sub(1).abs() <= 0.2).all())
True
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from gpuviz.plan.config import Config, Efficiency
from gpuviz.plan.prediction import predict

_NARAYANAN = ("Narayanan et al. 2021, 'Efficient Large-Scale Language Model Training on GPU "
              "Clusters Using Megatron-LM', SC21, arXiv:2104.04473: Table 1, 1 T row "
              "(abstract: 502 petaFLOP/s on 3072 GPUs, 52% of peak)")
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
_LLAMA = ("Dubey et al. 2024, 'The Llama 3 Herd of Models', arXiv:2407.21783, Table 4: "
          "405B, sequence 8192, 16M tokens per batch, TP 8, CP 1, PP 16")
_SELENE = dict(gpu="A100 SXM 80GB", inter_link="ib-hdr")     # DGX A100: 8 HDR ports per node


@dataclasses.dataclass(frozen=True)
class PublishedRun:
    """One published training run: its configuration and the number it reports."""

    name: str
    config: Config
    metric: str
    """"tflops_per_gpu" (counting recomputation) or "mfu" (model FLOPs only)."""
    value: float
    source: str
    assumed: str = ""
    """Settings the source does not state, and what is assumed for them."""


def _run(name, model, gpus, tp, pp, batch, metric, value, source, assumed="", **kw) -> PublishedRun:
    kw = {**_SELENE, **kw} if kw.get("gpu", "A100 SXM 80GB").startswith("A100") else kw
    cfg = Config(model, gpus=gpus, dp=gpus // (tp * pp), tp=tp, pp=pp, global_batch=batch, **kw)
    return PublishedRun(name, cfg, metric, value, source, assumed)


_MEGATRON = dict(recompute="full", micro_batch=1, sequence_parallel=False)
#: The published runs, each with its source.
RUNS = (
    _run("Megatron-LM 1T, 3072 A100", "megatron-1t", 3072, 8, 64, 3072, "tflops_per_gpu", 163,
         _NARAYANAN, "micro-batch 1; full recomputation; no interleaving", **_MEGATRON),
    _run("MT-NLG 530B, 2240 A100", "mt-nlg-530b", 2240, 8, 35, 1920, "tflops_per_gpu", 126,
         _SMITH, "micro-batch 1; full recomputation", **_MEGATRON),
    _run("MT-NLG 530B, 2800 A100", "mt-nlg-530b", 2800, 8, 35, 1920, "tflops_per_gpu", 121,
         _SMITH, "micro-batch 1; full recomputation", **_MEGATRON),
    _run("MT-NLG 530B, 3360 A100", "mt-nlg-530b", 3360, 8, 35, 1920, "tflops_per_gpu", 113,
         _SMITH, "micro-batch 1; full recomputation", **_MEGATRON),
    _run("BLOOM 176B, 384 A100", "bloom-176b", 384, 4, 12, 2048, "tflops_per_gpu", 150, _BLOOM,
         "micro-batch 2; full recomputation", recompute="full", micro_batch=2, zero=1,
         sequence_parallel=False, gpu="A100 SXM 80GB", inter_link="omni-path-100", nics_per_node=4),
    _run("Llama 3 405B, 8192 H100", "llama3-405b", 8192, 8, 16, 2048, "mfu", 0.43, _LLAMA,
         "micro-batch 1; interleaved schedule with 2 virtual stages (the paper interleaves but "
         "does not give the count); selective recomputation; ZeRO-2-like FSDP",
         gpu="H100 SXM", inter_link="ib-ndr", recompute="selective", zero=2, virtual_stages=2),
    _run("Llama 3 405B, 16384 H100", "llama3-405b", 16384, 8, 16, 2048, "mfu", 0.41, _LLAMA,
         "micro-batch 1; interleaved schedule with 2 virtual stages (the paper interleaves but "
         "does not give the count); selective recomputation; ZeRO-2-like FSDP",
         gpu="H100 SXM", inter_link="ib-ndr", recompute="selective", zero=2, virtual_stages=2),
)
#: The runs each GPU type's compute efficiency is fitted on; every other run validates it.
FIT_ON = {"A100 SXM 80GB": ("MT-NLG 530B, 2240 A100", "Megatron-LM 1T, 3072 A100"),
          "H100 SXM": ("Llama 3 405B, 8192 H100",)}


def _with_efficiency(run: PublishedRun, compute: float) -> Config:
    return run.config.replace(efficiency=Efficiency(compute=compute, source="published fit"))


def _log_error(runs, compute: float) -> float:
    return sum(math.log(getattr(predict(_with_efficiency(r, compute)), r.metric) / r.value) ** 2
               for r in runs)


def fit_efficiency(runs=RUNS, fit_on: dict | None = None) -> dict[str, float]:
    """Each GPU type's compute efficiency, fitted on the runs named in ``fit_on`` (default
    :data:`FIT_ON`): the value in [0.05, 1] that minimises the squared log ratio of
    predicted to published over them (golden-section search).

    >>> round(fit_efficiency()["A100 SXM 80GB"], 2)
    0.5...
    """
    fit_on = FIT_ON if fit_on is None else fit_on
    by_name = {r.name: r for r in runs}
    out = {}
    for gpu, names in fit_on.items():
        missing = [n for n in names if n not in by_name]
        if missing or not names:
            raise ValueError(f"fit_on[{gpu!r}]: {missing or names} not among the runs "
                             f"({', '.join(by_name)})")
        chosen = [by_name[n] for n in names]
        lo, hi = 0.05, 1.0
        g = (math.sqrt(5) - 1) / 2
        for _ in range(40):
            a, b = hi - g * (hi - lo), lo + g * (hi - lo)
            if _log_error(chosen, a) <= _log_error(chosen, b):
                hi = b
            else:
                lo = a
        out[gpu] = (lo + hi) / 2
    return out


def validation_table(runs=RUNS, efficiency: dict[str, float] | None = None) -> pd.DataFrame:
    """Predicted against published for every run: run, gpu, gpus, layout, metric,
    published, predicted, ratio (predicted / published), role ("fit" for the run the
    efficiency was fitted on, else "validation"), dominant term, step_s, source, assumed.
    ``efficiency``: compute efficiency per GPU type (default: :func:`fit_efficiency`).
    """
    eff = fit_efficiency(runs) if efficiency is None else efficiency
    rows = []
    for r in runs:
        c = r.config
        gpu = c.gpu if isinstance(c.gpu, str) else c.gpu.get("name", "custom")
        if gpu not in eff:
            raise ValueError(f"efficiency: no compute efficiency for {gpu!r}; give one")
        p = predict(_with_efficiency(r, eff[gpu]))
        got = getattr(p, r.metric)
        rows.append({"run": r.name, "gpu": gpu, "gpus": c.gpus,
                     "layout": f"dp={c.dp} tp={c.tp} pp={c.pp}"
                               + (f" v={c.virtual_stages}" if c.virtual_stages > 1 else "")
                               + f" mb={c.micro_batch} zero={c.zero}",
                     "metric": r.metric, "published": r.value, "predicted": float(got),
                     "ratio": float(got / r.value),
                     "role": "fit" if r.name in FIT_ON.get(gpu, ()) else "validation",
                     "compute_efficiency": eff[gpu], "dominant": p.dominant,
                     "step_s": float(p.step_s), "source": r.source, "assumed": r.assumed})
    return pd.DataFrame(rows)
