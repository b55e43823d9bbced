"""Does ``gpuviz.sharing.bench`` measure what a plain timed ``torch.distributed`` loop measures?

Goal: per message size, gpuviz's busbw is within 5% of a plain loop's, read as the median
over sizes of |ratio - 1| (one run of this script).

One real multi-process job (``gpuviz.launch``: torchrun, gloo, CPU unless GPUs) runs, in
the same processes, three measurements of the same op and size, iteration by iteration:

    gpuviz   the bench's own code: ``gpuviz.workloads.collectives.make_op`` and ``measure``
             (barrier, timed op, traced as spans, max over ranks), one call at a time.
    plain    torch only: ``dist.barrier(); t = perf_counter(); op; t = perf_counter() - t``
             with its own buffers, then the max over ranks (an all-reduce, as ``measure``).
    plain-2  the plain loop again: plain-2/plain is the noise floor (an A/A test) of a
             machine shared with other jobs.

Each round runs every (op, size) in a new random order (the same on every rank); for
each, ``iters`` times one iteration of every mode, in a random order, so the machine's
drift (other jobs come and go) touches all alike; blocks of whole loops, tried first,
drifted apart by 20% and more. All modes are summarised alike (median over all
iterations), busbw for gpuviz by ``gpuviz.sharing.bench.table`` and for plain by the formulas
written out below (nccl-tests, doc/PERFORMANCE.md).

Run::

    .venv/bin/python benchmarks/bench_agreement.py                 # all_reduce, 4 ranks, under a minute
    .venv/bin/python benchmarks/bench_agreement.py --ops all --nproc 2 --rounds 10

The verdict says "not resolved" when the disagreement is no larger than twice the A/A
noise floor: on a machine shared with other jobs, 60 samples per size cannot tell 5%.
It always exits 0: it is a measurement; read the verdict line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT_FILE = "bench_agreement.json"
GOAL = 0.05
MODES = ("gpuviz", "plain", "plain-2")
FACTOR = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
          "reduce_scatter": lambda n: (n - 1) / n, "all_to_all": lambda n: (n - 1) / n,
          "broadcast": lambda n: 1.0}


def plain_call(op: str, nbytes: int):
    """One call of ``op`` on S = ``nbytes`` with its own buffers: no gpuviz code at all."""
    import torch
    import torch.distributed as dist

    world, n = dist.get_world_size(), nbytes // 4
    x, out = torch.ones(n), torch.empty(n)
    part = x[: n // world].clone()
    return {"all_reduce": lambda: dist.all_reduce(x),
            "broadcast": lambda: dist.broadcast(x, src=0),
            "all_gather": lambda: dist.all_gather_into_tensor(out, part),
            "reduce_scatter": lambda: dist.reduce_scatter_tensor(out[: n // world], x),
            "all_to_all": lambda: dist.all_to_all_single(out, x)}[op]


def plain_time(call) -> float:
    """One iteration of a plain timed loop; the slowest rank's seconds."""
    import time

    import torch
    import torch.distributed as dist

    dist.barrier()
    t = time.perf_counter()
    call()
    t = torch.tensor([time.perf_counter() - t], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)  # a call lasts as long as its slowest rank
    return float(t)


def worker(ops: list[str], sizes: list[int], rounds: int = 6, iters: int = 10, warmup: int = 3,
           seed: int = 0) -> None:
    """Interleave gpuviz's and the plain loop's iterations; rank 0 writes every time."""
    import torch
    import torch.distributed as dist

    from gpuviz.run import trace
    from gpuviz.workloads.collectives import make_op, measure

    rng = random.Random(seed)  # the same seed on every rank: the same order everywhere
    res = {m: {f"{op} {s}": [] for op in ops for s in sizes} for m in MODES}
    for _ in range(rounds):
        blocks = [(op, s) for op in ops for s in sizes]
        rng.shuffle(blocks)
        for op, s in blocks:
            fn, call = make_op(op, s, torch.float32), plain_call(op, s)
            for _ in range(warmup):
                fn(), call()
            for _ in range(iters):  # one iteration of each mode in turn, in a random order
                for mode in rng.sample(MODES, len(MODES)):
                    res[mode][f"{op} {s}"].append(
                        measure(fn, 1, 0, name=op, nbytes=s)[0] if mode == "gpuviz"
                        else plain_time(call))
        trace.step()
    if dist.get_rank() == 0:
        out = {"world": dist.get_world_size(), "backend": dist.get_backend(), "results": res}
        (trace.get_tracer().run_dir / RESULT_FILE).write_text(json.dumps(out), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", default="all_reduce", help="comma-separated, or 'all' (default all_reduce)")
    p.add_argument("--sizes", default=None, help="comma-separated bytes, e.g. 1K,1M (default 1K..16M x4)")
    p.add_argument("--nproc", type=int, default=4, help="ranks (default 4)")
    p.add_argument("--rounds", type=int, default=6, help="rounds of every block (default 6)")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per block (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per block (default 3)")
    p.add_argument("--run-dir", default=None, help="keep the job's run directory here")
    a = p.parse_args(argv)

    import gpuviz
    from gpuviz.sharing import bench

    ops = list(FACTOR) if a.ops == "all" else a.ops.split(",")
    sizes = [bench.parse_size(s) for s in a.sizes.split(",")] if a.sizes else list(bench.DEFAULT_SIZES)
    # Whole float32 elements, split evenly over the ranks for every op.
    sizes = [-(-s // (4 * a.nproc)) * 4 * a.nproc for s in sizes]
    sys.path.insert(0, str(REPO))  # the workers import this file as benchmarks.bench_agreement
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    run_dir = Path(a.run_dir) if a.run_dir else Path(tempfile.mkdtemp(prefix="gpuviz-bench-agreement-"))
    t0 = time.perf_counter()
    try:
        gpuviz.launch("benchmarks.bench_agreement:worker", nproc=a.nproc, progress=False, stream=False,
                      args={"ops": ops, "sizes": sizes, "rounds": a.rounds, "iters": a.iters,
                            "warmup": a.warmup}, run_dir=run_dir)
        res = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
    finally:
        if not a.run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    world, r = res["world"], res["results"]
    print(f"job: {world} ranks, {res['backend']}, {a.rounds} rounds x {a.iters} timed iterations "
          f"per (op, size) and mode, interleaved in random order; took {time.perf_counter() - t0:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'op':>15} {'size(B)':>10} {'gpuviz busbw':>13} {'plain busbw':>12} {'ratio':>7} "
          f"{'A/A: plain-2/plain':>19}")
    devs, aa, ratios = [], [], []
    for key in r["gpuviz"]:
        op, s = key.split()[0], int(key.split()[1])
        row = bench.table([{"op": op, "world": world, "bytes": s, "times": r["gpuviz"][key]}]).iloc[0]
        plain, plain2 = (s / statistics.median(r[m][key]) * FACTOR[op](world) for m in MODES[1:])
        ratio = row["busbw"] / plain
        devs.append(abs(ratio - 1))
        ratios.append(ratio)
        aa.append(abs(plain2 / plain - 1))
        print(f"{op:>15} {s:>10} {row['busbw'] / 1e9:>8.4f} GB/s {plain / 1e9:>7.4f} GB/s "
              f"{ratio:>7.3f} {plain2 / plain:>19.3f}")
    med, floor = statistics.median(devs), statistics.median(aa)
    bias = statistics.geometric_mean(ratios)
    print(f"noise floor (A/A): median |plain-2/plain - 1| = {floor:.1%}, max {max(aa):.1%}")
    print(f"systematic difference: geometric mean of the ratios over sizes = {bias:.3f}")
    if med <= GOAL:
        verdict = "within the goal"
    elif med <= 2 * floor:
        verdict = ("not resolved: the machine's own noise (A/A) is as large; more --rounds, "
                   "fewer --nproc or a quieter machine narrow it")
    else:
        verdict = "OUTSIDE the goal"
    print(f"busbw agreement: median |ratio-1| = {med:.1%} (goal within {GOAL:.0%}), max "
          f"{max(devs):.1%}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
