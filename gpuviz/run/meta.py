"""A run's metadata: what every rank recorded about itself, merged, and the launcher's
``run.json``, with what is wrong in either.

>>> merge_meta(Path("."), {0: {"world_size": 2, "pid": 11}, 1: {"pid": 12}})["pids"]
{0: 11, 1: 12}
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

#: A world size larger than this in a trace's metadata is not believed.
MAX_WORLD = 1 << 20


def merge_meta(path: Path, by_rank: dict[int, dict]) -> dict:
    first = by_rank[min(by_rank)] if by_rank else {}
    meta = {k: first.get(k) for k in ("world_size", "backend", "versions", "clock", "timing",
                                      "target", "command")}
    # The clock of the least certain rank describes the run (ping-pong on other hosts).
    worst = max(by_rank.values(), key=lambda m: m.get("clock_error_us") or 0.0, default={})
    meta["clock"], meta["clock_error_us"] = worst.get("clock"), worst.get("clock_error_us")
    meta["start_time"] = min((m.get("start_time") or 0 for m in by_rank.values()), default=None)
    meta["devices"] = {r: m.get("device_name") or m.get("device") for r, m in sorted(by_rank.items())}
    meta["hosts"] = sorted({m.get("host") for m in by_rank.values() if m.get("host")})
    meta["pids"] = {r: m.get("pid") for r, m in sorted(by_rank.items())}
    meta["total_steps"] = next((m["total_steps"] for m in by_rank.values() if m.get("total_steps")), None)
    meta["inject"] = first.get("inject") or []
    meta["energy"] = {r: m.get("energy") for r, m in sorted(by_rank.items()) if m.get("energy")}
    meta["native_buckets"] = {r: m["native_buckets"] for r, m in sorted(by_rank.items())
                              if m.get("native_buckets")}
    # how each rank wrote its events (gpuviz.run.lines: compiled, or Python and why)
    meta["trace_writer"] = {r: m["trace_writer"] for r, m in sorted(by_rank.items())
                            if m.get("trace_writer")}
    # Imported from a PyTorch profiler: where the traces came from and what ran them.
    for k in ("source", "gpu", "nccl_version", "ranks_present"):
        if first.get(k) is not None:
            meta[k] = first[k]
    if first.get("source"):
        meta["files"] = {r: m.get("file") for r, m in sorted(by_rank.items())}
    launcher = path / "run.json"
    if launcher.exists():
        try:
            info = json.loads(launcher.read_text(encoding="utf-8"))
            if not isinstance(info, dict):
                raise ValueError("not an object")
            meta.update({k: info.get(k) for k in ("status", "returncode", "nproc_per_node", "nnodes",
                                                  "timeout", "launched_at", "finished_at", "args")})
            meta.update({k: info[k] for k in ("inject", "max_restarts", "collective_timeout")
                         if k in info})
            meta["command"] = info.get("command") or meta["command"]
        except ValueError:
            pass
    return meta


def run_json_problems(path: Path, raw: dict[int, list[dict]]) -> list[str]:
    """What is wrong with the launcher's ``run.json``: unreadable, not an object, or missing
    where the ranks say that ``gpuviz.launch`` started them; and a world size in the ranks'
    metadata that cannot be."""
    out = []
    launched = any((e.get("args") or {}).get("launched_by") == "gpuviz.launch"
                   for evs in raw.values() for e in evs[:3] if e.get("name") == "gpuviz_meta")
    f = path / "run.json"
    if f.exists():
        try:
            if not isinstance(json.loads(f.read_text(encoding="utf-8")), dict):
                out.append("run.json is not a JSON object; the launcher's record (status, "
                           "arguments) is left out")
        except (OSError, ValueError) as e:
            out.append(f"run.json is unreadable ({e}); the launcher's record is left out")
    elif launched:
        out.append("run.json is missing: the launcher's record of the job (status, arguments) is lost")
    for evs in raw.values():
        for e in evs:
            w = (e.get("args") or {}).get("world_size") if e.get("name") == "gpuviz_meta" else None
            if w is not None and not (isinstance(w, int) and not isinstance(w, bool)
                                      and max(raw) < w <= MAX_WORLD):
                out.append(f"world_size={w!r} in the ranks' metadata cannot be (ranks 0 to "
                           f"{max(raw)} are here); the ranks present are used")
                return out
    return out


def collect_meta(t, total_steps: int | None = None) -> dict:
    """Facts about the rank of tracer ``t`` (a :class:`gpuviz.run.tracer.Tracer`) for
    ``Run.meta``: world, backend, device, versions."""
    import platform

    import torch
    import torch.distributed as dist

    backend = dist.get_backend() if dist.is_initialized() else None
    device = "cpu"
    device_name = platform.processor() or platform.machine()
    if t.cuda:
        idx = torch.cuda.current_device()
        device, device_name = f"cuda:{idx}", torch.cuda.get_device_name(idx)
    from gpuviz._version import __version__

    return {"rank": t.rank, "world_size": t.world_size,
            "launched_by": "gpuviz.launch" if os.environ.get("GPUVIZ_LAUNCHER") else "torchrun",
            "local_rank": int(os.environ.get("LOCAL_RANK", t.rank)),
            "host": socket.gethostname(), "pid": os.getpid(), "backend": backend,
            "device": device, "device_name": device_name, "cpu_count": os.cpu_count(),
            "timing": "cuda-events" if t.cuda else "host perf_counter",
            "clock": t.clock_info["clock"], "clock_error_us": t.clock_info.get("clock_error_us"),
            "start_time": t.start_time, "attempt": t.attempt,
            "total_steps": total_steps, "versions": {
                "python": platform.python_version(), "torch": torch.__version__,
                "gpuviz": __version__}}
