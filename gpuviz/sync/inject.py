"""Faults and delays injected into a running job: slow ranks, jitter, failures, hangs.

An injection is a small JSON-serialisable dict; ``gpuviz.launch(..., inject=[...])``
checks it against the job's size, records it in ``run.meta["inject"]`` and hands it to
every worker, whose tracer acts on it (:mod:`gpuviz.sync.injector`) at the start of each step (at the tracer's start
and after each ``trace.step()``), so any traced workload gets it with no change to its code.

Why it matters: in synchronous training every collective waits for the slowest rank,
so one rank's delay becomes everyone's idle time, and a rare long delay on one of many
ranks happens almost every step ("The Tail at Scale", Dean & Barroso, CACM 56(2), 2013).

>>> slow_rank(1, 0.05)
{'kind': 'slow', 'rank': 1, 'delay_s': 0.05}
>>> spec = jitter("exponential", mean_s=0.02)
>>> mean_delay(spec)
0.02
>>> validate([fail_at(2, 5), hang_at(1, 3)], nproc=4)[0]
{'kind': 'fail', 'rank': 2, 'step': 5}
>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4,
...                     inject=[slow_rank(1, 0.05)])          # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from typing import Any

from gpuviz.run.hooks import OptionError

#: What an injection can do.
KINDS = ("slow", "jitter", "fail", "hang")
#: Jitter distributions and the parameters each one takes.
DISTRIBUTIONS = {"exponential": ("mean_s",), "uniform": ("low_s", "high_s"),
                 "normal": ("mean_s", "std_s"), "lognormal": ("mean_s", "sigma")}
#: The environment variable that carries the injections (JSON) to the workers.
ENV = "GPUVIZ_INJECT"

_KEYS = {"slow": ("rank", "delay_s"), "fail": ("rank", "step"), "hang": ("rank", "step"),
         "jitter": ("dist", "ranks", "seed")}


class InjectedFailure(RuntimeError):
    """Raised on a rank by a ``fail`` injection (:func:`fail_at`)."""


# -- building specs ---------------------------------------------------------------------

def slow_rank(rank: int, delay_s: float) -> dict:
    """``rank`` sleeps ``delay_s`` seconds at the start of every step (a straggler).

    >>> slow_rank(0, 0.2)["delay_s"]
    0.2
    """
    return _checked({"kind": "slow", "rank": rank, "delay_s": delay_s})


def jitter(dist: str, *, mean_s: float | None = None, low_s: float | None = None,
           high_s: float | None = None, std_s: float | None = None, sigma: float | None = None,
           ranks: list[int] | None = None, seed: int = 0) -> dict:
    """Every chosen rank (``ranks=None``: all) sleeps a fresh random delay each step.

    ``dist`` and its parameters (seconds): ``"exponential"`` (``mean_s``), ``"uniform"``
    (``low_s``, ``high_s``), ``"normal"`` (``mean_s``, ``std_s``; a negative draw sleeps 0),
    ``"lognormal"`` (``mean_s`` is the delay's mean, ``sigma`` the log's standard deviation:
    heavy-tailed). Each rank draws from its own generator seeded by ``(seed, rank)``, so a
    run is reproducible, and step k's delay is the same after a restart.

    >>> jitter("uniform", low_s=0.01, high_s=0.03, ranks=[0, 2])["ranks"]
    [0, 2]
    """
    spec: dict[str, Any] = {"kind": "jitter", "dist": dist}
    given = {"mean_s": mean_s, "low_s": low_s, "high_s": high_s, "std_s": std_s, "sigma": sigma}
    spec.update({k: v for k, v in given.items() if v is not None})
    spec.update(ranks=ranks, seed=seed)
    return _checked(spec)


def fail_at(rank: int, step: int) -> dict:
    """``rank`` raises :class:`InjectedFailure` when ``step`` starts (first attempt only:
    an elastic restart does not fail again).

    >>> fail_at(2, 5)
    {'kind': 'fail', 'rank': 2, 'step': 5}
    """
    return _checked({"kind": "fail", "rank": rank, "step": step})


def hang_at(rank: int, step: int) -> dict:
    """``rank`` stops forever at the start of ``step``, inside a span ``injected hang``.

    >>> hang_at(1, 3)["kind"]
    'hang'
    """
    return _checked({"kind": "hang", "rank": rank, "step": step})


# -- checking -------------------------------------------------------------------------------

def validate(injections: Any, nproc: int | None = None) -> list[dict]:
    """``injections`` checked (against ``nproc`` ranks when given) as a list of plain dicts.

    Accepts None (no injection), one dict, or a list of dicts; raises ValueError naming
    the injection and the argument that is wrong.

    >>> validate(None)
    []
    >>> validate([slow_rank(3, 0.1)], nproc=2)
    Traceback (most recent call last):
    ...
    ValueError: inject[0]: rank=3 does not exist: with nproc=2 the ranks are 0 to 1
    """
    if injections is None:
        return []
    if isinstance(injections, dict):
        injections = [injections]
    if not isinstance(injections, (list, tuple)):
        raise ValueError(f"inject={injections!r}: give a list of injections (dicts made by "
                         "gpuviz.sync.inject.slow_rank, jitter, fail_at or hang_at)")
    return [_checked(spec, where=f"inject[{i}]", nproc=nproc) for i, spec in enumerate(injections)]


def check_steps(injections: list[dict], total_steps: int) -> None:
    """An :class:`~gpuviz.run.hooks.OptionError` (a ValueError) if a ``fail`` or ``hang`` is
    set at a step the run never reaches.

    >>> check_steps([fail_at(0, 9)], total_steps=5)
    Traceback (most recent call last):
    ...
    gpuviz.run.hooks.OptionError: inject[0]: step=9 is beyond the run: it has 5 steps (0 to 4)
    """
    for i, spec in enumerate(injections):
        if spec["kind"] in ("fail", "hang") and spec["step"] >= total_steps:
            raise OptionError(f"inject[{i}]: step={spec['step']} is beyond the run: it has "
                             f"{total_steps} steps (0 to {total_steps - 1})")


def _checked(spec: Any, where: str = "inject", nproc: int | None = None) -> dict:
    if not isinstance(spec, dict):
        raise ValueError(f"{where}={spec!r}: an injection is a dict such as "
                         "{'kind': 'slow', 'rank': 1, 'delay_s': 0.05}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind={kind!r} is not an injection; use one of "
                         f"{', '.join(map(repr, KINDS))}")
    allowed = ("kind", *_KEYS[kind])
    if kind == "jitter":
        dist = spec.get("dist")
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"{where}: dist={dist!r} is not a jitter distribution; use one of "
                             f"{', '.join(map(repr, DISTRIBUTIONS))}")
        allowed += DISTRIBUTIONS[dist]
    extra = [k for k in spec if k not in allowed]
    if extra:
        raise ValueError(f"{where}: {extra[0]}= is not an argument of a {kind!r} injection"
                         + (f" with dist={spec['dist']!r}" if kind == "jitter" else "")
                         + f"; it takes {', '.join(a for a in allowed if a != 'kind')}")
    out = {"kind": kind}
    if kind == "jitter":
        out["dist"] = spec["dist"]
        for key in DISTRIBUTIONS[spec["dist"]]:
            if key not in spec:
                raise ValueError(f"{where}: a {spec['dist']!r} jitter needs {key}= "
                                 f"({', '.join(DISTRIBUTIONS[spec['dist']])})")
            out[key] = _seconds(spec[key], key, where)
        if out["dist"] == "uniform" and out["high_s"] < out["low_s"]:
            raise ValueError(f"{where}: high_s={out['high_s']!r} is below low_s={out['low_s']!r}")
        ranks = spec.get("ranks")
        if ranks is not None:
            if not isinstance(ranks, (list, tuple)) or not ranks:
                raise ValueError(f"{where}: ranks={ranks!r}: give a list of ranks, or None for all")
            ranks = [_rank(r, where, nproc) for r in ranks]
        out["ranks"] = ranks
        seed = spec.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{where}: seed={seed!r}: must be an integer >= 0")
        out["seed"] = seed
        return out
    for key in _KEYS[kind]:
        if key not in spec:
            raise ValueError(f"{where}: a {kind!r} injection needs {key}=")
    out["rank"] = _rank(spec["rank"], where, nproc)
    if kind == "slow":
        out["delay_s"] = _seconds(spec["delay_s"], "delay_s", where)
    else:
        step = spec["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"{where}: step={step!r}: must be an integer >= 0")
        out["step"] = step
    return out


def _rank(rank: Any, where: str, nproc: int | None) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"{where}: rank={rank!r} must be an integer >= 0")
    if nproc is not None and rank >= nproc:
        raise ValueError(f"{where}: rank={rank} does not exist: with nproc={nproc} the ranks "
                         f"are 0 to {nproc - 1}")
    return rank


def _seconds(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {name}={value!r}: give a number of seconds >= 0")
    if value < 0:
        raise ValueError(f"{where}: {name}={value!r} is negative: a delay is >= 0 seconds")
    return value


def targets(spec: dict, rank: int) -> bool:
    """Whether ``spec`` acts on ``rank``."""
    if spec["kind"] == "jitter":
        return spec["ranks"] is None or rank in spec["ranks"]
    return spec["rank"] == rank


# -- the numbers ----------------------------------------------------------------------------

def mean_delay(spec: dict) -> float:
    """The mean delay in seconds a ``slow`` or ``jitter`` injection adds per step.

    exponential: ``mean_s``; uniform: ``(low_s + high_s) / 2``; lognormal: ``mean_s``
    (its log is normal with mu = ln(mean_s) - sigma^2/2, so that E = exp(mu + sigma^2/2)
    = mean_s); normal with negative draws slept as 0: E[max(0, X)] for X ~ N(m, s^2) is
    m Phi(m/s) + s phi(m/s) (integrate x phi((x - m)/s)/s from 0 to infinity).

    >>> round(mean_delay(jitter("normal", mean_s=0.0, std_s=0.1)), 4)   # s / sqrt(2 pi)
    0.0399
    """
    spec = _checked(spec)
    if spec["kind"] == "slow":
        return float(spec["delay_s"])
    if spec["kind"] != "jitter":
        raise ValueError(f"kind={spec['kind']!r}: a {spec['kind']} injection adds no finite "
                         "delay; mean_delay takes 'slow' and 'jitter'")
    d = spec["dist"]
    if d == "uniform":
        return (spec["low_s"] + spec["high_s"]) / 2
    if d == "normal":
        m, s = spec["mean_s"], spec["std_s"]
        if s == 0:
            return max(m, 0.0)
        z = m / s
        return m * 0.5 * (1 + math.erf(z / math.sqrt(2))) + s * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return float(spec["mean_s"])


class Sampler:
    """One rank's delays for one ``slow`` or ``jitter`` injection, step by step.

    Step k's delay is the k-th draw from a generator seeded by ``(seed, rank)``, however
    the steps are visited (a resumed run skips ahead), so it is the same in every attempt.

    >>> s = Sampler(jitter("exponential", mean_s=0.02, seed=1), rank=0)
    >>> s.delay(3) == Sampler(jitter("exponential", mean_s=0.02, seed=1), rank=0).delay(3)
    True
    """

    def __init__(self, spec: dict, rank: int):
        self.spec, self.rank = spec, rank
        self._rng, self._next, self._last = None, 0, 0.0
        if spec["kind"] == "jitter":
            import numpy as np

            self._rng = np.random.default_rng([spec["seed"], rank])

    def delay(self, step: int) -> float:
        """The delay of ``step``: steps go forward (the same step again is allowed)."""
        spec = self.spec
        if spec["kind"] == "slow":
            return float(spec["delay_s"])
        if step < self._next - 1:
            raise ValueError(f"step={step}: this sampler is at step {self._next - 1}; it only "
                             "goes forward (make a new one to start again)")
        while self._next <= step:
            self._last = self._draw()
            self._next += 1
        return self._last

    def _draw(self) -> float:
        s, rng = self.spec, self._rng
        d = s["dist"]
        if d == "exponential":
            return float(rng.exponential(s["mean_s"]))
        if d == "uniform":
            return float(rng.uniform(s["low_s"], s["high_s"]))
        if d == "normal":
            return max(0.0, float(rng.normal(s["mean_s"], s["std_s"])))
        x = float(rng.lognormal(0.0, s["sigma"]))  # one draw per step, even when mean_s is 0
        return s["mean_s"] * x * math.exp(-s["sigma"] ** 2 / 2)


def sample_delays(spec: dict, rank: int, steps: int) -> list[float]:
    """The delays (seconds) ``rank`` sleeps in steps 0 .. steps-1: what a run will do.

    >>> sample_delays(slow_rank(1, 0.05), rank=1, steps=3)
    [0.05, 0.05, 0.05]
    >>> sample_delays(slow_rank(1, 0.05), rank=0, steps=2)
    [0.0, 0.0]
    """
    spec = _checked(spec)
    if spec["kind"] not in ("slow", "jitter"):
        raise ValueError(f"kind={spec['kind']!r}: only 'slow' and 'jitter' injections sleep")
    if not targets(spec, rank):
        return [0.0] * steps
    s = Sampler(spec, rank)
    return [s.delay(k) for k in range(steps)]


def parse(text: str) -> dict:
    """An injection from the command line: ``KIND:KEY=VALUE,KEY=VALUE`` or a JSON object.

    >>> parse("slow:rank=1,delay_s=0.05")
    {'kind': 'slow', 'rank': 1, 'delay_s': 0.05}
    >>> parse("jitter:dist=uniform,low_s=0,high_s=0.02,ranks=[0,1]")["ranks"]
    [0, 1]
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            return _checked(json.loads(text))
        except ValueError as e:
            if isinstance(e, json.JSONDecodeError):
                raise ValueError(f"--inject {text!r}: not valid JSON ({e})") from None
            raise
    kind, _, rest = text.partition(":")
    spec: dict[str, Any] = {"kind": kind}
    for part in _split(rest):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--inject {text!r}: write KIND:KEY=VALUE,..., e.g. "
                             "slow:rank=1,delay_s=0.05 or fail:rank=2,step=5")
        try:
            spec[key.strip()] = json.loads(value)
        except ValueError:
            spec[key.strip()] = value.strip()
    return _checked(spec)


def _split(text: str) -> list[str]:
    """Split on commas outside brackets (``ranks=[0,1]`` stays whole)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in [*parts, cur] if p.strip()]
