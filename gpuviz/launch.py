"""Start a real multi-process job with ``torch.distributed.run`` (torchrun).

>>> run = launch("gpuviz.workloads.mlp:train", nproc=4, args={"steps": 5})  # doctest: +SKIP
>>> run.summary()                                                          # doctest: +SKIP

The same from a terminal, and on many nodes (run on each node)::

    gpuviz run gpuviz.workloads.mlp:train --nproc 4
    gpuviz run my_train.py --nproc 8 --nnodes 2 --node-rank 0 --rdzv-endpoint node0:29500

Workers run in their own sessions under torchrun; an interrupt, an error or a timeout
stops torchrun, which stops its workers, and any worker still alive after a grace
period is killed. Every rank's trace is kept in the run directory either way.

Faults on purpose (:mod:`gpuviz.inject`): a slow rank, a failure that an elastic restart
recovers from a checkpoint, a hang that the collective timeout ends::

    from gpuviz.inject import slow_rank, fail_at, hang_at
    launch("gpuviz.workloads.mlp:train", 4, inject=[slow_rank(1, 0.05)])
    launch("gpuviz.workloads.mlp:train", 4, args={"checkpoint_every": 2},
           max_restarts=1, inject=[fail_at(2, 5)])
    launch("gpuviz.workloads.mlp:train", 4, inject=[hang_at(1, 3)], collective_timeout=10)
"""

from __future__ import annotations

import collections
import datetime as _dt
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from gpuviz import inject as _inject
from gpuviz.energy import ENV as ENERGY_ENV
from gpuviz.energy import check_meter
from gpuviz.target import resolve_target
from gpuviz.trace import DUMP_REQUEST

if TYPE_CHECKING:
    from gpuviz.runs import Run

BACKENDS = ("auto", "gloo", "nccl")
_RANK_PREFIX = re.compile(r"^\[(?:rank|default)(\d+)\]:(.*)$")


class LaunchError(RuntimeError):
    """A job did not finish. ``.run`` holds what every rank recorded until then."""

    def __init__(self, message: str, run: Run | None = None):
        super().__init__(message)
        self.run = run


class RankFailed(LaunchError):
    """A rank raised: the message names it and shows its traceback."""


class RankHung(LaunchError, TimeoutError):
    """The job hung: it ran past its timeout, or ranks waited in a collective longer than
    the collective timeout for a rank that never joined. The message says where each
    rank was and which rank the others waited for."""


class InjectionError(RankFailed, ValueError):
    """An injection the workload's own length rules out (a failure or hang at a step
    beyond its last), found by every rank once the workload said how many steps it runs."""


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
            "-m", "gpuviz.worker", target, "--run-dir", str(run_dir), "--backend", backend,
            "--kwargs", kwargs_json]
    if pg_timeout:
        cmd += ["--pg-timeout", str(pg_timeout)]
    if script_args:
        cmd += ["--", *script_args]
    return cmd


class _Job:
    """A running torchrun process: output, progress, and a clean stop."""

    def __init__(self, cmd: list[str], run_dir: Path, stream: bool, progress: bool, env: dict,
                 suffix: str = ""):
        self.run_dir = run_dir
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.known_pids: set[int] = set()
        self._log = open(run_dir / f"launcher{suffix}.log", "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=env,
                                     text=True, bufsize=1)
        self._stream = stream
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        self._progress = threading.Thread(target=self._watch, args=(progress,), daemon=True)
        self._done = threading.Event()
        self._progress.start()

    def _read_output(self) -> None:
        for line in self.proc.stdout:
            self._log.write(line)
            self.tail.append(line.rstrip("\n"))
            m = _RANK_PREFIX.match(line)
            if self._stream and m:
                sys.stdout.write(m.group(2).lstrip(" ") + ("" if m.group(2).endswith("\n") else "\n"))
                sys.stdout.flush()
        self._log.flush()

    def _watch(self, progress: bool) -> None:
        """Track the worker processes and draw a bar of rank 0's finished steps."""
        bar, seen, offset, total = None, 0, 0, None
        try:
            while not self._done.is_set():
                self._track_pids()
                files = sorted(self.run_dir.glob("rank*.jsonl"),
                               key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
                if progress and files:
                    with open(files[0], encoding="utf-8") as f:
                        f.seek(offset)
                        chunk = f.read()
                    complete = chunk[: chunk.rfind("\n") + 1]
                    offset += len(complete.encode("utf-8"))
                    for line in complete.splitlines():
                        if '"total_steps"' in line:
                            m = re.search(r'"total_steps":(\d+)', line)
                            total = int(m.group(1)) if m else total
                        if '"step_end"' in line:
                            seen += 1
                    if bar is None and (seen or total):
                        from tqdm.auto import tqdm

                        bar = tqdm(total=total, unit="step", desc=f"rank 0 of {self.run_dir.name}")
                    if bar is not None:
                        if total and bar.total != total:
                            bar.total = total
                            bar.refresh()
                        bar.update(seen - bar.n)
                self._done.wait(0.1)
        finally:
            if bar is not None:
                bar.close()

    def _track_pids(self) -> None:
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.known_pids.add(child.pid)
        except psutil.Error:
            pass

    def wait(self, timeout: float | None) -> int | None:
        """Wait for torchrun to exit; None if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() > deadline:
                    return None

    def request_where(self, wait: float = 3.0, nranks: int = 1) -> None:
        """Ask every rank to write where it is, and give them ``wait`` seconds to answer."""
        (self.run_dir / DUMP_REQUEST).touch()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            answered = sum('"name":"where"' in p.read_text(encoding="utf-8", errors="replace")
                           for p in self.run_dir.glob("rank*.jsonl"))
            if answered >= nranks:
                break
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """Stop torchrun (which stops its workers), then kill anything left."""
        self._track_pids()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self._track_pids()
        survivors = []
        for pid in self.known_pids | {self.proc.pid}:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    survivors.append(p)
            except psutil.Error:
                continue
        for p in survivors:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(survivors, timeout=3)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def finish(self) -> None:
        self._done.set()
        self._progress.join(timeout=5)
        self._reader.join(timeout=5)
        self._log.close()
        (self.run_dir / DUMP_REQUEST).unlink(missing_ok=True)


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
            checkpoints resumes from the last (:mod:`gpuviz.checkpoint`). The run is
            returned if an attempt finishes; ``run.meta["restarts"]`` says how many it took.
        progress: show a tqdm bar of rank 0's steps; stream: echo rank 0's output.
        torchrun_args: any further torchrun options.
        inject: delays, failures and hangs to inject (:mod:`gpuviz.inject`), recorded in
            ``run.meta["inject"]``.
        collective_timeout: seconds a rank may wait in a collective before the process
            group gives up (default: 30 min, torch's; or twice ``timeout``, at least 60 s).
            A hung rank then ends the job by itself, as :class:`RankHung`.
        energy: the energy meter of every rank (:mod:`gpuviz.energy`): ``"auto"`` (hardware
            counters through Zeus where they can be read, else an estimate from CPU time,
            labelled so), ``"zeus"``, ``"estimate"`` or ``"off"``; see ``run.energy()``.

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
    specs = _inject.validate(inject, nproc * nnodes)
    energy = check_meter(energy)
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
            "launched_at": time.time(), "status": "running", "inject": specs,
            "max_restarts": max_restarts, "collective_timeout": collective_timeout,
            "energy": energy}
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
    env.pop(_inject.ENV, None)
    env[ENERGY_ENV] = energy
    if specs:
        env[_inject.ENV] = json.dumps(specs)
    job = _Job(cmd, run_dir, stream=stream, progress=progress, env=env, suffix=suffix)
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

    from gpuviz.runs import load_run

    run = load_run(run_dir, strict=False)
    if status == "timeout":
        raise RankHung(f"timeout={timeout} s passed and the job was stopped.\n"
                       + run.where_report(), run=run)
    if status == "failed":
        raise _job_error(run, rc, list(job.tail), pg_timeout)
    return run


def _job_error(run: Run, rc: int | None = None, tail: list[str] | tuple = (),
              collective_timeout: float | None = None) -> LaunchError:
    """The exception that says why a failed job failed: :class:`RankHung` when ranks timed
    out in a collective waiting for one that never joined it, :class:`InjectionError` for
    an injection beyond the run, else :class:`RankFailed` naming the first rank that raised."""
    hang = _collective_hang(run, collective_timeout)
    if hang:
        return RankHung(hang, run=run)
    errors = run.errors()
    bad_injection = len(errors) and errors["error"].iloc[0].startswith("ValueError: inject[")
    cls = InjectionError if bad_injection else RankFailed
    return cls(_failure_message(run, rc, list(tail)), run=run)


def _collective_hang(run: Run, pg_timeout: float | None) -> str | None:
    """Say who hung, if the job ended because ranks timed out waiting in a collective for a
    rank that never joined it; None if it failed in another way.

    A rank's position is its innermost open span: from its error event, or, for a rank
    torchrun stopped, from the spans its SIGTERM handler cut (``interrupted``).
    """
    last = run.meta.get("restarts", 0)
    ev, sp = run.events[run.events["attempt"] == last], run.spans[run.spans["attempt"] == last]
    errors = ev[ev["name"] == "error"]

    def timed_out(args: dict) -> bool:
        text = str(args.get("error", "")).lower()
        return "timed out" in text or "timeout" in text

    if errors.empty or not any(timed_out(a) for a in errors["args"]):
        return None
    waiting, absent = {}, {}
    for rank in range(run.world_size):
        err = errors[errors["rank"] == rank]
        if len(err):
            a = err.iloc[0]["args"]
            opened = a.get("open_spans") or []
            inner = opened[-1] if opened else None
            if inner is None and timed_out(a):  # e.g. the worker's last barrier
                inner = {"name": "an untraced collective", "cat": "comm", "since_s": None}
            if inner is None or inner["cat"] not in ("comm", "idle"):
                return None  # an error outside a collective: a failure, not a hang
            first = re.sub(r"\[[^\]]*\.cc:\d+\] ", "", (a.get("error") or "").splitlines()[0])[:160]
            since = "" if inner["since_s"] is None else f" for {inner['since_s']:.1f} s"
            waiting[rank] = (f"rank {rank}: step {a.get('step')}, waited in {inner['name']!r} "
                             f"({inner['cat']}){since}, then: {first}", inner["name"], a.get("step"))
            continue
        cut = sp[(sp["rank"] == rank) & sp["interrupted"] & (sp["lane"] == "main")]
        if rank not in run.raw:
            absent[rank] = f"rank {rank}: wrote no trace at all"
        elif cut.empty:
            absent[rank] = f"rank {rank}: in no span when it was stopped (see its log)"
        else:
            c = cut.sort_values("start").iloc[-1]  # the innermost span open when stopped
            where = (f"rank {rank}: step {c['step']}, in span {c['name']!r} ({c['cat']}) for "
                     f"{c['dur']:.1f} s when it was stopped")
            if c["cat"] in ("comm", "idle"):
                waiting[rank] = (where, c["name"], c["step"])
            else:
                absent[rank] = where + "  <- not in a collective: the others waited for it"
    if not waiting or not absent:
        return None
    names = sorted({str(w[1]) for w in waiting.values()})
    steps = sorted({str(w[2]) for w in waiting.values()})
    limit = f"collective_timeout={pg_timeout:g} s" if pg_timeout else "the collective timeout"
    head = (f"rank{'s' if len(absent) > 1 else ''} {', '.join(map(str, absent))} never joined the "
            f"collective that rank{'s' if len(waiting) > 1 else ''} {', '.join(map(str, waiting))} "
            f"waited in ({' / '.join(repr(n) for n in names)}, step {', '.join(steps)}); after "
            f"{limit} the process group gave up and the job ended.")
    lines = [head, "Where each rank was:"]
    lines += [waiting[r][0] if r in waiting else absent[r] for r in sorted({*waiting, *absent})]
    lines.append(f"Every rank's trace is in {run.path}")
    return "\n".join(lines)


def _failure_message(run: Run | None, rc: int, tail: list[str]) -> str:
    errors = run.errors() if run is not None else None
    if errors is None or errors.empty:
        return (f"the job failed (torchrun exit code {rc}) before any rank recorded an error; "
                "its last output:\n" + "\n".join(tail[-40:]))
    first = errors.iloc[0]
    lines = [f"rank {first['rank']} failed at step {first['step']}: {first['error']}", "",
             f"Traceback of rank {first['rank']}:", first["traceback"]]
    others = errors.iloc[1:]
    if len(others):
        lines.append("Then, ranks that stopped because of it:")
        lines += [f"  rank {r.rank}: {(r.error.splitlines() or [''])[0][:200]}" for r in others.itertuples()]
    lines.append(f"Every rank's trace up to the failure is in {run.path}")
    return "\n".join(lines)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)
