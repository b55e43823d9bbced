"""Calibrate the cluster model on your own runs, then check it predicts them.

The same formulas that predict 16,384 GPUs (:mod:`gpuviz.plan.terms`) predict the
parallelism workload's CPU ranks once their "hardware" is known. :func:`calibrate` fits
that hardware from measured step times of :func:`gpuviz.workloads.parallelism.sweep`
runs (robust least squares on the log of predicted / measured,
:func:`scipy.optimize.least_squares` with a soft-L1 loss, so that the few configurations the
formulas describe worst, such as the teaching ZeRO-3's many small gathers, do not pull the
fit away from all the others):

- ``flops_per_s``: the FLOP/s one core reaches on the model's matmuls (the compute rate);
- ``bytes_per_s`` (1 / beta) and ``latency_s`` (alpha): gloo's ring steps between ranks;
- ``overhead_s``: the fixed time of a step (Python, the loss all-reduce);
- ``launch_s``: a fixed cost per layer, pass and micro-batch (Python dispatch, small ops);
- ``data_s_per_sequence``: making the batch (every rank of the workload makes the global
  batch, then takes its slice);
- ``sync_s``: the fixed time a step of more than one rank adds: it ends with the slowest
  rank (Lab 03's stragglers) and a small all-reduce of the loss;
- ``overlap``: the fraction of the backward pass that hides the gradient reduction.

Ranks share the machine's cores (:func:`gpuviz.plan.terms.step_terms`: ``cores``), so 4
ranks on 2 cores compute at half speed. :func:`leave_one_out` predicts each configuration
from a fit on all the others: the honest error.

>>> run = gpuviz.launch("gpuviz.workloads.parallelism:sweep", nproc=4,
...                     args={"configs": calibration_configs()})           # doctest: +SKIP
>>> cal = calibrate(run)                                                    # doctest: +SKIP
>>> leave_one_out(run)[["label", "measured_ms", "predicted_ms", "error"]]   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pandas as pd

import gpuviz.plan.terms as terms
from gpuviz.plan.config import Config, Efficiency
from gpuviz.plan.transformer import MODELLED, Transformer

#: What :func:`calibrate` fits, in order, and a starting guess.
PARAMETERS = ("flops_per_s", "bytes_per_s", "latency_s", "overhead_s", "launch_s",
              "data_s_per_sequence", "overlap", "sync_s")
_START = (2e9, 1e9, 1e-4, 5e-3, 1e-4, 1e-4, 0.5, 1e-3)
#: The fixed costs trade off against each other, so the fit has local minima: it starts
#: from each of these and keeps the best.
_STARTS = (_START, (1e10, 1e9, 1e-4, 1e-2, 1e-4, 1e-4, 0.5, 1e-2),
           (5e10, 3e8, 5e-4, 1e-3, 1e-5, 1e-3, 0.1, 1e-3))
_LOW = (1e6, 1e6, 1e-9, 1e-9, 1e-9, 1e-9, 1e-4, 1e-9)
_HIGH = (1e13, 1e12, 1.0, 10.0, 1.0, 1.0, 1.0, 10.0)
#: The optimizer's memory traffic is not fitted: at this bandwidth it costs nothing, and the
#: step's fixed costs (``overhead_s``) hold it (fitting it separately left it at its bound).
_CPU_MEMORY_BYTES_PER_S = 1e12
#: The strategies of the parallelism workload the model describes.
SUPPORTED = ("single", "ddp", "zero1", "zero2", "zero3", "tp", "gpipe", "1f1b")


def calibration_configs(batches=(8, 32), ranks=(2, 4), steps: int = 3,
                        strategies=("ddp", "zero1", "zero3", "tp", "1f1b"), rounds: int = 1) -> list[dict]:
    """Sweep configurations for a calibration job of ``max(ranks)`` processes: for each
    batch, one rank alone (``single``), then every strategy on every rank count.

    With ``rounds`` > 1 the whole list runs again, in another order each round (the same
    on every rank), and :func:`measured_table` takes each configuration's median over the
    rounds: a shared machine's slow spells then fall on different configurations each time
    instead of on a few of them.

    >>> len(calibration_configs()), len(calibration_configs(rounds=2))
    (22, 44)
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds={rounds!r}: give an integer >= 1")
    out = []
    for b in batches:
        out.append({"strategy": "single", "ranks": 1, "batch": b, "steps": steps})
        out += [{"strategy": s, "ranks": n, "batch": b, "steps": steps, "micro_batches": 4}
                for n in ranks for s in strategies]
    rng = random.Random(0)
    every = list(out)
    for _ in range(rounds - 1):
        again = list(every)
        rng.shuffle(again)
        out += again
    return out


def measured_table(runs) -> pd.DataFrame:
    """One row per configuration of one or more sweep runs (:func:`gpuviz.parallel.scaling.config_table`),
    with a ``label`` and the run's ``cores``; a DataFrame already made by it passes through."""
    from gpuviz.parallel import scaling

    if isinstance(runs, pd.DataFrame):
        table = runs.copy()
    else:
        items = [runs] if hasattr(runs, "events") else list(runs) if isinstance(runs, (list, tuple)) else None
        if not items or not all(hasattr(r, "events") for r in items):
            raise ValueError(f"runs={runs!r}: give a Run of gpuviz.workloads.parallelism:sweep, a "
                             "list of them, or their measured_table()")
        table = pd.concat([scaling.config_table(r).assign(run=i) for i, r in enumerate(items)],
                          ignore_index=True)
    bad = sorted(set(table["strategy"]) - set(SUPPORTED))
    if bad:
        raise ValueError(f"runs: strategies {bad} are not modelled; use {', '.join(SUPPORTED)}")
    alone = table[(table["strategy"] == "single") & (table["ranks"] > 1)]
    if len(alone):
        raise ValueError("runs: 'single' on more than one rank (every rank training alone) is not "
                         "modelled; keep 'single' to ranks=1")
    if "label" not in table:
        table["label"] = [f"{s} {n}r b{b}" + (f" m{m}" if s in ("gpipe", "1f1b") else "")
                          for s, n, b, m in zip(table["strategy"], table["ranks"], table["batch"],
                                                table["micro_batches"], strict=True)]
    if table["cores"].isna().any():
        table["cores"] = table["cores"].fillna(1)
    if table["label"].duplicated().any():   # several rounds: each configuration's median
        g = table.groupby("label", sort=False)
        step_s = g["step_s"].median()
        table = g.first().assign(step_s=step_s, repeats=g.size()).reset_index()
    return table.reset_index(drop=True)


def _layouts(table: pd.DataFrame) -> dict:
    s, n = table["strategy"].to_numpy(), table["ranks"].to_numpy(dtype=float)
    b, m = table["batch"].to_numpy(dtype=float), table["micro_batches"].to_numpy(dtype=float)
    is_dp = np.isin(s, ("ddp", "zero1", "zero2", "zero3"))
    is_pp = np.isin(s, ("gpipe", "1f1b"))
    zero = np.select([s == "zero1", s == "zero2", s == "zero3"], [1, 2, 3], 0)
    return {"dp": np.where(is_dp, n, 1.0), "tp": np.where(s == "tp", n, 1.0),
            "pp": np.where(is_pp, n, 1.0), "zero": zero, "global_batch": b,
            "micro_batch": np.where(is_dp, b / n, np.where(is_pp, b / m, b)),
            "gpus_per_node": n, "bucket_bytes": table["bucket_mb"].to_numpy(dtype=float) * 2**20}


@dataclasses.dataclass(frozen=True)
class Calibration:
    """This machine's ranks as the cluster model sees them, fitted on measured runs."""

    flops_per_s: float
    """FLOP/s one core reaches on the model's matmuls (float32)."""
    bytes_per_s: float
    """Bandwidth of one ring step between ranks (1 / beta), bytes/s."""
    latency_s: float
    """Latency of one ring step (alpha), s."""
    overhead_s: float
    """Fixed time of one step per rank (Python, the loss all-reduce), s."""
    launch_s: float
    """Fixed cost per layer, pass (forward or backward) and micro-batch, s."""
    data_s_per_sequence: float
    """Time to make one sequence of the global batch, s."""
    overlap: float
    """Fraction of the backward pass (compute, for ZeRO-3) that hides communication."""
    cores: int
    """Cores the ranks share."""
    model: Transformer
    """The transformer the runs trained."""
    fitted_on: tuple = ()
    """Labels of the configurations fitted on."""
    sync_s: float = 0.0
    """Fixed time per step of a configuration of more than one rank, s."""

    def gpu(self) -> dict:
        """The calibrated ranks as an accelerator dict for :class:`gpuviz.plan.prediction.Config`."""
        return {"name": "this machine's CPU cores (calibrated)", "fp32_flops": self.flops_per_s,
                "bf16_flops": self.flops_per_s, "memory_bytes": math.inf,
                "memory_bytes_per_s": _CPU_MEMORY_BYTES_PER_S, "tdp_w": None,
                "cores": self.cores, "intra_link": None}

    def link(self) -> dict:
        return {"name": "gloo between ranks (calibrated)", "bytes_per_s": self.bytes_per_s,
                "latency_s": self.latency_s}

    def config(self, strategy: str, ranks: int, batch: int, micro_batches: int = 4,
               bucket_mb: float = 1.0) -> Config:
        """The :class:`gpuviz.plan.prediction.Config` of one sweep configuration on this machine.

        >>> cal = Calibration(2e9, 1e9, 1e-4, 0.0, 0.0, 0.0, 0.5, 2, gpt_model())
        >>> c = cal.config("1f1b", ranks=2, batch=16)
        >>> (c.pp, c.micro_batch, c.gpus_per_node)
        (2, 4, 2)
        """
        row = pd.DataFrame([{"strategy": strategy, "ranks": ranks, "batch": batch,
                             "micro_batches": micro_batches, "bucket_mb": bucket_mb, "cores": self.cores}])
        lay = {k: v[0] for k, v in _layouts(measured_table(row)).items()}
        return Config(self.model, gpus=ranks, dp=int(lay["dp"]), tp=int(lay["tp"]), pp=int(lay["pp"]),
                      global_batch=batch, micro_batch=int(lay["micro_batch"]), zero=int(lay["zero"]),
                      precision="fp32", gpu=self.gpu(), intra_link=self.link(), inter_link=self.link(),
                      gpus_per_node=ranks, bucket_mb=bucket_mb, sequence_parallel=False,
                      schedule="gpipe" if strategy == "gpipe" else "1f1b",
                      efficiency=Efficiency(compute=1.0, bandwidth=1.0, latency_s=self.latency_s,
                                            overlap=self.overlap, overhead_s=self.overhead_s,
                                            launch_s=self.launch_s,
                                            data_s_per_sequence=self.data_s_per_sequence,
                                            sync_s=self.sync_s,
                                            source="calibrated on this machine's runs"))

    def predict_table(self, runs) -> pd.DataFrame:
        """Measured against predicted step time for every configuration of ``runs``:
        label, strategy, ranks, batch, measured_ms, predicted_ms, error (predicted /
        measured - 1), dominant term, kind."""
        table = measured_table(runs)
        pred, dom = _predict(table, self.vector(), self.model, self.cores)
        return _result(table, pred, dom)

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, k) for k in PARAMETERS])


def gpt_model(model: dict | None = None) -> Transformer:
    """The :class:`gpuviz.plan.prediction.Transformer` of the workload's GPT (``GPTConfig`` fields).

    >>> gpt_model().n_params
    854272
    """
    from gpuviz.workloads.parallelism import model_config

    c = model_config(model)
    return Transformer(c.layers, c.dim, c.heads, c.seq_len, c.vocab, ffn=c.mlp_ratio * c.dim,
                       tied=False, name="gpuviz-gpt")


def _predict(table: pd.DataFrame, x: np.ndarray, model: Transformer, cores) -> tuple:
    flops, bw, lat, overhead, launch, data, overlap, sync = x
    lay = _layouts(table)
    hw = {"peak_flops": flops, "memory_bytes_per_s": _CPU_MEMORY_BYTES_PER_S, "tdp_w": math.nan, "cores": float(cores),
          "intra_bytes_per_s": bw, "inter_bytes_per_s": bw, "intra_latency_s": lat,
          "inter_latency_s": lat}
    t = terms.step_terms(model.spec(), hw, dp=lay["dp"], tp=lay["tp"], pp=lay["pp"],
                               micro_batch=lay["micro_batch"], global_batch=lay["global_batch"],
                               zero=lay["zero"], recompute=0, precision="fp32",
                               gpus_per_node=lay["gpus_per_node"], bucket_bytes=lay["bucket_bytes"],
                               overlap=overlap, overhead_s=overhead, sequence_parallel=False,
                               launch_s=launch, data_s_per_sequence=data, sync_s=sync)
    stacked = np.stack([np.broadcast_to(t[k], t["step_s"].shape) for k in terms.TIME_TERMS])
    dominant = np.array(terms.TIME_TERMS)[stacked.argmax(axis=0)]
    return t["step_s"], dominant


def _result(table, pred, dominant) -> pd.DataFrame:
    out = table[["label", "strategy", "ranks", "batch", "micro_batches"]].copy()
    out["measured_ms"] = table["step_s"].to_numpy() * 1e3
    out["predicted_ms"] = pred * 1e3
    out["error"] = out["predicted_ms"] / out["measured_ms"] - 1
    out["dominant"] = dominant
    out["kind"] = MODELLED
    return out


def _fit(table: pd.DataFrame, model: Transformer, cores: int) -> np.ndarray:
    from scipy.optimize import least_squares

    measured = table["step_s"].to_numpy(dtype=float)

    def residual(logx):
        return np.log(_predict(table, np.exp(logx), model, cores)[0] / measured)

    # soft L1 on log-ratios: quadratic within ~10% of the measurement, linear beyond
    best = min((least_squares(residual, np.log(start), method="trf", x_scale=1.0, loss="soft_l1",
                              f_scale=0.1, bounds=(np.log(_LOW), np.log(_HIGH)))
                for start in _STARTS), key=lambda r: r.cost)
    return np.exp(best.x)


def calibrate(runs, model: dict | Transformer | None = None, fit_on=None) -> Calibration:
    """Fit :data:`PARAMETERS` to the measured step times of ``runs`` (sweep runs of the
    parallelism workload, or their :func:`measured_table`). ``model``: the GPTConfig fields
    the runs trained (default: ``GPTConfig()``); ``fit_on``: labels (or a boolean mask) of
    the configurations to fit on, the rest left for validation (default: all).

    >>> cal = calibrate(run)                    # doctest: +SKIP
    >>> cal.predict_table(run)["error"].abs().median() <= 0.10   # doctest: +SKIP
    """
    table = measured_table(runs)
    net = model if isinstance(model, Transformer) else gpt_model(model)
    mask = _mask(table, fit_on)
    if mask.sum() < len(PARAMETERS):
        raise ValueError(f"fit_on: {int(mask.sum())} configurations to fit {len(PARAMETERS)} "
                         "parameters; give at least as many as parameters")
    cores = int(table["cores"].iloc[0])
    x = _fit(table[mask].reset_index(drop=True), net, cores)
    return Calibration(**dict(zip(PARAMETERS, map(float, x), strict=True)), cores=cores, model=net,
                       fitted_on=tuple(table.loc[mask, "label"]))


def _mask(table, fit_on) -> np.ndarray:
    if fit_on is None:
        return np.ones(len(table), dtype=bool)
    if isinstance(fit_on, (np.ndarray, pd.Series)) and np.asarray(fit_on).dtype == bool:
        return np.asarray(fit_on)
    unknown = sorted(set(fit_on) - set(table["label"]))
    if unknown:
        raise ValueError(f"fit_on: labels {unknown} are not configurations of the runs; known: "
                         + ", ".join(table["label"]))
    return table["label"].isin(list(fit_on)).to_numpy()


def leave_one_out(runs, model: dict | Transformer | None = None) -> pd.DataFrame:
    """Predict every configuration from a calibration on all the others: label, measured_ms,
    predicted_ms, error, dominant, kind. ``.attrs["median_abs_error"]`` holds the median
    of |error|."""
    table = measured_table(runs)
    net = model if isinstance(model, Transformer) else gpt_model(model)
    cores = int(table["cores"].iloc[0])
    preds, doms = np.empty(len(table)), np.empty(len(table), dtype=object)
    for i in range(len(table)):
        rest = table.drop(index=i).reset_index(drop=True)
        x = _fit(rest, net, cores)
        p, d = _predict(table.iloc[[i]].reset_index(drop=True), x, net, cores)
        preds[i], doms[i] = p[0], d[0]
    out = _result(table, preds, doms)
    out.attrs["median_abs_error"] = float(out["error"].abs().median())
    return out
