"""Gradient bucketing: DDP's measured sweep over bucket sizes, and the alpha-beta model of it.

DDP (Li et al. 2020, VLDB) all-reduces gradients in buckets while ``backward`` still
runs. What a step waits for is the **exposed communication**: from the last gradient
computed until the last bucket is reduced. Small buckets start early but each pays the
latency ``alpha``; one big bucket pays it once but starts only when backward ends.

>>> from gpuviz.workloads.bucketing import gradient_bytes
>>> run = measure_sweep()                         # 7 sizes, 4 ranks: about 30 s  # doctest: +SKIP
>>> m = bucket_sweep(run)                                                      # doctest: +SKIP
>>> fit = fit_from_buckets(run)               # or gpuviz.sharing.bench.fit_alpha_beta  # doctest: +SKIP
>>> p = predict_bucket_sweep(m["bucket_mb"], m["grad_bytes"][0], fit["alpha"], fit["beta"],
...                          backward_s=m["backward_ms"].iloc[-1] / 1e3,   # one bucket: no overlap
...                          tensor_bytes=gradient_bytes())                # doctest: +SKIP
>>> compare_sweep(m, p)                                                        # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gpuviz.workloads.bucketing import BUCKET_MB, check_bucket_mb

MIB = 2**20  #: torch's bucket_cap_mb counts MiB
ESTIMATE = "alpha-beta model (estimate)"
_BUCKET = "all_reduce bucket"
_WAIT = "wait for gradient buckets"


def measure_sweep(bucket_mb=BUCKET_MB, nproc: int = 4, **kwargs):
    """Check ``bucket_mb``, run :func:`gpuviz.workloads.bucketing.sweep` on ``nproc`` ranks,
    return the :class:`~gpuviz.run.load.Run`. ``steps``, ``warmup``, ``width``, ``layers``,
    ``batch``, ``lr``, ``seed`` go to the sweep; other ``kwargs`` to ``gpuviz.launch``.

    >>> run = measure_sweep([0.3, 3, 100], steps=2)          # doctest: +SKIP
    """
    from gpuviz.run.launch import launch

    workload = {k: kwargs.pop(k) for k in ("steps", "warmup", "width", "layers", "batch", "lr", "seed")
                if k in kwargs}
    args = {"bucket_mb": check_bucket_mb(bucket_mb), **workload}
    return launch("gpuviz.workloads.bucketing:sweep", nproc=nproc, args=args, **kwargs)


def _step_tags(run) -> pd.DataFrame:
    ev = run.events[run.events["name"] == "step_end"]
    tags = pd.DataFrame({"rank": ev["rank"].to_numpy(), "step": ev["step"].to_numpy(),
                         "bucket_mb": [a.get("bucket_mb") for a in ev["args"]],
                         "warmup": [bool(a.get("warmup")) for a in ev["args"]]}).dropna()
    if tags.empty:
        raise ValueError(f"run={run.path}: no step is tagged with bucket_mb; make the run with "
                         "gpuviz.workloads.bucketing:sweep (or gpuviz.sharing.bucketing.measure_sweep)")
    return tags.astype({"step": int, "bucket_mb": float})


def _busy(iv: np.ndarray, lo: float = -math.inf, hi: float = math.inf) -> float:
    """Length of the union of intervals ``iv`` (n x 2), clipped to [lo, hi]."""
    iv = np.clip(iv, lo, hi)
    iv = iv[np.argsort(iv[:, 0])]
    reach = np.maximum.accumulate(iv[:, 1])             # furthest end so far
    start = np.maximum(iv[:, 0], np.r_[-math.inf, reach[:-1]])
    return float(np.clip(iv[:, 1] - start, 0, None).sum())


def _buckets_of(run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The spans of tagged steps, and of those the bucket all-reduces."""
    sp = run.spans.merge(_step_tags(run), on=["rank", "step"])
    return sp, sp[(sp["lane"] == "comm") & sp["name"].str.startswith(_BUCKET)]


def bucket_steps(run) -> pd.DataFrame:
    """One row per rank and step: bucket_mb, warmup, n_buckets, grad_bytes, step_s,
    backward_s (computing gradients), ready (time of the last gradient: the start of ``wait
    for gradient buckets``, else the last bucket's launch), exposed_s (end of DDP's
    backward(), which waits for every bucket, minus ready), comm_s (a bucket in flight),
    overlap (fraction of comm_s before ready). :func:`bucket_sweep` summarises it.
    """
    sp, comm = _buckets_of(run)
    rows = []
    for (rank, step), s in sp.groupby(["rank", "step"], sort=True):
        c = comm[(comm["rank"] == rank) & (comm["step"] == step)]
        back = s[(s["lane"] == "main") & (s["name"] == "backward")]
        if c.empty or back.empty:
            continue
        wait = s[(s["lane"] == "main") & (s["name"] == _WAIT)]
        # backward, then (under DDP on CPU) the wait for buckets: together, DDP's backward()
        b0 = float(back["start"].iloc[0])
        b1 = float(wait["end"].iloc[0]) if len(wait) else float(back["end"].iloc[0])
        ready = float(wait["start"].iloc[0]) if len(wait) else float(c["start"].max())
        main = s[(s["lane"] == "main") & ~s["name"].str.startswith("wrap in DDP")]
        iv = c[["start", "end"]].to_numpy(float)
        busy = _busy(iv)
        rows.append({"rank": rank, "step": step, "bucket_mb": s["bucket_mb"].iloc[0],
                     "warmup": bool(s["warmup"].iloc[0]), "n_buckets": len(c),
                     "grad_bytes": int(c["bytes"].sum()),
                     "step_s": float(main["end"].max() - main["start"].min()),
                     "backward_s": ready - b0, "ready": ready, "exposed_s": max(0.0, b1 - ready),
                     "comm_s": busy, "overlap": _busy(iv, b0, ready) / busy if busy > 0 else 0.0})
    if not rows:
        raise ValueError(f"run={run.path}: no step has both a backward span and bucket "
                         "all-reduces; was the DDP comm hook registered?")
    return pd.DataFrame(rows)


def bucket_sweep(run) -> pd.DataFrame:
    """Per bucket size, medians over the measured steps (warm-up steps left out), in ms.

    A bucket's all-reduce finishes only when every rank has launched it, so each step is
    read on its *critical rank*, the one whose last gradient came last: its backward_ms
    (computing gradients), exposed_ms (from its last gradient until the last bucket is
    reduced), comm_ms (a bucket in flight) and overlap (fraction of comm_ms hidden behind
    backward). wait_ms is what an average rank waited after its own last gradient (exposed
    communication plus waiting for slower ranks). step_ms is the median over ranks, other_ms
    = step - backward - exposed (forward, optimizer). ``_lo``/``_hi``: 25th and 75th
    percentiles over steps. Also n_buckets, grad_bytes, steps, kind = "measured".

    >>> bucket_sweep(run)[["bucket_mb", "n_buckets", "step_ms", "exposed_ms"]]  # doctest: +SKIP
    """
    st = bucket_steps(run)
    st = st[~st["warmup"]]
    if st.empty:
        raise ValueError(f"run={run.path}: every step is a warm-up step; sweep with steps >= 1")
    crit = st.loc[st.groupby("step")["ready"].idxmax()].set_index("step")
    per_step = st.groupby("step").agg(step_s=("step_s", "median"), wait_s=("exposed_s", "median"))
    crit = crit.drop(columns=["step_s"]).join(per_step)
    crit["other_s"] = crit["step_s"] - crit["backward_s"] - crit["exposed_s"]
    g = crit.groupby("bucket_mb", sort=True)
    out = pd.DataFrame({"n_buckets": g["n_buckets"].median().round().astype(int),
                        "grad_bytes": g["grad_bytes"].median().round().astype("int64")})
    for col in ("step", "backward", "exposed", "wait", "comm", "other"):
        out[f"{col}_ms"] = g[f"{col}_s"].median() * 1e3
    for col in ("step", "exposed"):
        out[f"{col}_ms_lo"] = g[f"{col}_s"].quantile(0.25) * 1e3
        out[f"{col}_ms_hi"] = g[f"{col}_s"].quantile(0.75) * 1e3
    out["overlap"] = g["overlap"].median()
    out["steps"] = g.size()
    out["kind"] = "measured"
    return out.reset_index()


def sweep_steps(run, bucket_mb: float, include_warmup: bool = False) -> list[int]:
    """The steps of a sweep run with this bucket size (measured ones unless told), e.g. to
    draw them: ``gpuviz.plot.timeline(run, steps=sweep_steps(run, 100)[:1])``.

    >>> sweep_steps(run, 0.3)                   # defaults: 1 warm-up + 3 steps  # doctest: +SKIP
    [5, 6, 7]
    """
    tags = _step_tags(run)
    tags = tags[tags["rank"] == tags["rank"].min()]
    if not include_warmup:
        tags = tags[~tags["warmup"]]
    hit = tags[np.isclose(tags["bucket_mb"], _plain(bucket_mb, "bucket_mb", positive=True))]
    if hit.empty:
        raise ValueError(f"bucket_mb={bucket_mb!r}: not in this sweep; its sizes are "
                         f"{sorted(tags['bucket_mb'].unique().tolist())}")
    return sorted(hit["step"].astype(int).tolist())


def fit_from_buckets(run) -> pd.Series:
    """alpha (s) and beta (s/byte) of one bucket all-reduce, fitted to the sweep's own buckets.

    A bucket's span runs from its launch on this rank to its completion; it can only start
    once every rank has launched it, and queues behind the bucket before it, so its service
    time is ``end - max(latest launch over ranks, previous end)``. Per bucket size, the
    median bytes and service time are fitted with time = alpha + beta x bytes (least squares
    on relative error); ``error`` is the median relative error, ``n`` the buckets used.
    A fallback for ``gpuviz.sharing.bench.fit_alpha_beta``.

    >>> fit = fit_from_buckets(run); fit["alpha"], fit["beta"]   # doctest: +SKIP
    """
    _, comm = _buckets_of(run)
    c = comm[~comm["warmup"]].copy()
    c["index"] = [a.get("bucket") for a in c["args"]]
    c["launched"] = c.groupby(["step", "index"])["start"].transform("max")
    c = c.sort_values("end")
    prev = c.groupby(["rank", "step"])["end"].shift(1).fillna(-math.inf)
    c["service"] = c["end"] - np.maximum(c["launched"], prev)
    c = c[c["service"] > 0]
    pts = c.groupby("bucket_mb").agg(bytes=("bytes", "median"), t=("service", "median"))
    if len(pts) < 2 or pts["bytes"].nunique() < 2:
        raise ValueError(f"run={run.path}: fitting alpha and beta needs buckets of at least two "
                         "sizes; sweep two or more bucket sizes")
    x, t = pts["bytes"].to_numpy(float), pts["t"].to_numpy(float)
    (alpha, beta), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(x), x]) / t[:, None],
                                        np.ones_like(t), rcond=None)
    err = float(np.median(np.abs(alpha + beta * x - t) / t))
    return pd.Series({"alpha": float(alpha), "beta": float(beta), "error": err, "n": len(c)})


def _plain(v, name: str, positive: bool = False) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={v!r}: give a number") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name}={v!r}: must be a finite number {'> 0' if positive else '>= 0'}")
    return v


def _buckets(cap: int, sizes: list[float]) -> list[float]:
    """DDP's assignment: whole tensors, in ready order, into a bucket until it holds >= cap."""
    out, cur = [], 0.0
    for n in sizes:
        cur += n
        if cur >= cap:
            out.append(cur)
            cur = 0.0
    return out + ([cur] if cur > 0 else [])


def predict_bucket_sweep(bucket_mb, grad_bytes: float, alpha: float, beta: float, backward_s: float,
                         *, tensor_bytes=None, other_s: float = 0.0) -> pd.DataFrame:
    """The alpha-beta prediction of a DDP sweep (an estimate; ``kind`` says so).

    One all-reduce of S bytes costs ``alpha + beta * S`` (a fit such as
    ``gpuviz.sharing.bench.fit_alpha_beta``'s is used as it is; for a ring over a link of bandwidth
    B and per-step latency a, alpha = 2(p-1)a and beta = 2(p-1)/p / B, which is
    :func:`gpuviz.plan.prediction.ring_allreduce_seconds`). Gradients become ready uniformly over
    ``backward_s`` (seconds; or one per bucket size, e.g. ``measured["backward_ms"] / 1e3``,
    to model the communication alone), last layer first; a bucket is ready when its last byte is; all-reduces
    run one at a time, in order. Buckets hold ``bucket_mb`` MiB of ``grad_bytes``, or, with
    ``tensor_bytes`` (gradient sizes in ready order, e.g.
    :func:`gpuviz.workloads.bucketing.gradient_bytes`), whole tensors as DDP packs them.

    Columns: bucket_mb, n_buckets, grad_bytes, step_ms (``other_s`` + backward + exposed),
    backward_ms, exposed_ms (last completion - end of backward), comm_ms (sum of
    all-reduce times), latency_ms (n_buckets x alpha), overlap, alpha, beta, kind.

    >>> p = predict_bucket_sweep([1, 10, 100], 40e6, alpha=1e-3, beta=2.5e-9, backward_s=0.1)
    >>> p["n_buckets"].tolist(), p["exposed_ms"].round(1).tolist()
    ([39, 4, 1], [41.6, 30.2, 101.0])
    """
    sizes = check_bucket_mb(bucket_mb)
    total = _plain(grad_bytes, "grad_bytes", positive=True)
    alpha, beta = _plain(alpha, "alpha"), _plain(beta, "beta")
    other_s = _plain(other_s, "other_s")
    if np.ndim(backward_s) == 0:
        backward_s = [backward_s] * len(sizes)
    backs = [_plain(b, "backward_s") for b in backward_s]
    if len(backs) != len(sizes):
        raise ValueError(f"backward_s: give one number, or one per bucket size ({len(sizes)}); "
                         f"got {len(backs)}")
    if tensor_bytes is not None:
        tensors = [_plain(n, "tensor_bytes") for n in tensor_bytes]
        if not tensors or sum(tensors) <= 0:
            raise ValueError("tensor_bytes: give the gradient sizes in bytes (a non-empty list)")
        total = sum(tensors)
    rows = []
    for mb, backward_s in zip(sizes, backs, strict=True):
        cap = max(1, int(mb * MIB))
        if tensor_bytes is not None:
            parts = np.asarray(_buckets(cap, tensors))
        else:
            n = math.ceil(total / cap)
            parts = np.full(n, float(cap))
            parts[-1] = total - cap * (n - 1)
        ready = backward_s * np.cumsum(parts) / total
        cost = alpha + beta * parts
        end = 0.0
        for r, c in zip(ready, cost, strict=True):
            end = max(end, r) + c
        exposed = max(0.0, end - backward_s)
        rows.append({"bucket_mb": mb, "n_buckets": len(parts), "grad_bytes": int(total),
                     "step_ms": (other_s + backward_s + exposed) * 1e3,
                     "backward_ms": backward_s * 1e3, "exposed_ms": exposed * 1e3,
                     "comm_ms": cost.sum() * 1e3, "latency_ms": len(parts) * alpha * 1e3,
                     "overlap": max(0.0, 1 - exposed / cost.sum()) if cost.sum() > 0 else 0.0,
                     "alpha": alpha, "beta": beta, "kind": ESTIMATE})
    return pd.DataFrame(rows)


def replay_sweep(run, alpha: float, beta: float) -> pd.DataFrame:
    """Where the alpha-beta prediction of a sweep goes wrong, measured: each step's buckets
    replayed at the times the run launched them (every rank's launch, the latest), each
    all-reduce ``alpha + beta * bytes`` and one at a time. :func:`predict_bucket_sweep`
    assumes gradients ready evenly over backward; the replay uses when they were ready, so
    what is left between it and the measurement is the all-reduces' own time on this
    machine (slower while backward runs on the same cores than alone).

    Per bucket size, on each step's critical rank as in :func:`bucket_sweep` (medians over
    the measured steps): bucket_mb, exposed_ms (measured), replayed_ms, backward_ms, and
    slowdown: from the first bucket's launch to the last one's end, measured over replayed
    (how much longer the all-reduces took in training than ``alpha`` and ``beta`` say).

    >>> replay_sweep(run, alpha=4e-3, beta=1e-9)   # doctest: +SKIP
    """
    alpha, beta = _plain(alpha, "alpha"), _plain(beta, "beta")
    st = bucket_steps(run)
    st = st[~st["warmup"]]
    _, comm = _buckets_of(run)
    c = comm[~comm["warmup"]].copy()
    c["index"] = [a.get("bucket") for a in c["args"]]
    c["launched"] = c.groupby(["step", "index"])["start"].transform("max")
    crit = st.loc[st.groupby("step")["ready"].idxmax()]
    rows = []
    for r in crit.itertuples():
        end = -math.inf
        mine = c[(c["rank"] == r.rank) & (c["step"] == r.step)].sort_values("launched")
        for launched, nbytes in zip(mine["launched"], mine["bytes"], strict=True):
            end = max(launched, end) + alpha + beta * float(nbytes)
        first = float(mine["launched"].min())
        rows.append({"bucket_mb": r.bucket_mb, "exposed_ms": r.exposed_s * 1e3,
                     "replayed_ms": max(0.0, end - r.ready) * 1e3, "backward_ms": r.backward_s * 1e3,
                     "slowdown": (float(mine["end"].max()) - first) / (end - first) if end > first
                     else math.inf})
    if not rows:
        raise ValueError(f"run={run.path}: no measured step with bucket all-reduces to replay")
    return pd.DataFrame(rows).groupby("bucket_mb", sort=True).median().reset_index()


def compare_sweep(measured: pd.DataFrame, predicted: pd.DataFrame) -> pd.DataFrame:
    """Measured beside predicted per bucket size, with ratios measured / predicted."""
    cols = ["bucket_mb", "n_buckets", "step_ms", "exposed_ms"]
    for df, name in ((measured, "measured"), (predicted, "predicted")):
        if missing := [c for c in cols if c not in df]:
            raise ValueError(f"{name}: missing columns {missing}; pass bucket_sweep(run) and "
                             "predict_bucket_sweep(...)")
    out = measured[cols].merge(predicted[cols], on="bucket_mb", suffixes=("", "_predicted"))
    if out.empty:
        raise ValueError("measured and predicted share no bucket_mb; predict the measured sizes")
    for c in ("step_ms", "exposed_ms"):
        out[f"{c} ratio"] = out[c] / out[f"{c}_predicted"].where(out[f"{c}_predicted"] > 0)
    return out[["bucket_mb", "n_buckets", "n_buckets_predicted", "step_ms", "step_ms_predicted",
                "step_ms ratio", "exposed_ms", "exposed_ms_predicted", "exposed_ms ratio"]]
