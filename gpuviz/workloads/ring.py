"""The ring all-reduce of :mod:`gpuviz.parallel.ring`, run and traced on every rank.

``main`` all-reduces one tensor a few times, so the timeline shows the 2(p-1) ring steps
beside torch's own all-reduce of the same tensor; ``check`` compares the ring with
``torch.distributed.all_reduce`` on many sizes, dtypes and process groups.

    gpuviz run gpuviz.workloads.ring:main --nproc 4
    torchrun --standalone --nproc-per-node 4 -m gpuviz.run.worker gpuviz.workloads.ring:main --run-dir runs/ring

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.ring:main", nproc=4, args={"numel": 100_000})  # doctest: +SKIP
>>> gpuviz.plot.timeline(run)                                                           # doctest: +SKIP
"""

from __future__ import annotations

import json

import torch
import torch.distributed as dist

from gpuviz.parallel.ring import naive_all_reduce, ring_all_reduce
from gpuviz.run import trace


def main(numel: int = 1_000_000, steps: int = 3, compare: bool = True, naive: bool = False) -> float:
    """Each step: ``ring_all_reduce`` of ``numel`` float32 values (after a traced wait for
    the others); with ``compare=True`` also ``dist.all_reduce`` of the same tensor, checked
    equal; with ``naive=True`` also :func:`~gpuviz.parallel.ring.naive_all_reduce`.
    Returns the largest difference from ``dist.all_reduce`` seen on this rank.
    """
    if isinstance(numel, bool) or not isinstance(numel, int) or numel < 1:
        raise ValueError(f"numel={numel!r}: give the number of elements, an integer >= 1")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: must be an integer >= 1")
    trace.set_total_steps(steps)
    g = torch.Generator().manual_seed(dist.get_rank())
    worst = 0.0
    for _ in range(steps):
        x = torch.randn(numel, generator=g)
        ring = x.clone()
        with trace.span("wait for others", cat="idle"):
            dist.barrier()
        ring_all_reduce(ring)
        if naive:
            with trace.span("wait for others", cat="idle"):
                dist.barrier()
            naive_all_reduce(x.clone())
        if compare:
            ref = trace.all_reduce(x.clone(), name="all_reduce (torch)")
            worst = max(worst, float((ring - ref).abs().max()))
        trace.step(max_abs_diff=worst)
    if dist.get_rank() == 0 and compare:
        print(f"ring all-reduce of {numel:,} floats on {dist.get_world_size()} ranks: "
              f"largest difference from dist.all_reduce {worst:.2e}")
    return worst


def check(sizes=(1, 7, 1001, 4099), dtypes=("float32", "float64"), then_main: int = 0) -> list[dict]:
    """Compare ``ring_all_reduce`` and ``naive_all_reduce`` with ``dist.all_reduce`` in the
    groups of ranks 0..w-1 for every w from 2 to the world size, and in the group of the odd
    ranks listed backwards (group ranks unlike global ranks). One traced step per call;
    each rank writes its results to ``ring_check_rank{R}.json`` in the run directory.
    ``then_main=n`` runs one step of :func:`main` on ``n`` elements afterwards.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    layouts = [list(range(w)) for w in range(2, world + 1)]
    odd = list(range(world - 1, 0, -2))
    if len(odd) >= 2:
        layouts.append(odd)
    groups = [_new_group(ranks) for ranks in layouts]     # every rank creates every group
    results = []
    for ranks, group in zip(layouts, groups, strict=True):
        for numel in sizes:
            for dtype in dtypes:
                if rank in ranks:
                    results.append(_compare(group, ranks, int(numel), getattr(torch, dtype)))
                trace.step()
    t = trace.get_tracer()
    if t is not None:
        with open(t.run_dir / f"ring_check_rank{rank}.json", "w", encoding="utf-8") as f:
            json.dump(results, f)
    if then_main:
        main(numel=then_main, steps=1)
    return results


def _compare(group, ranks, numel, dtype) -> dict:
    t = trace.get_tracer()
    g = torch.Generator().manual_seed(1000 * dist.get_rank() + numel)
    x = torch.randn(numel, generator=g, dtype=torch.float64).to(dtype)
    ref, ring, naive = x.clone(), x.clone(), x.clone()
    dist.all_reduce(ref, group=group)
    step = t.step_index if t is not None else None
    ring_all_reduce(ring, group=group)
    naive_all_reduce(naive, group=group)
    return {"ranks": ranks, "group_rank": dist.get_rank(group), "numel": numel,
            "dtype": str(dtype).removeprefix("torch."), "step": step,
            "ring_err": float((ring - ref).abs().max()), "naive_err": float((naive - ref).abs().max()),
            "scale": float(ref.abs().max())}


def _new_group(ranks):
    try:
        return dist.new_group(ranks=ranks, sort_ranks=False)   # keep the order given
    except TypeError:                                          # torch < 2.5 has no sort_ranks
        return dist.new_group(ranks=ranks)
