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

import datetime as _dt
import ipaddress
import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from gpuviz.run import hooks
from gpuviz.run.failures import InjectionError, LaunchError, RankFailed, RankHung, job_error
from gpuviz.run.job import Job
from gpuviz.run.target import resolve_target

if TYPE_CHECKING:
    from gpuviz.run.load import Run

__all__ = ["launch", "LaunchError", "RankFailed", "RankHung", "InjectionError", "check_nproc",
           "check_backend", "torchrun_command", "BACKENDS"]

BACKENDS = ("auto", "gloo", "nccl")


def check_nproc(nproc: Any, backend: str) -> int:
    """``nproc`` as an int (default: 4 on CPU, one per GPU with NCCL), or a clear ValueError."""
    import torch

    if nproc is None:
        return torch.cuda.device_count() if backend == "nccl" else 4
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc={nproc!r}: the number of processes must be an integer >= 1")
    if backend == "nccl" and nproc > torch.cuda.device_count():
        raise ValueError(f"nproc={nproc} with backend='nccl': NCCL runs one rank per GPU and "
                         f"this machine has {torch.cuda.device_count()}; use nproc <= that or backend='gloo'")
    return nproc


def check_backend(backend: str) -> str:
    """``backend`` resolved ("auto" -> "nccl" with GPUs, else "gloo"), or a clear ValueError."""
    import torch

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: use one of {', '.join(map(repr, BACKENDS))}")
    cuda = torch.cuda.is_available()
    if backend == "nccl" and not cuda:
        raise ValueError("backend='nccl' needs CUDA GPUs and torch sees none on this machine; "
                         "use backend='gloo' (CPU) or 'auto'")
    if backend == "auto":
        return "nccl" if cuda else "gloo"
    return backend


def _is_local_host(host: str) -> bool:
    if host in ("localhost", socket.gethostname(), socket.getfqdn()):
        return True
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return False
    if ip.is_loopback:
        return True
    return any(a.address == str(ip) for addrs in psutil.net_if_addrs().values() for a in addrs)


def _check_endpoint(rdzv_endpoint: str, node_rank: int | None) -> None:
    host, sep, port = rdzv_endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"rdzv_endpoint={rdzv_endpoint!r}: give HOST:PORT, e.g. '127.0.0.1:29500'")
    if node_rank not in (None, 0) or not _is_local_host(host):
        return  # another node hosts the rendezvous: its port is busy by design
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("" if host in ("localhost",) else socket.gethostbyname(host), int(port)))
        except OSError as e:
            raise ValueError(f"rdzv_endpoint={rdzv_endpoint!r}: port {port} is already in use on this "
                             f"machine ({e.strerror}); pick another port, or leave rdzv_endpoint out "
                             "to let torchrun choose a free one") from None


def _default_run_dir(target: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(target.split(":")[-1]).stem)[:40] or "job"
    base = Path("runs") / f"{_dt.datetime.now():%Y%m%d-%H%M%S}-{name}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def torchrun_command(target: str, run_dir: Path, nproc: int, backend: str, kwargs_json: str,
                     script_args: list[str], nnodes: int = 1, node_rank: int | None = None,
                     rdzv_endpoint: str | None = None, max_restarts: int = 0,
                     pg_timeout: float | None = None, extra: list[str] | tuple = ()) -> list[str]:
    """The ``python -m torch.distributed.run ...`` command line that ``launch`` runs."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if nnodes == 1 and rdzv_endpoint is None:
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
    if script_args:
        cmd += ["--", *script_args]
    return cmd



def launch(target: str, nproc: int | None = None, backend: str = "auto",
           args: dict | list | None = None, run_dir: str | os.PathLike | None = None,
           timeout: float | None = None, *, nnodes: int = 1, node_rank: int | None = None,
           rdzv_endpoint: str | None = None, max_restarts: int = 0, progress: bool = True,
           stream: bool = True, torchrun_args: list[str] | tuple = (),
           inject: list[dict] | None = None, collective_timeout: float | None = None,
           energy: str | None = "auto") -> Run:
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
        progress: show a tqdm bar of rank 0's steps; stream: echo rank 0's output.
        torchrun_args: any further torchrun options.
        inject: delays, failures and hangs to inject (:mod:`gpuviz.sync.inject`), recorded in
            ``run.meta["inject"]``.
        collective_timeout: seconds a rank may wait in a collective before the process
            group gives up (default: 30 min, torch's; or twice ``timeout``, at least 60 s).
            A hung rank then ends the job by itself, as :class:`RankHung`.
        energy: the energy meter of every rank (:mod:`gpuviz.energy.meters`): ``"auto"`` (hardware
            counters through Zeus where they can be read, else an estimate from CPU time,
            labelled so), ``"zeus"``, ``"estimate"`` or ``"off"``; see :func:`gpuviz.energy.attribution.joules`.

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
    kind, _ = resolve_target(target)
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
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout <= 0):
        raise ValueError(f"timeout={timeout!r}: give a number of seconds > 0, or None for no limit")
    if isinstance(nnodes, bool) or not isinstance(nnodes, int) or nnodes < 1:
        raise ValueError(f"nnodes={nnodes!r}: the number of nodes must be an integer >= 1")
    if node_rank is not None and not (isinstance(node_rank, int) and 0 <= node_rank < nnodes):
        raise ValueError(f"node_rank={node_rank!r}: must be an integer in [0, nnodes={nnodes})")
    if rdzv_endpoint is not None:
        _check_endpoint(rdzv_endpoint, node_rank)
    # Options that topics own (gpuviz.run.hooks): checked here, sent to every rank.
    options = {name: hooks.option(name).check(value, nproc * nnodes)
               for name, value in (("inject", inject), ("energy", energy))}
    if collective_timeout is not None and (
            isinstance(collective_timeout, bool) or not isinstance(collective_timeout, (int, float))
            or not collective_timeout > 0):
        raise ValueError(f"collective_timeout={collective_timeout!r}: give a number of seconds > 0, "
                         "or None for the default")

    run_dir = Path(run_dir) if run_dir is not None else _default_run_dir(target)
    run_dir.mkdir(parents=True, exist_ok=True)
    # A collective that waits longer than this is abandoned by the process group; with a
    # timeout, keep it longer than the job's so the launcher reports the hang first.
    pg_timeout = None if timeout is None else max(60.0, 2.0 * timeout)
    if collective_timeout is not None:
        pg_timeout = float(collective_timeout)
    cmd = torchrun_command(target, run_dir, nproc, backend, kwargs_json, script_args, nnodes,
                           node_rank, rdzv_endpoint, max_restarts, pg_timeout, torchrun_args)
    info = {"target": target, "args": args, "nproc_per_node": nproc, "nnodes": nnodes,
            "node_rank": node_rank, "backend": backend, "command": cmd, "timeout": timeout,
            "launched_at": time.time(), "status": "running",
            "max_restarts": max_restarts, "collective_timeout": collective_timeout, **options}
    # On many nodes sharing one run directory, node 0 writes run.json and the others their own.
    suffix = f"-node{node_rank}" if nnodes > 1 and node_rank else ""
    info_path = run_dir / f"run{suffix}.json"
    _write_json(info_path, info)

    env = {**os.environ, "GPUVIZ_RUN_DIR": str(run_dir.resolve()), "PYTHONUNBUFFERED": "1"}
    if backend == "gloo":
        env.setdefault("OMP_NUM_THREADS", "1")
    if max_restarts:
        # torchrun shares its rendezvous store with the workers, and a restarted attempt can
        # read the previous attempt's addresses from it and fail to connect ("Connection
        # refused"); a store of their own per attempt avoids that (pytorch/pytorch#135712).
        env.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    for name, value in options.items():
        var = hooks.option(name).env
        env.pop(var, None)
        if value not in (None, [], {}):
            env[var] = value if isinstance(value, str) else json.dumps(value)
    job = Job(cmd, run_dir, stream=stream, progress=progress, env=env, suffix=suffix)
    status, rc = "interrupted", None
    try:
        rc = job.wait(timeout)
        if rc is None:
            status = "timeout"
            job.request_where(nranks=nproc)
        else:
            status = "ok" if rc == 0 else "failed"
    finally:
        job.stop()
        job.finish()
        info.update(status=status, returncode=rc, finished_at=time.time())
        _write_json(info_path, info)

    from gpuviz.run.load import load_run

    run = load_run(run_dir, strict=False)
    if status == "timeout":
        raise RankHung(f"timeout={timeout} s passed and the job was stopped.\n"
                       + run.where_report(), run=run)
    if status == "failed":
        raise job_error(run, rc, list(job.tail), pg_timeout)
    return run


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)

