"""Relaxed synchronisation: sync every step, accumulate gradients, or local SGD, compared.

:func:`compare_sync` trains the same model on the same data under each mode of
:func:`gpuviz.workloads.sync.train` (one job, the modes one after another) and returns
one tidy row per mode and step: the held-out loss against wall time and against steps,
and the time each step spent communicating. Gradient accumulation and local SGD both
communicate every few steps; local SGD keeps updating every step in between (Lin et al.
2020, "Don't Use Large Mini-Batches, Use Local SGD", ICLR), accumulation makes k times
fewer updates at the same learning rate. Scaling the rate with the batch (the linear
scaling rule: Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in
1 Hour") is the usual remedy: ``compare_sync(["accumulate"], lr=0.05 * k)`` tries it.

>>> df = compare_sync()                            # 3 modes, 2 ranks: about 15 s  # doctest: +SKIP
>>> sync_summary(df)                                                             # doctest: +SKIP
>>> gpuviz.plot.relaxed_sync(df)                                                 # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpuviz.workloads.sync import MODES, sync_period

_WORKLOAD = ("batch", "dim", "hidden", "layers", "lr", "eval_every", "eval_size", "seed")
_START = "relaxed sync start"


def compare_sync(modes=MODES, nproc: int = 2, steps: int = 160, k: int = 4, H: int = 4,  # noqa: N803
                 **kwargs) -> pd.DataFrame:
    """Run ``modes`` (``sync``, ``accumulate`` with ``k``, ``local_sgd`` with ``H``) for
    ``steps`` steps each on ``nproc`` ranks in one job; return :func:`sync_steps` of it.

    ``batch``, ``dim``, ``hidden``, ``layers``, ``lr``, ``eval_every``, ``eval_size`` and
    ``seed`` go to the workload; other ``kwargs`` to :func:`gpuviz.launch` (``run_dir``,
    ``inject`` to add stragglers...). The run's path is in ``df.attrs["run"]``.

    >>> df = compare_sync(["sync", "local_sgd"], H=8, steps=64)           # doctest: +SKIP
    """
    from gpuviz.run.launch import launch

    modes = [modes] if isinstance(modes, str) else list(modes)
    if not modes:
        raise ValueError(f"modes={modes!r}: give at least one of {MODES}")
    for m in modes:
        sync_period(m, k, H)                      # ValueError for a bad mode, k or H, before launching
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: must be an integer >= 1")
    args = {"modes": modes, "steps": steps, "k": k, "H": H,
            **{key: kwargs.pop(key) for key in _WORKLOAD if key in kwargs}}
    kwargs.setdefault("progress", False)
    kwargs.setdefault("stream", False)
    run = launch("gpuviz.workloads.sync:compare", nproc=nproc, args=args, **kwargs)
    df = sync_steps(run)
    df.attrs["run"] = str(run.path)
    return df


def sync_steps(run) -> pd.DataFrame:
    """One row per mode and step of a run of :func:`gpuviz.workloads.sync.train` (or
    ``compare``), averaged over ranks.

    Columns: mode, period (steps between communications: 1, k or H), step (steps done in
    this mode; a row with step 0 holds the model before training), synced (this step
    communicated), step_s (the step's time, evaluation left out), wall_s (sum of step_s so
    far), comm_s (time in ``comm`` spans), wait_s (``idle``: waiting for the others
    before a collective), loss (held-out loss, NaN on steps not evaluated), train_loss
    (the ranks' mean micro-batch loss), ranks.

    >>> sync_steps(run).dropna(subset=["loss"]).tail()          # doctest: +SKIP
    """
    ev = run.events
    ends = ev[(ev["name"] == "step_end")].copy()
    ends["mode"] = [a.get("mode") for a in ends["args"]]
    ends = ends[ends["mode"].isin(MODES)]
    if ends.empty:
        raise ValueError(f"run={run.path}: no step names its mode; make the run with "
                         "gpuviz.workloads.sync:train or :compare (gpuviz.sync.relaxed.compare_sync)")
    starts = ev[ev["name"] == _START]
    starts = pd.DataFrame({"rank": starts["rank"].to_numpy(), "time": starts["time"].to_numpy(),
                           "mode": [a.get("mode") for a in starts["args"]]})
    sp = run.spans[run.spans["lane"] == "main"]
    per = sp.groupby(["rank", "step", "cat"])["dur"].sum().unstack("cat", fill_value=0.0)
    evals = sp[sp["name"] == "evaluate"].groupby(["rank", "step"])["dur"].sum()
    rows = []
    for (rank, mode), e in ends.groupby(["rank", "mode"], sort=False):
        e = e.sort_values("step")
        t0 = starts[(starts["rank"] == rank) & (starts["mode"] == mode)]
        begin = float(t0["time"].iloc[0]) if len(t0) else float(e["time"].iloc[0])
        prev = np.r_[begin, e["time"].to_numpy(float)[:-1]]
        steps = e["step"].astype(int).to_numpy()
        ev_s = np.array([evals.get((rank, s), 0.0) for s in steps])
        step_s = e["time"].to_numpy(float) - prev - ev_s
        args = e["args"].tolist()
        first = args[0]
        rows.append(pd.DataFrame({
            "rank": rank, "mode": mode, "step": 0, "synced": False, "step_s": 0.0, "comm_s": 0.0,
            "wait_s": 0.0, "loss": first.get("initial_loss", np.nan), "train_loss": np.nan},
            index=[0]))
        rows.append(pd.DataFrame({
            "rank": rank, "mode": mode, "step": np.arange(1, len(e) + 1),
            "synced": [bool(a.get("synced")) for a in args], "step_s": step_s,
            "comm_s": [_get(per, rank, s, "comm") for s in steps],
            "wait_s": [_get(per, rank, s, "idle") for s in steps],
            "loss": [np.nan if a.get("loss") is None else float(a["loss"]) for a in args],
            "train_loss": [float(a.get("train_loss", np.nan)) for a in args]}))
    df = pd.concat(rows, ignore_index=True)
    df["wall_s"] = df.groupby(["rank", "mode"])["step_s"].cumsum()
    order = list(dict.fromkeys(ends.sort_values("step")["mode"]))
    out = (df.groupby(["mode", "step"], sort=False)
             .agg(synced=("synced", "first"), step_s=("step_s", "mean"), wall_s=("wall_s", "mean"),
                  comm_s=("comm_s", "mean"), wait_s=("wait_s", "mean"), loss=("loss", "mean"),
                  train_loss=("train_loss", "mean"), ranks=("rank", "nunique"))
             .reset_index())
    periods = ends.groupby("mode")["args"].first().map(lambda a: a.get("period", np.nan))
    out["period"] = out["mode"].map(periods)
    out["mode"] = pd.Categorical(out["mode"], categories=order)
    out = out.sort_values(["mode", "step"]).reset_index(drop=True)
    out["mode"] = out["mode"].astype(str)
    return out[["mode", "period", "step", "synced", "step_s", "wall_s", "comm_s", "wait_s", "loss",
                "train_loss", "ranks"]]


def _get(per: pd.DataFrame, rank, step, cat) -> float:
    try:
        return float(per.at[(rank, step), cat])
    except KeyError:
        return 0.0


def sync_summary(df: pd.DataFrame, target: float | None = None) -> pd.DataFrame:
    """Per mode: steps, syncs (steps that communicated), final held-out loss, wall_s (training
    time), ms per step, comm_ms and wait_ms per step, and speedup (sync's wall time / this
    mode's, where sync ran). With a ``target`` loss, also steps_to_target and
    wall_to_target_s: the first evaluation at or below it (NaN if never reached).

    >>> sync_summary(compare_sync(), target=0.1)                 # doctest: +SKIP
    """
    need = {"mode", "step", "synced", "wall_s", "comm_s", "wait_s", "loss", "step_s"}
    if not isinstance(df, pd.DataFrame) or not need <= set(df.columns):
        raise ValueError(f"df: give compare_sync()'s or sync_steps()'s table (columns {sorted(need)})")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))):
        raise ValueError(f"target={target!r}: give a loss (a number) or None")
    rows = []
    for mode, d in df.groupby("mode", sort=False):
        d = d[d["step"] > 0]
        last = d.dropna(subset=["loss"])
        rows.append({"mode": mode, "steps": len(d), "syncs": int(d["synced"].sum()),
                     "final_loss": float(last["loss"].iloc[-1]) if len(last) else np.nan,
                     "wall_s": float(d["wall_s"].iloc[-1]), "step_ms": 1e3 * float(d["step_s"].mean()),
                     "comm_ms": 1e3 * float(d["comm_s"].mean()),
                     "wait_ms": 1e3 * float(d["wait_s"].mean())})
        if target is not None:
            hit = last[last["loss"] <= target]
            rows[-1]["steps_to_target"] = int(hit["step"].iloc[0]) if len(hit) else np.nan
            rows[-1]["wall_to_target_s"] = float(hit["wall_s"].iloc[0]) if len(hit) else np.nan
    out = pd.DataFrame(rows)
    base = out.loc[out["mode"] == "sync", "wall_s"]
    out["speedup"] = float(base.iloc[0]) / out["wall_s"] if len(base) else np.nan
    return out
