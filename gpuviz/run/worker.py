"""The entry point torchrun starts on every rank: set up, trace, run the target.

``gpuviz.launch`` runs ``python -m torch.distributed.run ... -m gpuviz.run.worker TARGET``.
On a cluster, run it under torchrun yourself and load the traces back afterwards::

    # one node, 8 GPUs
    torchrun --standalone --nproc-per-node 8 -m gpuviz.run.worker \\
        gpuviz.workloads.allreduce:main --run-dir runs/one-node
    # two nodes (run on each; SLURM: srun torchrun ... with --node-rank $SLURM_NODEID)
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint node0:29500 -m gpuviz.run.worker my_train.py --run-dir /shared/runs/x -- --lr 3e-4

then ``gpuviz.load_run("/shared/runs/x")`` in the notebook.

TARGET is ``package.module:function`` (called with the keyword arguments given as JSON
in ``--kwargs``) or a path to a script (run as ``__main__`` with the arguments after ``--``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta

from torch.distributed.elastic.multiprocessing.errors import record

from gpuviz.run import auto, exit_grace, loopback, native_buckets, orphans
from gpuviz.run.scripts import makes_its_own_group, plain_script, run_script
from gpuviz.run.target import resolve_target


def pick_backend(backend: str) -> str:
    import torch

    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    return backend


@record
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m gpuviz.run.worker")
    p.add_argument("target")
    p.add_argument("--run-dir", default=os.environ.get("GPUVIZ_RUN_DIR"), required=False)
    p.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"])
    p.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments for a function target")
    p.add_argument("--auto", choices=["on", "off", "default"], default="default",
                   help="record forward, backward, optimizer, data and every collective with no "
                   "annotations (default: on for a script that does not use gpuviz itself)")
    p.add_argument("--pg-timeout", type=float, default=None,
                   help="seconds a collective may wait before the process group gives up")
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    a = p.parse_args(argv[:cut])
    script_args = argv[cut + 1:]
    if not a.run_dir:
        p.error("--run-dir is required (or set $GPUVIZ_RUN_DIR)")

    import torch
    import torch.distributed as dist

    from gpuviz.run import trace

    trace.flush_on_sigterm()  # before any thread starts, so every thread inherits the mask
    rank = int(os.environ.get("RANK", 0))
    # Start recording before the process group exists, so a failure there is kept too.
    tracer = trace.Tracer(a.run_dir, rank, int(os.environ.get("WORLD_SIZE", 1)))
    trace.set_tracer(tracer)
    orphans.watch_launcher(lambda: orphans.stop_orphaned_job(tracer))
    grace = None
    try:
        grace = exit_grace.watch_exit()   # an exit that hangs once the work is over is ended
        kind, fn = resolve_target(a.target)
        backend = pick_backend(a.backend)
        kw = {}
        if a.pg_timeout:
            kw["timeout"] = timedelta(seconds=a.pg_timeout)
        if backend == "nccl":
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            kw["device_id"] = torch.device("cuda", local)
        if os.environ.get(loopback.ENV) == "1":   # one node: stores listen on loopback only
            loopback.install()
        # The first optimizer built in a process imports torch._dynamo (seconds on a
        # small CPU); do it now so it is not charged to the traced job.
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        command = [sys.executable, "-m", "gpuviz.run.worker", *argv]

        def start_tracer() -> None:   # once a process group exists: align the clocks
            tracer.cuda = dist.get_backend() == "nccl"
            tracer.start(target=a.target, command=command)

        if a.auto == "on" or (a.auto == "default" and kind == "script" and plain_script(fn)):
            auto.install()   # hooks; they record once the tracer has started
        if kind == "script" and makes_its_own_group(fn):
            run_script(fn, script_args, start_tracer, tracer)   # its group, its arguments
        else:
            dist.init_process_group(backend, **kw)
            start_tracer()
            if kind == "function":
                fn(**json.loads(a.kwargs))
            else:
                run_script(fn, script_args, start_tracer, tracer)
        tracer._write_now()
        if dist.is_initialized():
            dist.barrier()  # nobody leaves (and closes its sockets) while others still work
    except SystemExit as e:
        if e.code not in (None, 0):  # a script's sys.exit(0) is a normal end
            tracer.error(e)
            raise
    except BaseException as e:
        tracer.error(e)
        raise
    finally:
        with exit_grace.teardown(grace):   # so is a closing that hangs (a communicator's)
            tracer.close()
            trace.set_tracer(None)
            if dist.is_initialized():
                dist.destroy_process_group()
            native_buckets.release(tracer)


if __name__ == "__main__":
    main()
