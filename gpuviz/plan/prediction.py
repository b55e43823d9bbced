"""Analytic cluster model: step time, memory, throughput, MFU and energy of a transformer
training run at any scale. Estimates, not measurements: every result says so.

:func:`predict` takes a :class:`Config` (the model, the hardware, the layout) and returns
a :class:`Prediction` with every term of the step (compute, tensor/pipeline/data/ZeRO-3
communication, pipeline bubble, optimizer), memory per GPU, tokens/s, TFLOP/s per GPU,
MFU and energy. The formulas live in :mod:`gpuviz.plan.terms` (with their papers);
:mod:`gpuviz.plan.search` searches every layout, :mod:`gpuviz.plan.calibrate` fits the free
parameters to your own runs and :mod:`gpuviz.plan.published` checks the model against
published large-scale runs.

>>> p = predict(Config("llama3-70b", gpus=64, dp=8, tp=8, pp=1, global_batch=512,
...                    zero=1, recompute="selective", gpu="H100 SXM"))
>>> p.fits, p.dominant
(True, 'compute')
>>> round(p.mfu, 1)
0.5
>>> from gpuviz.plan.prediction import ring_allreduce_seconds
>>> round(ring_allreduce_seconds(14e9, world=8, link_bytes_per_s=450e9), 4)
0.0544
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

import gpuviz.plan.terms as terms
from gpuviz.plan.config import Config, Efficiency, _gpu, default_efficiency, hardware, step_kwargs
from gpuviz.plan.terms import TIME_TERMS
from gpuviz.plan.transformer import MODELLED, PRESETS, Transformer, transformer

__all__ = ["predict", "Prediction", "Config", "Efficiency", "Transformer", "PRESETS", "MODELLED",
           "hardware", "transformer", "default_efficiency", "ring_allreduce_seconds",
           "allreduce_over_links", "MEMORY_TERMS"]

# -- the prediction ---------------------------------------------------------------------------

_TERM_TEXT = {"compute": "compute (matmuls at the fitted efficiency)",
              "tp_comm": "tensor-parallel all-reduces (and the context-parallel ring not hidden)", "pp_comm": "pipeline sends",
              "zero3_comm": "ZeRO-3 gathers (not hidden)",
              "ep_comm": "expert-parallel all-to-alls, tokens to their experts and back (not hidden)", "bubble": "pipeline bubble",
              "dp_comm": "data-parallel gradient sync (not hidden)",
              "optimizer": "optimizer step", "overhead": "fixed overhead per step"}
MEMORY_TERMS = ("params", "grads", "optimizer", "activations", "buffers")
#: The memory kinds :meth:`Prediction.memory_table` lists: the modelled terms, then the allowance.
MEMORY_KINDS = (*MEMORY_TERMS, "reserved")


@dataclass(frozen=True)
class Prediction:
    """Every modelled term of one step of ``config``. Times in s, memory in bytes per GPU
    (the busiest pipeline stage), energy in J; all modelled, none measured."""

    config: Config
    terms: dict = field(repr=False)

    def __getattr__(self, name):
        terms = self.__dict__.get("terms", {})
        if name in terms:
            return terms[name]
        raise AttributeError(name)

    @property
    def memory_per_gpu(self) -> float:
        return self.terms["memory_bytes"]

    @property
    def capacity_bytes(self) -> float:
        """The GPU's memory as the card reports it (nvidia-smi's memory.total where known)."""
        return float(_gpu(self.config.gpu)["memory_bytes"])

    @property
    def margin_bytes(self) -> float:
        """Memory left on each GPU after the modelled terms and the config's reserved
        allowance (``reserved_gib``); negative: it does not fit, by that much."""
        return self.capacity_bytes - self.memory_per_gpu - self.config.reserved_gib * 2**30

    @property
    def fits(self) -> bool:
        """Whether the memory per GPU, plus the reserved allowance, fits in the GPU's memory."""
        return bool(self.margin_bytes >= 0)

    @property
    def dominant(self) -> str:
        """The largest term of the step time."""
        return max(TIME_TERMS, key=lambda k: self.terms[k])

    @property
    def energy_per_token_j(self) -> float:
        return self.terms["energy_j"] / self.terms["tokens"]

    def table(self) -> pd.DataFrame:
        """The step's terms: term, what, seconds, share (of the step), kind ("modelled")."""
        rows = [{"term": k, "what": _TERM_TEXT[k], "seconds": float(self.terms[k]),
                 "share": float(self.terms[k] / self.step_s), "kind": MODELLED} for k in TIME_TERMS]
        return pd.DataFrame(rows)

    def memory_table(self) -> pd.DataFrame:
        """Memory per GPU by kind (bytes, GiB), the reserved allowance last, beside the GPU's
        capacity (GiB, as nvidia-smi reports it)."""
        cap = self.capacity_bytes
        rows = [{"kind": k, "bytes": float(self.terms[f"mem_{k}"]),
                 "GiB": float(self.terms[f"mem_{k}"]) / 2**30, "capacity_GiB": cap / 2**30,
                 "label": MODELLED} for k in MEMORY_TERMS]
        reserved = self.config.reserved_gib
        rows.append({"kind": "reserved", "bytes": reserved * 2**30, "GiB": float(reserved),
                     "capacity_GiB": cap / 2**30,
                     "label": "allowance (CUDA context, NCCL buffers, fragmentation), not modelled"})
        return pd.DataFrame(rows)

    def summary(self) -> dict:
        """The headline numbers, for a widget or a table row."""
        return {"step_s": float(self.step_s), "tokens_per_s": float(self.tokens_per_s),
                "tflops_per_gpu": float(self.tflops_per_gpu), "mfu": float(self.mfu),
                "memory_GiB": self.memory_per_gpu / 2**30,
                "margin_GiB": self.margin_bytes / 2**30, "fits": self.fits,
                "energy_kWh_per_step": float(self.energy_j) / 3.6e6,
                "energy_J_per_token": float(self.energy_per_token_j), "dominant": self.dominant,
                "label": MODELLED}


def predict(config: Config) -> Prediction:
    """Predict one training step of ``config``: every term, memory, throughput, MFU, energy.

    Energy is modelled as every GPU drawing its maximum board power (TDP) for the whole
    step: an upper bound, since no idle or average power is published for these GPUs.

    >>> p = predict(Config("gpt3-175b", gpus=1024, dp=16, tp=8, pp=8, global_batch=1536,
    ...                    recompute="full", gpu="A100 SXM 80GB", inter_link="ib-hdr"))
    >>> p.table()["term"].tolist()[:3]
    ['compute', 'tp_comm', 'pp_comm']
    """
    if not isinstance(config, Config):
        raise ValueError(f"config={config!r}: give a gpuviz.plan.prediction.Config")
    hw = hardware(config)
    raw = terms.step_terms(config.model.spec(), hw, **step_kwargs(config, hw))
    return Prediction(config, {k: float(v) for k, v in raw.items()})


# -- ring all-reduce on the catalogue's links (used by the labs) ---------------------------------
def ring_allreduce_seconds(nbytes: float, world: int, link_bytes_per_s: float,
                           latency_s: float = 0.0) -> float:
    """Time of a ring all-reduce: 2(p-1) steps, each sending nbytes/p over one link.

    Thakur, Rabenseifner & Gropp (2005), "Optimization of Collective Communication
    Operations in MPICH": 2(p-1) alpha + 2(p-1)/p n beta (the reduction's own compute
    left out). A lower bound when ``link_bytes_per_s`` is a link's peak speed.
    """
    if world < 1:
        raise ValueError(f"world={world}: the number of ranks must be >= 1")
    if link_bytes_per_s <= 0:
        raise ValueError(f"link_bytes_per_s={link_bytes_per_s}: must be > 0")
    if world == 1:
        return 0.0
    return 2 * (world - 1) * latency_s + 2 * (world - 1) / world * nbytes / link_bytes_per_s


def allreduce_over_links(nbytes: float, world: int, measured_busbw: float | None = None) -> pd.DataFrame:
    """Estimated all-reduce time of ``nbytes`` on ``world`` ranks over each link in
    :data:`gpuviz.sharing.hardware.LINKS`, plus your own measured bus bandwidth if given.

    busbw already includes the 2(p-1)/p factor (nccl-tests), so time = 2(p-1)/p x n / busbw.
    """
    from gpuviz.sharing.hardware import LINKS

    rows = [{"link": name, "where": v["kind"], "GB/s": v["bytes_per_s"] / 1e9,
             "seconds": ring_allreduce_seconds(nbytes, world, v["bytes_per_s"]),
             "kind of number": "estimate from peak link speed", "source": v["source"]}
            for name, v in LINKS.items()]
    if measured_busbw:
        rows.append({"link": "your processes (gloo over TCP, this machine)", "where": "this machine",
                     "GB/s": measured_busbw / 1e9,
                     "seconds": ring_allreduce_seconds(nbytes, world, measured_busbw),
                     "kind of number": "from your measured busbw", "source": "this run"})
    return pd.DataFrame(rows).sort_values("seconds").reset_index(drop=True)
