"""How much does gpuviz's tracer slow a training step? And torch.profiler, for comparison.

Goal: the tracer costs at most 1% of step time on the reference workload (the MLP of
``gpuviz.workloads.mlp:train`` with ``ddp=True``: spans, the DDP comm hook, a flush to
disk at every step), read in CPU time per step (wall time does not resolve 1% on a shared
machine) for each way a run is traced: annotated, default with energy, and auto.

One real multi-process job (``gpuviz.launch``: torchrun, gloo, CPU) runs, in the same
processes, interleaved blocks of training steps in these modes:

    untraced    no tracer (``trace.get_tracer()`` is None: spans are no-ops) and DDP's built-in
                all-reduce (no comm hook). The baseline: training without gpuviz.
    untraced-2  untraced again, on another copy of the model: its ratio to untraced is the
                noise floor (an A/A test).
    hook only   no tracer, but DDP calls ``trace.ddp_comm_hook`` (its no-tracer path, the
                same work as torch's own ``default_hooks.allreduce_hook``).
    C++ hook    no tracer; DDP runs torch's built-in C++ all-reduce hook (scale, then
                all-reduce). Any comm hook costs DDP a pass over the gradients: without
                one DDP scales them while copying them into the bucket, with one it copies,
                then the hook scales (gloo has no averaging all-reduce). This mode is that
                floor; hook only/C++ hook is what the hook being Python adds.
    traced      the tracer on: 4 spans per step on the main lane, one span per gradient
                bucket from ``trace.ddp_comm_hook``, ``trace.step()`` writing the step's
                events to ``rank{R}.jsonl``.
    native      traced, with DDP's buckets recorded in compiled code instead of the comm hook
                (the default, :mod:`gpuviz.run.native_buckets`: DDP keeps its own path, no
                Python runs per bucket); left out, saying why, where the extension cannot
                be built here (as is auto native).
    profiler    no tracer; the same steps under ``torch.profiler.profile(activities=[CPU])``
                with a ``record_function`` per phase, as a user would instrument them.
    energy      native (traced where native is left out), with the energy sampler running
                too: what ``gpuviz.launch`` does by default (a thread reading this machine's
                meter every 10 ms, compiled for the estimate meter where it can be, and a
                reading at every step's end). The job itself runs with ``energy="off"``, so
                the other modes have no sampler; energy/native is the sampler alone.
    auto        the tracer on, no annotations in the step: what ``gpuviz run`` records for a
                plain script (``gpuviz.run.auto``: a module-call wrapper, backward, optimizer and
                collective hooks), with DDP's buckets through the comm hook it registers
                where compiled code is not used, on a DDP copy of its own; the hooks are put
                in place and taken away around each block.
    auto native auto with DDP's buckets recorded in compiled code (as native, the default),
                on a copy of its own.

A comm hook can be registered only once per DDP instance, so there are several DDP copies
of the same model (same weights, same data): untraced and profiler share one, hook only and
traced another (so traced/hook only is the tracer alone, same copy), native and energy
another (energy joins hook only and traced where native is left out); untraced-2, C++ hook,
auto and auto native have one each. Two copies of the same model with the same path can
differ in CPU time per step by as much as the modes do, for as long as they live (why is
not established here), so every round makes its copies anew, in a new random order, and
warms each up
outside the timing: the difference becomes noise within rounds, not a bias of one mode,
and untraced-2, on a copy of its own, measures it with the rest of the noise.

Each round runs every mode for ``--steps`` steps, in a new random order (the same on every
rank). The benchmark times every step itself, never with the tracer: ``perf_counter``
around the whole step on every rank, then the slowest rank; CPU time (``process_time``,
all threads) as well, which the other jobs of a shared machine disturb much less.
Ratios are paired by round (median over rounds of mode/untraced in the same round, with
a bootstrap 95% interval), which cancels the machine's drift over seconds.

Run::

    .venv/bin/python benchmarks/trace_overhead.py            # under 2 minutes on 2 cores
    .venv/bin/python benchmarks/trace_overhead.py --rounds 150   # tighter intervals, about 3 minutes
    .venv/bin/python benchmarks/trace_overhead.py --hidden 256 --batch 256   # mlp.train's size

It always exits 0: it is a measurement; read the verdict line.
"""

from __future__ import annotations

import argparse
import contextlib
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
RESULT_FILE = "trace_overhead.json"
MODES = ("untraced", "untraced-2", "hook only", "C++ hook", "traced", "native", "profiler", "energy",
         "auto native",
         "auto")
GOAL = 1.01


# -- the worker (runs on every rank, started by gpuviz.launch) ---------------------------

def worker(steps: int = 2, rounds: int = 60, warmup: int = 3, batch: int = 512, dim: int = 64,
           hidden: int = 512, layers: int = 4, lr: float = 0.01, bucket_cap_mb: float = 25.0,
           n_batches: int = 16, seed: int = 0) -> None:
    """Run ``rounds`` rounds of ``steps`` steps per mode; rank 0 writes the timings as JSON."""
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.profiler import ProfilerActivity, profile, record_function

    from gpuviz.run import trace
    from gpuviz.workloads.mlp import make_mlp, synthetic_regression

    tracer = trace.get_tracer()
    if tracer is None:
        raise RuntimeError("run this under gpuviz.launch: the traced mode needs the worker's tracer")
    world, rank = dist.get_world_size(), dist.get_rank()
    local = batch // world
    x_all, y_all = synthetic_regression(batch * n_batches, dim, seed)

    def ddp_model(hooked: bool, builtin: bool = False, group=None):
        m = nn.parallel.DistributedDataParallel(make_mlp(dim, hidden, layers, seed),
                                                bucket_cap_mb=bucket_cap_mb, process_group=group)
        if hooked:
            m.register_comm_hook(state=None, hook=trace.ddp_comm_hook)
        if builtin:
            m._register_builtin_comm_hook(dist.BuiltinCommHookType.ALLREDUCE)
        return m, torch.optim.SGD(m.parameters(), lr=lr)

    # The DDP copies (see the module's docstring): which modes share one, and how each is made
    copies = {"plain": ("untraced", "profiler"), "hooked": ("hook only", "traced", "energy"),
              "plain-2": ("untraced-2",), "auto": ("auto",), "builtin": ("C++ hook",)}
    makers = {"plain": lambda: ddp_model(False), "hooked": lambda: ddp_model(True),
              "plain-2": lambda: ddp_model(False), "auto": lambda: ddp_model(False),
              "builtin": lambda: ddp_model(False, builtin=True)}
    from gpuviz.run import native_buckets
    recorder = None
    if native_buckets.load() is not None:   # every rank builds or loads it alike
        group = native_buckets.bucket_group(tracer)
        recorder = tracer.hooks.pop()   # the group's BucketRecorder: sampled in its modes only
        copies["hooked"] = ("hook only", "traced")
        copies["native"], makers["native"] = ("native", "energy"), lambda: ddp_model(False, group=group)
        copies["auto-native"] = ("auto native",)
        makers["auto-native"] = lambda: native_copy_for_auto(ddp_model(False, group=group))
    modes_here = [m for m in MODES if m not in ("native", "auto native") or recorder is not None]
    models: dict = {}

    def native_copy_for_auto(copy):
        copy[0]._gpuviz_hooked = True   # as auto marks a DDP it gave the compiled group
        return copy

    def new_copies(order: list[str]) -> None:
        """Every copy made anew in ``order`` (the same on every rank: DDP's constructor
        broadcasts), each warmed up for ``warmup`` steps outside the timing."""
        models.clear()
        for name in order:
            m = makers[name]()
            for mode in copies[name]:
                models[mode] = m
            if name in ("auto", "auto-native"):   # auto's first traced forward: not timed
                block(copies[name][0], warmup)
                if name == "auto-native":
                    recorder.backend.take()
                continue
            trace.set_tracer(None)   # the warm-up records nothing
            for _ in range(warmup):   # DDP's bucket rebuild after its first step, the allocator
                plain_step(*m)
            if name == "native":
                recorder.backend.take()   # the compiled backend keeps its times regardless
        trace.set_tracer(tracer)

    from gpuviz.energy.meters import make_meter
    from gpuviz.energy.sampler import make_sampler
    from gpuviz.run import auto
    null = contextlib.nullcontext()
    counter = {"i": 0}
    mode_now = [None]

    def plain_step(model, opt) -> float:
        # The same step with no annotations (auto mode: the hooks record it, and end the step)
        i = counter["i"] % n_batches
        counter["i"] += 1
        lo = i * batch + rank * local
        x, y = x_all[lo:lo + local], y_all[lo:lo + local]
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        return 0.0

    def train_step(model, opt, profiling: bool) -> float:
        # The loop body of gpuviz.workloads.mlp:train (ddp=True), plus a record_function
        # per phase when torch.profiler is the instrument.
        if mode_now[0] in ("auto", "auto native"):
            return plain_step(model, opt)
        rf = record_function if profiling else (lambda name: null)
        i = counter["i"] % n_batches
        counter["i"] += 1
        with trace.span("load batch", cat="data"), rf("load batch"):
            lo = i * batch + rank * local
            x, y = x_all[lo:lo + local], y_all[lo:lo + local]
        with trace.span("forward"), rf("forward"):
            loss = nn.functional.mse_loss(model(x), y)
        with trace.span("backward"), rf("backward"):
            loss.backward()
        with trace.span("optimizer step", cat="optimizer"), rf("optimizer step"):
            opt.step()
            opt.zero_grad(set_to_none=True)
        value = loss.item()
        t0 = time.perf_counter()
        trace.step(loss=value)
        return time.perf_counter() - t0

    def block(mode: str, n: int) -> dict:
        model, opt = models[mode]
        times, cpu, flush = [], [], []
        first_step = tracer.step_index
        profiling = mode == "profiler"
        trace.set_tracer(tracer if mode in ("traced", "native", "energy", "auto", "auto native")
                         else None)
        mode_now[0] = mode
        uninstall = auto.install() if mode.startswith("auto") else None
        # started and stopped outside the timed steps
        tracer.hooks = ([make_sampler(tracer, make_meter("auto", warn=False, gpu_index=None))]
                        if mode == "energy" else [])
        if recorder is not None and mode in ("native", "auto native", "energy"):
            tracer.hooks.append(recorder)
        try:
            ctx = profile(activities=[ProfilerActivity.CPU]) if profiling else null
            t_enter = time.perf_counter()
            with ctx as prof:
                t_in = time.perf_counter()
                for _ in range(n):
                    t0, c0 = time.perf_counter(), time.process_time()
                    flush.append(train_step(model, opt, profiling))
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                t_last = time.perf_counter()
            t_exit = time.perf_counter()
        finally:
            trace.set_tracer(tracer)
            for hook in tracer.hooks:
                hook.close()
            tracer.hooks = []
            if uninstall is not None:
                uninstall()
        # Everything below is outside the timed steps.
        n_events = len(prof.events()) if profiling else 0
        t = torch.tensor(times + [(t_in - t_enter) + (t_exit - t_last)], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)  # a step lasts as long as its slowest rank
        c = torch.tensor(cpu, dtype=torch.float64)
        dist.all_reduce(c)  # CPU seconds of all ranks' processes (every thread)
        return {"times": t[:-1].tolist(), "cpu": (c / world).tolist(), "start_stop": float(t[-1]),
                "events": n_events, "flush": flush, "steps": list(range(first_step, tracer.step_index))}

    rng = random.Random(seed)  # the same seed on every rank: the same order everywhere
    new_copies(list(copies))
    for mode in modes_here:  # warm-up: the profiler's first start, the sampler, caches
        block(mode, warmup)
    dist.barrier()
    results = {m: {"times": [], "cpu": [], "flush": [], "start_stop": [], "events": 0}
               for m in modes_here}
    traced_steps: list[int] = []   # the step numbers the traced mode wrote (its spans/step)
    for _ in range(rounds):
        new_copies(rng.sample(list(copies), len(copies)))
        order = list(modes_here)
        rng.shuffle(order)  # a new order each round: no mode always follows the same one
        for mode in order:
            b = block(mode, steps)
            res = results[mode]
            res["times"] += b["times"]
            res["cpu"] += b["cpu"]
            res["flush"] += b["flush"]  # rank 0's own time in trace.step()
            if mode == "traced":
                traced_steps += b["steps"]
            res["start_stop"].append(b["start_stop"])
            res["events"] += b["events"]
    if rank == 0:
        n_params = sum(p.numel() for p in models["untraced"][0].parameters())
        out = {"world": world, "params": n_params, "traced_steps": traced_steps,
               "threads": torch.get_num_threads(), "torch": torch.__version__, "modes": results,
               "config": {"steps": steps, "rounds": rounds, "warmup": warmup, "batch": batch,
                          "dim": dim, "hidden": hidden, "layers": layers,
                          "bucket_cap_mb": bucket_cap_mb}}
        (tracer.run_dir / RESULT_FILE).write_text(json.dumps(out), encoding="utf-8")
    dist.barrier()


# -- microbenchmark (in this process) ----------------------------------------------------

def microbench(n: int = 20000, repeats: int = 7) -> dict:
    """Cost of one ``with trace.span(...)`` (traced and no-op) and of ``trace.step()``, in µs."""
    from gpuviz.run import trace

    def best(fn, k: int) -> float:
        """The least time per call over ``repeats`` runs of ``k`` calls (µs)."""
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(k)
            out.append((time.perf_counter() - t0) / k * 1e6)
        return min(out)

    def spans(k: int) -> None:
        span = trace.span
        for _ in range(k):
            with span("forward"):
                pass

    def steps(k: int) -> None:  # one step as the workload makes it: 4 spans + 1 bucket + step
        span, t = trace.span, trace.get_tracer()
        for _ in range(k):
            for name in ("load batch", "forward", "backward", "optimizer step"):
                with span(name):
                    pass
            t.complete("all_reduce bucket 0", "comm", t.now(), 12.5, lane=1, step=t.step_index,
                       bytes=3276804, bucket=0)
            trace.step(loss=0.123)

    def empty(k: int) -> None:
        for _ in range(k):
            pass

    saved = trace.get_tracer()
    tmp = tempfile.mkdtemp(prefix="gpuviz-microbench-")
    try:
        trace.set_tracer(None)
        loop = best(empty, n)
        noop = best(spans, n) - loop
        trace.set_tracer(trace.Tracer(tmp, 0, 1))
        traced = best(spans, n) - loop
        trace.get_tracer()._events.clear()
        step = best(steps, n // 20)
        trace.get_tracer().close()
    finally:
        trace.set_tracer(saved)
        shutil.rmtree(tmp, ignore_errors=True)
    return {"noop": noop, "traced": traced, "step": step}


# -- the launcher side ---------------------------------------------------------------------

def _spans_per_step(path: Path, steps: set[int]) -> float:
    """Complete (``X``) events per ``step_end`` of the given steps in one rank's trace file."""
    n_spans = n_steps = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            if (e.get("args") or {}).get("step") not in steps:
                continue
            if e.get("ph") == "X":
                n_spans += 1
            elif e.get("name") == "step_end":
                n_steps += 1
    return n_spans / n_steps if n_steps else 0.0


def paired_ratio(times: list[float], base: list[float], steps: int, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Median over rounds of (this mode's mean step / the untraced mean step in the same
    round), with a 95% bootstrap interval over rounds. Pairing by round cancels the drift
    of a shared machine (its other jobs come and go over seconds)."""
    import numpy as np

    t = np.asarray(times).reshape(-1, steps).mean(axis=1)
    b = np.asarray(base).reshape(-1, steps).mean(axis=1)
    r = t / b
    rng = np.random.default_rng(seed)
    boot = np.median(r[rng.integers(0, len(r), size=(n_boot, len(r)))], axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(np.median(r)), float(lo), float(hi)


def verdict(r: tuple[float, float, float]) -> str:
    """Where a ratio's interval lies against the goal."""
    if r[2] <= GOAL:
        return "within the goal"
    if r[1] > GOAL:
        return "ABOVE the goal"
    return "not resolved: the interval straddles the goal (more --rounds narrow it)"


def _fmt(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.3f} [{r[1]:.3f}..{r[2]:.3f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2, help="ranks (default 2)")
    p.add_argument("--steps", type=int, default=2, help="steps per mode per round (default 2)")
    p.add_argument("--rounds", type=int, default=60, help="rounds of all modes (default 60)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up steps per mode (default 3)")
    p.add_argument("--batch", type=int, default=512, help="global batch (default 512)")
    p.add_argument("--dim", type=int, default=64, help="input features (default 64)")
    p.add_argument("--hidden", type=int, default=512, help="hidden width (default 512)")
    p.add_argument("--layers", type=int, default=4, help="hidden layers (default 4)")
    p.add_argument("--bucket-cap-mb", type=float, default=25.0, help="DDP bucket size (default 25)")
    p.add_argument("--run-dir", default=None, help="keep the job's run directory here "
                   "(default: a temporary directory, removed afterwards)")
    a = p.parse_args(argv)

    import gpuviz

    # The workers import this file as ``benchmarks.trace_overhead`` from the repository root.
    sys.path.insert(0, str(REPO))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    run_dir = Path(a.run_dir) if a.run_dir else Path(tempfile.mkdtemp(prefix="gpuviz-trace-overhead-"))
    args = {"steps": a.steps, "rounds": a.rounds, "warmup": a.warmup, "batch": a.batch, "dim": a.dim,
            "hidden": a.hidden, "layers": a.layers, "bucket_cap_mb": a.bucket_cap_mb}
    t0 = time.perf_counter()
    try:
        gpuviz.launch("benchmarks.trace_overhead:worker", nproc=a.nproc, backend="gloo", args=args,
                      run_dir=run_dir, progress=False, stream=False, energy="off")
        res = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
        spans_per_step = _spans_per_step(run_dir / "rank0.jsonl", set(res["traced_steps"]))
    finally:
        if not a.run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    job_s = time.perf_counter() - t0
    micro = microbench()

    c, modes = res["config"], res["modes"]
    shown = [m for m in MODES if m in modes]   # native only where its extension built
    n_steps = len(modes["untraced"]["times"])
    med = {m: statistics.median(modes[m]["times"]) * 1e3 for m in shown}
    cpu = {m: statistics.median(modes[m]["cpu"]) * 1e3 for m in shown}
    wall_r = {m: paired_ratio(modes[m]["times"], modes["untraced"]["times"], c["steps"]) for m in shown}
    cpu_r = {m: paired_ratio(modes[m]["cpu"], modes["untraced"]["cpu"], c["steps"]) for m in shown}
    alone = paired_ratio(modes["traced"]["times"], modes["hook only"]["times"], c["steps"])
    alone_cpu = paired_ratio(modes["traced"]["cpu"], modes["hook only"]["cpu"], c["steps"])
    def end_us(m: str) -> float:   # trace.step() on rank 0, median, in mode m
        return statistics.median(modes[m]["flush"]) * 1e6

    flush_us = end_us("traced")
    flush_mean = statistics.fmean(modes["traced"]["flush"]) * 1e6
    print(f"workload: the step of gpuviz.workloads.mlp:train, ddp=True: MLP {c['dim']} -> "
          f"{c['hidden']} x {c['layers']} -> 1 ({res['params'] / 1e6:.2f} M params, "
          f"{res['params'] * 4 / 2**20:.1f} MiB of gradients all-reduced per step), "
          f"global batch {c['batch']}")
    print(f"job: {res['world']} ranks, gloo, CPU, {res['threads']} thread(s) per rank, torch "
          f"{res['torch']}; {c['rounds']} rounds x {c['steps']} steps per mode, in a new random "
          f"order each round ({n_steps} timed steps per mode; the job took {job_s:.0f} s)")
    print("ratios: median over rounds of mode/untraced in the same round [95% bootstrap interval]")
    print()
    print(f"{'mode':<11} {'median step':>11} {'step time vs untraced':>22} {'CPU/step/rank':>14} "
          f"{'CPU time vs untraced':>21} {'spans/step':>11}")
    for m in shown:
        if m in ("traced", "native", "energy"):
            spans = f"{spans_per_step:.0f}"
        elif m == "profiler":
            spans = f"{modes[m]['events'] / n_steps:.0f} events"
        elif m in ("auto", "auto native"):
            spans = "hooks"
        else:
            spans = "0"
        print(f"{m:<11} {med[m]:>8.2f} ms {_fmt(wall_r[m]):>22} {cpu[m]:>11.2f} ms "
              f"{_fmt(cpu_r[m]):>21} {spans:>11}")
    ss = statistics.median(modes["profiler"]["start_stop"]) * 1e3
    print(f"(torch.profiler also takes {ss:.0f} ms to start and stop around each block of "
          f"{c['steps']} steps, not counted above)")
    print()
    print(f"tracer alone (traced/hook only, same DDP copy): {_fmt(alone)} in step time, "
          f"{_fmt(alone_cpu)} in CPU time")
    print(f"in the job, trace.step() (encode and write the step's events) took {flush_us:.0f} us "
          f"median, {flush_mean:.0f} us mean per traced step on rank 0 = "
          f"{flush_mean / 1e3 / med['traced']:.2%} of the median step"
          + (f"; with the compiled bucket times taken too (native) {end_us('native'):.0f} us, "
             f"and the energy reading as well (energy) {end_us('energy'):.0f} us"
             if "native" in modes else ""))
    print(f"microbenchmark (this process, no training): one `with trace.span(...)` costs "
          f"{micro['traced']:.2f} us traced, {micro['noop']:.2f} us as a no-op; one step's "
          f"tracing (4 spans, 1 bucket span, trace.step()) {micro['step']:.0f} us")
    print(f"noise floor: untraced-2/untraced = {_fmt(wall_r['untraced-2'])} in step time, "
          f"{_fmt(cpu_r['untraced-2'])} in CPU time (the same steps twice, on another copy of the model)")
    builtin_hook = paired_ratio(modes["hook only"]["cpu"], modes["C++ hook"]["cpu"], c["steps"])
    print(f"comm hook, in CPU time: torch's C++ hook {_fmt(cpu_r['C++ hook'])} (the pass over "
          f"the gradients any hook adds on gloo), gpuviz's Python hook/C++ hook "
          f"{_fmt(builtin_hook)} (what being Python adds)")
    under = "native" if "native" in modes else "traced"   # the copy energy runs on
    sampler = paired_ratio(modes["energy"]["times"], modes[under]["times"], c["steps"])
    sampler_cpu = paired_ratio(modes["energy"]["cpu"], modes[under]["cpu"], c["steps"])
    print(f"energy sampler alone (energy/{under}, the default of every launch): {_fmt(sampler)} in "
          f"step time, {_fmt(sampler_cpu)} in CPU time")
    print()
    print(f"in CPU time per step against untraced, as a run is traced by default (goal <= {GOAL:.2f}; "
          "the A/A line above is the noise):")
    for label, m in (("annotated", "native" if "native" in modes else "traced"),
                     ("default with energy", "energy"),
                     ("auto", "auto native" if "auto native" in modes else "auto"),
                     ("torch.profiler", "profiler")):
        print(f"  {label:<20} {_fmt(cpu_r[m])}" + ("" if m == "profiler" else f"  {verdict(cpu_r[m])}")
              + f"  ({m})")
    if "native" in cpu_r:
        print("  with DDP's buckets through the comm hook instead (GPUVIZ_NATIVE_BUCKETS=0, NCCL "
              "jobs), and the compiled route against it:")
        for label, m, hooked in (("annotated", "native", "traced"), ("auto", "auto native", "auto")):
            against = paired_ratio(modes[m]["cpu"], modes[hooked]["cpu"], c["steps"])
            print(f"  {label:<20} {_fmt(cpu_r[hooked])}  {verdict(cpu_r[hooked])}; "
                  f"{m}/{hooked}: {_fmt(against)}")
    else:
        from gpuviz.run import native_buckets

        print(f"  DDP's buckets in compiled code: not measured, the comm hook above: "
              f"{native_buckets.why_not()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
