"""How long ``gpuviz.plot.timeline`` takes, and how big its figure is, for a large run.

Builds a synthetic run of R ranks x N spans each (DDP-like steps: data, forward, backward
with 4 gradient buckets on the comm lane, waiting, optimizer; one slow rank, one rank
stopped by an error) and prints the build time and ``len(fig.to_json())``.

    python benchmarks/timeline_size.py                 # 64 ranks x 10,000 spans
    python benchmarks/timeline_size.py --ranks 8 --spans 2000 --png /tmp/plots/t.png
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np

from gpuviz import plot
from gpuviz.run.load import Run, _build

SPANS_PER_STEP = 10


def _span(ev, rank, name, cat, ts, dur, lane=0, step=0, **args):
    ev.append({"ph": "X", "name": name, "cat": cat, "ts": ts, "dur": dur, "pid": rank, "tid": lane,
               "args": {"step": step, **args}})


def synthetic_run(ranks: int = 64, spans: int = 10_000, seed: int = 0) -> Run:
    """A Run of ``ranks`` x ``spans`` spans (times in µs as the tracer writes them)."""
    rng = np.random.default_rng(seed)
    steps = spans // SPANS_PER_STEP
    raw: dict[int, list[dict]] = {}
    slow = ranks // 3                                      # a straggler: everyone waits for it
    for r in range(ranks):
        ev: list[dict] = [{"ph": "M", "name": "gpuviz_meta", "pid": r,
                           "args": {"world_size": ranks, "backend": "synthetic"}}]
        t = 0.0
        x = partial(_span, ev, r)
        for s in range(steps):
            fwd = rng.uniform(1800, 2200) * (1.3 if r == slow else 1.0)
            x("load batch", "data", t, 40, step=s)
            x("forward", "compute", t + 50, fwd, step=s)
            b0 = t + 60 + fwd
            bwd = 2 * fwd
            x("backward", "compute", b0, bwd, step=s)
            for k in range(4):
                x(f"all_reduce bucket {k}", "comm", b0 + bwd * (0.2 + 0.2 * k), bwd * 0.35, lane=1,
                  step=s, bytes=26_214_400 if k < 3 else 4_194_304, bucket=k)
            t = b0 + bwd + 20
            wait = 3 * 2000 * 0.3 * (r != slow) + rng.uniform(0, 200)
            x("wait for others", "idle", t, wait, step=s)
            x("all_reduce loss", "comm", t + wait, 30, step=s, bytes=4)
            x("optimizer step", "optimizer", t + wait + 40, 500, step=s)
            t += wait + 560
            ev.append({"ph": "i", "name": "step_end", "ts": t, "pid": r, "args": {"step": s}})
        raw[r] = ev
    # the last rank dies in its last step: an interrupted span and an error event
    last = raw[ranks - 1]
    t_end = last[-1]["ts"]
    last.append({"ph": "X", "name": "forward", "cat": "compute", "ts": t_end, "dur": 30_000,
                 "pid": ranks - 1, "tid": 0, "args": {"step": steps, "interrupted": "error"}})
    last.append({"ph": "i", "name": "error", "ts": t_end + 30_000, "pid": ranks - 1,
                 "args": {"step": steps, "error": "RuntimeError: CUDA error: an illegal memory access"}})
    return _build(Path("synthetic"), raw, [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=64)
    ap.add_argument("--spans", type=int, default=10_000, help="spans per rank")
    ap.add_argument("--max-spans", type=int, default=20_000)
    ap.add_argument("--png", help="also write the figure as PNG (needs kaleido)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    run = synthetic_run(a.ranks, a.spans)
    t1 = time.perf_counter()
    fig = plot.timeline(run, max_spans=a.max_spans)
    t2 = time.perf_counter()
    size = len(fig.to_json())
    t3 = time.perf_counter()
    print(f"{len(run.spans):,} spans ({a.ranks} ranks): run built in {t1 - t0:.1f} s; "
          f"timeline built in {t2 - t1:.2f} s; to_json {t3 - t2:.2f} s, {size / 1e6:.1f} MB; "
          f"{len(fig.data)} traces")
    if a.png:
        fig.write_image(a.png, width=1400, height=fig.layout.height, scale=1)
        print(f"wrote {a.png}")


if __name__ == "__main__":
    main()
