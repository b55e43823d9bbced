"""Predictions precomputed over models, GPU counts and layouts: what a planner needs when no
Python runs behind it (the online book), from the same model as the live widget.

:func:`layout_grid` searches every layout (:func:`gpuviz.plan.search.search`) of each
model on each GPU count and keeps, for each (tp, pp), the fastest layout that fits (or,
where none fits, the one that needs the least memory). All modelled.

>>> g = layout_grid(["llama3-8b"], gpus=[8], global_batch=64)
>>> sorted(set(g["tp"]))[:3], bool(g["fits"].any())
([1, 2, 4], True)
"""

from __future__ import annotations

import pandas as pd

from gpuviz.plan.search import layout_name, search
from gpuviz.plan.terms import TIME_TERMS
from gpuviz.plan.transformer import MODELLED, transformer

#: The columns of :func:`layout_grid`, besides each term of :data:`TIME_TERMS` (seconds).
COLUMNS = ("model", "gpus", "tp", "pp", "fits", "layout", "step_s", "tokens_per_s", "mfu",
           "memory_GiB", "margin_GiB", "dominant", "why")


def layout_grid(models, gpus, global_batch: int, gpu: str = "H100 SXM", **search_kwargs) -> pd.DataFrame:
    """For each model (a preset name or a Transformer) and GPU count, the best layout of
    every (tp, pp) that exists (modelled): columns :data:`COLUMNS` and the time terms.

    ``fits`` False marks a (tp, pp) with no layout that fits (the row is the one needing
    the least memory); a model that fits nowhere on a GPU count gets one row with
    ``tp = pp = 0`` and ``why`` saying so. ``attrs``: ``capacity_GiB``, ``gpu``,
    ``global_batch``, ``kind``. Other keyword arguments go to :func:`search`.
    """
    models = [models] if isinstance(models, str) else list(models)
    counts = [gpus] if isinstance(gpus, int) else list(gpus)
    if not models or not counts:
        raise ValueError(f"models={models!r}, gpus={gpus!r}: give at least one of each")
    rows, capacity = [], None
    for model in models:
        name = transformer(model).name
        for n in counts:
            try:
                table = search(model, gpus=n, global_batch=global_batch, gpu=gpu, **search_kwargs)
            except ValueError as e:
                rows.append({"model": name, "gpus": n, "tp": 0, "pp": 0, "fits": False,
                             "layout": "", "why": str(e)})
                continue
            capacity = table.attrs["capacity_GiB"]
            # per (tp, pp): the fastest that fits (the table lists them by throughput), else
            # the one that needs the least memory
            fit = table[table["fits"]].groupby(["tp", "pp"]).first()
            small = table[~table["fits"]].sort_values("memory_GiB", kind="stable").groupby(["tp", "pp"]).first()
            best = pd.concat([fit, small[~small.index.isin(fit.index)]]).sort_index().reset_index()
            for _, r in best.iterrows():
                rows.append({"model": name, "gpus": n, **{k: r[k] for k in (
                    "tp", "pp", "fits", "step_s", "tokens_per_s", "mfu", "memory_GiB", "margin_GiB",
                    "dominant", *TIME_TERMS)}, "layout": layout_name(r),
                    "why": "" if r["fits"] else "does not fit in memory"})
    out = pd.DataFrame(rows).reindex(columns=[*COLUMNS, *TIME_TERMS])
    out.attrs.update(capacity_GiB=capacity, gpu=gpu, global_batch=global_batch, kind=MODELLED)
    return out
