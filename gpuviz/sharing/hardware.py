"""The hardware a job runs on: this machine as measured here.

>>> from gpuviz.sharing.hardware import this_machine
>>> m = this_machine()
>>> m["cpu_cores_logical"] >= 1
True
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import psutil


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_topology() -> str | None:
    """``nvidia-smi topo -m``: how each pair of GPUs is connected (NV#, PIX, SYS...), or None."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "topo", "-m"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def this_machine() -> dict:
    """What this machine has: CPU cores, memory, GPUs and their links, torch's backends.

    Every value is read from this machine (``/proc/cpuinfo``, psutil, torch, nvidia-smi).
    """
    import torch
    import torch.distributed as dist

    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                         "multiprocessors": p.multi_processor_count})
    return {
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus,
        "gpu_topology": gpu_topology() if gpus else None,
        "torch": torch.__version__,
        "backends": [b for b in ("gloo", "nccl", "mpi") if getattr(dist, f"is_{b}_available")()],
    }


def describe(machine: dict | None = None) -> str:
    """A few readable lines about :func:`this_machine`.

    >>> print(describe())  # doctest: +SKIP
    """
    m = machine or this_machine()
    lines = [f"host       {m['host']} ({m['os']})",
             f"CPU        {m['cpu']}",
             f"cores      {m['cpu_cores_physical']} physical, {m['cpu_cores_logical']} logical, "
             f"{m['cpu_cores_usable']} usable by this process",
             f"memory     {m['memory_gib']} GiB",
             f"torch      {m['torch']} (process-group backends: {', '.join(m['backends'])})"]
    if m["gpus"]:
        lines += [f"GPU {g['index']}      {g['name']}, {g['memory_gib']} GiB" for g in m["gpus"]]
        if m["gpu_topology"]:
            lines += ["GPU links (nvidia-smi topo -m):", m["gpu_topology"].rstrip()]
    else:
        lines.append("GPUs       none: ranks are CPU processes talking over gloo (TCP on this machine)")
    return "\n".join(lines)


# -- the hardware ladder: published bandwidths and latencies, each with its source --------------

#: Kinds of rung, in the order the ladder colours them.
KINDS = ("memory", "inside a server", "GPU to host", "between servers")

_A100 = ("NVIDIA A100 Tensor Core GPU datasheet, https://www.nvidia.com/content/dam/en-zz/Solutions/"
         "Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")
_H100 = "NVIDIA H100 Tensor Core GPU, https://www.nvidia.com/en-us/data-center/h100/"
_NO_NVLINK_LATENCY = ("none published: NVLink latency is not public (astra-sim maintainers, "
                      "https://github.com/astra-sim/astra-sim/issues/59)")


def _rung(name, kind, bytes_per_s, published, source, latency_s=None, latency_source=None):
    return {"name": name, "kind": kind, "bytes_per_s": float(bytes_per_s), "published": published,
            "latency_s": latency_s, "latency_source": latency_source, "source": source}


#: Peak numbers as published. ``bytes_per_s`` is per direction for links (a link's
#: "total" counts both directions and is twice it); for memory it is the one total that
#: reads and writes share. What software achieves is lower: compare nccl-tests' busbw.
#: A latency is given only where its source publishes one (else None, and why).
CATALOGUE = (
    _rung("HBM3e (H200 SXM)", "memory", 4.8e12, "4.8 TB/s GPU memory bandwidth",
          "NVIDIA H200 Tensor Core GPU, https://www.nvidia.com/en-us/data-center/h200/"),
    _rung("HBM3 (H100 SXM)", "memory", 3.35e12, "3.35 TB/s GPU memory bandwidth", _H100),
    _rung("HBM2e (A100 80GB SXM)", "memory", 2.039e12, "2,039 GB/s GPU memory bandwidth", _A100),
    _rung("NVLink 5 (Blackwell, per GPU)", "inside a server", 900e9,
          "1.8 TB/s total: 18 links of 100 GB/s", "NVIDIA NVLink and NVLink Switch, "
          "https://www.nvidia.com/en-us/data-center/nvlink/", None, _NO_NVLINK_LATENCY),
    _rung("NVLink 4 (H100 SXM, per GPU)", "inside a server", 450e9, "900 GB/s total",
          _H100, None, _NO_NVLINK_LATENCY),
    _rung("NVLink 3 (A100 SXM, per GPU)", "inside a server", 300e9, "600 GB/s total",
          _A100, None, _NO_NVLINK_LATENCY),
    _rung("PCIe 5.0 x16", "GPU to host", 63e9, "32 GT/s per lane, 128b/130b, 16 lanes",
          "PCI-SIG, PCI Express Base Specification 5.0: 32 GT/s x 16 x 128/130 / 8 = 63 GB/s each way"),
    _rung("PCIe 4.0 x16", "GPU to host", 31.5e9, "16 GT/s per lane, 128b/130b, 16 lanes",
          "PCI-SIG, PCI Express Base Specification 4.0: 16 GT/s x 16 x 128/130 / 8 = 31.5 GB/s each way"),
    _rung("InfiniBand XDR (one 800 Gb/s port)", "between servers", 100e9, "800 Gb/s",
          "NVIDIA ConnectX-8 SuperNIC user manual, "
          "https://docs.nvidia.com/networking/display/connectx8supernic/introduction"),
    _rung("InfiniBand NDR (one 400 Gb/s NIC)", "between servers", 50e9, "400 Gb/s",
          "NVIDIA ConnectX-7 adapter user manual (NDR 400Gb/s single-port OSFP), "
          "https://docs.nvidia.com/networking/display/ConnectX7VPI/Introduction"),
    _rung("400 GbE (one port)", "between servers", 50e9, "400 Gb/s",
          "IEEE 802.3bs-2017, 200 Gb/s and 400 Gb/s Ethernet"),
    _rung("InfiniBand HDR (one 200 Gb/s port)", "between servers", 25e9, "200 Gb/s",
          "NVIDIA ConnectX-6 adapter user manual, "
          "https://docs.nvidia.com/networking/display/ConnectX6EN/Introduction", 600e-9,
          "ConnectX-6 adapter: 'sub-600ns latency' (an upper bound for the adapter; switches add "
          "more), https://docs.nvidia.com/networking/display/ConnectX6EN/Introduction"),
    _rung("100 GbE (one port)", "between servers", 12.5e9, "100 Gb/s",
          "IEEE 802.3ba-2010, 40 Gb/s and 100 Gb/s Ethernet"),
)

#: The links of :data:`CATALOGUE` (no memory): name -> bytes_per_s (each way), kind, source.
LINKS = {r["name"]: {"bytes_per_s": r["bytes_per_s"], "kind": r["kind"], "source": r["source"]}
         for r in CATALOGUE if r["kind"] != "memory"}


def link(name: str) -> dict:
    """One rung of :data:`CATALOGUE` by name.

    >>> link("PCIe 4.0 x16")["bytes_per_s"]
    31500000000.0
    """
    for r in CATALOGUE:
        if r["name"] == name:
            return dict(r)
    raise ValueError(f"link={name!r} is not in the catalogue; known: "
                     + ", ".join(repr(r["name"]) for r in CATALOGUE))


def measured_rung(busbw: float, name: str = "your ranks (gloo over TCP, this machine)",
                  kind: str = "inside a server", source: str = "your run (busbw, nccl-tests' definition)",
                  latency_s: float | None = None) -> dict:
    """A ladder rung from a bus bandwidth (bytes/s) measured on this machine, labelled as
    measured: pass it to :func:`catalogue` or :func:`gpuviz.plot.hardware.hardware_ladder`.

    >>> measured_rung(1.2e9)["label"]
    'measured on this machine'
    """
    if isinstance(busbw, bool) or not isinstance(busbw, (int, float)) or not busbw > 0:
        raise ValueError(f"busbw={busbw!r}: give the measured bus bandwidth in bytes/s, a number > 0")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use one of {', '.join(map(repr, KINDS))}")
    row = _rung(name, kind, busbw, f"{busbw / 1e9:.3g} GB/s busbw", source, latency_s,
                "your run" if latency_s is not None else None)
    return {**row, "label": "measured on this machine"}


def catalogue(measured=None):
    """:data:`CATALOGUE` as a DataFrame, fastest first, with ``GB/s`` and a ``label``
    ("published peak" or "measured on this machine"). ``measured``: a busbw in bytes/s, a
    :func:`measured_rung`, or a list of them.

    >>> catalogue(measured=2e9).iloc[-1]["label"]
    'measured on this machine'
    """
    import pandas as pd

    rows = [{**r, "label": "published peak"} for r in CATALOGUE] + _measured_rows(measured)
    df = pd.DataFrame(rows).sort_values("bytes_per_s", ascending=False, kind="stable")
    df.insert(3, "GB/s", df["bytes_per_s"] / 1e9)
    return df.reset_index(drop=True)


def _measured_rows(measured) -> list[dict]:
    rows = []
    for m in [] if measured is None else measured if isinstance(measured, (list, tuple)) else [measured]:
        bw = m.get("bytes_per_s") if isinstance(m, dict) else m
        if isinstance(bw, bool) or not isinstance(bw, (int, float)) or not bw > 0:
            raise ValueError(f"measured={m!r}: give a measured busbw in bytes/s (a number > 0), "
                             "a dict from measured_rung(), or a list of them")
        keys = ("name", "kind", "source", "latency_s")
        rows.append(measured_rung(bw, **{k: m[k] for k in keys if k in m}) if isinstance(m, dict)
                    else measured_rung(bw))
    return rows


# -- GPU topology: nvidia-smi topo -m -------------------------------------------------------------

#: nvidia-smi topo -m's own legend, fastest connection first (older drivers print SOC for SYS).
TOPOLOGY_CODES = {
    "X": "Self",
    "NV#": "Connection traversing a bonded set of # NVLinks",
    "PIX": "Connection traversing at most a single PCIe bridge",
    "PXB": "Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)",
    "PHB": "Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)",
    "NODE": "Connection traversing PCIe as well as the interconnect between PCIe Host Bridges "
            "within a NUMA node",
    "SYS": "Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)",
}
_CODE = re.compile(r"^(X|NV\d+|PIX|PXB|PHB|NODE|SYS|SOC)$")

#: Real ``nvidia-smi topo -m`` outputs kept in ``gpuviz/data`` (see its README for sources).
RECORDED_TOPOLOGIES = {
    "dgx-a100": {
        "file": "dgx_a100_topo.txt",
        "machine": "NVIDIA DGX A100: 8 A100 SXM4 GPUs (NV12: 12 NVLinks to every other GPU, through "
                   "NVSwitches), 12 Mellanox network ports mlx5_0-11",
        "source": "published in gengwg/cheatsheets, gpu.md ('Below is for DGX A100'), "
                  "https://github.com/gengwg/cheatsheets/blob/d47ab5e6d8f22bb0d7fe0abd577c32286dd32ace/gpu.md"},
}


def code_rank(code: str) -> int:
    """Position of a link code in :data:`TOPOLOGY_CODES`: 0 (self), 1 (NVLink) ... 6 (SYS)."""
    key = "NV#" if re.fullmatch(r"NV\d+", code) else "SYS" if code == "SOC" else code
    return list(TOPOLOGY_CODES).index(key)


def parse_topology(text: str):
    """The GPU-by-GPU matrix of link codes (X, NV12, PIX, PXB, PHB, NODE, SYS) in the text
    of ``nvidia-smi topo -m``; NIC columns, CPU/NUMA affinity and the legend are left out.

    >>> parse_topology(recorded_topology()).loc["GPU0", "GPU1"]
    'NV12'
    """
    import pandas as pd

    if not isinstance(text, str):
        raise ValueError(f"text={type(text).__name__}: give the output of nvidia-smi topo -m as a str")
    lines = [ln.split() for ln in text.splitlines()]
    header = next((t for t in lines if t and t[0] == "GPU0"), None)
    if header is None:
        raise ValueError("text: no header row starting with GPU0; is this nvidia-smi topo -m output?")
    gpus = []
    for t in header:                       # GPU columns come first, then NICs and affinities
        if not re.fullmatch(r"GPU\d+", t):
            break
        gpus.append(t)
    rows = {t[0]: t[1:1 + len(gpus)] for t in lines if t and t[0] in gpus and t is not header}
    bad = [g for g in gpus if len(rows.get(g, [])) < len(gpus)]
    if bad:
        raise ValueError(f"text: rows {bad} are missing or have fewer than {len(gpus)} link codes")
    codes = {c for g in gpus for c in rows[g]}
    unknown = sorted(c for c in codes if not _CODE.match(c))
    if unknown:
        raise ValueError(f"text: unknown link codes {unknown}; known: X, NV#, "
                         + ", ".join(list(TOPOLOGY_CODES)[2:]))
    return pd.DataFrame([rows[g] for g in gpus], index=gpus, columns=gpus)


def recorded_topology(name: str = "dgx-a100") -> str:
    """A real 8-GPU server's ``nvidia-smi topo -m`` output, for machines without GPUs.
    :data:`RECORDED_TOPOLOGIES` says what machine it is and where it was published.

    >>> text = gpu_topology() or recorded_topology()   # yours if you have GPUs
    """
    if name not in RECORDED_TOPOLOGIES:
        raise ValueError(f"name={name!r}: recorded topologies are {', '.join(RECORDED_TOPOLOGIES)}")
    path = Path(__file__).parents[1] / "data" / RECORDED_TOPOLOGIES[name]["file"]
    return path.read_text(encoding="utf-8")


# -- accelerators: published peak numbers for the cluster model (gpuviz.plan.prediction) --------------------

_A100_PDF = _A100
_H200 = "NVIDIA H200 Tensor Core GPU, https://www.nvidia.com/en-us/data-center/h200/"
_B200 = ("NVIDIA DGX B200 datasheet (8 B200 GPUs: 72 PFLOPS FP8 training, 1,440 GB HBM3e, 64 TB/s), "
         "https://www.nvidia.com/en-us/data-center/dgx-b200/; per-GPU dense rates at 1,000 W "
         "from NVIDIA's Blackwell datasheet as tabulated by G. Lockwood, "
         "https://glennklockwood.com/garden/processors/B200")
_MI300X = ("AMD Instinct MI300X data sheet, https://www.amd.com/content/dam/amd/en/documents/"
           "instinct-tech-docs/data-sheets/amd-instinct-mi300x-data-sheet.pdf")


_SMI = ("nvidia-smi's memory.total for this card ({mib} MiB = {gib:.2f} GiB), as it prints in "
        "public nvidia-smi outputs; the datasheet's '{label}' is the marketing size")
_V100 = ("NVIDIA Tesla V100 datasheet, https://images.nvidia.com/content/technologies/volta/pdf/"
         "volta-v100-datasheet-update-us-1165301-r5.pdf")
_H800 = ("H800: the H100's die and memory with NVLink cut to 400 GB/s total (Philisun, 'NVIDIA "
         "H800 vs H100', https://www.philisun.com/technical-analysis/nvidia-h800-vs-h100-a-technical-"
         "deep-dive-into-politically-defined-ai-chips); trained on by DeepSeek-V3 (DeepSeek-AI "
         "2024, arXiv:2412.19437, https://arxiv.org/abs/2412.19437)")
_A800 = ("A800: the A100 with NVLink limited to 400 GB/s, same performance, 80 GB HBM2e, 400 W SXM "
         "(Tweakers after Reuters, https://tweakers.net/nieuws/203182/nvidia-introduceert-a800-gpu-"
         "voor-china-die-niet-onder-exportrestricties-vs-valt.html)")


def _mib(mib: int, label: str) -> tuple[float, str]:
    return mib * 2**20, _SMI.format(mib=mib, gib=mib / 1024, label=label)


def _accelerator(name, vendor, bf16_flops, fp32_flops, memory_bytes, memory_bytes_per_s, tdp_w,
                 intra_link, source, tdp_source=None, idle_w=None, idle_source=None,
                 fp8_flops=None, memory_source=None):
    if isinstance(memory_bytes, tuple):
        memory_bytes, memory_source = memory_bytes
    return {"name": name, "vendor": vendor, "bf16_flops": float(bf16_flops),
            "fp32_flops": float(fp32_flops),
            "fp8_flops": float(fp8_flops) if fp8_flops else None,
            "memory_bytes": float(memory_bytes),
            "memory_source": memory_source or "the datasheet's decimal gigabytes (no nvidia-smi value here)",
            "memory_bytes_per_s": float(memory_bytes_per_s), "tdp_w": float(tdp_w),
            "tdp_source": tdp_source or source, "idle_w": idle_w, "idle_source": idle_source,
            "intra_link": intra_link, "source": source}


#: Accelerators by name. ``bf16_flops``: dense 16-bit tensor-core peak, FLOP/s (BF16; FP16
#: on the V100, which has no BF16), without structured sparsity, which doubles the
#: datasheets' headline; ``fp8_flops``: dense FP8 peak where the GPU has FP8 (else None);
#: ``fp32_flops``: dense FP32 (non-tensor) peak; ``memory_bytes``: the memory a program
#: can see, in bytes: nvidia-smi's ``memory.total`` in MiB where it is known (the units the
#: card reports, ``memory_source`` says which), else the datasheet's decimal GB;
#: ``memory_bytes_per_s``: HBM peak bandwidth; ``tdp_w``: maximum board power (NVIDIA "max
#: TDP", AMD "TBP") with ``tdp_source``; ``idle_w``: idle power where a source publishes
#: one (None: none does); ``intra_link``: the key in :data:`INTERCONNECTS` of its link
#: inside a server. Peaks, not what software achieves: :mod:`gpuviz.plan.prediction`
#: applies a fitted efficiency.
ACCELERATORS = {a["name"]: a for a in (
    _accelerator("V100 SXM2 32GB", "NVIDIA", 125e12, 15.7e12, 32 * 2**30, 900e9, 300, "nvlink2",
                 _V100 + ": Tensor Performance 125 TFLOPS (FP16; no BF16), FP32 15.7 TFLOPS, 32 GB "
                 "HBM2, 900 GB/s, 300 W", memory_source="32 GiB: HBM2 stacks are sized in binary "
                 "units (the datasheet's '32 GB')"),
    _accelerator("A100 SXM 40GB", "NVIDIA", 312e12, 19.5e12, _mib(40960, "40GB"), 1.555e12, 400,
                 "nvlink3", _A100_PDF + ": BF16 tensor core 312 TFLOPS (624 with sparsity), FP32 "
                 "19.5 TFLOPS, 40 GB HBM2, 1,555 GB/s, max TDP 400 W"),
    _accelerator("A100 SXM 80GB", "NVIDIA", 312e12, 19.5e12, _mib(81920, "80GB"), 2.039e12, 400,
                 "nvlink3",
                 _A100_PDF + ": BF16 tensor core 312 TFLOPS (624 with sparsity), FP32 19.5 TFLOPS, "
                 "80 GB HBM2e, 2,039 GB/s, max TDP 400 W"),
    _accelerator("A800 SXM 80GB", "NVIDIA", 312e12, 19.5e12, _mib(81920, "80GB"), 2.039e12, 400,
                 "nvlink-400", _A800 + ": as the A100 SXM 80GB (312 TFLOPS BF16, 2,039 GB/s, "
                 "400 W), NVLink 400 GB/s"),
    _accelerator("H100 SXM", "NVIDIA", 989e12, 67e12, _mib(81559, "80GB"), 3.35e12, 700, "nvlink4",
                 _H100 + ": BF16 tensor core 1,979 TFLOPS with sparsity (989 dense), FP8 3,958 "
                 "with sparsity (1,979 dense), FP32 67 TFLOPS, 80 GB, 3.35 TB/s, max TDP up to 700 W",
                 fp8_flops=1979e12),
    _accelerator("H800 SXM", "NVIDIA", 989e12, 67e12, _mib(81559, "80GB"), 3.35e12, 700,
                 "nvlink-400", _H800 + ": BF16 989 TFLOPS dense, FP8 1,979 dense, 80 GB, 3.35 TB/s, "
                 "700 W", fp8_flops=1979e12),
    _accelerator("H200 SXM", "NVIDIA", 989e12, 67e12, _mib(143771, "141GB"), 4.8e12, 700, "nvlink4",
                 _H200 + ": BF16 tensor core 1,979 TFLOPS with sparsity (989 dense), FP8 3,958 "
                 "with sparsity (1,979 dense), FP32 67 TFLOPS, 141 GB HBM3e, 4.8 TB/s, max TDP up "
                 "to 700 W", fp8_flops=1979e12),
    _accelerator("B200", "NVIDIA", 2.25e15, 80e12, 180e9, 8e12, 1000, "nvlink5",
                 _B200 + ": HGX B200 at 1,000 W: BF16 2,250 TFLOPS dense (4,500 sparse), FP8 4,500 "
                 "dense, FP32 80 TFLOPS; 180 GB and 8 TB/s per GPU (DGX B200 totals / 8)",
                 fp8_flops=4.5e15),
    _accelerator("MI300X", "AMD", 1307.4e12, 163.4e12, 192e9, 5.3e12, 750, "infinity-fabric",
                 _MI300X + ": peak BF16 1,307.4 TFLOPS dense (2,614.9 with sparsity), FP8 2,614.9 "
                 "dense, FP32 163.4 TFLOPS, 192 GB HBM3, 5.3 TB/s, 750 W peak board power (TBP)",
                 fp8_flops=2614.9e12),
)}


#: NCCL's own cost model of a ring collective with its Simple protocol (the one large
#: messages use): a base latency per collective, plus a latency per ring step over NVLink,
#: PCIe or the network. NVIDIA/nccl, src/graph/tuning.cc (baseLat and hwLat, Ring/Simple),
#: https://github.com/NVIDIA/nccl/blob/01afd20a77b5804e0ecf1042509dd9d20ebf9e93/src/graph/tuning.cc
NCCL_LATENCY = {"base": 8.4e-6, "nvlink": 3.4e-6, "pci": 5.7e-6, "net": 9.6e-6,
                "source": "NCCL's tuning model (src/graph/tuning.cc, Ring/Simple: base 8.4 us per "
                          "collective; per step 3.4 us NVLink, 5.7 us PCIe, 9.6 us network), "
                          "https://github.com/NVIDIA/nccl/blob/01afd20a77b5804e0ecf1042509dd9d20ebf9e93/"
                          "src/graph/tuning.cc"}


def _interconnect(key, where, bytes_per_s, source, latency_s=None, latency_source=None):
    return key, {"name": key, "where": where, "bytes_per_s": float(bytes_per_s),
                 "latency_s": latency_s, "latency_source": latency_source, "source": source}


def _from_ladder(key, where, rung, hop="net"):
    r = link(rung)
    return _interconnect(key, where, r["bytes_per_s"], f"{rung}: {r['published']}; {r['source']}",
                         NCCL_LATENCY[hop], NCCL_LATENCY["source"])


#: Links for the cluster model, by short name: ``bytes_per_s`` is per GPU and direction
#: (inside a server: the GPU's total link bandwidth each way; between servers: one NIC
#: port); ``latency_s``: one ring step in NCCL's cost model (:data:`NCCL_LATENCY`). The
#: ladder's rows (:data:`CATALOGUE`) are reused with their sources.
INTERCONNECTS = dict((
    _interconnect("nvlink2", "inside a server", 150e9,
                  _V100 + ": NVLink 300 GB/s (both directions), so 150 GB/s each way",
                  NCCL_LATENCY["nvlink"], NCCL_LATENCY["source"]),
    _from_ladder("nvlink3", "inside a server", "NVLink 3 (A100 SXM, per GPU)", "nvlink"),
    _interconnect("nvlink-400", "inside a server", 200e9,
                  _A800 + "; " + _H800 + ": NVLink 400 GB/s (both directions), so 200 GB/s each way",
                  NCCL_LATENCY["nvlink"], NCCL_LATENCY["source"]),
    _from_ladder("nvlink4", "inside a server", "NVLink 4 (H100 SXM, per GPU)", "nvlink"),
    _from_ladder("nvlink5", "inside a server", "NVLink 5 (Blackwell, per GPU)", "nvlink"),
    _interconnect("infinity-fabric", "inside a server", 448e9,
                  _MI300X + ": 7 AMD Infinity Fabric links, 896 GB/s peak aggregate (both "
                  "directions), so 448 GB/s each way", NCCL_LATENCY["nvlink"],
                  NCCL_LATENCY["source"] + " (NVLink's value, assumed for Infinity Fabric)"),
    _from_ladder("pcie4", "inside a server", "PCIe 4.0 x16", "pci"),
    _from_ladder("pcie5", "inside a server", "PCIe 5.0 x16", "pci"),
    _from_ladder("ib-hdr", "between servers", "InfiniBand HDR (one 200 Gb/s port)"),
    _from_ladder("ib-ndr", "between servers", "InfiniBand NDR (one 400 Gb/s NIC)"),
    _from_ladder("ib-xdr", "between servers", "InfiniBand XDR (one 800 Gb/s port)"),
    _from_ladder("eth-400g", "between servers", "400 GbE (one port)"),
    _from_ladder("eth-100g", "between servers", "100 GbE (one port)"),
    _interconnect("omni-path-100", "between servers", 12.5e9,
                  "Intel Omni-Path Architecture 100 series: 100 Gb/s per port (BLOOM's Jean Zay "
                  "nodes have 4 Omni-Path 100 Gb/s links each: Le Scao et al. 2022, 'BLOOM', "
                  "arXiv:2211.05100)", NCCL_LATENCY["net"], NCCL_LATENCY["source"]),
))


def accelerator(name: str) -> dict:
    """One accelerator of :data:`ACCELERATORS` (a copy), or a ValueError listing them.

    >>> accelerator("H100 SXM")["tdp_w"]
    700.0
    """
    if name not in ACCELERATORS:
        raise ValueError(f"gpu={name!r} is not in the catalogue; known: "
                         + ", ".join(map(repr, ACCELERATORS)))
    return dict(ACCELERATORS[name])


def interconnect(name: str) -> dict:
    """One link of :data:`INTERCONNECTS` (a copy), or a ValueError listing them.

    >>> interconnect("ib-ndr")["bytes_per_s"]
    50000000000.0
    """
    if name not in INTERCONNECTS:
        raise ValueError(f"link={name!r} is not in the catalogue; known: "
                         + ", ".join(map(repr, INTERCONNECTS)))
    return dict(INTERCONNECTS[name])
