"""Start a real multi-process job with ``torch.distributed.run`` (torchrun).

>>> run = launch("gpuviz.workloads.mlp:train", nproc=4, args={"steps": 5})  # doctest: +SKIP
>>> run.summary()                                                          # doctest: +SKIP

The same from a terminal, and on many nodes (run on each node)::

    gpuviz run gpuviz.workloads.mlp:train --nproc 4
    gpuviz run my_train.py --nproc 8 --nnodes 2 --node-rank 0 --rdzv-endpoint node0:29500

Workers run in their own sessions under torchrun; an interrupt, an error or a timeout
stops torchrun, which stops its workers, and any worker still alive after a grace
period is killed. Every rank's trace is kept in the run directory either way.

Faults on purpose (:mod:`gpuviz.sync.inject`): a slow rank, a failure that an elastic restart
recovers from a checkpoint, a hang that the collective timeout ends::

    from gpuviz.sync.inject import slow_rank, fail_at, hang_at
    launch("gpuviz.workloads.mlp:train", 4, inject=[slow_rank(1, 0.05)])
    launch("gpuviz.workloads.mlp:train", 4, args={"checkpoint_every": 2},
           max_restarts=1, inject=[fail_at(2, 5)])
    launch("gpuviz.workloads.mlp:train", 4, inject=[hang_at(1, 3)], collective_timeout=10)
"""


from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gpuviz.run import exit_grace, hooks, orphans
from gpuviz.run.arguments import (
    BACKENDS,
    check_backend,
    check_count,
    check_endpoint,
    check_nproc,
    check_run_dir,
    check_seconds,
    check_torchrun_args,
    default_run_dir,
)
from gpuviz.run.failures import (
    Interrupted,
    LaunchError,
    RankHung,
    job_error,
)
from gpuviz.run.files import write_json
from gpuviz.run.job import Job
from gpuviz.run.loopback import loopback_env
from gpuviz.run.target import check_target

if TYPE_CHECKING:
    from gpuviz.run.load import Run

__all__ = ["launch", "torchrun_command", "job_environment", "BACKENDS"]

def torchrun_command(target: str, run_dir: Path, nproc: int, backend: str, kwargs_json: str,
                     script_args: list[str], nnodes: int = 1, node_rank: int | None = None,
                     rdzv_endpoint: str | None = None, max_restarts: int = 0,
                     pg_timeout: float | None = None, extra: list[str] | tuple = (),
                     auto: bool | None = None) -> list[str]:
    """The torchrun command line that ``launch`` runs: ``python -m torch.distributed.run ...``,
    or on one node ``python -m gpuviz.run.torchrun ...`` (torchrun with its stores on
    loopback)."""
    single = nnodes == 1 and rdzv_endpoint is None
    runner = "gpuviz.run.torchrun" if single else "torch.distributed.run"
    cmd = [sys.executable, "-m", runner, "--nproc-per-node", str(nproc)]
    if single:
        cmd.append("--standalone")
    else:
        cmd += ["--nnodes", str(nnodes), "--rdzv-backend", "c10d",
                "--rdzv-endpoint", rdzv_endpoint or "127.0.0.1:29500"]
        if node_rank is not None:
            cmd += ["--node-rank", str(node_rank)]
    node = "" if nnodes == 1 else f"node{node_rank if node_rank is not None else 0}"
    cmd += ["--max-restarts", str(max_restarts), "--log-dir", str(run_dir / "logs" / node),
            "--tee", "3", "--local-ranks-filter", "0", *extra,
            "-m", "gpuviz.run.worker", target, "--run-dir", str(run_dir), "--backend", backend,
            "--kwargs", kwargs_json]
    if pg_timeout:
        cmd += ["--pg-timeout", str(pg_timeout)]
    if auto is not None:
        cmd += ["--auto", "on" if auto else "off"]
    if script_args:
        cmd += ["--", *script_args]
    return cmd



def launch(target: str, nproc: int | None = None, backend: str = "auto",
           args: dict | list | None = None, run_dir: str | os.PathLike | None = None,
           timeout: float | None = None, *, nnodes: int = 1, node_rank: int | None = None,
           rdzv_endpoint: str | None = None, max_restarts: int = 0, progress: bool = True,
           stream: bool = True, torchrun_args: list[str] | tuple = (),
           inject: list[dict] | None = None, collective_timeout: float | None = None,
           energy: str | None = "auto", auto: bool | None = None, profile: bool = False) -> Run:
    """Run ``target`` as ``nproc`` real processes under torchrun and return its :class:`Run`.

    Args:
        target: ``"package.module:function"`` (called on every rank with ``**args``)
            or a path to a script (run with ``args`` as its command-line arguments).
        nproc: processes on this node; default 4 on CPU, one per GPU with NCCL.
        backend: ``"auto"`` (NCCL with GPUs, gloo without), ``"gloo"`` or ``"nccl"``.
        args: a dict of keyword arguments (function) or a list of strings (script).
        run_dir: where ``rank{R}.jsonl`` go; default ``runs/<time>-<name>``.
        timeout: seconds before a job is stopped and each rank's position reported.
        nnodes, node_rank, rdzv_endpoint: many nodes, passed to torchrun as they are.
        max_restarts: torchrun's elastic restarts after a failure: every worker is
            stopped and started again (attempt 1, 2...); a workload that saves
            checkpoints resumes from the last (:mod:`gpuviz.sync.checkpoint`). The run is
            returned if an attempt finishes; ``run.meta["restarts"]`` says how many it took.
        progress: show a tqdm bar of rank 0's steps (off where ``$GPUVIZ_NO_PROGRESS_BAR``
            is set: a notebook executed with no one watching, as the book's build does);
            stream: echo rank 0's output.
        torchrun_args: any further torchrun options.
        inject: delays, failures and hangs to inject (:mod:`gpuviz.sync.inject`), recorded in
            ``run.meta["inject"]``.
        collective_timeout: seconds a rank may wait in a collective before the process
            group gives up (default: 30 min, torch's; or twice ``timeout``, at least 60 s).
            A hung rank then ends the job by itself, as :class:`RankHung`.
        auto: record forward, backward, optimizer steps, data loading and every collective
            with no annotations (:mod:`gpuviz.run.auto`); default: on for a script that
            does not use gpuviz itself, off otherwise.
        energy: the energy meter of every rank (:mod:`gpuviz.energy.meters`): ``"auto"`` (hardware
            counters through Zeus where they can be read, else an estimate from CPU time,
            labelled so), ``"zeus"``, ``"estimate"`` or ``"off"``; see :func:`gpuviz.energy.attribution.joules`.
        profile: also run torch.profiler on every rank and write its traces to
            ``run.path / "profiler"`` (:mod:`gpuviz.run.profiling`): the same job as the PyTorch
            profiler sees it, loadable with ``gpuviz.load_run(run.path / "profiler")``.

    Raises:
        ValueError: bad arguments (the message names the argument and what is allowed).
        RankFailed: a rank raised; ``.run`` holds every rank's trace so far.
        RankHung: ``timeout`` passed, or ``collective_timeout`` ended ranks waiting for one
            that never joined; the message says which rank was in which span.
        InjectionError: a failure or hang injected at a step the workload never reaches.

    >>> run = launch("gpuviz.workloads.mlp:train", nproc=2, args={"steps": 3})  # doctest: +SKIP
    """
    backend = check_backend(backend)
    nproc = check_nproc(nproc, backend)
    kind = check_target(target)
    if kind == "function":
        if args is not None and not isinstance(args, dict):
            raise ValueError(f"args={args!r}: a function target takes a dict of keyword arguments")
        try:
            kwargs_json, script_args = json.dumps(args or {}), []
        except TypeError as e:
            raise ValueError(f"args must be JSON-serialisable to reach the workers ({e})") from None
    else:
        if args is not None and (not isinstance(args, (list, tuple))
                                 or not all(isinstance(a, str) for a in args)):
            raise ValueError(f"args={args!r}: a script target takes a list of strings (its argv)")
        kwargs_json, script_args = "{}", list(args or [])
    timeout = check_seconds("timeout", timeout)
    collective_timeout = check_seconds("collective_timeout", collective_timeout)
    nnodes = check_count("nnodes", nnodes, 1)
    max_restarts = check_count("max_restarts", max_restarts, 0)
    torchrun_args = check_torchrun_args(torchrun_args)
    exit_grace.grace_s()   # $GPUVIZ_EXIT_GRACE, which every rank reads: refused here first
    if node_rank is not None and not (isinstance(node_rank, int) and 0 <= node_rank < nnodes):
        raise ValueError(f"node_rank={node_rank!r}: must be an integer in [0, nnodes={nnodes})")
    if rdzv_endpoint is not None:
        check_endpoint(rdzv_endpoint, node_rank)
    # Options that topics own (gpuviz.run.hooks): checked here, sent to every rank.
    options = {name: hooks.option(name).check(value, nproc * nnodes)
               for name, value in (("inject", inject), ("energy", energy), ("profile", profile))}
    run_dir = check_run_dir(Path(run_dir) if run_dir is not None else default_run_dir(target))

    # A collective that waits longer than this is abandoned by the process group; with a
    # timeout, keep it longer than the job's so the launcher reports the hang first.
    pg_timeout = None if timeout is None else max(60.0, 2.0 * timeout)
    if collective_timeout is not None:
        pg_timeout = collective_timeout
    if auto is not None and not isinstance(auto, bool):
        raise ValueError(f"auto={auto!r}: give True, False or None (on for a plain script)")
    cmd = torchrun_command(target, run_dir, nproc, backend, kwargs_json, script_args, nnodes,
                           node_rank, rdzv_endpoint, max_restarts, pg_timeout, torchrun_args, auto)
    info = {"target": target, "args": args, "nproc_per_node": nproc, "nnodes": nnodes,
            "node_rank": node_rank, "backend": backend, "command": cmd, "timeout": timeout,
            "launched_at": time.time(), "status": "running", "job_id": secrets.token_hex(16),
            "max_restarts": max_restarts, "collective_timeout": collective_timeout, **options}
    # On many nodes sharing one run directory, node 0 writes run.json and the others their own.
    suffix = f"-node{node_rank}" if nnodes > 1 and node_rank else ""
    info_path = run_dir / f"run{suffix}.json"
    try:
        write_json(info_path, info)
    except OSError as e:
        raise ValueError(f"run_dir={str(run_dir)!r}: cannot write {info_path.name} ({e.strerror})") from None

    env = job_environment(run_dir, info_path, info["job_id"], backend, max_restarts,
                          single_node=nnodes == 1 and rdzv_endpoint is None)
    for name, value in options.items():
        var = hooks.option(name).env
        env.pop(var, None)
        if value not in (None, [], {}):
            env[var] = value if isinstance(value, str) else json.dumps(value)
    progress = progress and not os.environ.get("GPUVIZ_NO_PROGRESS_BAR")
    job = Job(cmd, run_dir, stream=stream, progress=progress, env=env, suffix=suffix)
    status, rc = "interrupted", None
    try:
        rc = job.wait(timeout)
        if rc is None:
            status = "timeout"
            job.request_where(nranks=nproc)
        else:
            status = "ok" if rc == 0 else "failed"
    except KeyboardInterrupt:   # the cell was interrupted: stop, keep, and say so below
        status = "interrupted"
    finally:
        job.stop()
        job.finish()
        info.update(status=status, returncode=rc, finished_at=time.time())
        try:
            write_json(info_path, info)
        except OSError as e:  # the disk filled up during the job: say so, keep the traces
            info["status_error"] = f"could not update {info_path}: {e.strerror}"
    return _outcome(run_dir, info, list(job.tail), pg_timeout)


def _outcome(run_dir: Path, info: dict, tail: list[str], pg_timeout: float | None) -> Run:
    """The finished job's :class:`Run`, or the exception that says why it did not finish."""
    from gpuviz.run.load import TraceError, load_run

    status, rc = info["status"], info["returncode"]
    try:
        run = load_run(run_dir, strict=False)
    except TraceError as e:   # no rank wrote a line: torchrun itself failed, say what it said
        said = "\n".join(tail[-30:]) or "(no output)"
        cause = {"interrupted": "was interrupted", "timeout": f"ran past timeout={info['timeout']} s"
                 }.get(status, f"failed (torchrun exit code {rc})")
        raise LaunchError(f"the job {cause} before any rank recorded a step ({e}).\n"
                          f"torchrun's output (all of it in {run_dir / 'launcher.log'}):\n{said}",
                          run=None) from None
    if "status_error" in info:
        raise LaunchError(f"the job ended ({status}) but {info['status_error']}; what the ranks "
                          f"recorded is in {run_dir}", run=run)
    if status == "interrupted":
        raise Interrupted(f"interrupted: every worker was stopped; what the ranks recorded until "
                          f"then is in {run_dir} (this error's .run, or gpuviz.load_run of it)", run=run)
    if status == "timeout":
        raise RankHung(f"timeout={info['timeout']} s passed and the job was stopped.\n"
                       + run.where_report(), run=run)
    if status == "failed":
        raise job_error(run, rc, tail, pg_timeout)
    return run


def job_environment(run_dir: Path, info_path: Path, job_id: str, backend: str, max_restarts: int,
                    single_node: bool) -> dict:
    """The environment every rank gets: where to write, who launched it, this job's id."""
    env = {**os.environ, "GPUVIZ_RUN_DIR": str(run_dir.resolve()), "PYTHONUNBUFFERED": "1",
           "GPUVIZ_RUN_JSON": str(info_path.resolve()), "GPUVIZ_JOB_ID": job_id,
           # the workers stop when this process is gone (gpuviz.run.orphans)
           "GPUVIZ_LAUNCHER": orphans.launcher_spec()}
    if backend == "gloo":
        env.setdefault("OMP_NUM_THREADS", "1")
    if single_node:   # nothing listens beyond loopback (gpuviz.run.loopback)
        env.update(loopback_env())
    if max_restarts:
        # torchrun shares its rendezvous store with the workers, and a restarted attempt can
        # read the previous attempt's addresses from it and fail to connect ("Connection
        # refused"); a store of their own per attempt avoids that (pytorch/pytorch#135712).
        env.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    return env
