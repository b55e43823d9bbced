"""Scaling, memory and pipeline bubbles of the parallel strategies, measured; DataFrames out.

The pure functions turn a recorded :class:`~gpuviz.run.load.Run` of
:func:`gpuviz.workloads.parallelism.sweep` into tables (:func:`step_table`,
:func:`config_table`, :func:`scaling_table`; memory and bubbles in :mod:`gpuviz.parallel.memory`);
:func:`launch_scaling` and :func:`measure_scaling` launch the job. Nothing here draws:
:mod:`gpuviz.plot.parallel` does.

**Strong scaling** keeps the global batch and adds ranks: ideally the step time falls as
1/N; parallel efficiency is T1 / (N TN). **Weak scaling** keeps each rank's batch, so the
global batch grows with N: ideally the step time stays put; efficiency is T1 / TN. Both
are throughput (tokens/s) at N over N times the throughput at 1 (Amdahl 1967 and
Gustafson 1988 are the two views).

All rank counts run in **one** job of ``max(ranks)`` processes: each configuration runs
on the first N ranks while the others wait in a barrier (gloo's barrier sleeps: ranks
waiting 3 s used 0.01 s of CPU, measured with 4 ranks on 2 cores), which saves a 10-20 s start-up per rank count. What one
machine can show is bounded by its cores: 4 processes on 2 cores each get half a core,
so strong scaling there cannot speed up, and weak scaling's step time doubles from
computation alone. ``baseline=True`` measures that bound: the same per-rank work with no
communication at all (``single``: every rank trains its batch alone); ``cores`` in the
table says how many cores the machine had.

>>> t = measure_scaling("ddp", ranks=(1, 2, 4), mode="both")    # about 40 s  # doctest: +SKIP
>>> t[["mode", "ranks", "step_ms", "tokens_per_s", "efficiency"]]       # doctest: +SKIP
>>> configs = scaling_configs("ddp", ranks=(1, 2), mode="weak", batch=8, rounds=2)
>>> [(c["ranks"], c["batch"], c["tag"]) for c in configs]
[(1, 8, 'weak'), (2, 16, 'weak'), (2, 16, 'weak'), (1, 8, 'weak')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from gpuviz.workloads.parallelism import SPLITS_BATCH, STRATEGIES, check_config

MODES = ("strong", "weak")


# -- reading a run ---------------------------------------------------------------------------

def step_table(run) -> pd.DataFrame:
    """One row per member rank and training step of a sweep run (setup steps left out).

    Columns: rank, step, config, strategy, tag, ranks, batch, micro_batches, bucket_mb,
    precision, warmup, loss, tokens, n_params, memory (dict of bytes by kind), start (of the step's
    ``load batch``, s), end (its ``step_end``, s) and step_s = end - start.
    """
    ev = run.events[run.events["name"] == "step_end"]
    rows = [{"rank": r, "step": int(s), "end": t, **a} for r, s, t, a in
            zip(ev["rank"], ev["step"], ev["time"], ev["args"], strict=True)
            if a.get("member") and not a.get("setup") and "strategy" in a]
    if not rows:
        raise ValueError(f"run={run.path}: no training step tagged with a strategy; make the run "
                         "with gpuviz.workloads.parallelism:train or :sweep")
    st = pd.DataFrame(rows)
    load = run.spans[(run.spans["name"] == "load batch") & (run.spans["lane"] == "main")]
    load = load.groupby(["rank", "step"])["start"].min().rename("start").reset_index()
    load["step"] = load["step"].astype(int)
    st = st.merge(load, on=["rank", "step"], how="left")
    st["step_s"] = st["end"] - st["start"]
    cols = ["rank", "step", "config", "strategy", "tag", "ranks", "batch", "micro_batches",
            "bucket_mb", "precision", "warmup", "loss", "tokens", "n_params", "memory", "start", "end", "step_s"]
    for c in cols:
        if c not in st:
            st[c] = None
    return st[cols].sort_values(["config", "step", "rank"]).reset_index(drop=True)


_KEYS = ["strategy", "tag", "ranks", "batch", "micro_batches", "bucket_mb"]


def _measured_steps(run) -> pd.DataFrame:
    """One row per measured (not warm-up) step of every configuration: its keys, step_s
    (the slowest member rank's time: a step lasts until every rank is done), tokens, loss."""
    st = step_table(run)
    st = st[~st["warmup"].astype(bool)]
    if st.empty:
        raise ValueError(f"run={run.path}: every training step is a warm-up step; sweep with steps >= 1")
    return st.groupby(["config", "step"]).agg(
        **{k: (k, "first") for k in [*_KEYS, "n_params"]}, step_s=("step_s", "max"),
        tokens=("tokens", "max"), loss=("loss", "first")).reset_index()


def _summarise(steps: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = steps.groupby(by, sort=False)
    out = g[[k for k in [*_KEYS, "n_params"] if k not in by]].first()
    out["steps"] = g.size()
    out["step_s"] = g["step_s"].median()
    out["step_s_lo"] = g["step_s"].quantile(0.25)
    out["step_s_hi"] = g["step_s"].quantile(0.75)
    out["tokens"] = g["tokens"].median()
    out["tokens_per_s"] = out["tokens"] / out["step_s"]
    out["loss"] = g["loss"].last()
    return out.reset_index()


def config_table(run) -> pd.DataFrame:
    """One row per configuration of a sweep run, from its measured (not warm-up) steps.

    A step lasts as long as its slowest rank: step_s is the median over steps of the
    longest rank's time (``_lo``/``_hi``: 25th and 75th percentiles), tokens the tokens
    trained per step (all ranks together), tokens_per_s = tokens / step_s, loss the last
    step's, steps the measured steps. Also config, strategy, tag, ranks, batch,
    micro_batches, bucket_mb, n_params and cores (the CPU count of rank 0's machine).
    """
    out = _summarise(_measured_steps(run), ["config"])
    out["cores"] = _cores(run)
    return out


def loss_table(run, reference: int = 0) -> pd.DataFrame:
    """Each configuration's loss at every training step (warm-up included), one column per
    configuration, and the largest difference from configuration ``reference``: the check
    that every strategy trains the same model on the same data.

    Rows: step 0, 1, ... of each configuration; columns: the configurations' labels
    (:func:`config_labels`); ``loss_table(run).attrs["max_diff"]`` holds, per label, the
    largest absolute difference from the reference's losses.
    """
    st = step_table(run)
    first = st.drop_duplicates(["config", "step"]).copy()
    first["i"] = first.groupby("config").cumcount()
    labels = config_labels(run)
    wide = first.pivot(index="i", columns="config", values="loss").astype(float)
    if reference not in wide.columns:
        raise ValueError(f"reference={reference!r}: give a configuration index, one of {list(wide.columns)}")
    diff = wide.sub(wide[reference], axis=0).abs().max()
    wide.columns = [labels[(0, int(c))] for c in wide.columns]
    wide.index.name = "step"
    wide.attrs["max_diff"] = dict(zip(wide.columns, diff.to_numpy(), strict=True))
    return wide


def _cores(run) -> int | None:
    for e in run.raw.get(min(run.raw), []) if run.raw else []:
        if e.get("ph") == "M" and e.get("name") == "gpuviz_meta" and e["args"].get("cpu_count"):
            return int(e["args"]["cpu_count"])
    return None


def scaling_table(run, mode: str | None = None) -> pd.DataFrame:
    """Speedup and parallel efficiency per rank count, for each strategy and mode.

    Takes a run made by :func:`launch_scaling`; rows are the configurations tagged
    ``strong`` or ``weak`` (only ``mode`` if given), each rank count's steps pooled over
    the rounds. Against the smallest rank count n0 of the same strategy and mode (normally
    1 rank): speedup = (tokens/s at N) / (tokens/s at n0), efficiency = speedup x n0 / N;
    that is T1 / (N TN) for strong scaling and T1 / TN for weak.
    ideal_tokens_per_s = N/n0 x tokens/s at n0.

    Columns: mode, strategy, ranks, batch (sequences per step, all ranks), per_rank_batch,
    step_ms (median; ``_lo``, ``_hi``: 25th and 75th percentiles), tokens_per_s,
    ideal_tokens_per_s, speedup, efficiency, reference_ranks, steps, cores.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode={mode!r}: use 'strong', 'weak' or None (both)")
    steps = _measured_steps(run)
    steps = steps[steps["tag"].isin([mode] if mode else MODES)]
    if steps.empty:
        raise ValueError(f"run={run.path}: no configuration is tagged 'strong' or 'weak'"
                         + (f" (mode={mode!r})" if mode else "")
                         + "; make the run with gpuviz.parallel.scaling.launch_scaling")
    ct = _summarise(steps, ["tag", "strategy", "ranks"])
    rows = []
    for (m, s), g in ct.groupby(["tag", "strategy"], sort=False):
        g = g.sort_values("ranks")
        ref = g.iloc[0]
        for _, r in g.iterrows():
            speedup = r["tokens_per_s"] / ref["tokens_per_s"]
            alone = s == "single"                       # every rank trains its own batch
            rows.append({"mode": m, "strategy": s, "ranks": int(r["ranks"]),
                         "batch": int(r["batch"] * r["ranks"] if alone else r["batch"]),
                         "per_rank_batch": r["batch"] / r["ranks"] if s in SPLITS_BATCH else r["batch"],
                         "step_ms": r["step_s"] * 1e3, "step_ms_lo": r["step_s_lo"] * 1e3,
                         "step_ms_hi": r["step_s_hi"] * 1e3, "tokens_per_s": r["tokens_per_s"],
                         "ideal_tokens_per_s": ref["tokens_per_s"] * r["ranks"] / ref["ranks"],
                         "speedup": speedup, "efficiency": speedup * ref["ranks"] / r["ranks"],
                         "reference_ranks": int(ref["ranks"]), "steps": int(r["steps"]),
                         "cores": _cores(run)})
    return pd.DataFrame(rows)


# -- launching -------------------------------------------------------------------------------

def scaling_configs(strategy: str = "ddp", ranks: Iterable[int] = (1, 2, 4), mode: str = "strong",
                    steps: int = 3, batch: int = 16, warmup: int = 1, baseline: bool = False,
                    rounds: int = 2, **settings) -> list[dict]:
    """The :func:`gpuviz.workloads.parallelism.sweep` configurations of a scaling measurement.

    ``mode``: "strong" (global ``batch`` on every rank count), "weak" (``batch`` per rank:
    N x ``batch`` on N ranks) or "both". ``baseline=True`` adds, per rank count, ``single``
    with the same per-rank batch: every rank trains alone, no communication. ``rounds``
    repeats the whole list, every other round in reverse order, so that a machine slowing
    down or speeding up during the job (other work on it) biases no rank count.
    ``settings`` (micro_batches, bucket_mb) go to every configuration. Checked before
    anything runs.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: use one of {', '.join(STRATEGIES)}")
    if mode not in (*MODES, "both"):
        raise ValueError(f"mode={mode!r}: use 'strong', 'weak' or 'both'")
    counts = _rank_counts(ranks)
    if not isinstance(baseline, bool):
        raise ValueError(f"baseline={baseline!r}: give True or False")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r}: must be an integer >= 1")
    configs = []
    for m in MODES if mode == "both" else (mode,):
        for n in counts:
            total = batch if m == "strong" else _times(batch, n)
            configs.append({"strategy": strategy, "ranks": n, "batch": total, "steps": steps,
                            "warmup": warmup, "tag": m, **settings})
            if baseline and strategy != "single":
                if total % n:
                    raise ValueError(f"batch={batch}: the baseline gives each of {n} ranks "
                                     f"batch/{n} sequences; give a multiple of {n}")
                configs.append({"strategy": "single", "ranks": n, "batch": total // n,
                                "steps": steps, "warmup": warmup, "tag": m, **settings})
    world = max(counts)
    configs = [{k: v for k, v in check_config(c, world).items() if k in c} for c in configs]
    return [c for r in range(rounds) for c in (configs if r % 2 == 0 else configs[::-1])]


def _times(batch, n):
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch={batch!r}: must be an integer >= 1")
    return batch * n


def _rank_counts(ranks) -> list[int]:
    if isinstance(ranks, int) and not isinstance(ranks, bool):
        ranks = [ranks]
    try:
        counts = sorted(set(ranks))
    except TypeError:
        raise ValueError(f"ranks={ranks!r}: give rank counts, e.g. (1, 2, 4)") from None
    if not counts or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in counts):
        raise ValueError(f"ranks={ranks!r}: give rank counts, integers >= 1, e.g. (1, 2, 4)")
    return counts


def launch_scaling(strategy: str = "ddp", ranks: Iterable[int] = (1, 2, 4), mode: str = "strong",
                   steps: int = 3, batch: int = 16, warmup: int = 1, baseline: bool = False,
                   rounds: int = 2, seed: int = 0, model: dict | None = None, micro_batches: int | None = None,
                   bucket_mb: float | None = None, **launch_kwargs):
    """Launch one job of ``max(ranks)`` processes that runs every configuration of
    :func:`scaling_configs`; return its :class:`~gpuviz.run.load.Run`. Other keyword arguments
    go to :func:`gpuviz.launch` (``progress=False``, ``stream=False`` by default).

    >>> run = launch_scaling("ddp", ranks=(1, 2), mode="both", steps=3)   # doctest: +SKIP
    """
    from gpuviz.run.launch import launch
    from gpuviz.workloads.parallelism import model_config

    settings = {k: v for k, v in (("micro_batches", micro_batches), ("bucket_mb", bucket_mb))
                if v is not None}
    configs = scaling_configs(strategy, ranks, mode, steps, batch, warmup, baseline, rounds,
                              **settings)
    cfg = model_config(model)                   # a bad model fails here, not in the job
    world = max(c["ranks"] for c in configs)
    for c in configs:
        check_config(c, world, cfg)
    launch_kwargs.setdefault("progress", False)
    launch_kwargs.setdefault("stream", False)
    return launch("gpuviz.workloads.parallelism:sweep", nproc=world,
                  args={"configs": configs, "seed": seed, "model": model}, **launch_kwargs)


def measure_scaling(strategy: str = "ddp", ranks: Iterable[int] = (1, 2, 4), mode: str = "strong",
                    steps: int = 3, batch: int = 16, **kwargs) -> pd.DataFrame:
    """:func:`launch_scaling`, then :func:`scaling_table` of the run (its directory is in
    ``table.attrs["run_dir"]``). ``mode="both"`` measures both in one job.

    >>> measure_scaling("ddp", ranks=(1, 2, 4), mode="weak", baseline=True)   # doctest: +SKIP
    """
    run = launch_scaling(strategy, ranks, mode, steps, batch, **kwargs)
    table = scaling_table(run)
    table.attrs["run_dir"] = str(run.path)
    return table


# -- naming configurations ---------------------------------------------------------------------

def _runs(runs) -> list[tuple[str | None, object]]:
    if isinstance(runs, Mapping):
        items = list(runs.items())
    elif hasattr(runs, "events"):
        items = [(None, runs)]
    elif isinstance(runs, Iterable) and not isinstance(runs, (str, bytes)):
        items = [(None, r) for r in runs]
    else:
        items = []
    if not items or not all(hasattr(r, "events") for _, r in items):
        raise ValueError(f"runs={runs!r}: give a Run, a list of Runs or a dict of name -> Run")
    return items


def config_labels(runs) -> dict[tuple[int, int], str]:
    """A short, distinct label for every configuration of ``runs`` (as for
    :func:`memory_table`), keyed by (index of the run, config): the strategy, or the dict
    key (with the strategy if its run has several configurations), and where several
    share one, the settings that tell them apart, as few as needed (ranks, micro-batches,
    bucket size, tag, batch); configurations alike in all of these are numbered.
    """
    configs = []
    for i, (name, run) in enumerate(_runs(runs)):
        st = step_table(run)
        many = st["config"].nunique() > 1
        for config, g in st.groupby("config", sort=True):
            first = g.iloc[0]
            s = first["strategy"]
            configs.append({"key": (i, int(config)),
                            "label": s if name is None else f"{name}: {s}" if many else name,
                            **{k: first[k] for k in ("ranks", "micro_batches", "bucket_mb", "tag",
                                                     "batch")}})
    return _labels(pd.DataFrame(configs))


def _labels(configs: pd.DataFrame) -> dict:
    out = {}
    for label, g in configs.groupby("label", sort=False):
        parts: list[list[str]] = [[] for _ in range(len(g))]
        for col, fmt in (("ranks", "{:g} ranks"), ("micro_batches", "m={:g}"),
                         ("bucket_mb", "bucket {:g} MiB"), ("tag", "{}"), ("batch", "batch {:g}")):
            if len({tuple(p) for p in parts}) == len(parts):
                break
            if g[col].nunique() > 1:
                for p, v in zip(parts, g[col], strict=True):
                    p.append(fmt.format(v).replace("1 ranks", "1 rank") if v != "" else "untagged")
        names = [f"{label} ({', '.join(p)})" if p else label for p in parts]
        seen: dict[str, int] = {}
        for k, n in enumerate(names):
            if names.count(n) > 1:
                seen[n] = seen.get(n, 0) + 1
                names[k] = f"{n} #{seen[n]}"
        out.update(zip(g["key"], names, strict=True))
    return out
