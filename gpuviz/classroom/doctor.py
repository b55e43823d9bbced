"""Is this seat ready for the labs? ``gpuviz doctor``: one line per check, and what to do.

Checks Python and torch; that gloo starts the labs' ranks (:mod:`~gpuviz.classroom.seat`:
4, or 2 with ``GPUVIZ_LAB_RANKS=2``) on loopback and all-reduces (a real job, through
:func:`gpuviz.launch`); that the ports a hand-started ``torchrun`` uses are free;
cores and memory against what the labs need (for ``seats`` learners on one server);
JupyterLab, the kernel, ipywidgets and the widget extension; that plotly draws offline;
and GPUs, NCCL, NVML and energy counters where present (their absence is fine: the labs run
on CPU processes). Each line says pass or fail and the seconds the check took; a failure
says how to fix it. ``--json`` for an instructor to collect; the exit code is 1 when a
required check fails.

    gpuviz doctor                 # this seat
    gpuviz doctor --seats 20      # a JupyterHub server for 20 learners
    gpuviz doctor --json > seat.json

>>> import gpuviz
>>> report = gpuviz.doctor()          # in a notebook: a table  # doctest: +SKIP
>>> report.ok                                                     # doctest: +SKIP
True
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpuviz.classroom import seat

DATA = Path(__file__).resolve().parent.parent / "data"
#: What benchmarks/seats.py measured, one file per rank count of the labs' jobs.
SEATS = {4: DATA / "seats.json", 2: DATA / "seats-2-ranks.json"}
#: A notebook kernel with gpuviz, pandas and plotly loaded: 0.3 GiB resident here; with room.
KERNEL_GB = 0.5


def seats_measured(ranks: int | None = None) -> dict:
    """What benchmarks/seats.py measured for the labs' jobs on ``ranks`` ranks (default:
    :func:`gpuviz.classroom.seat.ranks`)."""
    ranks = seat.ranks() if ranks is None else ranks
    if ranks not in SEATS:
        raise ValueError(f"ranks={ranks!r}: seats were measured on {sorted(SEATS)} ranks")
    return json.loads(SEATS[ranks].read_text(encoding="utf-8"))


def seat_needs(ranks: int | None = None) -> tuple[float, int]:
    """(GiB, cores) one learner needs when the labs run ``ranks`` ranks: the peak memory of
    Lab 00's job measured by benchmarks/seats.py plus a notebook kernel, and the cores that
    job keeps busy alone (its ranks on this machine's cores: more copies than cores / that
    slow each other down in proportion, as the measurement shows).

    >>> gb, cores = seat_needs(4); gb > seat_needs(2)[0] and cores >= 1
    True
    """
    data = seats_measured(ranks)
    one = next(r for r in data["rounds"] if r["copies"] == 1)
    return round(one["peak_one_gb"] + KERNEL_GB, 1), min(int(data["cores"]), int(data.get("ranks", 4)))
#: The default ports of torch.distributed: MASTER_PORT of torchrun, and its c10d rendezvous.
TORCH_PORTS = (29500, 29400)


@dataclass
class Check:
    name: str
    ok: bool | None          # None: not present, and not needed (a GPU on a CPU seat)
    detail: str
    fix: str = ""
    seconds: float = 0.0
    required: bool = True


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No required check failed."""
        return not any(c.ok is False and c.required for c in self.checks)

    def text(self) -> str:
        lines = []
        for c in self.checks:
            word = {True: "PASS", False: "FAIL" if c.required else "WARN", None: "  --"}[c.ok]
            lines.append(f"{word}  {c.name:<28} {c.detail}  ({c.seconds:.1f} s)")
            if c.fix and c.ok is False:
                lines.append(f"      fix: {c.fix}")
        verdict = "ready for the labs" if self.ok else "NOT ready: fix what FAIL says above"
        lines.append(f"\nThis seat is {verdict}.")
        return "\n".join(lines)

    def json(self) -> str:
        return json.dumps({"ok": self.ok, "host": platform.node(), "time": time.time(),
                           "checks": [asdict(c) for c in self.checks]}, indent=1)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td style='color:{ {True: '#2E7D32', False: '#C62828', None: '#777'}[c.ok]}'>"
            f"<b>{ {True: 'pass', False: 'fail' if c.required else 'warn', None: '—'}[c.ok]}</b></td>"
            f"<td>{html.escape(c.name)}</td><td>{html.escape(c.detail)}"
            + (f"<br><i>fix: {html.escape(c.fix)}</i>" if c.fix and c.ok is False else "")
            + f"</td><td>{c.seconds:.1f} s</td></tr>" for c in self.checks)
        return f"<table>{rows}</table><p>This seat is {'ready' if self.ok else '<b>not</b> ready'} for the labs.</p>"


def _timed(fn: Callable[[], Check]) -> Check:
    t = time.perf_counter()
    try:
        c = fn()
    except Exception as e:  # noqa: BLE001 - a check that breaks is a failed check, named
        c = Check(fn.__name__.lstrip("_").replace("_", " "), False, f"{type(e).__name__}: {e}",
                  "report this output to the instructor")
    c.seconds = time.perf_counter() - t
    return c


# -- the checks ------------------------------------------------------------------------------

def check_python() -> Check:
    v = sys.version_info
    ok = v >= (3, 10)
    return Check("python", ok, f"{platform.python_implementation()} {v.major}.{v.minor}.{v.micro}",
                 "install Python 3.10 or newer (3.11 is what CI uses), then `make setup`")


def check_torch() -> Check:
    import torch
    import torch.distributed as dist

    ok = dist.is_available() and dist.is_gloo_available()
    return Check("torch", ok, f"torch {torch.__version__}, gloo {'yes' if ok else 'no'}",
                 "pip install torch==2.13.0 (its CPU build has gloo)")


def check_lab_ranks() -> Check:
    """The labs' rank count (:mod:`gpuviz.classroom.seat`), from ``$GPUVIZ_LAB_RANKS``."""
    try:
        n = seat.ranks()
    except ValueError as e:
        return Check("lab ranks", False, str(e), f"set {seat.ENV} to one of {seat.ALLOWED}, or unset it")
    how = f"{seat.ENV}={n}" if os.environ.get(seat.ENV, "").strip() else "the default"
    return Check("lab ranks", True, f"each lab's jobs run on {n} ranks ({how})")


def check_gloo(nproc: int | None = None) -> Check:
    """A real job: ``nproc`` ranks (default: the labs' :func:`~gpuviz.classroom.seat.ranks`)
    on loopback, each all-reduces a tensor of ones."""
    from gpuviz.run.launch import launch

    nproc = seat.ranks() if nproc is None else nproc

    with tempfile.TemporaryDirectory(prefix="gpuviz-doctor-") as d:
        run = launch("gpuviz.classroom.doctor:all_reduce_ones", nproc=nproc, energy="off",
                     progress=False, stream=False, timeout=90, run_dir=os.path.join(d, "run"))
        ends = run.events[run.events["name"] == "step_end"]
        got = [a.get("doctor_sum") for a in ends["args"]]
    ok = len(got) == nproc and all(g == nproc for g in got)
    return Check(f"gloo, {nproc} ranks on loopback", ok,
                 f"all-reduce of ones gave {sorted(set(got)) or 'nothing'} on {len(got)} ranks",
                 "check that 127.0.0.1 works (`ping -c1 127.0.0.1`) and no firewall blocks loopback; "
                 "then run `gpuviz run gpuviz.workloads.mlp:train --nproc 2` and read its error")


def all_reduce_ones() -> None:
    """On every rank of the doctor's job: all-reduce ones, record the sum."""
    import torch
    import torch.distributed as dist

    from gpuviz.run import trace

    t = torch.ones(8)
    dist.all_reduce(t)
    trace.step(doctor_sum=float(t[0]))


def check_ports(ports=TORCH_PORTS) -> Check:
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", int(port)))
            except OSError:
                taken.append(int(port))
    names = ", ".join(map(str, ports))
    return Check("ports " + names, not taken,
                 f"in use: {', '.join(map(str, taken))}" if taken else "free",
                 f"port {taken[0] if taken else ''} is held by another process "
                 f"(`ss -ltnp 'sport = :{taken[0] if taken else 0}'` names it): stop it, or give torchrun "
                 "--master-port / --rdzv-endpoint another port (gpuviz.launch picks a free one itself)",
                 required=True)


def _memory_available() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_resources(seats: int = 1, memory: int | None = None, cores: int | None = None) -> list[Check]:
    memory = _memory_available() if memory is None else memory
    cores = _cores() if cores is None else cores
    ranks = seat.ranks()
    need_gb, need_cores = seat_needs(ranks)
    gb = memory / 2**30
    fit_mem, fit_cores = int(gb // need_gb), cores // need_cores
    lower = ""
    if ranks > min(SEATS):
        low_gb, _ = seat_needs(min(SEATS))
        lower = (f"; or set {seat.ENV}={min(SEATS)} before starting JupyterLab (every lab then runs "
                 f"{min(SEATS)} ranks, and a seat needs about {low_gb} GiB)")
    who = "this seat needs" if seats == 1 else f"{seats} seats need"

    def n_seats(n):
        return f"{n} seat" + ("" if n == 1 else "s")

    return [
        Check("memory", gb >= seats * need_gb,
              f"{gb:.1f} GiB available; {who} {seats * need_gb:.1f} (holds {n_seats(fit_mem)})",
              f"free memory (close other programs) or seat at most {fit_mem} learners here; a lab's job "
              f"on {ranks} ranks needs about {need_gb} GiB at its peak{lower}"),
        Check("cores", cores >= seats * need_cores,
              f"{cores} cores; {who} {seats * need_cores} (holds {n_seats(fit_cores)} at full speed)",
              f"seat at most {max(fit_cores, 1)} learners here, or expect each lab's job to run "
              f"about {max(seats * need_cores / max(cores, 1), 1):.1f}x longer{lower}",
              required=False),
    ]


def check_module(mod: str) -> Check:
    try:
        m = importlib.import_module(mod)
        return Check(mod, True, f"{mod} {getattr(m, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001 - a broken install fails the same way
        return Check(mod, False, f"cannot import {mod} ({type(e).__name__})",
                     f"pip install {mod} (the version in requirements/lock.txt), or `make setup`")


def check_jupyter() -> list[Check]:
    out = [_timed(lambda m=mod: check_module(m)) for mod in ("jupyterlab", "ipykernel", "ipywidgets")]
    out.append(_timed(check_widget_extension))
    return out


def check_widget_extension() -> Check:
    exe = shutil.which("jupyter", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        return Check("widget extension", False, "no `jupyter` command", "pip install jupyterlab, or `make setup`")
    r = subprocess.run([exe, "labextension", "list"], capture_output=True, text=True, timeout=60)
    text = r.stdout + r.stderr
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)          # its colours
    line = next((ln for ln in text.splitlines() if "@jupyter-widgets/jupyterlab-manager" in ln), "")
    ok = "enabled" in line and "OK" in line
    return Check("widget extension", ok, line.strip() or "@jupyter-widgets/jupyterlab-manager not listed",
                 "pip install jupyterlab_widgets (comes with ipywidgets 8), then restart JupyterLab")


def check_plotly() -> Check:
    import plotly
    import plotly.graph_objects as go
    import plotly.io as pio

    page = pio.to_html(go.Figure(go.Scatter(y=[1, 2])), include_plotlyjs=True, full_html=True)
    remote = re.search(r"<script[^>]*\bsrc=[\"']?(?:https?:)?//", page)
    ok = len(page) > 1_000_000 and remote is None
    return Check("plotly offline", ok, f"plotly {plotly.__version__}, figure page {len(page) / 1e6:.1f} MB "
                 "with plotly.js inside", "pip install plotly (its bundled plotly.js draws with no network)")


def check_gpus() -> list[Check]:
    import torch

    if not torch.cuda.is_available():
        return [Check("GPUs", None, "none (fine: the labs run as CPU processes over gloo)", required=False)]
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    out = [Check("GPUs", True, ", ".join(names), required=False)]
    try:
        v = torch.cuda.nccl.version()
        out.append(Check("NCCL", True, ".".join(map(str, v)) if isinstance(v, tuple) else str(v), required=False))
    except Exception as e:  # noqa: BLE001
        out.append(Check("NCCL", False, f"{type(e).__name__}: {e}", "install torch's CUDA build", required=False))
    return out


def check_energy() -> Check:
    import warnings

    from gpuviz.energy.meters import make_meter

    with warnings.catch_warnings():     # the meter's own warning says what this check says
        warnings.simplefilter("ignore")
        m = make_meter("auto")
    try:
        d = m.describe()
    finally:
        m.close()
    estimated = bool(d.get("estimated"))
    return Check("energy counters", None if estimated else True,
                 ("none readable: energy is estimated from CPU time, and labelled so" if estimated
                  else f"{d.get('meter')}: {d.get('note') or 'hardware counters'}"), required=False)


def check_compiled() -> Check:
    """gpuviz's compiled helpers (built here now if they are not yet: about 20 s, once)."""
    from gpuviz.energy import native
    from gpuviz.run import compiled, lines, native_buckets

    why = [f"{name}: {h.why_not()}" for name, h in (("DDP's bucket recorder", native_buckets),
                                                     ("energy sampler thread", native),
                                                     ("trace spans and line writer", lines))
           if h.load() is None]
    return Check("compiled helpers", not why,
                 "; ".join(why) + "; runs use the Python routes, which cost a little more CPU time"
                 if why else f"built, in {compiled.cache_root()}",
                 "install a C and C++ compiler and ninja, then run `gpuviz build-native`",
                 required=False)


def doctor(seats: int = 1, ports=TORCH_PORTS, nproc: int | None = None, job: bool = True) -> Report:
    """Run every check; ``seats``: learners this machine must hold; ``nproc``: the job's ranks
    (default: the labs' :func:`~gpuviz.classroom.seat.ranks`); ``job=False`` skips the job
    (the slowest check)."""
    if isinstance(seats, bool) or not isinstance(seats, int) or seats < 1:
        raise ValueError(f"seats={seats!r}: give the number of learners, an integer >= 1")
    r = Report()
    r.checks.append(_timed(check_python))
    r.checks.append(_timed(check_torch))
    ranks = _timed(check_lab_ranks)
    r.checks.append(ranks)
    if job and ranks.ok:
        r.checks.append(_timed(lambda: check_gloo(nproc)))
    r.checks.append(_timed(lambda: check_ports(ports)))
    if ranks.ok:
        t = time.perf_counter()
        res = check_resources(seats)
        for c in res:
            c.seconds = (time.perf_counter() - t) / len(res)
        r.checks += res
    r.checks += check_jupyter()
    r.checks.append(_timed(check_plotly))
    t = time.perf_counter()
    gpus = check_gpus()
    for c in gpus:
        c.seconds = (time.perf_counter() - t) / len(gpus)
    r.checks += gpus
    r.checks.append(_timed(check_energy))
    r.checks.append(_timed(check_compiled))
    return r
