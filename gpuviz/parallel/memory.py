"""Memory per rank and pipeline bubbles of the parallel strategies, measured, beside their
formulas (ZeRO's bytes per rank, GPipe's bubble); DataFrames out, drawn by
:mod:`gpuviz.plot.parallel`.

>>> MEMORY_KINDS
('params', 'grads', 'optimizer', 'activations')
"""

from __future__ import annotations

import math

import pandas as pd

from gpuviz.parallel.scaling import _runs, config_labels, config_table, step_table

#: What :func:`memory_table` calls the kinds of memory, in stacking order.
MEMORY_KINDS = ("params", "grads", "optimizer", "activations")
#: Strategies whose model state :func:`gpuviz.parallel.zero.zero_memory` predicts, by stage.
ZERO_STAGE = {"single": 0, "naive_dp": 0, "ddp": 0, "zero1": 1, "zero2": 2, "zero3": 3}


# -- memory ----------------------------------------------------------------------------------

def memory_table(runs, per_rank: bool = False) -> pd.DataFrame:
    """Bytes per rank by kind of memory for every configuration, beside ZeRO's formula.

    ``runs``: a Run, a list of Runs or a dict ``{name: Run}`` made by the parallelism
    workload. Each configuration's memory is what its strategy's ``memory()`` measured in
    its last training step (tensor accounting, :mod:`gpuviz.parallel.strategy`).
    One row per configuration and kind (params, grads, optimizer, activations, then any
    other kind a strategy reports, e.g. ``comm buffers``): label (the dict key, else the
    strategy, with the rank count where configurations share a strategy), strategy, ranks,
    kind, bytes (mean over ranks), bytes_min, bytes_max, predicted (bytes per rank from
    :func:`gpuviz.parallel.zero.zero_memory` for data-parallel and ZeRO strategies; NaN where
    no formula applies: activations, tensor and pipeline parallelism) and n_params.
    ``per_rank=True``: one row per rank instead (rank, bytes), with the same prediction.
    """
    rows = []
    for i, (_, run) in enumerate(_runs(runs)):
        st = step_table(run)
        last = st.sort_values("step").groupby(["config", "rank"]).tail(1)
        for _, r in last.iterrows():
            for kind, b in (r["memory"] or {}).items():
                rows.append({"key": (i, r["config"]), "strategy": r["strategy"],
                             "ranks": int(r["ranks"]), "rank": int(r["rank"]), "kind": kind,
                             "bytes": int(b), "n_params": int(r["n_params"])})
    if not rows:
        raise ValueError("runs: no training step recorded memory(); make the runs with "
                         "gpuviz.workloads.parallelism")
    df = pd.DataFrame(rows)
    labels = config_labels(runs)
    df["label"] = df["key"].map(labels)
    df["predicted"] = [_predict(s, n, p, k) for s, n, p, k in
                       zip(df["strategy"], df["ranks"], df["n_params"], df["kind"], strict=True)]
    order = {k: i for i, k in enumerate(MEMORY_KINDS)}
    df["_kind"] = df["kind"].map(lambda k: order.get(k, len(order)))
    df["_label"] = df["key"].map({k: i for i, k in enumerate(sorted(labels))})
    if per_rank:
        out = df.sort_values(["_label", "rank", "_kind", "kind"])
        return out[["label", "strategy", "ranks", "rank", "kind", "bytes", "predicted",
                    "n_params"]].reset_index(drop=True)
    g = df.groupby(["_label", "label", "strategy", "ranks", "_kind", "kind"], sort=True)
    out = g.agg(bytes=("bytes", "mean"), bytes_min=("bytes", "min"), bytes_max=("bytes", "max"),
                predicted=("predicted", "first"), n_params=("n_params", "first")).reset_index()
    return out.drop(columns=["_label", "_kind"])


def _predict(strategy: str, world: int, n_params: int, kind: str) -> float:
    """zero_memory's bytes of ``kind`` per rank, or NaN where it has no prediction."""
    stage = ZERO_STAGE.get(strategy)
    if stage is None or kind not in ("params", "grads", "optimizer"):
        return math.nan
    try:
        from gpuviz.parallel.zero import zero_memory
    except ImportError:
        return math.nan
    return float(zero_memory(n_params, 1 if strategy == "single" else world, stage)[kind])


# -- pipeline bubbles ------------------------------------------------------------------------

def bubble_sweep(run) -> pd.DataFrame:
    """Measured pipeline bubble beside ``(p - 1) / (m + p - 1)`` per configuration.

    For each ``gpipe``/``1f1b`` configuration of a sweep run (e.g. micro_batches 2, 4, 8,
    16 one after the other): config, schedule, stages (its ranks), micro_batches, measured
    (:func:`gpuviz.parallel.pipeline.measured_bubble`: the mean over stages, median over
    the measured steps; ``_lo``/``_hi``: the least and most of a stage), predicted
    (:func:`gpuviz.parallel.pipeline.bubble_fraction`, from GPipe: Huang et al. 2019),
    stages_only and replayed (:func:`gpuviz.parallel.bubble_model.bubble_model`: the
    schedule replayed with this run's measured stage times, then also its measured hops and
    per-operation costs; medians over the same steps), step_ms (median) and steps.

    >>> run = gpuviz.launch("gpuviz.workloads.parallelism:sweep", nproc=2, args={"configs": [
    ...     {"strategy": "1f1b", "micro_batches": m} for m in (2, 4, 8, 16)]})  # doctest: +SKIP
    >>> bubble_sweep(run)[["micro_batches", "measured", "predicted"]]          # doctest: +SKIP
    """
    from gpuviz.parallel.bubble_model import bubble_model
    from gpuviz.parallel.pipeline import bubble_fraction, measured_bubble

    ct = config_table(run)
    ct = ct[ct["strategy"].isin(("gpipe", "1f1b"))]
    if ct.empty:
        raise ValueError(f"run={run.path}: no gpipe or 1f1b configuration; sweep the pipeline, "
                         "e.g. configs=[{'strategy': '1f1b', 'micro_batches': m} for m in (2, 4, 8)]")
    st = step_table(run)
    st = st[~st["warmup"].astype(bool)]
    config_of = st.groupby("step")["config"].first()
    b = measured_bubble(run)
    b = b[b["step"].isin(config_of.index)].assign(config=lambda d: d["step"].map(config_of))
    # per step: mean, least and most over the stages; then the median step of each config
    per_step = b.groupby(["config", "step"])["bubble"].agg(["mean", "min", "max"])
    med = per_step.groupby("config").median().reindex(ct["config"])
    bm = bubble_model(run)
    bm = bm[bm["step"].isin(config_of.index)].assign(config=lambda d: d["step"].map(config_of))
    replay = bm.groupby("config")[["stages_only", "predicted"]].median().reindex(ct["config"])
    return pd.DataFrame({
        "config": ct["config"].astype(int).to_numpy(), "schedule": ct["strategy"].to_numpy(),
        "stages": ct["ranks"].astype(int).to_numpy(),
        "micro_batches": ct["micro_batches"].astype(int).to_numpy(),
        "measured": med["mean"].to_numpy(), "measured_lo": med["min"].to_numpy(),
        "measured_hi": med["max"].to_numpy(),
        "predicted": [bubble_fraction(int(p), int(m)) for p, m in
                      zip(ct["ranks"], ct["micro_batches"], strict=True)],
        "stages_only": replay["stages_only"].to_numpy(), "replayed": replay["predicted"].to_numpy(),
        "step_ms": (ct["step_s"] * 1e3).to_numpy(), "steps": ct["steps"].astype(int).to_numpy()})
