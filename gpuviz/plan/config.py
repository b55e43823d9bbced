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

#: How attention is computed: FlashAttention (scores never stored) or materialised scores.
ATTENTION = ("flash", "materialised")

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
    memory: float | None = None
    """Fraction of the memory bandwidth that the memory-bound kernels (LayerNorm, dropout,
    residual adds, activations, materialised attention scores) reach, in (0, 1]; None:
    their time is left out (the CPU calibration folds it into ``compute``)."""
    overlap: float = 1.0
    """Fraction of the backward pass (data-parallel reduction) and of compute (ZeRO-3
    gathers; expert all-to-alls with ``Config.ep_overlap``) that can hide communication,
    in [0, 1]."""
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
        if self.memory is not None:
            _fraction("memory", self.memory)
        _fraction("overlap", self.overlap, lo_open=False)
        for k in ("latency_s", "overhead_s", "launch_s", "data_s_per_sequence", "sync_s"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v < 0):
                raise ValueError(f"{k}={v!r}: must be a number of seconds >= 0")


#: The parameters fitted on published runs (:func:`gpuviz.plan.published.fit_efficiency`,
#: rounded to 3 decimals; a test checks they match the fit): the matmuls' fraction of
#: peak on A100 (fitted on Megatron-LM's 1T run on 3,072 GPUs) and H100 (Llama 3 405B on
#: 8,192), the memory-bound kernels' fraction of memory bandwidth (Megatron-LM's 1.7B run)
#: and the fraction of compute that hides data-parallel and ZeRO-3 communication (ZeRO-3,
#: 174.6B on 768 GPUs). A GPU of the same family (A800, A100 40GB; H800, H200) takes its
#: family's value; others take the H100's (an assumption: no published run here to fit
#: them on). Bandwidth efficiency 0.8: the ratio of measured all-reduce bus bandwidth to
#: NVLink's peak in nccl-tests on 8 GPUs (about 230 of 300 GB/s on A100, 370 of 450 on
#: H100; nccl-tests PERFORMANCE.md, https://github.com/NVIDIA/nccl-tests, as DESIGN.md quotes).
FITTED_COMPUTE = {"A100 SXM 80GB": 0.713, "H100 SXM": 0.748}
FITTED_MEMORY = 0.848
FITTED_OVERLAP = 0.537
#: GPUs without a fitted value of their own, and the fitted GPU of their family (the same chip).
FAMILY = {"A100 SXM 40GB": "A100 SXM 80GB", "A800 SXM 80GB": "A100 SXM 80GB",
           "H800 SXM": "H100 SXM", "H200 SXM": "H100 SXM"}


def default_efficiency(gpu) -> Efficiency:
    """The fitted :class:`Efficiency` for ``gpu`` (a catalogue name or a dict).

    >>> default_efficiency("H800 SXM").compute == FITTED_COMPUTE["H100 SXM"]
    True
    """
    name = gpu if isinstance(gpu, str) else gpu.get("name", "")
    key = name if name in FITTED_COMPUTE else FAMILY.get(name)
    how = ("fitted" if name in FITTED_COMPUTE else f"the {key}'s fitted value (same chip)" if key
           else "the H100's fitted value (assumed)")
    return Efficiency(compute=FITTED_COMPUTE[key or "H100 SXM"], memory=FITTED_MEMORY,
                      overlap=FITTED_OVERLAP,
                      source=f"compute {how}, memory and overlap fitted: "
                             "gpuviz.plan.published.fit_efficiency; bandwidth 0.8 from nccl-tests "
                             "busbw / NVLink peak")


# -- the configuration ------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """A training run to predict: model, hardware and layout (checked when built).

    ``dp * tp * pp * cp`` must equal ``gpus``. A ``global_batch`` that does not split into
    whole micro-batches on every data-parallel replica is rounded to the nearest multiple
    of ``dp * micro_batch``, as frameworks make it (:attr:`notes` says so and
    :attr:`requested_batch` keeps what was asked).
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
    """A name in :data:`gpuviz.sharing.accelerators.ACCELERATORS`, or a dict with the same keys."""
    intra_link: str | dict | None = None
    """Link inside a server (:data:`gpuviz.sharing.accelerators.INTERCONNECTS`); None: the GPU's own."""
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
    cp: int = 1
    """Context-parallel ranks: each holds ``seq / cp`` tokens of every sequence, and keys and
    values go round them (ring attention; Llama 3's CP, Dubey et al. 2024, Section 3.3.2)."""
    attention: str = "flash"
    """"flash": FlashAttention (Dao et al. 2022), the scores are never stored; "materialised":
    the attention scores are written to memory (Megatron-LM before 2023)."""
    reserved_gib: float = 1.0
    """Memory per GPU that the model's terms leave out and the plan must leave free, GiB:
    the CUDA context and library workspaces, NCCL's buffers, allocator fragmentation (a
    stated allowance, not a measurement)."""
    requested_batch: int | None = None
    """The global batch asked for, when it had to be rounded (set by the check)."""
    ep: int = 1
    """Expert-parallel ranks of a mixture of experts: each holds ``experts / ep`` whole
    experts, and tokens reach them by all-to-all. Folded over the ranks of a pipeline stage
    as Megatron-Core does (``ep`` divides ``tp * cp * dp``; it adds no GPUs)."""
    ep_overlap: bool = False
    """The all-to-alls of one micro-batch run during another's compute (Megatron-Core's
    ``overlap_moe_expert_parallel_comm``); False: on the critical path (its default)."""

    def __post_init__(self):
        object.__setattr__(self, "model", transformer(self.model))
        for k in ("gpus", "dp", "tp", "pp", "cp", "ep", "global_batch", "micro_batch",
                  "gpus_per_node", "virtual_stages"):
            _positive_int(k, getattr(self, k))
        if self.dp * self.tp * self.pp * self.cp != self.gpus:
            raise ValueError(f"dp*tp*pp*cp = {self.dp}*{self.tp}*{self.pp}*{self.cp} = "
                             f"{self.dp * self.tp * self.pp * self.cp} but gpus={self.gpus}: the "
                             "layout must use every GPU exactly once")
        if self.zero not in (0, 1, 2, 3) or isinstance(self.zero, bool):
            raise ValueError(f"zero={self.zero!r}: ZeRO stages are 0, 1, 2 and 3")
        for k, allowed in (("recompute", RECOMPUTE), ("precision", tuple(PRECISIONS)),
                           ("schedule", ("1f1b", "gpipe")), ("attention", ATTENTION)):
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k}={getattr(self, k)!r}: use one of {', '.join(map(repr, allowed))}")
        m = self.model
        if m.heads % self.tp:
            raise ValueError(f"tp={self.tp} does not divide the model's heads={m.heads}")
        if self.pp > m.layers:
            raise ValueError(f"pp={self.pp} is more stages than the model's layers={m.layers}")
        if self.cp > 1 and m.seq % self.cp:
            raise ValueError(f"cp={self.cp} does not divide the model's seq={m.seq}")
        if self.ep > 1 and not m.moe:
            raise ValueError(f"ep={self.ep}: the model {m.name} has no experts (a dense MLP); "
                             "use ep=1")
        if self.ep > 1 and (m.experts % self.ep or (self.tp * self.cp * self.dp) % self.ep):
            raise ValueError(f"ep={self.ep} must divide the model's experts={m.experts} and the "
                             f"ranks of a pipeline stage, tp*cp*dp = {self.tp * self.cp * self.dp}")
        for k in ("sequence_parallel", "ep_overlap"):
            if not isinstance(getattr(self, k), bool):
                raise ValueError(f"{k}={getattr(self, k)!r}: must be True or False")
        r = self.reserved_gib
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 0:
            raise ValueError(f"reserved_gib={r!r}: must be a number of GiB >= 0")
        unit = self.dp * self.micro_batch
        if self.global_batch % unit:
            rounded = max(unit, unit * round(self.global_batch / unit))
            object.__setattr__(self, "requested_batch", self.requested_batch or self.global_batch)
            object.__setattr__(self, "global_batch", rounded)
        if self.nics_per_node is not None:
            _positive_int("nics_per_node", self.nics_per_node)
        b = self.bucket_mb
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
            raise ValueError(f"bucket_mb={b!r}: must be a number of MiB > 0")
        hardware(self)                                      # unknown names fail here

    def replace(self, **changes) -> Config:
        """A copy with ``changes`` (checked again)."""
        if "global_batch" in changes:
            changes.setdefault("requested_batch", None)
        elif self.requested_batch is not None:        # round the batch asked for, not the last rounding
            changes = {"global_batch": self.requested_batch, "requested_batch": None, **changes}
        return dataclasses.replace(self, **changes)

    @property
    def notes(self) -> list[str]:
        """What the check changed, in words (empty when nothing).

        >>> Config("gpt3-175b", gpus=992, dp=124, tp=8, global_batch=1024).notes
        ['global_batch=1024 rounded to 992: 124 replicas x micro-batches of 1 need a multiple of 124']
        """
        if self.requested_batch is None:
            return []
        return [f"global_batch={self.requested_batch} rounded to {self.global_batch}: {self.dp} "
                f"replicas x micro-batches of {self.micro_batch} need a multiple of "
                f"{self.dp * self.micro_batch}"]


def _gpu(gpu) -> dict:
    from gpuviz.sharing.accelerators import ACCELERATORS, accelerator

    if isinstance(gpu, str):
        return accelerator(gpu)
    need = ("bf16_flops", "fp32_flops", "memory_bytes", "memory_bytes_per_s", "tdp_w")
    if not isinstance(gpu, dict) or any(k not in gpu for k in need):
        raise ValueError(f"gpu={gpu!r}: give a name ({', '.join(ACCELERATORS)}) or a dict "
                         f"with keys {', '.join(need)}")
    return gpu


def _link(link, what: str) -> dict:
    from gpuviz.sharing.accelerators import INTERCONNECTS, interconnect

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
    for its precision (``gemm_flops``: the matmuls'; ``peak_flops``: what MFU counts
    against, BF16's for an FP8 run), memory, power, each link's bandwidth times the
    bandwidth efficiency (between servers: per GPU, ``nics_per_node / gpus_per_node``
    ports) and latency (NCCL's cost model unless the efficiency gives one)."""
    gpu = _gpu(config.gpu)
    intra = _link(config.intra_link or gpu.get("intra_link"), "intra_link")
    inter = _link(config.inter_link, "inter_link")
    eff = config.efficiency or default_efficiency(config.gpu)
    nics = config.nics_per_node or config.gpus_per_node

    def lat(link):
        return eff.latency_s if eff.latency_s is not None else (link.get("latency_s") or 0.0)

    from gpuviz.sharing.accelerators import NCCL_LATENCY

    # FP8 runs its matmuls at the FP8 peak; MFU stays counted against the BF16 peak
    base = "bf16" if config.precision == "fp8" else config.precision
    gemm = gpu.get("fp8_flops") if config.precision == "fp8" else gpu[f"{base}_flops"]
    if not gemm:
        raise ValueError(f"precision='fp8': {gpu.get('name', 'this GPU')} has no FP8 peak in the "
                         "catalogue (FP8 tensor cores came with Hopper); use 'bf16'")
    return {"name": gpu.get("name", "custom"), "peak_flops": gpu[f"{base}_flops"], "gemm_flops": gemm,
            "collective_latency_s": 0.0 if eff.latency_s is not None else NCCL_LATENCY["base"],
            "memory_bytes": gpu["memory_bytes"], "memory_bytes_per_s": gpu["memory_bytes_per_s"],
            "tdp_w": gpu["tdp_w"] if gpu["tdp_w"] is not None else math.nan,
            "cores": gpu.get("cores", config.gpus_per_node),
            "intra_bytes_per_s": intra["bytes_per_s"] * eff.bandwidth, "intra_latency_s": lat(intra),
            "inter_bytes_per_s": inter["bytes_per_s"] * nics / config.gpus_per_node * eff.bandwidth,
            "inter_latency_s": lat(inter), "efficiency": eff}


def step_kwargs(config: Config, hw: dict | None = None) -> dict:
    """The keyword arguments of :func:`gpuviz.plan.terms.step_terms` for ``config`` (its
    layout, settings and efficiency); :func:`gpuviz.plan.search.search` replaces the layout
    with arrays of them."""
    hw = hw or hardware(config)
    eff = hw["efficiency"]
    return dict(dp=config.dp, tp=config.tp, pp=config.pp, cp=config.cp,
                micro_batch=config.micro_batch, global_batch=config.global_batch, zero=config.zero,
                recompute=config.recompute, precision=config.precision,
                gpus_per_node=config.gpus_per_node, virtual_stages=config.virtual_stages,
                schedule=config.schedule, bucket_bytes=config.bucket_mb * 2**20,
                overlap=eff.overlap, compute_efficiency=eff.compute, overhead_s=eff.overhead_s,
                sequence_parallel=config.sequence_parallel, launch_s=eff.launch_s,
                data_s_per_sequence=eff.data_s_per_sequence, sync_s=eff.sync_s,
                attention=config.attention, memory_efficiency=eff.memory,
                gemm_flops=hw["gemm_flops"], ep=config.ep, ep_overlap=config.ep_overlap)
