"""Collective benchmarks (algbw and busbw, as nccl-tests defines them) and the alpha-beta model.

>>> import gpuviz.sharing.bench as bench
>>> df = bench.collectives(ops=["all_reduce"], nproc=[2, 4])       # doctest: +SKIP
>>> fit = bench.fit_alpha_beta(df)                                 # doctest: +SKIP
>>> gpuviz.plot.alpha_beta(df, fit)                                # doctest: +SKIP

From a terminal (prints a table like nccl-tests, saves CSV)::

    gpuviz bench collectives --ops all_reduce,all_gather --nproc 2,4 --csv bench.csv
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from gpuviz.run.collectives import bus_factor  # noqa: F401 (part of this module's API)
from gpuviz.run.load import Run

OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "reduce")
DEFAULT_OPS = OPS[:5]
#: Powers of 4 from 1 KiB to 16 MiB: the default sweep, 4 ranks, takes 20-30 s on 2 CPU cores.
DEFAULT_SIZES = tuple(1024 * 4**k for k in range(8))
DTYPES = ("float32", "float64", "float16", "bfloat16", "int8", "uint8", "int32", "int64",
          "float8_e4m3fn", "float8_e5m2")
_SPLIT = {"all_gather", "reduce_scatter", "all_to_all"}  # S is split into `world` equal parts
#: Buffers of size S each rank holds (gloo's reduce_scatter also clones its input).
_BUFFERS = {"all_reduce": 1, "broadcast": 1, "reduce": 1, "all_gather": 2, "reduce_scatter": 3,
            "all_to_all": 2}
_SAFETY = 2                   # room for the backend's own scratch copies
_PROCESS_BYTES = 400 * 2**20  # one worker's own memory on CPU (RSS 300 MB measured, torch 2.13)
#: What a backend does not do as its name says (verified by trying, torch 2.13).
_BACKEND_NOTES = {("gloo", "reduce_scatter"): "gloo: an all-reduce of S, then each rank keeps "
                  "its part (2x a ring reduce-scatter's traffic; pytorch/pytorch#118911)"}


def ring_steps(op: str, world: int) -> int:
    """Latency terms of the ring (or pipelined chain) algorithm: 2(p-1) for all_reduce, else p-1."""
    bus_factor(op, world)  # validates op
    return 2 * (world - 1) if op == "all_reduce" else world - 1


def ring_seconds(op: str, nbytes, world: int, alpha: float, beta: float):
    """Time the ring formulas predict with per-step latency ``alpha`` (s) and link ``beta`` (s/B).

    Thakur, Rabenseifner & Gropp (2005), "Optimization of Collective Communication Operations
    in MPICH": all_reduce 2(p-1)α + 2(p-1)/p·S·β (as :func:`gpuviz.plan.prediction.ring_allreduce_seconds`);
    reduce_scatter, all_gather, all_to_all (pairwise exchange) (p-1)α + (p-1)/p·S·β;
    broadcast, reduce (pipelined chain, long messages) (p-1)α + S·β. The reduction's own
    compute is left out. S as in :func:`collectives`.

    >>> round(ring_seconds("all_reduce", 1e6, 4, alpha=1e-5, beta=1e-9), 9)   # 6 α + 1.5 S β
    0.00156
    """
    t = ring_steps(op, world) * alpha + bus_factor(op, world) * np.asarray(nbytes, float) * beta
    return float(t) if t.ndim == 0 else t


def parse_size(text: str | int) -> int:
    """Bytes from ``4096``, ``"64K"``, ``"1M"``, ``"2GiB"`` (K, M, G are powers of 1024).

    >>> parse_size("64K"), parse_size("1MiB"), parse_size(100)
    (65536, 1048576, 100)
    """
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        return int(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"size {text!r}: write bytes as 4096, 64K, 1M or 2G (powers of 1024)")
    return int(float(m.group(1)) * 1024 ** " KMG".index(m.group(2).upper() or " "))


def size_range(lo: str | int, hi: str | int, factor: int = 4) -> list[int]:
    """Sizes from ``lo`` up to ``hi``, each ``factor`` times the one before (nccl-tests' -b -e -f).

    >>> size_range("1K", "64K")
    [1024, 4096, 16384, 65536]
    """
    lo, hi = parse_size(lo), parse_size(hi)
    if not 0 < lo <= hi or isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ValueError(f"size range {lo}..{hi} x{factor}: need 0 < min <= max and an integer "
                         "factor >= 2")
    out = [lo]
    while out[-1] * factor <= hi:
        out.append(out[-1] * factor)
    return out


def _check(ops, sizes, nproc, warmup, iters, dtype) -> tuple[list[str], list[int], list[int]]:
    ops = [o.strip() for o in ops.split(",")] if isinstance(ops, str) else list(ops or [])
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise ValueError(f"ops={list(ops)!r}: unknown op {bad[0] if bad else '(none given)'!r}; "
                         f"known ops: {', '.join(OPS)}")
    if sizes is None:
        sizes = DEFAULT_SIZES
    sizes = [parse_size(s) for s in ([sizes] if isinstance(sizes, (int, str)) else sizes)]
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"sizes={sizes!r}: give message sizes in bytes, each > 0")
    worlds = list(nproc) if isinstance(nproc, (list, tuple, range)) else [nproc]
    if not worlds or any(isinstance(w, bool) or not isinstance(w, int) or w < 2 for w in worlds):
        raise ValueError(f"nproc={nproc!r}: give a rank count >= 2 or a list of them, e.g. [2, 4]")
    for name, v, lo in (("warmup", warmup, 0), ("iters", iters, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}={v!r}: must be an integer >= {lo}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: use one of {', '.join(DTYPES)}")
    return list(dict.fromkeys(ops)), sorted(set(sizes)), sorted(set(worlds))


def _plan(ops, sizes, worlds, dtype, backend) -> list[dict]:
    """One block per (world, op, size); S padded to whole elements split evenly over ranks."""
    import torch

    elsize = torch.empty(0, dtype=getattr(torch, dtype)).element_size()
    plan = []
    for w in worlds:
        for op in ops:
            unit = elsize * (w if op in _SPLIT else 1)
            for s in sizes:
                padded = -(-s // unit) * unit
                note = (f"padded from {s} B to {padded} B: {op} on {w} ranks needs a multiple "
                        f"of {unit} B ({w if op in _SPLIT else 1} x {elsize} B {dtype})"
                        if padded != s else "")
                extra = _BACKEND_NOTES.get((backend, op), "")
                plan.append({"op": op, "world": w, "bytes": padded, "requested": s,
                             "padded": padded != s, "note": "; ".join(filter(None, [note, extra]))})
    return plan


def _check_memory(plan: list[dict], nproc: int, backend: str) -> None:
    """ValueError if the largest block cannot fit in free memory (GPU or host)."""
    import psutil

    worst = max(plan, key=lambda b: _BUFFERS[b["op"]] * b["bytes"])
    per_rank = _BUFFERS[worst["op"]] * worst["bytes"] * _SAFETY
    if backend == "nccl":
        import torch

        free = min(torch.cuda.mem_get_info(i)[0] for i in range(nproc))
        need, where = per_rank, "GPU memory free on the fullest GPU"
    else:
        free, need = psutil.virtual_memory().available, nproc * (per_rank + _PROCESS_BYTES)
        where = f"host memory available for {nproc} ranks"
    if need > free:
        raise ValueError(
            f"sizes: {worst['op']} of {worst['bytes']:,} B needs about {need / 2**30:.1f} GiB "
            f"({_BUFFERS[worst['op']]} buffer(s) of S per rank, x{_SAFETY} for the backend's copies) "
            f"but only {free / 2**30:.1f} GiB of {where} is left; use smaller sizes or fewer ranks")


@dataclass(repr=False)
class _SharedRun(Run):
    """A Run that DataFrame.attrs share: pandas deep-copies attrs at every operation."""

    def __deepcopy__(self, memo):
        return self


def collectives(ops=DEFAULT_OPS, sizes=None, nproc=4, backend: str = "auto", warmup: int = 3,
                iters: int = 10, run_dir: str | os.PathLike | None = None, dtype: str = "float32",
                *, progress: bool = True, timeout: float | None = None) -> pd.DataFrame:
    """Time collectives as one real multi-process job; one row per (op, world, size).

    Definitions of nccl-tests (github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md):
    S (``bytes``) is the buffer of all_reduce, broadcast and reduce, the gathered output of
    all_gather, the input of reduce_scatter, and each rank's whole send buffer of all_to_all;
    ``algbw`` = S / time; ``busbw`` = algbw x 2(n-1)/n (all_reduce), (n-1)/n (reduce_scatter,
    all_gather, all_to_all), 1 (broadcast, reduce): the bytes each rank's link carries per
    second, to compare with a link's speed.

    Each iteration is a barrier, then the op timed on each rank (``perf_counter``; CUDA
    events on GPUs); the slowest rank's time counts. ``time`` is the median over ``iters``
    iterations, ``time_min``/``time_max`` the extremes. Every timed call is a ``comm`` span
    of the job's trace: ``df.attrs["run"]`` is the :class:`~gpuviz.run.load.Run`.

    Args:
        ops: names from :data:`OPS` (or one comma-separated string).
        sizes: S in bytes (ints or "64K"-style strings); default :data:`DEFAULT_SIZES`.
            A size that does not split into whole elements (all_gather, reduce_scatter,
            all_to_all: one part per rank) is padded up, with a warning and the
            ``padded``/``note`` columns.
        nproc: ranks, or a list such as ``[2, 4]``: one job of max(nproc) ranks measures
            each world size w on the subgroup of ranks 0..w-1 while the others wait.
        backend: "auto" (NCCL with GPUs, else gloo), "gloo" or "nccl".
        dtype: element type, one of :data:`DTYPES` (float8 only where the backend has it).

    Raises:
        ValueError: bad arguments, sizes beyond free memory, or an op or dtype the backend
            lacks (the message names both); raised before launching where it can be.

    >>> df = collectives(["all_reduce"], sizes=["4K", "1M"], nproc=[2, 4])  # doctest: +SKIP
    >>> df[["op", "world", "bytes", "busbw"]]                                # doctest: +SKIP
    """
    from gpuviz.run.arguments import check_backend, check_nproc
    from gpuviz.run.launch import launch
    from gpuviz.workloads.collectives import RESULT_FILE, UNSUPPORTED_FILE

    ops, sizes, worlds = _check(ops, sizes, nproc, warmup, iters, dtype)
    backend = check_backend(backend)
    check_nproc(max(worlds), backend)
    if backend == "gloo" and dtype.startswith("float8"):
        raise ValueError(f"dtype={dtype!r}: backend 'gloo' has no float8 type, so it cannot run "
                         f"{ops[0]} (or any collective) on it; use float16/bfloat16, or NCCL")
    plan = _plan(ops, sizes, worlds, dtype, backend)
    padded = [b for b in plan if b["padded"]]
    if padded:
        warnings.warn("sizes padded to whole elements split evenly over the ranks: "
                      + "; ".join(f"{b['op']} on {b['world']} ranks {b['requested']} B -> "
                                  f"{b['bytes']} B" for b in padded)
                      + " (the 'padded' and 'note' columns say which rows)", UserWarning, stacklevel=2)
    _check_memory(plan, max(worlds), backend)
    run = launch("gpuviz.workloads.collectives:bench", nproc=max(worlds), backend=backend,
                 args={"plan": plan, "warmup": warmup, "iters": iters, "dtype": dtype},
                 run_dir=run_dir, timeout=timeout, progress=progress, stream=False)
    refused = run.path / UNSUPPORTED_FILE
    if refused.exists():
        why = json.loads(refused.read_text(encoding="utf-8"))
        raise ValueError(f"ops: backend {backend!r} cannot run " + "; ".join(
            f"{op} on {dtype} ({msg})" for op, msg in why.items()) + "; leave those ops out")
    with open(run.path / RESULT_FILE, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    df = table(rows, backend=backend, dtype=dtype)
    df.attrs["run"] = _SharedRun(**{f.name: getattr(run, f.name) for f in fields(Run)})
    return df


def table(rows: list[dict], backend: str = "", dtype: str = "float32") -> pd.DataFrame:
    """The result table from per-block rows (``op``, ``world``, ``bytes``, ``times`` in s).

    >>> table([{"op": "all_reduce", "world": 4, "bytes": 1000, "times": [1e-3, 2e-3, 4e-3]}])[
    ...     ["time", "algbw", "busbw"]].to_dict("records")
    [{'time': 0.002, 'algbw': 500000.0, 'busbw': 750000.0}]
    """
    out = []
    for r in rows:
        t = np.asarray(r["times"], dtype=float)
        out.append({"op": r["op"], "bytes": int(r["bytes"]), "world": int(r["world"]),
                    "time": float(np.median(t)), "time_min": float(t.min()),
                    "time_max": float(t.max()), "iters": len(t),
                    "requested": int(r.get("requested", r["bytes"])),
                    "padded": bool(r.get("padded", False)), "note": r.get("note", "")})
    df = pd.DataFrame(out)
    df["algbw"] = df["bytes"] / df["time"]
    df["busbw"] = df["algbw"] * [bus_factor(o, w) for o, w in zip(df["op"], df["world"], strict=True)]
    df["count"] = df["bytes"] // (int(re.search(r"\d+", dtype).group()) // 8)  # bits in the name
    df["dtype"], df["backend"] = dtype, backend
    cols = ["op", "bytes", "world", "time", "time_min", "time_max", "algbw", "busbw", "iters",
            "count", "dtype", "backend", "requested", "padded", "note"]
    return df[cols]


def fit_alpha_beta(df: pd.DataFrame) -> pd.DataFrame:
    """Latency ``alpha`` (s) and inverse bandwidth ``beta`` (s/B) per (op, world): t = α + β·S.

    Least squares in relative error, min Σ((α + β·S_i - t_i) / t_i)², since sizes span
    orders of magnitude and absolute least squares would fit only the largest messages;
    α, β >= 0. ``err_median``/``err_max`` are the median and max of |fit - t| / t over the
    points, ``bandwidth`` = 1/β (algbw reached by large messages), ``busbw`` = bandwidth x
    the op's bus factor.

    >>> s = np.array([1e3, 1e4, 1e5, 1e6])
    >>> d = pd.DataFrame({"op": "all_reduce", "world": 4, "bytes": s, "time": 2e-5 + s / 1e9})
    >>> fit = fit_alpha_beta(d)
    >>> print(f"{fit.alpha[0] * 1e6:.3f} us, {fit.bandwidth[0] / 1e9:.3f} GB/s")
    20.000 us, 1.000 GB/s
    """
    missing = {"op", "world", "bytes", "time"} - set(df.columns)
    if missing:
        raise ValueError(f"df lacks column(s) {sorted(missing)}: give collectives()'s result")
    rows = []
    for (op, world), g in df.groupby(["op", "world"], sort=False):
        s, t = g["bytes"].to_numpy(float), g["time"].to_numpy(float)
        if len(np.unique(s)) < 2:
            raise ValueError(f"df: {op} on {world} ranks has one size; a fit needs at least two")
        a = np.column_stack([1 / t, s / t])
        alpha, beta = np.linalg.lstsq(a, np.ones_like(t), rcond=None)[0]
        if alpha < 0:
            alpha, beta = 0.0, float(np.sum(s / t) / np.sum((s / t) ** 2))
        elif beta < 0:
            alpha, beta = float(np.sum(1 / t) / np.sum(1 / t**2)), 0.0
        err = np.abs(alpha + beta * s - t) / t
        bw = 1 / beta if beta > 0 else math.inf
        rows.append({"op": op, "world": int(world), "alpha": float(alpha), "beta": float(beta),
                     "bandwidth": bw, "busbw": bw * bus_factor(op, int(world)),
                     "err_median": float(np.median(err)), "err_max": float(err.max()),
                     "points": len(s)})
    return pd.DataFrame(rows)


def link_alpha_beta(fit: pd.DataFrame, op: str = "all_reduce", world: int | None = None):
    """Per-step α and link β of the ring formulas, from the fit of ``op`` on ``world`` ranks.

    α_step = α / ring_steps, β_link = β / bus_factor: what :func:`ring_seconds` needs to
    predict the other ops and world sizes from one measured op.

    >>> f = pd.DataFrame({"op": ["all_reduce"], "world": [4], "alpha": [6e-5], "beta": [1.5e-9]})
    >>> link_alpha_beta(f)
    (1e-05, 1e-09)
    """
    g = fit[fit["op"] == op]
    if g.empty:
        raise ValueError(f"op={op!r}: the fit has no such op; it has {sorted(fit['op'].unique())}")
    row = g[g["world"] == (world or g["world"].max())]
    if row.empty:
        raise ValueError(f"world={world!r}: {op} was fitted for world sizes {sorted(g['world'])}")
    row = row.iloc[0]
    w = int(row["world"])
    return float(row["alpha"]) / ring_steps(op, w), float(row["beta"]) / bus_factor(op, w)


def format_table(df: pd.DataFrame) -> str:
    """The table as nccl-tests prints it (GB/s = 1e9 bytes/s), padding notes below."""
    lines = [f"#{'size(B)':>11} {'count':>10} {'type':>9} {'op':>15} {'world':>5} "
             f"{'time(us)':>10} {'algbw(GB/s)':>12} {'busbw(GB/s)':>12}"]
    for r in df.itertuples():
        lines.append(f"{r.bytes:>12} {r.count:>10} {r.dtype:>9} {r.op:>15} {r.world:>5} "
                     f"{r.time * 1e6:>10.1f} {r.algbw / 1e9:>12.3f} {r.busbw / 1e9:>12.3f}")
    lines += [f"# {n}" for n in dict.fromkeys(df["note"]) if n]
    lines.append(f"# Avg bus bandwidth    : {df['busbw'].mean() / 1e9:.3f} GB/s")
    return "\n".join(lines)
