"""What :func:`gpuviz.launch` accepts: each argument checked, with an error that names it
and says what is allowed.

>>> check_seconds("timeout", 30)
30.0
>>> check_seconds("timeout", float("inf"))
Traceback (most recent call last):
...
ValueError: timeout=inf: give a finite number of seconds > 0, or None for no limit
"""

from __future__ import annotations

import datetime as _dt
import errno
import ipaddress
import math
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import psutil

BACKENDS = ("auto", "gloo", "nccl")


def max_nproc() -> int:
    """The most processes one node may start: 8 per core, at least 64."""
    return max(64, 8 * (os.cpu_count() or 1))


def check_nproc(nproc: Any, backend: str) -> int:
    """``nproc`` as an int (default: 4 on CPU, one per GPU with NCCL), or a clear ValueError."""
    import torch

    if nproc is None:
        return torch.cuda.device_count() if backend == "nccl" else 4
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc={nproc!r}: the number of processes must be an integer >= 1")
    if nproc > max_nproc():
        raise ValueError(f"nproc={nproc}: at most {max_nproc()} processes on this node "
                         f"({os.cpu_count()} cores; each rank is a whole Python process with torch)")
    if backend == "nccl" and nproc > torch.cuda.device_count():
        raise ValueError(f"nproc={nproc} with backend='nccl': NCCL runs one rank per GPU and "
                         f"this machine has {torch.cuda.device_count()}; use nproc <= that or backend='gloo'")
    return nproc


def check_backend(backend: str) -> str:
    """``backend`` resolved ("auto" -> "nccl" with GPUs, else "gloo"), or a clear ValueError."""
    import torch

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: use one of {', '.join(map(repr, BACKENDS))}")
    cuda = torch.cuda.is_available()
    if backend == "nccl" and not cuda:
        raise ValueError("backend='nccl' needs CUDA GPUs and torch sees none on this machine; "
                         "use backend='gloo' (CPU) or 'auto'")
    if backend == "auto":
        return "nccl" if cuda else "gloo"
    return backend


def _is_local_host(host: str) -> bool:
    if host in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return False
    if ip.is_loopback:
        return True
    return any(a.address == str(ip) for addrs in psutil.net_if_addrs().values() for a in addrs)


def check_endpoint(rdzv_endpoint: str, node_rank: int | None) -> None:
    host, sep, port = rdzv_endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"rdzv_endpoint={rdzv_endpoint!r}: give HOST:PORT, e.g. '127.0.0.1:29500'")
    if node_rank not in (None, 0) or not _is_local_host(host):
        return  # another node hosts the rendezvous: its port is busy by design
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("" if host in ("localhost",) else socket.gethostbyname(host), int(port)))
        except OSError as e:
            raise ValueError(f"rdzv_endpoint={rdzv_endpoint!r}: port {port} is already in use on this "
                             f"machine ({e.strerror}); pick another port, or leave rdzv_endpoint out "
                             "to let torchrun choose a free one") from None


def default_run_dir(target: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(target.split(":")[-1]).stem)[:40] or "job"
    base = Path("runs") / f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{name}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def check_seconds(name: str, value: Any) -> float | None:
    """A finite number of seconds > 0 (None stays None), or a ValueError naming ``name``."""
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value <= 0):
        raise ValueError(f"{name}={value!r}: give a finite number of seconds > 0, or None for "
                         f"{'no limit' if name == 'timeout' else 'the default'}")
    return float(value)


def check_count(name: str, value: Any, least: int) -> int:
    """An integer >= ``least``, or a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name}={value!r}: give an integer >= {least}")
    return value


def check_torchrun_args(value: Any) -> list[str]:
    """Further torchrun options as a list of strings (a lone string is one word too many ways)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(a, str) for a in value):
        raise ValueError(f"torchrun_args={value!r}: give a list of strings, e.g. "
                         "['--log-line-prefix-template', '[{rank}]']")
    return list(value)


def check_run_dir(path: Path) -> Path:
    """Make ``path`` (a folder the job may write), or a ValueError that says why not."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"run_dir={str(path)!r} is a file; give a folder (it is made if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # a name of its own: two launches into one folder (two "nodes" from one process) meet here
        fd, probe = tempfile.mkstemp(dir=path, prefix=".gpuviz-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise ValueError(f"run_dir={str(path)!r}: cannot write there ({why}); give a folder "
                         "you can write to") from None
    return path
