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
