"""A planned training run: hardware, layout and the model's free parameters.

:class:`Config` names the transformer, the GPU and links (from
:mod:`gpuviz.sharing.hardware`), the layout (dp x tp x pp, ZeRO stage, micro-batches,
recomputation) and the :class:`Efficiency` that software reaches; :func:`hardware` turns it
into the numbers :mod:`gpuviz.plan.terms` needs. :func:`gpuviz.plan.prediction.predict` uses it.

>>> Config("llama3-70b", gpus=64, dp=8, tp=8, global_batch=512).pp
1
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gpuviz.plan.terms import PRECISIONS, RECOMPUTE
from gpuviz.plan.transformer import Transformer, _fraction, _positive_int, transformer

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


#: Compute efficiency fitted on published runs (:func:`gpuviz.plan.published.fit_efficiency`):
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
    return Efficiency(compute=value, source=f"compute {how}: gpuviz.plan.published.fit_efficiency; "
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
    """A name in :data:`gpuviz.sharing.hardware.ACCELERATORS`, or a dict with the same keys."""
    intra_link: str | dict | None = None
    """Link inside a server (:data:`gpuviz.sharing.hardware.INTERCONNECTS`); None: the GPU's own."""
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
    from gpuviz.sharing.hardware import ACCELERATORS, accelerator

    if isinstance(gpu, str):
        return accelerator(gpu)
    need = ("bf16_flops", "fp32_flops", "memory_bytes", "memory_bytes_per_s", "tdp_w")
    if not isinstance(gpu, dict) or any(k not in gpu for k in need):
        raise ValueError(f"gpu={gpu!r}: give a name ({', '.join(ACCELERATORS)}) or a dict "
                         f"with keys {', '.join(need)}")
    return gpu


def _link(link, what: str) -> dict:
    from gpuviz.sharing.hardware import INTERCONNECTS, interconnect

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
    """The numbers :func:`gpuviz.plan.terms.step_terms` uses for ``config``: peak FLOP/s
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
