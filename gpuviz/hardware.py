"""The hardware a job runs on: this machine as measured here.

>>> from gpuviz.hardware import this_machine
>>> m = this_machine()
>>> m["cpu_cores_logical"] >= 1
True
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

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


#: Peak one-direction bandwidth of common links, bytes/s, each with its source.
#: Peak numbers: what a collective achieves (nccl-tests' busbw) is lower.
LINKS = {
    "NVLink 4 (H100 SXM, per GPU)": {
        "bytes_per_s": 450e9, "kind": "inside a server",
        "source": "NVIDIA H100 Tensor Core GPU datasheet: NVLink 900 GB/s total, 450 GB/s each way "
                  "(nvidia.com/en-us/data-center/h100)"},
    "NVLink 3 (A100 SXM, per GPU)": {
        "bytes_per_s": 300e9, "kind": "inside a server",
        "source": "NVIDIA A100 Tensor Core GPU datasheet: NVLink 600 GB/s total, 300 GB/s each way "
                  "(nvidia.com/en-us/data-center/a100)"},
    "PCIe 5.0 x16": {
        "bytes_per_s": 63e9, "kind": "GPU to host",
        "source": "PCI-SIG PCIe 5.0 specification: 32 GT/s per lane, 128b/130b encoding, 16 lanes"},
    "InfiniBand NDR (one 400 Gb/s NIC)": {
        "bytes_per_s": 50e9, "kind": "between servers",
        "source": "NVIDIA ConnectX-7 adapter: 400 Gb/s InfiniBand NDR per port "
                  "(nvidia.com/en-us/networking/infiniband-adapters)"},
    "PCIe 4.0 x16": {
        "bytes_per_s": 31.5e9, "kind": "GPU to host",
        "source": "PCI-SIG PCIe 4.0 specification: 16 GT/s per lane, 128b/130b encoding, 16 lanes"},
}
