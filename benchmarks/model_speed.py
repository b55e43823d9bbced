"""How fast is the cluster model? One prediction, a full layout search, one widget update.

Goals (from the planning lab's needs): one ``gpuviz.plan.prediction.predict`` under 1 ms; a
``gpuviz.plan.search.search`` over every (dp, tp, pp, micro-batch, ZeRO stage,
recomputation, and for a mixture of experts expert-parallel) layout of up to 16,384 GPUs
under 5 s; one update of
``gpuviz.widgets.planner()`` under 50 ms. Each is the median of repeated runs in this
process; the ratio to its goal is printed (below 1 meets it). Always exits 0.

    .venv/bin/python benchmarks/model_speed.py
"""

from __future__ import annotations

import statistics
import time


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from gpuviz.plan import Config
    from gpuviz.plan.prediction import predict
    from gpuviz.plan.search import search
    from gpuviz.widgets import planner

    cfg = Config("llama3-405b", gpus=16384, dp=128, tp=8, pp=16, global_batch=2048,
                 zero=2, recompute="selective", gpu="H100 SXM", virtual_stages=2)
    predict(cfg)
    rows = [("predict, llama3-405b on 16,384 H100", _median_s(lambda: predict(cfg), 300), 1e-3)]
    for gpus, batch in ((1024, 2048), (16384, 16384)):
        n = len(search("llama3-405b", gpus=gpus, global_batch=batch, gpu="H100 SXM"))
        rows.append((f"search, llama3-405b, {gpus:,} GPUs ({n:,} layouts)",
                     _median_s(lambda g=gpus, b=batch: search("llama3-405b", gpus=g, global_batch=b,
                                                              gpu="H100 SXM"), 5), 5.0))
    n = len(search("qwen3-235b-a22b", gpus=16384, global_batch=16384, gpu="H100 SXM"))
    rows.append((f"search, qwen3-235b-a22b (MoE), 16,384 GPUs ({n:,} layouts)",
                 _median_s(lambda: search("qwen3-235b-a22b", gpus=16384, global_batch=16384,
                                          gpu="H100 SXM"), 5), 5.0))
    app = planner()
    values = iter([2, 4, 8, 1] * 50)
    rows.append(("planner update (one slider)",
                 _median_s(lambda: setattr(app.controls["tp"], "value", next(values)), 40), 0.05))
    print(f"{'what':<62} {'median':>10} {'goal':>8} {'ratio':>7}  verdict")
    for what, sec, goal in rows:
        verdict = "meets the goal" if sec < goal else "MISSES the goal"
        print(f"{what:<62} {sec * 1e3:>8.2f} ms {goal * 1e3:>6.0f} ms {sec / goal:>7.3f}  {verdict}")


if __name__ == "__main__":
    main()
