"""Numbers the book's chapters state, computed by the package when the book is built.

A chapter writes ``{computed}`plan.compute-s``` where it would have typed "12"; the book's
``gpuviz_prose`` extension puts in :func:`value` of that name, so the prose follows the
package when a model, a datasheet or a published run changes. Names are listed in
:data:`VALUES`, each with what it is.

>>> value("plan.params-b")
'70.6'
>>> value("plan.compute-s")
'12'
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _plan():
    """The applied case of the planning chapter and Lab 05: Llama 3 70B on 64 H100."""
    from gpuviz.plan import Config, predict

    plan = Config("llama3-70b", gpus=64, dp=8, tp=8, pp=1, global_batch=128, micro_batch=1,
                  zero=1, recompute="selective", gpu="H100 SXM", inter_link="ib-ndr", gpus_per_node=8)
    return plan, predict(plan)


@lru_cache(maxsize=1)
def _validation():
    from gpuviz.plan import published

    return published.validation_table()


def _held_out():
    t = _validation()
    return t.loc[t["role"] == "validation", "error"].abs()


@lru_cache(maxsize=1)
def _fit():
    from gpuviz.plan import published

    return published.fit_efficiency()


def _errors(prefix: str, containing: str = ""):
    t = _validation()
    return t.loc[t["run"].str.startswith(prefix) & t["run"].str.contains(containing), "error"]


def _model(name: str):
    from gpuviz.plan.transformer import transformer

    return transformer(name)


def _memory_share(run: str) -> str:
    from gpuviz.plan import published
    from gpuviz.plan.config import Efficiency
    from gpuviz.plan.prediction import predict

    r = {x.name: x for x in published.RUNS}[run]
    fit = _fit()
    gpu = r.config.gpu
    p = predict(r.config.replace(efficiency=Efficiency(
        compute=fit["compute"][gpu], memory=fit["memory"], overlap=fit["overlap"])))
    return f"{p.terms['memory_bound_s'] / p.step_s:.0%}"


def _terms(name: str) -> str:
    from gpuviz.plan import terms

    return f"{getattr(terms, name):g}"


def _nccl(hop: str) -> str:
    from gpuviz.sharing.accelerators import NCCL_LATENCY

    return f"{NCCL_LATENCY[hop] * 1e6:g}"


def _meter_period() -> float:
    from gpuviz.energy.meters import DEFAULT_PERIOD_S

    return DEFAULT_PERIOD_S


#: name -> (what it is, a function giving the text)
VALUES = {
    "plan.params-b": ("Llama 3 70B's parameters, billions (gpuviz.plan.transformer)",
                      lambda: f"{_plan()[0].model.n_params / 1e9:.1f}"),
    "plan.compute-s": ("the plan's modelled compute per step, seconds (gpuviz.plan.predict)",
                       lambda: f"{_plan()[1].compute:.0f}"),
    "plan.memory-gib": ("the plan's modelled memory per GPU, GiB",
                        lambda: f"{_plan()[1].memory_per_gpu / 2**30:.0f}"),
    "plan.margin-gib": ("memory the plan leaves free per GPU after its reserved allowance, GiB",
                        lambda: f"{_plan()[1].margin_bytes / 2**30:.0f}"),
    "plan.capacity-gib": ("an H100's memory as nvidia-smi reports it, GiB",
                          lambda: f"{_plan()[1].capacity_bytes / 2**30:.1f}"),
    "plan.tp-comm-s": ("the plan's modelled tensor-parallel all-reduce time per step, seconds",
                       lambda: f"{_plan()[1].tp_comm:.1f}"),
    "plan.tp-comm-share": ("the tensor-parallel all-reduces' share of the plan's modelled step",
                           lambda: f"{_plan()[1].tp_comm / _plan()[1].step_s:.0%}"),
    "plan.elementwise-h": ("values per h a layer's memory-bound kernels move per token, forward "
                           "(gpuviz.plan.terms.ELEMENTWISE_H)", lambda: _terms("ELEMENTWISE_H")),
    "plan.scores-as": ("values per head and key stored attention scores move per token, forward "
                       "(gpuviz.plan.terms.SCORES_AS)", lambda: _terms("SCORES_AS")),
    "nccl.base-us": ("NCCL's base latency of a ring collective, µs (gpuviz.sharing.accelerators)",
                     lambda: _nccl("base")),
    "nccl.nvlink-us": ("NCCL's latency of a ring step over NVLink, µs", lambda: _nccl("nvlink")),
    "nccl.net-us": ("NCCL's latency of a ring step over the network, µs", lambda: _nccl("net")),
    "energy.period-ms": ("how often a rank samples its energy meter by default, ms "
                         "(gpuviz.energy.meters.DEFAULT_PERIOD_S)",
                         lambda: f"{_meter_period() * 1e3:.0f}"),
    "published.largest-error": ("the largest |predicted / published - 1| over the published runs "
                                "(gpuviz.plan.published.validation_table)",
                                lambda: f"{(_validation()['ratio'] - 1).abs().max():.0%}"),
    "published.runs": ("how many published runs the model is checked on",
                       lambda: f"{len(_validation())}"),
    "published.held-out": ("how many published runs no parameter was fitted on",
                           lambda: f"{(_validation()['role'] == 'validation').sum()}"),
    "published.held-out-median": ("median |error| over the held-out published runs",
                                  lambda: f"{_held_out().median():.1%}"),
    "published.held-out-max": ("largest |error| over the held-out published runs",
                               lambda: f"{_held_out().max():.0%}"),
    "published.within-10": ("how many held-out published runs are predicted within 10%",
                            lambda: f"{(_held_out() <= 0.10).sum()}"),
    "published.worst-run": ("the held-out published run the model misses most",
                            lambda: _validation().loc[_held_out().idxmax(), "run"]),
    "published.mtnlg-max": ("the largest |error| over MT-NLG's published runs",
                            lambda: f"{_errors('MT-NLG').abs().max():.0%}"),
    "published.moe-small-ratio": ("the smallest predicted / published throughput of Qwen3 "
                                  "30B-A3B's published runs",
                                  lambda: f"{_errors('Qwen3 30B').min() + 1:.1f}"),
    "published.oss-ratio": ("predicted / published throughput of GPT-OSS 120B's published run",
                            lambda: f"{_errors('GPT-OSS').min() + 1:.1f}"),
    "published.moe-large-error": ("the largest |error| over Qwen3 235B-A22B's published runs",
                                  lambda: f"{_errors('Qwen3 235B').abs().max():.0%}"),
    "published.fp8-dense-max": ("the largest |error| over the dense FP8 runs on H100 "
                                "(Llama 3, Megatron-Bridge)",
                                lambda: f"{_errors('Llama 3', 'FP8').abs().max():.0%}"),
    "plan.moe-params-b": ("Qwen3 30B-A3B's parameters, billions (gpuviz.plan.transformer)",
                          lambda: f"{_model('qwen3-30b-a3b').n_params / 1e9:.1f}"),
    "plan.moe-active-b": ("the parameters one token of Qwen3 30B-A3B meets, billions",
                          lambda: f"{_model('qwen3-30b-a3b').n_active_params / 1e9:.2f}"),
    "published.small-memory-share": ("the memory-bound kernels' share of the step of Megatron-LM's "
                                     "1.7B run, modelled", lambda: _memory_share("Megatron-LM 1.7B, 32 A100")),
    "published.large-memory-share": ("the memory-bound kernels' share of the step of Megatron-LM's "
                                     "1T run, modelled", lambda: _memory_share("Megatron-LM 1T, 3072 A100")),
    "published.overlap": ("the fitted fraction of compute that hides data-parallel and ZeRO-3 "
                          "communication", lambda: f"{_fit()['overlap']:.2f}"),
    "published.memory-efficiency": ("the fitted fraction of memory bandwidth the memory-bound "
                                    "kernels reach", lambda: f"{_fit()['memory']:.2f}"),
}


def value(name: str) -> str:
    """The text of ``name`` (one of :data:`VALUES`)."""
    if name not in VALUES:
        raise ValueError(f"name={name!r}: not a computed value; one of {', '.join(sorted(VALUES))}")
    return VALUES[name][1]()
