"""Why a job failed, in words: the rank that raised and its traceback, or who hung.

The exceptions :func:`gpuviz.launch` raises, and :func:`job_error`, which picks the one
that fits what the ranks recorded.
"""

from __future__ import annotations

import re
import signal
from typing import TYPE_CHECKING

from gpuviz.run import exit_grace

if TYPE_CHECKING:
    from gpuviz.run.load import Run


class LaunchError(RuntimeError):
    """A job did not finish. ``.run`` holds what every rank recorded until then."""

    def __init__(self, message: str, run: Run | None = None):
        super().__init__(message)
        self.run = run

    def _render_traceback_(self) -> list[str]:
        """What IPython shows: the message, not the launcher's own frames."""
        return [f"{type(self).__name__}: {line}" if i == 0 else line
                for i, line in enumerate(str(self).splitlines())]


class Interrupted(LaunchError, KeyboardInterrupt):
    """The job was interrupted (a notebook cell, Ctrl-C): every worker was stopped, and
    ``.run`` holds what they recorded until then."""


class RankFailed(LaunchError):
    """A rank raised: the message names it and shows its traceback."""


class RankHung(LaunchError, TimeoutError):
    """The job hung: it ran past its timeout, or ranks waited in a collective longer than
    the collective timeout for a rank that never joined. The message says where each
    rank was and which rank the others waited for."""


class InjectionError(RankFailed, ValueError):
    """An injection the workload's own length rules out (a failure or hang at a step
    beyond its last), found by every rank once the workload said how many steps it runs."""



def job_error(run: Run, rc: int | None = None, tail: list[str] | tuple = (),
              collective_timeout: float | None = None) -> LaunchError:
    """The exception that says why a failed job failed: :class:`RankHung` when ranks timed
    out in a collective waiting for one that never joined it, :class:`InjectionError` for
    an injection beyond the run, else :class:`RankFailed` naming the first rank that raised."""
    hang = _collective_hang(run, collective_timeout)
    if hang:
        return RankHung(hang, run=run)
    errors = run.errors()
    errors = errors[errors["attempt"] == run.meta.get("restarts", 0)].reset_index(drop=True)
    # A rank that died with no Python exception left no error in its trace: torchrun's report
    # names it (its "first observed failure" is no guide among ranks that all raised).
    root = _dead_rank(run, errors, torchrun_failures(tail))
    if root is not None:
        return RankFailed(_death_message(run, root, errors), run=run)
    bad_injection = len(errors) and errors["error"].iloc[0].startswith("OptionError: ")
    cls = InjectionError if bad_injection else RankFailed
    return cls(_failure_message(run, rc, list(tail), errors), run=run)


def torchrun_failures(output: list[str] | tuple) -> dict[int, dict]:
    """The failed ranks of torchrun's last failure report: rank -> ``exitcode`` (negative
    for a signal) and ``pid``; empty when its output has no report.

    >>> torchrun_failures(["Failures:", "[0]:", "  rank      : 1 (local_rank: 1)",
    ...     "  exitcode  : -9 (pid: 4321)  (SIGKILL)", "Root Cause (first observed failure):"])
    {1: {'exitcode': -9, 'pid': 4321}}
    """
    text = "\n".join(output)
    i = max(text.rfind("Failures:"), text.rfind("Root Cause (first observed failure):"))
    if i < 0:
        return {}
    j = text.rfind("Failures:", 0, i + 1)
    out = {}
    for m in re.finditer(r"rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)(?:\s*\(pid:\s*(\d+)\))?",
                         text[j if j >= 0 else i:]):
        out.setdefault(int(m.group(1)), {"exitcode": int(m.group(2)),
                                         "pid": int(m.group(3)) if m.group(3) else None})
    return out


def _dead_rank(run: Run, errors, reported: dict[int, dict]) -> dict | None:
    """The rank that died with no Python exception, while others failed: one that left no
    error in its trace and was not stopped by torchrun, or one torchrun reports failed that
    left no error (with its exit code or signal where torchrun's report has it). None when
    every failed rank raised."""
    if errors.empty and not reported:
        return None
    ev = run.events[run.events["attempt"] == run.meta.get("restarts", 0)]
    told = set(ev.loc[ev["name"].isin(["error", "stopped"]), "rank"])
    silent = [r for r in run.ranks if r not in told] if len(errors) else []
    silent += [r for r in sorted(reported) if r not in told and r not in silent]
    if not silent:
        return None
    rank = silent[0]
    info = reported.get(rank, {})
    return {"rank": rank, "exitcode": info.get("exitcode"),
            "pid": info.get("pid") or run.meta.get("pids", {}).get(rank)}


def _death_message(run: Run, root: dict, errors) -> str:
    """A rank that died with no Python exception: its exit code or signal, then the others."""
    rank, code = root["rank"], root["exitcode"]
    if code is None:
        how = ("ended with no Python exception and was not stopped by torchrun: it died (os._exit, "
               "a signal such as the OOM killer's SIGKILL, or a crash in native code; torchrun "
               "reported no exit code)")
    elif code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = f"was killed by {name}" + (" (the kernel's OOM killer sends it when memory runs "
                                         "out, as does kill -9)" if name == "SIGKILL" else "")
    else:
        how = (f"exited with code {code} and no Python exception (os._exit, a crash in native "
               "code, or an exit from another thread)")
    ev = run.events
    ends = ev[(ev["rank"] == rank) & (ev["name"] == "step_end")
              & (ev["attempt"] == run.meta.get("restarts", 0))]
    step = int(ends["step"].max()) + 1 if len(ends) else 0
    source = "torchrun's report" if code is not None else "the ranks' traces"
    lines = [f"rank {rank} {how}, during step {step} (pid {root['pid']}; {source})."]
    if code == -signal.SIGALRM:   # the exit watchdog's signal: the steps were over
        after = f"after step {step - 1}" if step else "with no step recorded"
        lines = [f"rank {rank} was killed by SIGALRM {after} (pid {root['pid']}; {source}): "
                 + exit_grace.WHY.format(logs=run.path / "logs") + "."]
        stack = _stack_in_log(run, rank)
        if stack:
            lines += ["Where it was (its log):", *(f"  {line}" for line in stack)]
    if len(errors):
        lines.append("Then, ranks that stopped because of it:")
        lines += [f"  rank {r.rank}: {(r.error.splitlines() or [''])[0][:200]}"
                  for r in errors.itertuples()]
    lines.append(f"Every rank's trace up to the failure is in {run.path}")
    return "\n".join(lines)


def _stack_in_log(run: Run, rank: int, most: int = 40) -> list[str]:
    """The stacks faulthandler wrote to ``rank``'s log when the exit watchdog fired (from
    its "Timeout (" line, at most ``most`` lines); empty where there are none, or where the
    log cannot be told from another node's (a job of several nodes)."""
    per_node = run.meta.get("nproc_per_node")
    if not per_node or (run.meta.get("nnodes") or 1) > 1:
        return []
    attempt = f"attempt_{run.meta.get('restarts', 0)}"
    for path in sorted((run.path / "logs").rglob(f"{attempt}/{rank % per_node}/stderr.log")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("Timeout (")]
        if starts:
            return lines[starts[-1]:starts[-1] + most]
    return []


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
    if missing := run.missing_ranks():
        absent[missing.split(" ", 1)[1]] = f"{missing}: wrote no trace at all"
    for rank in run.ranks:
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
        if cut.empty:
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
    lines += [absent[r] for r in absent if isinstance(r, str)]   # ranks that wrote nothing
    lines += [waiting[r][0] if r in waiting else absent[r]
              for r in sorted(r for r in {*waiting, *absent} if isinstance(r, int))]
    lines.append(f"Every rank's trace is in {run.path}")
    return "\n".join(lines)


def _failure_message(run: Run | None, rc: int, tail: list[str], errors=None) -> str:
    if errors is None and run is not None:
        errors = run.errors()
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

