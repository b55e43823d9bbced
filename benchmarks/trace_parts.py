"""Where the tracer's cost per step goes, part by part: one process, one model.

``trace_overhead.py`` measures each traced mode against untraced training in a real
2-rank job, whose A/A interval (printed there) is wide: with many rounds enough to judge
the 1% goal, not to tell apart parts of a percent. This script resolves the parts by
removing what varies between rounds there: one process (a gloo group of one rank on an
in-memory store: nothing listens), one DDP model whose comm hook is gpuviz's in every
mode (so the hook's own cost, which ``trace_overhead.py`` measures, is in the baseline),
the step of ``gpuviz.workloads.mlp:train`` at one rank's share of its batch, and blocks
of ``--steps`` steps per mode in a new random order each round:

    untraced       no tracer: spans are no-ops, the hook records nothing
    untraced-2     again: the noise floor (an A/A test)
    spans          the step's 4 annotated spans recorded; no bucket spans, no trace.step()
    buckets        only the hook's bucket spans recorded
    spans+buckets  both, no trace.step()
    annotated      both, and trace.step() encoding and writing the step's events (in
                   compiled code where it builds: :mod:`gpuviz.run.lines`)
    annotated py   the same with the Python route of the tracer's writer (orjson); left out,
                   saying why, where the compiled writer cannot be built
    energy@steps   annotated, with the energy sampler reading its meter only at each step's
                   end (its thread never wakes within a block)
    energy         annotated, with the energy sampler's Python thread (every 10 ms, and a
                   reading per step): energy/energy@steps is what the thread's wake-ups cost
    energy C       the same with the sampler's compiled thread (what a launch uses for the
                   estimate meter where it can be compiled: :mod:`gpuviz.energy.native`);
                   left out, saying why, where it cannot
    auto           no annotations: gpuviz.run.auto's hooks record forward, backward,
                   the optimizer step and the buckets, and end the step

The modes without trace.step() drop their events after each block, outside the timing.
Ratios are CPU time per step (``process_time``: every thread of the process), paired by
round against untraced, as in ``trace_overhead.py``.

Run::

    .venv/bin/python benchmarks/trace_parts.py --rounds 200   # about 2 minutes on 2 cores

It always exits 0: it is a measurement.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

from trace_overhead import _fmt, paired_ratio  # this script's folder is on sys.path

MODES = ("untraced", "untraced-2", "spans", "buckets", "spans+buckets", "annotated",
         "annotated py", "energy@steps", "energy", "energy C", "auto")
#: The modes that end each step with trace.step().
WRITING = ("annotated", "annotated py", "energy@steps", "energy", "energy C")
#: The modes whose step runs with no tracer (in "buckets" the hook sets it for the bucket).
NO_TRACER = ("untraced", "untraced-2", "buckets")


def measure(rounds: int = 200, steps: int = 4, warmup: int = 5, batch: int = 256, dim: int = 64,
            hidden: int = 512, layers: int = 4, seed: int = 0) -> dict:
    """CPU seconds per step of every mode, ``rounds`` values each (one per block)."""
    os.environ["GPUVIZ_ENERGY"] = "off"   # the energy modes start their own sampler
    import torch
    import torch.distributed as dist
    from torch import nn

    from gpuviz.energy import native
    from gpuviz.energy.meters import make_meter
    from gpuviz.energy.sampler import CompiledSampler, Sampler
    from gpuviz.run import auto, lines, trace
    from gpuviz.run.comm import ddp_comm_hook
    from gpuviz.workloads.mlp import make_mlp, synthetic_regression

    torch.set_num_threads(1)   # as each rank of a gpuviz job on this machine
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    run_dir = tempfile.mkdtemp(prefix="gpuviz-trace-parts-")
    tracer = trace.init(run_dir)
    n_batches = 16
    x_all, y_all = synthetic_regression(batch * n_batches, dim, seed)
    model = nn.parallel.DistributedDataParallel(make_mlp(dim, hidden, layers, seed))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mode_now = ["untraced"]

    def hook(state, bucket):
        # the bucket is recorded in every traced mode but "spans"; in "buckets" only here
        if mode_now[0] == "spans":
            trace.set_tracer(None)
        elif mode_now[0] == "buckets":
            trace.set_tracer(tracer)
        try:
            return ddp_comm_hook(state, bucket)
        finally:
            trace.set_tracer(None if mode_now[0] in NO_TRACER else tracer)

    model.register_comm_hook(None, hook)
    counter = [0]

    def step(annotated: bool, ends_step: bool) -> None:
        i = counter[0] % n_batches
        counter[0] += 1
        if not annotated:   # auto: the hooks record it, and the optimizer's hook ends the step
            x, y = x_all[i * batch:(i + 1) * batch], y_all[i * batch:(i + 1) * batch]
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            return
        with trace.span("load batch", cat="data"):
            x, y = x_all[i * batch:(i + 1) * batch], y_all[i * batch:(i + 1) * batch]
        with trace.span("forward"):
            loss = nn.functional.mse_loss(model(x), y)
        with trace.span("backward"):
            loss.backward()
        with trace.span("optimizer step", cat="optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)
        value = loss.item()
        if ends_step:
            trace.step(loss=value)

    def block(mode: str, n: int) -> float:
        mode_now[0] = mode
        trace.set_tracer(None if mode in NO_TRACER else tracer)
        uninstall = auto.install() if mode == "auto" else None
        write = tracer._write
        if mode == "annotated py":
            tracer._write = lines.python_writer(tracer.rank)
        if mode.startswith("energy"):
            kind = CompiledSampler if mode == "energy C" else Sampler
            period = {"energy@steps": {"period_s": 1e6}}.get(mode, {})
            tracer.hooks = [kind(tracer, make_meter("auto", warn=False, gpu_index=None), **period)]
        try:
            c0 = time.process_time()
            for _ in range(n):
                step(mode != "auto", mode in WRITING)
            cpu = (time.process_time() - c0) / n
        finally:
            for h in tracer.hooks:
                h.close()
            tracer.hooks = []
            tracer._write = write
            if uninstall is not None:
                uninstall()
            trace.set_tracer(tracer)
            if mode not in (*WRITING, "auto"):
                tracer._events.clear()   # recorded, never written: outside the timing
        return cpu

    modes = [m for m in MODES if (m != "energy C" or native.load() is not None)
             and (m != "annotated py" or lines.load() is not None)]
    for m, helper in (("energy C", native), ("annotated py", lines)):
        if m not in modes:
            print(f"{m} left out: {helper.why_not()}")
    try:
        for mode in modes:   # warm-up
            block(mode, warmup)
        out = {m: [] for m in modes}
        rng = random.Random(seed)
        for _ in range(rounds):
            order = list(modes)
            rng.shuffle(order)
            for mode in order:
                out[mode].append(block(mode, steps))
        return {"cpu": out, "params": sum(p.numel() for p in model.parameters()),
                "span_us": span_in_step(step, model, opt, x_all, y_all, batch, n_batches)}
    finally:
        trace.set_tracer(None)
        tracer.close()
        dist.destroy_process_group()
        shutil.rmtree(run_dir, ignore_errors=True)


def span_in_step(step, model, opt, x_all, y_all, batch: int, n_batches: int,
                 n: int = 300) -> dict:
    """Wall time of one empty traced span inside training steps (median, us): right after
    the forward, the backward and the optimizer step, and right after another span."""
    import torch.nn.functional as F

    from gpuviz.run import trace

    clock = time.perf_counter_ns
    out: dict[str, list[float]] = {"after forward": [], "after backward": [],
                                   "after optimizer": [], "after a span": []}

    def empty(where: str) -> None:
        t0 = clock()
        with trace.span("probe"):
            pass
        out[where].append((clock() - t0) / 1e3)

    tracer = trace.get_tracer()
    for i in range(n):
        x, y = x_all[(i % n_batches) * batch:], y_all[(i % n_batches) * batch:]
        loss = F.mse_loss(model(x[:batch]), y[:batch])
        empty("after forward")
        loss.backward()
        empty("after backward")
        opt.step()
        opt.zero_grad(set_to_none=True)
        empty("after optimizer")
        empty("after a span")
        tracer._events.clear()
    return {k: statistics.median(v[n // 10:]) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=200, help="rounds of all modes (default 200)")
    p.add_argument("--steps", type=int, default=4, help="steps per mode per round (default 4)")
    p.add_argument("--batch", type=int, default=256,
                   help="batch (default 256: one rank's share in trace_overhead.py's job)")
    p.add_argument("--hidden", type=int, default=512, help="hidden width (default 512)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    res = measure(rounds=a.rounds, steps=a.steps, batch=a.batch, hidden=a.hidden)
    cpu = res["cpu"]
    base = statistics.median(cpu["untraced"])
    print(f"workload: the step of gpuviz.workloads.mlp:train, DDP with gpuviz's comm hook, "
          f"one process ({res['params'] / 1e6:.2f} M params, batch {a.batch}); {a.rounds} rounds "
          f"x {a.steps} steps per mode in a new random order ({time.perf_counter() - t0:.0f} s)")
    print("CPU time per step; ratio: median over rounds of mode/untraced in the same round "
          "[95% bootstrap interval]")
    print()
    print(f"{'mode':<14} {'CPU/step':>10} {'vs untraced':>22} {'extra per step':>15}")
    for m in cpu:
        med = statistics.median(cpu[m])
        r = paired_ratio(cpu[m], cpu["untraced"], 1)
        print(f"{m:<14} {med * 1e3:>7.2f} ms {_fmt(r):>22} {(r[0] - 1) * base * 1e6:>+11.0f} us")
    for m, label in (("energy", "Python"), ("energy C", "compiled")):
        if m in cpu:
            thread = paired_ratio(cpu[m], cpu["energy@steps"], 1)
            print(f"the energy sampler's {label} thread ({m}/energy@steps): {_fmt(thread)}, "
                  f"{(thread[0] - 1) * statistics.median(cpu['energy@steps']) * 1e6:+.0f} us per step")
    if "annotated py" in cpu:
        r = paired_ratio(cpu["annotated"], cpu["annotated py"], 1)
        print(f"the tracer's compiled writer against its Python route (annotated/annotated py): "
              f"{_fmt(r)}, {(r[0] - 1) * statistics.median(cpu['annotated py']) * 1e6:+.0f} us per step")
    if "energy C" in cpu:
        print(f"compiled against Python thread (energy C/energy): "
              f"{_fmt(paired_ratio(cpu['energy C'], cpu['energy'], 1))}")
    print()
    spans = res["span_us"]
    print("one empty traced span, wall time in the step (median): " + ", ".join(
        f"{k} {v:.1f} us" for k, v in spans.items()))
    after_work = statistics.median(v for k, v in spans.items() if k != "after a span")
    print(f"right after the step's own work a span costs {after_work / spans['after a span']:.1f}x "
          "what it costs right after another span (the likely cause: the kernels have pushed "
          "the interpreter's code and data out of the CPU caches)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
