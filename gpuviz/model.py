"""Analytic cluster model: step time, memory, throughput, MFU and energy of a transformer
training run at any scale. Estimates, not measurements: every result says so.

:func:`predict` takes a :class:`Config` (the model, the hardware, the layout) and returns
a :class:`Prediction` with every term of the step (compute, tensor/pipeline/data/ZeRO-3
communication, pipeline bubble, optimizer), memory per GPU, tokens/s, TFLOP/s per GPU,
MFU and energy. The formulas live in :mod:`gpuviz.model_terms` (with their papers);
:mod:`gpuviz.model_search` searches every layout, :mod:`gpuviz.calibrate` fits the free
parameters to your own runs and :mod:`gpuviz.published` checks the model against
published large-scale runs.

>>> p = predict(Config("llama3-70b", gpus=64, dp=8, tp=8, pp=1, global_batch=512,
...                    zero=1, recompute="selective", gpu="H100 SXM"))
>>> p.fits, p.dominant
(True, 'compute')
>>> round(p.mfu, 1)
0.5
>>> from gpuviz.model import ring_allreduce_seconds
>>> round(ring_allreduce_seconds(14e9, world=8, link_bytes_per_s=450e9), 4)
0.0544
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gpuviz import model_terms
from gpuviz.model_terms import PRECISIONS, RECOMPUTE, TIME_TERMS

#: What every figure and table says about these numbers.
MODELLED = "modelled (analytic estimate, not a measurement)"


def _positive_int(name: str, value, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"{name}={value!r}: must be an integer >= {least}")
    return int(value)


def _fraction(name: str, value, lo_open: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > 1 or value < 0 or (lo_open and value == 0):
        raise ValueError(f"{name}={value!r}: must be a number in {'(0' if lo_open else '[0'}, 1]")
    return float(value)


# -- the transformer --------------------------------------------------------------------------

@dataclass(frozen=True)
class Transformer:
    """A decoder-only transformer's sizes (every field an integer >= 1, checked)."""

    layers: int
    """Transformer blocks (L)."""
    hidden: int
    """Width of the residual stream (h, d_model); a multiple of ``heads``."""
    heads: int
    """Attention heads (a)."""
    seq: int
    """Tokens per sequence (s), the context length trained on."""
    vocab: int
    """Vocabulary size (V)."""
    kv_heads: int | None = None
    """Key/value heads (grouped-query attention); None: as many as ``heads``."""
    ffn: int | None = None
    """Hidden width of the MLP; None: 4 x hidden."""
    gated: bool = False
    """A gated MLP (SwiGLU: three matrices) instead of two."""
    tied: bool = True
    """Input embedding and output head share one matrix."""
    name: str = "custom"
    """What to call it."""
    source: str = ""
    """Where the sizes come from."""

    def __post_init__(self):
        for k in ("layers", "hidden", "heads", "seq", "vocab"):
            _positive_int(k, getattr(self, k))
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        if self.ffn is None:
            object.__setattr__(self, "ffn", 4 * self.hidden)
        _positive_int("kv_heads", self.kv_heads)
        _positive_int("ffn", self.ffn)
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} is not a multiple of heads={self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads={self.heads} is not a multiple of kv_heads={self.kv_heads}")

    def spec(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def n_params(self) -> int:
        """Parameters (weights of every matmul, embeddings, LayerNorms; biases left out)."""
        h, kv = self.hidden, self.kv_heads * (self.hidden // self.heads)
        layer = 2 * h * h + 2 * h * kv + (3 if self.gated else 2) * h * self.ffn + 4 * h
        return self.layers * layer + self.vocab * h * (1 if self.tied else 2) + 2 * h


_BROWN = "Brown et al. 2020, 'Language Models are Few-Shot Learners', arXiv:2005.14165, Table 2.1"
_DUBEY = "Dubey et al. 2024, 'The Llama 3 Herd of Models', arXiv:2407.21783, Table 3"
#: Named models with the source of their sizes.
PRESETS = {t.name: t for t in (
    Transformer(96, 12288, 96, 2048, 50257, name="gpt3-175b",
                source=_BROWN + "; vocabulary 50,257: GPT-2's BPE (Radford et al. 2019)"),
    Transformer(32, 4096, 32, 8192, 128000, 8, 14336, True, False, "llama3-8b", _DUBEY),
    Transformer(80, 8192, 64, 8192, 128000, 8, 28672, True, False, "llama3-70b", _DUBEY),
    Transformer(126, 16384, 128, 8192, 128000, 8, 53248, True, False, "llama3-405b", _DUBEY),
    Transformer(105, 20480, 128, 2048, 50257, name="mt-nlg-530b",
                source="Smith et al. 2022, 'Using DeepSpeed and Megatron to Train Megatron-Turing "
                       "NLG 530B', arXiv:2201.11990, Section 3.1 (105 layers, hidden 20480, 128 "
                       "heads, sequence 2048; GPT-2's BPE vocabulary)"),
    Transformer(70, 14336, 112, 2048, 250680, name="bloom-176b",
                source="Le Scao et al. 2022, 'BLOOM: A 176B-Parameter Open-Access Multilingual "
                       "Language Model', arXiv:2211.05100 (70 layers, hidden 14336, 112 heads, "
                       "sequence 2048, vocabulary 250,680)"),
    Transformer(128, 25600, 160, 2048, 51200, name="megatron-1t",
                source="Narayanan et al. 2021, 'Efficient Large-Scale Language Model Training on "
                       "GPU Clusters Using Megatron-LM', SC21, arXiv:2104.04473, Table 1 (1 T row); "
                       "vocabulary 51,200 and sequence 2048 for every model of the table"),
    Transformer(4, 128, 4, 64, 256, ffn=512, tied=False, name="gpuviz-gpt",
                source="gpuviz.workloads.gpt.GPTConfig() defaults: the model the labs train"),
)}


def transformer(model) -> Transformer:
    """A :class:`Transformer` from a preset name, a Transformer, or a dict of its fields.

    >>> round(transformer("gpt3-175b").n_params / 1e9, 1)
    174.6
    """
    if isinstance(model, Transformer):
        return model
    if isinstance(model, str):
        if model not in PRESETS:
            raise ValueError(f"model={model!r} is not a preset; known: "
                             + ", ".join(map(repr, PRESETS)) + " (or give a Transformer)")
        return PRESETS[model]
    if isinstance(model, dict):
        return Transformer(**model)
    raise ValueError(f"model={model!r}: give a preset name ({', '.join(PRESETS)}), a "
                     "Transformer or a dict of its fields")


# -- free parameters --------------------------------------------------------------------------

@dataclass(frozen=True)
class Efficiency:
    """The model's free parameters: what software achieves of the hardware's peaks."""

    compute: float = 0.6
    """Fraction of the peak dense FLOP/s that the matmuls reach, in (0, 1]."""
    bandwidth: float = 0.8
    """Fraction of a link's peak bandwidth that collectives reach, in (0, 1]."""
    latency_s: float | None = None
    """Latency (alpha) of one ring step in s; None: each link's published latency (0 when
    none is published)."""
    overlap: float = 1.0
    """Fraction of the backward pass (data-parallel reduction) and of compute (ZeRO-3
    gathers) that can hide communication, in [0, 1]."""
    overhead_s: float = 0.0
    """Fixed time per step per GPU (Python, logging), s."""
    launch_s: float = 0.0
    """Fixed time per layer, pass and micro-batch (kernel launches, Python dispatch), s."""
    data_s_per_sequence: float = 0.0
    """Time to make one sequence of the global batch (input pipeline), s."""
    sync_s: float = 0.0
    """Fixed time per step that only a job of more than one GPU pays: the step ends when its
    slowest GPU does, and a small collective (the loss) ends it, s."""
    source: str = "assumed"
    """Where these values come from (fitted on what, or assumed)."""

    def __post_init__(self):
        _fraction("compute", self.compute)
        _fraction("bandwidth", self.bandwidth)
        _fraction("overlap", self.overlap, lo_open=False)
        for k in ("latency_s", "overhead_s", "launch_s", "data_s_per_sequence", "sync_s"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v < 0):
                raise ValueError(f"{k}={v!r}: must be a number of seconds >= 0")


#: Compute efficiency fitted on published runs (:func:`gpuviz.published.fit_efficiency`):
#: A100 on MT-NLG 530B at 2,240 and Megatron-LM 1T at 3,072 GPUs, H100 on Llama 3 405B at
#: 8,192 GPUs (rounded to 3 decimals; a test checks they match the fit); other GPUs
#: take the H100's value (an assumption: no published run here to fit them on).
#: Bandwidth efficiency 0.8: the ratio of measured all-reduce bus bandwidth to NVLink's
#: peak in nccl-tests on 8 GPUs (about 230 of 300 GB/s on A100, 370 of 450 on H100;
#: nccl-tests PERFORMANCE.md, https://github.com/NVIDIA/nccl-tests, as DESIGN.md quotes).
FITTED_COMPUTE = {"A100 SXM 80GB": 0.585, "H100 SXM": 0.698}


def default_efficiency(gpu) -> Efficiency:
    """The fitted :class:`Efficiency` for ``gpu`` (a catalogue name or a dict)."""
    name = gpu if isinstance(gpu, str) else gpu.get("name", "")
    value = FITTED_COMPUTE.get(name, FITTED_COMPUTE["H100 SXM"])
    how = "fitted" if name in FITTED_COMPUTE else "the H100's fitted value (assumed)"
    return Efficiency(compute=value, source=f"compute {how}: gpuviz.published.fit_efficiency; "
                      "bandwidth 0.8 from nccl-tests busbw / NVLink peak")


# -- the configuration ------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """A training run to predict: model, hardware and layout (checked when built).

    ``dp * tp * pp`` must equal ``gpus`` and ``global_batch`` must split into whole
    micro-batches on every data-parallel replica.
    """

    model: Transformer | str | dict
    """A preset name (:data:`PRESETS`), a :class:`Transformer` or a dict of its fields."""
    gpus: int
    """Number of GPUs (or ranks)."""
    dp: int = 1
    """Data-parallel replicas."""
    tp: int = 1
    """Tensor-parallel ranks (Megatron-LM); must divide the heads."""
    pp: int = 1
    """Pipeline stages; at most the number of layers."""
    global_batch: int = 512
    """Sequences per optimizer step, all replicas together."""
    micro_batch: int = 1
    """Sequences per micro-batch on one replica."""
    zero: int = 0
    """ZeRO stage: 0 (plain data parallelism), 1 (optimizer state sharded), 2 (and the
    gradients), 3 (and the parameters, gathered layer by layer)."""
    recompute: str = "none"
    """Activation recomputation: "none", "selective" (attention only) or "full"."""
    precision: str = "bf16"
    """"bf16" (mixed precision Adam) or "fp32"."""
    gpu: str | dict = "H100 SXM"
    """A name in :data:`gpuviz.hardware.ACCELERATORS`, or a dict with the same keys."""
    intra_link: str | dict | None = None
    """Link inside a server (:data:`gpuviz.hardware.INTERCONNECTS`); None: the GPU's own."""
    inter_link: str | dict = "ib-ndr"
    """Link between servers, one port per NIC."""
    gpus_per_node: int = 8
    """GPUs in one server."""
    nics_per_node: int | None = None
    """Network ports per server; None: one per GPU."""
    virtual_stages: int = 1
    """Pipeline stages per GPU of the interleaved schedule (1: plain 1F1B)."""
    schedule: str = "1f1b"
    """"1f1b" (at most ``pp`` micro-batches in flight) or "gpipe" (all of them)."""
    bucket_mb: float = 25.0
    """Gradient bucket size (MiB) of the data-parallel all-reduce."""
    efficiency: Efficiency | None = None
    """Free parameters; None: :func:`default_efficiency` of the GPU."""
    sequence_parallel: bool = True
    """Sequence parallelism with tensor parallelism (Korthikanti et al. 2022)."""

    def __post_init__(self):
        object.__setattr__(self, "model", transformer(self.model))
        for k in ("gpus", "dp", "tp", "pp", "global_batch", "micro_batch", "gpus_per_node",
                  "virtual_stages"):
            _positive_int(k, getattr(self, k))
        if self.dp * self.tp * self.pp != self.gpus:
            raise ValueError(f"dp*tp*pp = {self.dp}*{self.tp}*{self.pp} = "
                             f"{self.dp * self.tp * self.pp} but gpus={self.gpus}: the layout "
                             "must use every GPU exactly once")
        if self.zero not in (0, 1, 2, 3) or isinstance(self.zero, bool):
            raise ValueError(f"zero={self.zero!r}: ZeRO stages are 0, 1, 2 and 3")
        for k, allowed in (("recompute", RECOMPUTE), ("precision", tuple(PRECISIONS)),
                           ("schedule", ("1f1b", "gpipe"))):
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k}={getattr(self, k)!r}: use one of {', '.join(map(repr, allowed))}")
        m = self.model
        if m.heads % self.tp:
            raise ValueError(f"tp={self.tp} does not divide the model's heads={m.heads}")
        if self.pp > m.layers:
            raise ValueError(f"pp={self.pp} is more stages than the model's layers={m.layers}")
        if self.global_batch % (self.dp * self.micro_batch):
            raise ValueError(f"global_batch={self.global_batch} does not split into micro-batches "
                             f"of {self.micro_batch} on dp={self.dp} replicas: give a multiple "
                             f"of dp*micro_batch = {self.dp * self.micro_batch}")
        if self.nics_per_node is not None:
            _positive_int("nics_per_node", self.nics_per_node)
        b = self.bucket_mb
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
            raise ValueError(f"bucket_mb={b!r}: must be a number of MiB > 0")
        hardware(self)                                      # unknown names fail here

    def replace(self, **changes) -> Config:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)


def _gpu(gpu) -> dict:
    from gpuviz.hardware import ACCELERATORS, accelerator

    if isinstance(gpu, str):
        return accelerator(gpu)
    need = ("bf16_flops", "fp32_flops", "memory_bytes", "memory_bytes_per_s", "tdp_w")
    if not isinstance(gpu, dict) or any(k not in gpu for k in need):
        raise ValueError(f"gpu={gpu!r}: give a name ({', '.join(ACCELERATORS)}) or a dict "
                         f"with keys {', '.join(need)}")
    return gpu


def _link(link, what: str) -> dict:
    from gpuviz.hardware import INTERCONNECTS, interconnect

    if isinstance(link, str):
        try:
            return interconnect(link)
        except ValueError:
            raise ValueError(f"{what}={link!r} is not in the catalogue; known: "
                             + ", ".join(map(repr, INTERCONNECTS))) from None
    if not isinstance(link, dict) or not link.get("bytes_per_s", 0) > 0:
        raise ValueError(f"{what}={link!r}: give a name ({', '.join(INTERCONNECTS)}) or a dict "
                         "with bytes_per_s > 0 (and latency_s)")
    return link


def hardware(config: Config) -> dict:
    """The numbers :func:`gpuviz.model_terms.step_terms` uses for ``config``: peak FLOP/s
    for its precision, memory, power, and each link's bandwidth times the bandwidth
    efficiency (between servers: per GPU, ``nics_per_node / gpus_per_node`` ports)."""
    gpu = _gpu(config.gpu)
    intra = _link(config.intra_link or gpu.get("intra_link"), "intra_link")
    inter = _link(config.inter_link, "inter_link")
    eff = config.efficiency or default_efficiency(config.gpu)
    nics = config.nics_per_node or config.gpus_per_node

    def lat(link):
        return eff.latency_s if eff.latency_s is not None else (link.get("latency_s") or 0.0)

    return {"name": gpu.get("name", "custom"), "peak_flops": gpu[f"{config.precision}_flops"],
            "memory_bytes": gpu["memory_bytes"], "memory_bytes_per_s": gpu["memory_bytes_per_s"],
            "tdp_w": gpu["tdp_w"] if gpu["tdp_w"] is not None else math.nan,
            "cores": gpu.get("cores", config.gpus_per_node),
            "intra_bytes_per_s": intra["bytes_per_s"] * eff.bandwidth, "intra_latency_s": lat(intra),
            "inter_bytes_per_s": inter["bytes_per_s"] * nics / config.gpus_per_node * eff.bandwidth,
            "inter_latency_s": lat(inter), "efficiency": eff}


# -- the prediction ---------------------------------------------------------------------------

_TERM_TEXT = {"compute": "compute (matmuls at the fitted efficiency)",
              "tp_comm": "tensor-parallel all-reduces", "pp_comm": "pipeline sends",
              "zero3_comm": "ZeRO-3 gathers (not hidden)", "bubble": "pipeline bubble",
              "dp_comm": "data-parallel gradient sync (not hidden)",
              "optimizer": "optimizer step", "overhead": "fixed overhead per step"}
MEMORY_TERMS = ("params", "grads", "optimizer", "activations", "buffers")


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
    def fits(self) -> bool:
        """Whether the memory per GPU fits in the GPU's memory."""
        return bool(self.memory_per_gpu <= _gpu(self.config.gpu)["memory_bytes"])

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
        """Memory per GPU by kind (bytes, GB), beside the GPU's capacity."""
        cap = _gpu(self.config.gpu)["memory_bytes"]
        rows = [{"kind": k, "bytes": float(self.terms[f"mem_{k}"]),
                 "GB": float(self.terms[f"mem_{k}"]) / 1e9, "capacity_GB": cap / 1e9,
                 "label": MODELLED} for k in MEMORY_TERMS]
        return pd.DataFrame(rows)

    def summary(self) -> dict:
        """The headline numbers, for a widget or a table row."""
        return {"step_s": float(self.step_s), "tokens_per_s": float(self.tokens_per_s),
                "tflops_per_gpu": float(self.tflops_per_gpu), "mfu": float(self.mfu),
                "memory_GB": self.memory_per_gpu / 1e9, "fits": self.fits,
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
        raise ValueError(f"config={config!r}: give a gpuviz.model.Config")
    hw = hardware(config)
    eff = hw["efficiency"]
    raw = model_terms.step_terms(
        config.model.spec(), hw, dp=config.dp, tp=config.tp, pp=config.pp,
        micro_batch=config.micro_batch, global_batch=config.global_batch, zero=config.zero,
        recompute=config.recompute, precision=config.precision,
        gpus_per_node=config.gpus_per_node, virtual_stages=config.virtual_stages,
        schedule=config.schedule, bucket_bytes=config.bucket_mb * 2**20, overlap=eff.overlap,
        compute_efficiency=eff.compute, overhead_s=eff.overhead_s,
        sequence_parallel=config.sequence_parallel, launch_s=eff.launch_s,
        data_s_per_sequence=eff.data_s_per_sequence, sync_s=eff.sync_s)
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
    :data:`gpuviz.hardware.LINKS`, plus your own measured bus bandwidth if given.

    busbw already includes the 2(p-1)/p factor (nccl-tests), so time = 2(p-1)/p x n / busbw.
    """
    from gpuviz.hardware import LINKS

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
