"""What each way of seeing DDP's gradient buckets costs a step, before any tracing.

``trace_overhead.py`` counts a comm hook in every traced mode: gpuviz's
``trace.ddp_comm_hook`` is how a bucket's all-reduce gets its span. Any comm hook changes
DDP's path: without one, DDP's reducer scales each gradient while copying it into the
bucket and all-reduces the bucket itself; with one it copies, and the hook scales and
all-reduces. A Python hook also runs Python for every bucket, and a Python callback on
the all-reduce's future when it completes. This script measures, in one real 2-rank job
(``gpuviz.launch``, gloo, CPU, no tracer anywhere), the step's CPU time on each route:

    no hook        DDP's own path: the baseline (training without gpuviz)
    no hook-2      DDP's own path again, on another copy: the noise floor (an A/A test)
    C++ hook       torch's built-in all-reduce hook (``BuiltinCommHookType.ALLREDUCE``)
    Python hook    ``trace.ddp_comm_hook`` with no tracer running (what every traced mode
                   pays before recording anything)
    group wrapper  no hook: DDP is given a Python ``ProcessGroup`` that passes each call on
                   to the gloo group, so the reducer keeps its own path and only the
                   all-reduce call goes through Python
    wrapper + end  the wrapper, plus a Python callback on each all-reduce's future that
                   takes its completion time: the least a bucket span needs
    native         no hook: DDP is given a group whose backend is compiled C++
                   (``gpuviz/run/native_buckets.cpp``, built with torch's C++ extension
                   tools on first use, then cached) and passes each call on to the job's
                   own gloo backend (the same connections: a second gloo group under it,
                   tried first, cost more than the comm hooks do)
    native + end   the same, keeping every all-reduce's launch and completion times in
                   C++ (in a continuation of its future, which is the future DDP waits
                   on); the step ends by taking them into Python as span tuples, as the tracer
                   does (:class:`gpuviz.run.native_buckets.BucketRecorder`). No
                   Python runs per bucket on either native route. Both need a C++
                   compiler: they are left out, saying why, where the build fails

The wrapper is defined here, as a prototype of another way to trace buckets; gpuviz
itself uses the compiled backend (the default for CPU jobs on gloo), or the comm hook
(``GPUVIZ_NATIVE_BUCKETS=0``, NCCL jobs, or where the backend cannot be built). Each route is its own DDP copy of the same model (same weights, same data; a
hook can be set once per copy). Two copies on the same route can differ in CPU time per
step by as much as the routes do, for as long as they live (no hook-2 on a long-lived
copy of its own showed it), so every round makes all copies anew, in a new random order,
and warms each up untimed: that difference becomes noise within rounds, which no hook-2
measures. Rounds run every route for ``--steps`` steps in a new random order; ratios are
CPU time per step (``process_time``, every thread, averaged over ranks), paired by
round, as in ``trace_overhead.py``.

Run::

    .venv/bin/python benchmarks/ddp_bucket_routes.py --rounds 150   # a few minutes on 2 cores

It always exits 0: it is a measurement.
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
RESULT_FILE = "ddp_bucket_routes.json"
ROUTES = ("no hook", "no hook-2", "C++ hook", "Python hook", "group wrapper", "wrapper + end",
          "native", "native + end")
#: The routes through the compiled backend (left out where it does not build).
NATIVE_ROUTES = ("native", "native + end")


def native_group(record: bool):
    """A new group of every rank whose CPU backend is gpuviz's compiled one
    (:mod:`gpuviz.run.native_buckets`), keeping all-reduce times with ``record``."""
    import torch
    import torch.distributed as dist

    from gpuviz.run import native_buckets

    ext = native_buckets.load()
    name = "gpuviz_timing" if record else "gpuviz_forward"
    gloo = dist.group.WORLD._get_backend(torch.device("cpu"))   # the job's own connections
    dist.Backend.register_backend(
        name, lambda store, rank, size, timeout: ext.TimingBackend(gloo, record), devices=["cpu"])
    return dist.new_group(backend=name)


def forwarding_group(group, on_end=None):
    """A Python ``ProcessGroup`` that passes DDP's calls on to ``group``; with ``on_end``,
    each all-reduce's future calls ``on_end(launch_ns)`` when it completes."""
    import torch.distributed as dist

    class Forwarding(dist.ProcessGroup):
        def __init__(self):
            super().__init__(group.rank(), group.size())

        def getBackendName(self):  # noqa: N802 - torch's name
            return "forwarding"    # not "gloo": DDP's logger would look for a C++ backend

        def allreduce(self, tensors, opts):
            t0 = time.perf_counter_ns()   # the launch, as a bucket span would start
            work = group.allreduce(tensors, opts)
            if on_end is not None:
                work.get_future().then(lambda _f: on_end(t0))
            return work

        def broadcast(self, tensors, opts):
            return group.broadcast(tensors, opts)

        def allgather(self, outputs, inputs, opts):
            return group.allgather(outputs, inputs, opts)

    return Forwarding()


def worker(steps: int = 2, rounds: int = 60, warmup: int = 3, batch: int = 512, dim: int = 64,
           hidden: int = 512, layers: int = 4, n_batches: int = 16, seed: int = 0,
           native: bool = False) -> None:
    """Every route for ``rounds`` rounds of ``steps`` steps (the native routes only with
    ``native``: the extension was built); rank 0 writes the CPU times."""
    import torch
    import torch.distributed as dist
    from torch import nn

    from gpuviz.run import trace
    from gpuviz.workloads.mlp import make_mlp, synthetic_regression

    tracer = trace.get_tracer()
    trace.set_tracer(None)   # no route records anything
    world, rank = dist.get_world_size(), dist.get_rank()
    local = batch // world
    x_all, y_all = synthetic_regression(batch * n_batches, dim, seed)
    ends: list[int] = []
    routes = [r for r in ROUTES if native or r not in NATIVE_ROUTES]
    groups = {"native": native_group(False), "native + end": native_group(True)} if native else {}
    recorder = groups["native + end"]._get_backend(torch.device("cpu")) if groups else None
    native_ends = [0]

    def copy(route: str):
        group = None
        if route in groups:
            group = groups[route]
        elif route == "group wrapper":
            group = forwarding_group(dist.group.WORLD)
        elif route == "wrapper + end":
            group = forwarding_group(dist.group.WORLD, lambda t0: ends.append(time.perf_counter_ns() - t0))
        m = nn.parallel.DistributedDataParallel(make_mlp(dim, hidden, layers, seed), process_group=group)
        if route == "C++ hook":
            m._register_builtin_comm_hook(dist.BuiltinCommHookType.ALLREDUCE)
        elif route == "Python hook":
            m.register_comm_hook(state=None, hook=trace.ddp_comm_hook)
        return m, torch.optim.SGD(m.parameters(), lr=0.01)

    models: dict = {}
    counter = [0]

    def block(route: str, n: int) -> list[float]:
        model, opt = models[route]
        cpu = []
        for _ in range(n):
            i = counter[0] % n_batches
            counter[0] += 1
            lo = i * batch + rank * local
            c0 = time.process_time()
            loss = nn.functional.mse_loss(model(x_all[lo:lo + local]), y_all[lo:lo + local])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            if route == "native + end":   # the step's bucket times, into Python
                native_ends[0] += len(recorder.take_spans(0, 0, 1, -1))   # as the tracer does
            cpu.append(time.process_time() - c0)
        c = torch.tensor(cpu, dtype=torch.float64)
        dist.all_reduce(c)   # outside the timing: the ranks' mean
        return (c / world).tolist()

    def new_copies(order: list[str]) -> None:
        """Every route's copy made anew in ``order`` (the same on every rank: DDP's
        constructor broadcasts), each warmed up for ``warmup`` steps, untimed."""
        models.clear()
        for r in order:
            models[r] = copy(r)
            block(r, warmup)

    rng = random.Random(seed)   # the same order on every rank
    out = {r: [] for r in routes}
    for _ in range(rounds):
        new_copies(rng.sample(list(routes), len(routes)))
        order = list(routes)
        rng.shuffle(order)
        for r in order:
            out[r] += block(r, steps)
    if rank == 0:
        n_params = sum(p.numel() for p in models["no hook"][0].parameters())
        (tracer.run_dir / RESULT_FILE).write_text(json.dumps(
            {"world": world, "params": n_params, "cpu": out, "ends": len(ends),
             "native_ends": native_ends[0],
             "config": {"steps": steps, "rounds": rounds, "batch": batch, "hidden": hidden}}),
            encoding="utf-8")
    dist.barrier()
    trace.set_tracer(tracer)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2, help="ranks (default 2)")
    p.add_argument("--rounds", type=int, default=60, help="rounds of all routes (default 60)")
    p.add_argument("--steps", type=int, default=2, help="steps per route per round (default 2)")
    p.add_argument("--batch", type=int, default=512, help="global batch (default 512)")
    p.add_argument("--hidden", type=int, default=512, help="hidden width (default 512)")
    a = p.parse_args(argv)

    import gpuviz

    sys.path.insert(0, str(REPO))   # the workers import this file as benchmarks.ddp_bucket_routes
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    from trace_overhead import _fmt, paired_ratio  # this script's folder is on sys.path

    run_dir = Path(tempfile.mkdtemp(prefix="gpuviz-ddp-routes-"))
    from gpuviz.run import native_buckets

    t0 = time.perf_counter()
    native = native_buckets.load() is not None   # built once into its cache, or why not
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        gpuviz.launch("benchmarks.ddp_bucket_routes:worker", nproc=a.nproc, backend="gloo",
                      args={"steps": a.steps, "rounds": a.rounds, "batch": a.batch,
                            "hidden": a.hidden, "native": native},
                      run_dir=run_dir, progress=False, stream=False, energy="off")
        res = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    cpu, c = res["cpu"], res["config"]
    base = cpu["no hook"]
    print(f"workload: the step of gpuviz.workloads.mlp:train, DDP, {res['params'] / 1e6:.2f} M params "
          f"({res['params'] * 4 / 2**20:.1f} MiB of gradients a step), global batch {c['batch']}; "
          f"{res['world']} ranks, gloo, no tracer; {c['rounds']} rounds x {c['steps']} steps per "
          f"route in a new random order (the job took {time.perf_counter() - t0:.0f} s)")
    print("CPU time per step (mean over ranks); ratio: median over rounds against no hook in the "
          "same round [95% bootstrap interval]")
    print()
    print(f"{'route':<14} {'CPU/step':>9} {'vs no hook':>22} {'extra per step':>15}")
    for r in (r for r in ROUTES if r in cpu):
        extra = (statistics.median(cpu[r]) - statistics.median(base)) * 1e6
        print(f"{r:<14} {statistics.median(cpu[r]) * 1e3:>6.2f} ms "
              f"{_fmt(paired_ratio(cpu[r], base, c['steps'])):>22} {extra:>+12.0f} us")
    print()
    print(f"the wrapper's end callback ran {res['ends']} times on rank 0")
    print(f"wrapper + end against Python hook (a bucket's end time both ways): "
          f"{_fmt(paired_ratio(cpu['wrapper + end'], cpu['Python hook'], c['steps']))}")
    if "native + end" in cpu:
        print(f"native routes: built or loaded in {t_build:.0f} s; {res['native_ends']} all-reduce times "
              f"taken on rank 0; native + end against native (what keeping the times adds): "
              f"{_fmt(paired_ratio(cpu['native + end'], cpu['native'], c['steps']))}, "
              f"against Python hook: "
              f"{_fmt(paired_ratio(cpu['native + end'], cpu['Python hook'], c['steps']))}")
    else:
        print(f"native routes: left out: {native_buckets.why_not()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
