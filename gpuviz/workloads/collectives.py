"""The worker of :func:`gpuviz.sharing.bench.collectives`: time collectives on every rank.

Each timed call is one ``comm`` span (name = the op, ``bytes`` = S as nccl-tests defines
it, ``world``), after a barrier traced as ``idle``; each (world, op, size) block is one
step. Rank 0 appends one JSON line per block to ``bench.jsonl`` in the run directory.

    gpuviz bench collectives --ops all_reduce --nproc 2,4
    torchrun --standalone --nproc-per-node 4 -m gpuviz.run.worker gpuviz.workloads.collectives:bench \\
        --run-dir runs/bench --kwargs '{"plan": [{"op": "all_reduce", "world": 4, "bytes": 4096}]}'
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.distributed as dist

from gpuviz.run import trace

RESULT_FILE = "bench.jsonl"
UNSUPPORTED_FILE = "unsupported.json"


def make_op(op: str, nbytes: int, dtype: torch.dtype, group=None,
            device: torch.device | str = "cpu") -> Callable[[], object]:
    """A no-argument call that runs ``op`` once on buffers made here, S = ``nbytes``.

    S follows nccl-tests: the buffer for all_reduce, broadcast and reduce; the gathered
    output of all_gather; the input of reduce_scatter; each rank's whole send buffer of
    all_to_all. ``nbytes`` must divide evenly (:func:`gpuviz.sharing.bench.collectives` pads).

    >>> fn = make_op("all_reduce", 4096, torch.float32)  # doctest: +SKIP
    """
    w = dist.get_world_size(group)
    n = nbytes // torch.empty(0, dtype=dtype).element_size()
    ones = torch.ones(n, dtype=dtype, device=device)
    if op == "all_reduce":
        return lambda: dist.all_reduce(ones, group=group)
    if op == "broadcast":  # global rank 0 is in every group range(w)
        return lambda: dist.broadcast(ones, src=0, group=group)
    if op == "reduce":
        return lambda: dist.reduce(ones, dst=0, group=group)
    if op == "all_gather":
        part, out = ones[: n // w].clone(), torch.empty_like(ones)
        return lambda: dist.all_gather_into_tensor(out, part, group=group)
    if op == "reduce_scatter":
        out = torch.empty(n // w, dtype=dtype, device=device)
        return lambda: dist.reduce_scatter_tensor(out, ones, group=group)
    if op == "all_to_all":
        out = torch.empty_like(ones)
        return lambda: dist.all_to_all_single(out, ones, group=group)
    raise ValueError(f"op={op!r}: not a collective this worker knows")


def measure(fn: Callable[[], object], iters: int, warmup: int = 3, group=None, name: str = "op",
            nbytes: int | None = None, cuda: bool = False) -> list[float]:
    """Seconds of ``iters`` calls of ``fn``, each the slowest rank's, after ``warmup`` calls.

    Every call follows a barrier and is timed on each rank alone (``perf_counter``; CUDA
    events on a GPU); the max over ranks is taken afterwards, outside the timed region.
    The loop is a plain timed loop: clock readings only. The barriers (``idle``) and calls
    (``comm``) are traced from those readings at the end: on a busy CPU, work right after
    a call takes the CPU from the threads still finishing it on this and the other ranks
    (100 µs of it made calls 10-15% slower on 2 cores).
    """
    for _ in range(warmup):
        dist.barrier(group=group)
        fn()
    t = trace.get_tracer()
    clock = t.now if t is not None else (lambda: time.perf_counter() * 1e6)  # microseconds
    if cuda:
        evs = [[torch.cuda.Event(enable_timing=True) for _ in range(3)] for _ in range(iters)]
        for b, start, end in evs:
            b.record()
            dist.barrier(group=group)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
        times = [start.elapsed_time(end) / 1e3 for _, start, end in evs]
    else:
        marks = [(0.0, 0.0, 0.0)] * iters
        for i in range(iters):
            b0 = clock()
            dist.barrier(group=group)
            t0 = clock()
            fn()
            marks[i] = (b0, t0, clock())
        times = [(t1 - t0) / 1e6 for _, t0, t1 in marks]
    out = torch.tensor(times, dtype=torch.float64, device="cuda" if cuda else "cpu")
    dist.all_reduce(out, op=dist.ReduceOp.MAX, group=group)
    if t is not None:
        args = {"bytes": nbytes, "world": dist.get_world_size(group)}
        for i in range(iters):
            if cuda:
                b, start, end = evs[i]
                t.complete_cuda(b, start, _span(t, "wait for others", "idle", {}))
                t.complete_cuda(start, end, _span(t, name, "comm", args))
            else:
                b0, t0, t1 = marks[i]
                t.complete("wait for others", "idle", b0, t0 - b0)
                t.complete(name, "comm", t0, t1 - t0, **args)
    return out.tolist()


def _span(t: trace.Tracer, name: str, cat: str, args: dict) -> dict:
    """A span event whose times the tracer fills in from CUDA events."""
    return {"ph": "X", "name": name, "cat": cat, "ts": 0.0, "dur": 0.0, "pid": t.rank,
            "tid": trace.MAIN_LANE, "args": {"step": t.step_index, **args}}


def _unsupported(ops: list[str], dtype: torch.dtype, device) -> dict[str, str]:
    """Try each op once on a tiny buffer; the ones the backend refuses, with its message.

    A backend refuses an op or dtype on every rank alike, before any data moves, so the
    ranks agree without talking. ``reduce_scatter`` on gloo works, by gloo's own emulation.
    """
    bad = {}
    size = torch.empty(0, dtype=dtype).element_size() * dist.get_world_size()
    for op in ops:
        try:
            make_op(op, size, dtype, device=device)()
        except (RuntimeError, TypeError, ValueError) as e:
            bad[op] = str(e).splitlines()[0][:200]
        dist.barrier()
    return bad


def bench(plan: list[dict], warmup: int = 3, iters: int = 10, dtype: str = "float32") -> None:
    """Run every block of ``plan`` (dicts with ``op``, ``world``, ``bytes``) on this rank.

    A block of world ``w`` runs on the subgroup of ranks ``0..w-1`` while the others wait
    at a barrier, so one job measures every world size. Rank 0 writes the results.
    """
    rank, size = dist.get_rank(), dist.get_world_size()
    cuda = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    dt = getattr(torch, dtype)
    tracer = trace.get_tracer()
    out_dir = tracer.run_dir if tracer is not None else None
    if rank == 0 and out_dir is not None:  # a run directory used before holds no stale verdict
        (out_dir / UNSUPPORTED_FILE).unlink(missing_ok=True)
    bad = _unsupported(sorted({b["op"] for b in plan}), dt, device)
    if bad:
        if rank == 0 and out_dir is not None:
            (out_dir / UNSUPPORTED_FILE).write_text(json.dumps(bad), encoding="utf-8")
        return
    worlds = sorted({int(b["world"]) for b in plan}, reverse=True)
    if worlds and worlds[0] > size:
        raise ValueError(f"plan asks for {worlds[0]} ranks and the job has {size}")
    # Every rank must create every group, in the same order, member or not.
    groups = {w: None if w == size else dist.new_group(ranks=list(range(w))) for w in worlds}
    trace.set_total_steps(len(plan))
    results = open(out_dir / RESULT_FILE, "w", encoding="utf-8") if rank == 0 and out_dir else None  # noqa: SIM115
    try:
        for w in worlds:
            if rank < w:
                for block in (b for b in plan if int(b["world"]) == w):
                    fn = make_op(block["op"], int(block["bytes"]), dt, groups[w], device)
                    times = measure(fn, iters, warmup, groups[w], block["op"], int(block["bytes"]), cuda)
                    trace.step(op=block["op"], bytes=int(block["bytes"]), world=w)
                    if results is not None:
                        results.write(json.dumps({**block, "times": times}) + "\n")
                        results.flush()
                    del fn
            with trace.span(f"not in the {w}-rank group", cat="idle") if rank >= w else nullcontext():
                dist.barrier()
    finally:
        if results is not None:
            results.close()
