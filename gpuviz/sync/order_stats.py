"""Order statistics: how long N ranks wait for the slowest one, predicted.

When N ranks each take an independent random delay X and then meet in a collective, the
step ends only when the *last* one arrives: it costs E[max of N], which grows with N, and
a rank waits on average E[max] - E[X] (its own arrival compared with the last one). The
largest of N has density N F(x)^(N-1) f(x) (F, f: the delay's distribution and density;
David & Nagaraja, "Order Statistics", 3rd ed., Wiley 2003), so

    E[max of N] = integral of x N F(x)^(N-1) f(x) dx

exact for the exponential (mean x H_N, H_N = 1 + 1/2 + ... + 1/N: the gaps between
exponential order statistics are independent exponentials of means mean/N, mean/(N-1)...,
as the same book shows) and the uniform (low + (high - low) N / (N + 1)), integrated
numerically for the normal (truncated at 0: a negative draw sleeps 0) and the lognormal. A delay ``spec`` is the jitter injection of
:mod:`gpuviz.sync.inject` (``{"dist": "exponential", "mean_s": 0.02}``...).

>>> spec = {"dist": "exponential", "mean_s": 0.02}
>>> round(expected_max(spec, 8) * 1e3, 2), round(expected_wait(spec, 8) * 1e3, 2)   # ms
(54.36, 34.36)
"""

from __future__ import annotations

import math

import numpy as np

from gpuviz.sync import inject

#: The jitter the lab injects by default (see :func:`gpuviz.sync.stragglers.waiting_vs_ranks`).
DEFAULT_JITTER = {"kind": "jitter", "dist": "exponential", "mean_s": 0.015, "ranks": None, "seed": 0}
_GRID = 20001                            # points of the numeric integral (odd: Simpson's rule)


# -- order statistics ---------------------------------------------------------------------------

def check_spec(spec) -> dict:
    """``spec`` as a checked jitter injection (:func:`gpuviz.sync.inject.jitter`), or a ValueError
    naming what is wrong. ``"kind"`` may be left out.

    >>> check_spec({"dist": "uniform", "low_s": 0, "high_s": 0.01})["high_s"]
    0.01
    """
    if isinstance(spec, dict) and "kind" not in spec:
        spec = {"kind": "jitter", **spec}
    if isinstance(spec, dict) and spec.get("kind") != "jitter":
        raise ValueError(f"spec kind={spec.get('kind')!r}: only a 'jitter' injection has a random "
                         "delay to take the maximum of")
    if not isinstance(spec, dict):
        raise ValueError(f"spec={spec!r}: give a jitter injection such as "
                         "gpuviz.sync.inject.jitter('exponential', mean_s=0.02)")
    try:
        return inject.validate([spec])[0]
    except ValueError as e:
        raise ValueError(str(e).replace("inject[0]", "spec", 1)) from None


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r}: the number of ranks must be an integer >= 1")
    return int(n)


def harmonic(n: int) -> float:
    """H_n = 1 + 1/2 + ... + 1/n.

    >>> harmonic(4)
    2.083333333333333
    """
    return float(np.sum(1.0 / np.arange(1, _check_n(n) + 1)))


def expected_max(spec, n: int, *, numeric: bool = False) -> float:
    """E[max of ``n`` independent delays] in seconds, for a delay ``spec``.

    Exact for the exponential (mean x H_n) and the uniform (low + (high - low) n/(n+1));
    the order-statistics integral otherwise, or with ``numeric=True`` (to check it).

    >>> expected_max({"dist": "uniform", "low_s": 0.0, "high_s": 0.03}, 2)
    0.02
    >>> round(expected_max({"dist": "exponential", "mean_s": 0.01}, 4, numeric=True), 6)
    0.020833
    """
    s, n = check_spec(spec), _check_n(n)
    if not numeric and s["dist"] == "exponential":
        return s["mean_s"] * harmonic(n)
    if not numeric and s["dist"] == "uniform":
        return s["low_s"] + (s["high_s"] - s["low_s"]) * n / (n + 1)
    return _integrate_max(s, n)


def expected_wait(spec, n: int, *, numeric: bool = False) -> float:
    """A rank's expected wait (s) in a collective of ``n`` ranks: E[max of n] - E[X].

    >>> spec = {"dist": "exponential", "mean_s": 0.01}
    >>> round(expected_wait(spec, 2), 6), expected_wait(spec, 1)     # mean x (H_n - 1)
    (0.005, 0.0)
    """
    s, n = check_spec(spec), _check_n(n)
    return expected_max(s, n, numeric=numeric) - _mean(s)


def _mean(s: dict) -> float:
    """E[X], exact for every distribution (:func:`gpuviz.sync.inject.mean_delay`)."""
    return inject.mean_delay(s)


_erf = np.vectorize(math.erf, otypes=[float])


def _phi_cdf(z):
    return 0.5 * (1.0 + _erf(np.asarray(z, dtype=float) / math.sqrt(2.0)))


def _phi_pdf(z):
    return np.exp(-0.5 * np.asarray(z) ** 2) / math.sqrt(2 * math.pi)


def _integrate_max(s: dict, n: int) -> float:
    """integral of x n F^(n-1) f dx by Simpson's rule on a grid that covers the mass.

    A normal delay below 0 sleeps 0: that atom at x = 0 adds 0 x P to the integral, so the
    density part above 0 is all there is.
    """
    d = s["dist"]
    if d == "exponential":
        m = s["mean_s"]
        if m == 0:
            return 0.0
        x = np.linspace(0.0, m * (40.0 + math.log(n)), _GRID)     # tail beyond: e^-40
        cdf, pdf = -np.expm1(-x / m), np.exp(-x / m) / m
    elif d == "uniform":
        lo, hi = s["low_s"], s["high_s"]
        if hi == lo:
            return lo
        x = np.linspace(lo, hi, _GRID)
        cdf, pdf = (x - lo) / (hi - lo), np.full_like(x, 1.0 / (hi - lo))
    elif d == "normal":
        mu, sd = s["mean_s"], s["std_s"]
        if sd == 0:
            return max(0.0, mu)
        x = np.linspace(max(0.0, mu - 12 * sd), max(0.0, mu + 12 * sd), _GRID)
        cdf, pdf = _phi_cdf((x - mu) / sd), _phi_pdf((x - mu) / sd) / sd
    else:                                                          # lognormal with mean mean_s
        m, sg = s["mean_s"], s["sigma"]
        if sg == 0 or m == 0:
            return m
        mu = math.log(m) - sg * sg / 2                             # E[X] = exp(mu + sigma^2/2)
        u = np.linspace(mu - 12 * sg, mu + 12 * sg, _GRID)         # grid even in log x
        x = np.exp(u)                        # dx = x du: the density in u is phi(.) / sigma
        return _simpson(x * n * _phi_cdf((u - mu) / sg) ** (n - 1) * _phi_pdf((u - mu) / sg) / sg, u)
    return _simpson(x * n * cdf ** (n - 1) * pdf, x)


def _simpson(y: np.ndarray, x: np.ndarray) -> float:
    """Composite Simpson's rule on an even grid with an odd number of points."""
    h = (x[-1] - x[0]) / (len(x) - 1)
    return float(h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum()))


def monte_carlo_max(spec, n: int, trials: int = 100_000, seed: int = 0) -> float:
    """E[max of ``n``] estimated from ``trials`` x ``n`` numpy draws of ``spec`` (drawn as
    :class:`gpuviz.sync.inject.Sampler` draws them), for a check independent of the integral.

    >>> round(monte_carlo_max({"dist": "exponential", "mean_s": 0.01}, 4), 3)   # 0.01 x H_4
    0.021
    """
    s, n, rng = check_spec(spec), _check_n(n), np.random.default_rng(seed)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials={trials!r}: must be an integer >= 1")
    size, d = (trials, n), s["dist"]
    if d == "exponential":
        x = rng.exponential(s["mean_s"], size)
    elif d == "uniform":
        x = rng.uniform(s["low_s"], s["high_s"], size)
    elif d == "normal":
        x = np.maximum(0.0, rng.normal(s["mean_s"], s["std_s"], size))
    else:
        x = s["mean_s"] * rng.lognormal(0.0, s["sigma"], size) * math.exp(-s["sigma"] ** 2 / 2)
    return float(x.max(axis=1).mean())
