"""The ``gpuviz`` command.

    gpuviz run gpuviz.workloads.mlp:train --nproc 4 --arg steps=20
    gpuviz run my_train.py --nproc 2 -- --lr 3e-4          # a script and its own arguments
    gpuviz run my_train.py --nproc 8 --nnodes 2 --node-rank 0 --rdzv-endpoint node0:29500
    gpuviz summary runs/20261122-101500-train
    gpuviz perfetto runs/20261122-101500-train trace.json  # open in ui.perfetto.dev
"""

from __future__ import annotations

import argparse
import json
import sys


def _kv(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"--arg {text!r}: write KEY=VALUE, e.g. --arg steps=20")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a plain string


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
    r.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("summary", help="print each rank's time per category for a run directory")
    s.add_argument("run_dir")

    f = sub.add_parser("perfetto", help="write one merged Chrome trace JSON for Perfetto")
    f.add_argument("run_dir")
    f.add_argument("out")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    a = build_parser().parse_args(argv[:cut])
    script_args = argv[cut + 1:]

    import gpuviz

    try:
        if a.command == "run":
            if a.arg and script_args:
                raise ValueError("--arg is for function targets and '-- ARGS' for scripts; not both")
            args = dict(a.arg) if a.arg else (script_args or None)
            run = gpuviz.launch(a.target, nproc=a.nproc, backend=a.backend, args=args,
                                run_dir=a.run_dir, timeout=a.timeout, nnodes=a.nnodes,
                                node_rank=a.node_rank, rdzv_endpoint=a.rdzv_endpoint,
                                max_restarts=a.max_restarts, progress=not a.no_progress)
            print(f"\n{run}\ntraces in {run.path}\n")
            print(run.summary().round(4).to_string())
        elif a.command == "summary":
            print(gpuviz.load_run(a.run_dir).summary().round(4).to_string())
        elif a.command == "perfetto":
            print(gpuviz.load_run(a.run_dir).to_perfetto(a.out))
    except (ValueError, gpuviz.LaunchError) as e:
        print(f"gpuviz {a.command}: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    except KeyboardInterrupt:
        print("gpuviz: interrupted; every worker was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
