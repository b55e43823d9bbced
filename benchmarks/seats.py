"""How many learners a server holds: 1, 2, 4 and 8 copies of Lab 00's job at once.

Each copy is what one learner's Lab 00 runs: ``gpuviz run gpuviz.workloads.mlp:train
--nproc 4 --arg steps=20`` (4 gloo ranks and the launcher); ``--ranks 2`` measures the labs
as an instructor lowers them for a crowded server (``GPUVIZ_LAB_RANKS=2``). The copies start together; the
script reports each round's mean wall time beside one copy alone (the slowdown), and the
peak memory of one copy's process tree and of all of them together, sampled every 0.2 s.
The instructor's guide and ``gpuviz doctor`` read the JSON it writes (``--out``) for their
sizing rule, one file per rank count:

    .venv/bin/python benchmarks/seats.py --out gpuviz/data/seats.json
    .venv/bin/python benchmarks/seats.py --ranks 2 --out gpuviz/data/seats-2-ranks.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil


def job(ranks: int) -> list[str]:
    """The command of one copy: Lab 00's first job on ``ranks`` ranks."""
    return [sys.executable, "-m", "gpuviz.cli", "run", "gpuviz.workloads.mlp:train", "--nproc", str(ranks),
            "--arg", "steps=20", "--no-progress", "--energy", "off"]


def _tree_rss(p: psutil.Process) -> int:
    try:
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def round_of(k: int, where: Path, ranks: int = 4) -> dict:
    """``k`` copies at once: each one's wall time, and the peak memory of one and of all."""
    procs, starts = [], []
    for i in range(k):
        starts.append(time.perf_counter())
        procs.append(subprocess.Popen([*job(ranks), "--run-dir", str(where / f"k{k}-{i}")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    handles = [psutil.Process(p.pid) for p in procs]
    peak_one, peak_all, done = 0, 0, threading.Event()

    def sample():
        nonlocal peak_one, peak_all
        while not done.is_set():
            each = [_tree_rss(h) for h in handles]
            peak_one, peak_all = max(peak_one, *each), max(peak_all, sum(each))
            time.sleep(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    walls = []
    for p, s in zip(procs, starts, strict=True):
        _, err = p.communicate()
        walls.append(time.perf_counter() - s)
        if p.returncode != 0:
            raise SystemExit(f"a copy failed ({p.returncode}): {err.decode()[-500:]}")
    done.set()
    t.join()
    return {"copies": k, "wall_s": walls, "mean_wall_s": sum(walls) / k,
            "peak_one_gb": peak_one / 2**30, "peak_all_gb": peak_all / 2**30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", default="1,2,4,8", help="how many copies at once, per round")
    ap.add_argument("--ranks", type=int, default=4, choices=(2, 4), help="ranks per copy (GPUVIZ_LAB_RANKS)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args()
    ks = [int(k) for k in a.copies.split(",")]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="gpuviz-seats-") as d:
        rounds = [round_of(k, Path(d), a.ranks) for k in ks]
    alone = rounds[0]["mean_wall_s"] if ks[0] == 1 else None
    print(f"Lab 00's job ({a.ranks} ranks, 20 steps), k copies at once, on {cores} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB:")
    print(f"{'copies':>6} {'mean wall (s)':>14} {'slowdown':>9} {'peak, one (GiB)':>16} {'peak, all (GiB)':>16}")
    for r in rounds:
        r["slowdown"] = r["mean_wall_s"] / alone if alone else None
        slow = f"{r['slowdown']:.2f}x" if alone else "-"
        print(f"{r['copies']:>6} {r['mean_wall_s']:>14.2f} {slow:>9} {r['peak_one_gb']:>16.2f} {r['peak_all_gb']:>16.2f}")
    if a.out:
        out = {"job": " ".join(job(a.ranks)[2:]), "ranks": a.ranks, "cores": cores, "memory_gb": psutil.virtual_memory().total / 2**30,
               "cpu": platform.processor() or platform.machine(), "when": time.strftime("%Y-%m-%d"),
               "measured_by": "benchmarks/seats.py", "rounds": rounds}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1))
        print(f"written to {a.out}")


if __name__ == "__main__":
    main()
