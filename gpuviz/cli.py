"""The ``gpuviz`` command.

    gpuviz run gpuviz.workloads.mlp:train --nproc 4 --arg steps=20
    gpuviz run my_train.py --nproc 2 -- --lr 3e-4          # a script and its own arguments
    gpuviz run my_train.py --nproc 8 --nnodes 2 --node-rank 0 --rdzv-endpoint node0:29500
    gpuviz run gpuviz.workloads.mlp:train --nproc 4 --inject slow:rank=1,delay_s=0.05
    gpuviz run gpuviz.workloads.mlp:train --nproc 4 --arg checkpoint_every=2 \
        --max-restarts 1 --inject fail:rank=2,step=5
    gpuviz summary runs/20261122-101500-train
    gpuviz perfetto runs/20261122-101500-train trace.json  # open in ui.perfetto.dev
    gpuviz bench collectives --ops all_reduce,all_gather --nproc 2,4 --csv bench.csv
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys


def _kv(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--arg {text!r}: write KEY=VALUE, e.g. --arg steps=20")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a plain string


def _injection(text: str) -> dict:
    from gpuviz.sync.inject import parse

    try:
        return parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpuviz", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run TARGET as N processes under torchrun and trace every rank")
    r.add_argument("target", help="package.module:function, or a path to a script")
    r.add_argument("--nproc", type=int, default=None, help="processes on this node (default 4 on CPU, one per GPU)")
    r.add_argument("--backend", default="auto", help="auto (NCCL with GPUs, else gloo), gloo or nccl")
    r.add_argument("--run-dir", default=None, help="where the rank*.jsonl traces go")
    r.add_argument("--timeout", type=float, default=None, help="seconds before the job is stopped")
    r.add_argument("--arg", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument for a function target (VALUE read as JSON if it parses)")
    r.add_argument("--nnodes", type=int, default=1)
    r.add_argument("--node-rank", type=int, default=None)
    r.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT of node 0's rendezvous")
    r.add_argument("--max-restarts", type=int, default=0)
    r.add_argument("--inject", type=_injection, action="append", default=[], metavar="KIND:KEY=VALUE,...",
                   help="inject a delay, failure or hang (gpuviz.sync.inject), e.g. slow:rank=1,delay_s=0.05, "
                   "jitter:dist=exponential,mean_s=0.02, fail:rank=2,step=5, hang:rank=1,step=3")
    r.add_argument("--collective-timeout", type=float, default=None,
                   help="seconds a rank may wait in a collective before the job ends (a hang)")
    r.add_argument("--auto", action=argparse.BooleanOptionalAction, default=None,
                   help="record forward, backward, optimizer, data and every collective with no "
                   "annotations (default: on for a script that does not use gpuviz)")
    r.add_argument("--energy", choices=("auto", "zeus", "estimate", "off"), default="auto",
                   help="energy meter of every rank: hardware counters through Zeus, the CPU-time "
                   "estimate, or auto (counters where readable, else the estimate)")
    r.add_argument("--profile", action="store_true",
                   help="also write torch.profiler traces of every rank to RUN_DIR/profiler")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("summary", help="print each rank's time per category for a run directory "
                       "or a folder of PyTorch profiler traces")
    s.add_argument("run_dir")

    f = sub.add_parser("perfetto", help="write one merged Chrome trace JSON for Perfetto")
    f.add_argument("run_dir")
    f.add_argument("out")

    m = sub.add_parser("import", help="read PyTorch profiler traces (one per rank) into a gpuviz run directory")
    m.add_argument("traces", help="a folder of .json / .json.gz profiler traces")
    m.add_argument("--out", required=True, help="the run directory to write (rank*.jsonl)")

    d = sub.add_parser("doctor", help="is this seat ready for the labs? one line per check, and the fix")
    d.add_argument("--seats", type=int, default=1, help="learners this machine must hold (a shared server)")
    d.add_argument("--ports", default="29500,29400", help="ports a hand-started torchrun needs free")
    d.add_argument("--no-job", action="store_true", help="skip the 4-rank gloo job (the slowest check)")
    d.add_argument("--json", action="store_true", help="the report as JSON, for an instructor to collect")

    g = sub.add_parser("progress", help="where a learner stands, lab by lab (their gpuviz-progress.jsonl)")
    g.add_argument("folder", nargs="?", default=".", help="the learner's folder (default: here)")

    gr = sub.add_parser("grade", help="a class's progress files in one table (CSV) and a figure")
    gr.add_argument("folders", nargs="+", help="one folder per learner (named after the learner)")
    gr.add_argument("--csv", default="grades.csv", help="the table to write")
    gr.add_argument("--figure", default=None, help="an HTML file for the figure (exercises by completion)")

    au = sub.add_parser("audit", help="every claim the labs made in their last run, and whether it holds")
    au.add_argument("file", nargs="?", default="book/_build/claims.jsonl",
                    help="the claims file a book build wrote (default: book/_build/claims.jsonl)")

    sub.add_parser("build-native", help="compile gpuviz's helpers now (the recorder of DDP's "
                   "buckets, the energy sampler's thread, the tracer's spans and line writer), so that no run "
                   "waits for them")

    b = sub.add_parser("bench", help="benchmarks: `gpuviz bench collectives --help`")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    c = bsub.add_parser("collectives", help="time collectives on N ranks; algbw and busbw as "
                        "nccl-tests; prints a table and saves CSV")
    c.add_argument("--ops", default=None, help="comma-separated, e.g. all_reduce,all_gather "
                   "(default: all_reduce,all_gather,reduce_scatter,broadcast,all_to_all)")
    c.add_argument("--sizes", default=None, help="comma-separated S in bytes, e.g. 1K,64K,1M "
                   "(K, M, G = powers of 1024); default 1K to 16M in steps of 4x")
    c.add_argument("--min", default=None, help="smallest S of a sweep (instead of --sizes)")
    c.add_argument("--max", default=None, help="largest S of a sweep (instead of --sizes)")
    c.add_argument("--factor", type=int, default=4, help="step between sizes of a sweep (default 4)")
    c.add_argument("--nproc", default="4", help="ranks, or a list like 2,4 (one job, subgroups)")
    c.add_argument("--backend", default="auto", help="auto (NCCL with GPUs, else gloo), gloo or nccl")
    c.add_argument("--iters", type=int, default=10, help="timed iterations per size (default 10)")
    c.add_argument("--warmup", type=int, default=3, help="untimed iterations first (default 3)")
    c.add_argument("--dtype", default="float32", help="element type (default float32)")
    c.add_argument("--csv", default=None, help="save the table here")
    c.add_argument("--run-dir", default=None, help="where the job's traces go")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _bench(a) -> None:
    from gpuviz.sharing import bench

    if a.sizes and (a.min or a.max):
        raise ValueError("--sizes or --min/--max: give one, not both")
    sizes = (a.sizes.split(",") if a.sizes else
             bench.size_range(a.min or "1K", a.max or "16M", a.factor) if a.min or a.max else None)
    try:
        nproc = [int(n) for n in a.nproc.split(",")]
    except ValueError:
        raise ValueError(f"--nproc {a.nproc!r}: give a rank count or a list like 2,4") from None
    df = bench.collectives(ops=a.ops or bench.DEFAULT_OPS, sizes=sizes,
                           nproc=nproc[0] if len(nproc) == 1 else nproc, backend=a.backend,
                           warmup=a.warmup, iters=a.iters, run_dir=a.run_dir, dtype=a.dtype,
                           progress=not a.no_progress)
    print(bench.format_table(df))
    if a.csv:
        df.to_csv(a.csv, index=False)
        print(f"# saved {a.csv}")
    print(f"# traces in {df.attrs['run'].path}")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    a = build_parser().parse_args(argv[:cut])
    script_args = argv[cut + 1:]

    import gpuviz

    # A scheduler's SIGTERM ends the job as Ctrl-C does: every worker stopped, the run kept.
    signal.signal(signal.SIGTERM, _interrupt)
    # As ``python -m`` would: a module in the current folder can be the target.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        if a.command == "run":
            if a.arg and script_args:
                raise ValueError("--arg is for function targets and '-- ARGS' for scripts; not both")
            args = dict(a.arg) if a.arg else (script_args or None)
            run = gpuviz.launch(a.target, nproc=a.nproc, backend=a.backend, args=args,
                                run_dir=a.run_dir, timeout=a.timeout, nnodes=a.nnodes,
                                node_rank=a.node_rank, rdzv_endpoint=a.rdzv_endpoint,
                                max_restarts=a.max_restarts, progress=not a.no_progress,
                                inject=a.inject or None, collective_timeout=a.collective_timeout,
                                energy=a.energy, auto=a.auto, profile=a.profile)
            if run.meta.get("restarts"):
                print(f"\nrestarted {run.meta['restarts']} time(s) after a failure; "
                      "run.errors() has what failed")
            print(f"\n{run}\ntraces in {run.path}\n")
            print(run.summary().round(4).to_string())
            _print_energy(run)
        elif a.command == "summary":
            run = gpuviz.load_run(a.run_dir)
            print(run.summary().round(4).to_string())
            _print_energy(run)
        elif a.command == "import":
            from gpuviz.run.export import write_run_dir

            run = gpuviz.load_run(a.traces)
            print(f"{run}\nwritten to {write_run_dir(run, a.out)}")
        elif a.command == "perfetto":
            print(gpuviz.load_run(a.run_dir).to_perfetto(a.out))
        elif a.command == "bench":
            _bench(a)
        elif a.command == "build-native":
            return _build_native()
        elif a.command in ("doctor", "progress", "grade", "audit"):
            return _classroom(a)
    except KeyboardInterrupt as e:   # Ctrl-C or SIGTERM; launch says where the run is
        print(f"gpuviz {a.command}: {e}" if str(e) else
              "gpuviz: interrupted; every worker was stopped", file=sys.stderr)
        return 130
    except (ValueError, OSError, gpuviz.LaunchError) as e:   # a user's mistake: no traceback
        print(f"gpuviz {a.command}: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    return 0


def _classroom(a) -> int:
    if a.command == "doctor":
        from gpuviz.classroom.doctor import doctor

        try:
            ports = [int(p) for p in a.ports.split(",") if p.strip()]
        except ValueError:
            raise ValueError(f"--ports={a.ports!r}: give port numbers separated by commas") from None
        report = doctor(seats=a.seats, ports=ports, job=not a.no_job)
        print(report.json() if a.json else report.text())
        return 0 if report.ok else 1
    if a.command == "audit":
        from gpuviz.classroom.audit import audit

        report = audit(a.file)
        print(report.text())
        return 0 if report.ok else 1
    if a.command == "progress":
        from gpuviz.classroom.grade import find
        from gpuviz.classroom.progress import summary

        print(summary(find(a.folder)))
        return 0
    from gpuviz.classroom.grade import completion, grades

    table = grades(a.folders)
    table.to_csv(a.csv, index=False)
    done = completion(table)
    print(done.to_string(index=False))
    print(f"\n{table['learner'].nunique()} learners; table written to {a.csv}")
    if a.figure:
        from gpuviz.plot.classroom import exercise_completion

        exercise_completion(done).write_html(a.figure, include_plotlyjs=True)
        print(f"figure written to {a.figure}")
    return 0


def _build_native() -> int:
    """Build (or find built) each compiled helper; 1 if one cannot be built here, whose
    users then take their Python route."""
    import time

    from gpuviz.energy import native
    from gpuviz.run import compiled, lines, native_buckets

    ok = True
    for label, helper in (("the recorder of DDP's buckets (C++)", native_buckets),
                          ("the energy sampler's thread (C)", native),
                          ("the tracer's spans and line writer (C)", lines)):
        t0 = time.perf_counter()
        if helper.load() is not None:
            print(f"{label}: ready ({time.perf_counter() - t0:.1f} s)")
        else:
            ok = False
            print(f"{label}: not built, runs use the Python route: {helper.why_not()}")
    print(f"kept in {compiled.cache_root()}")
    return 0 if ok else 1


def _print_energy(run) -> None:
    if run.imported:
        gpu = run.meta.get("gpu") or "GPU model not recorded"
        print(f"\nGPU time from PyTorch profiler traces ({gpu}, {run.meta.get('ranks_present')} "
              f"of {run.world_size} ranks); these traces hold no energy, and none is estimated")
        return
    if run.counters.empty or "energy J" not in set(run.counters["name"]):
        return
    from gpuviz.energy.attribution import joules

    e = joules(run, "rank")
    kind = "estimated from CPU time" if e["estimated"].any() else "measured"
    print(f"\nenergy ({kind}): {e['joules'].sum():.4g} J")
    print(e.set_index("rank")[["seconds", "joules", "watts", "meter"]].round(4).to_string())


if __name__ == "__main__":
    sys.exit(main())
