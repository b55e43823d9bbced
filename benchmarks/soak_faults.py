"""Soak: launch jobs and kill their launcher at random moments; count what is left behind.

Each round starts ``gpuviz run tests/scripts/slow_steps.py --nproc 2`` as a separate
process, waits a random time (0 to 6 s: during start-up, rendezvous or training), sends its
launcher SIGKILL, SIGTERM or SIGINT at random, and then counts:

- leftovers: processes of that job (any process whose environment names its run
  directory) still alive 20 s later;
- stale states: a ``run.json`` that still says ``running``;
- lost steps: a rank whose recorded steps are not 0, 1, 2... without a hole, or a trace
  that no longer loads.

The goal is zero of each. Run from the repository root (about 8 minutes on 2 cores)::

    python benchmarks/soak_faults.py --rounds 50
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


def job_processes(run_dir: Path) -> list[psutil.Process]:
    """Live processes whose environment names ``run_dir`` (torchrun and its workers)."""
    key, out = f"GPUVIZ_RUN_DIR={run_dir.resolve()}", []
    for p in psutil.process_iter():
        try:
            env = p.environ()
            if p.status() != psutil.STATUS_ZOMBIE and key == f"GPUVIZ_RUN_DIR={env.get('GPUVIZ_RUN_DIR')}":
                out.append(p)
        except psutil.Error:
            continue
    return out


def one_round(base: Path, i: int, rng: random.Random) -> dict:
    run_dir = base / f"round{i}"
    p = subprocess.Popen([sys.executable, "-m", "gpuviz.cli", "run", "tests/scripts/slow_steps.py",
                          "--nproc", "2", "--run-dir", str(run_dir), "--no-progress"], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delay, sig = rng.uniform(0.0, 6.0), rng.choice(SIGNALS)
    time.sleep(delay)
    p.send_signal(sig)
    p.wait(timeout=60)
    deadline = time.monotonic() + 20
    while job_processes(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = job_processes(run_dir)
    for q in left:   # clean up for the next round; counted already
        q.kill()
    status = None
    if (run_dir / "run.json").exists():
        status = json.loads((run_dir / "run.json").read_text()).get("status")
    lost, steps = 0, 0
    if list(run_dir.glob("rank*.jsonl")):
        import gpuviz

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run = gpuviz.load_run(run_dir)
            for rank in run.ranks:
                got = sorted(run.events[(run.events["rank"] == rank)
                                        & (run.events["name"] == "step_end")]["step"])
                steps += len(got)
                lost += got != list(range(len(got)))
        except Exception:  # noqa: BLE001 - a trace that does not load is data lost
            lost += 1
    return {"round": i, "delay_s": round(delay, 2), "signal": signal.Signals(sig).name,
            "status": status, "leftovers": len(left), "stale": status == "running",
            "lost": lost, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpuviz-soak-") as tmp:
        for i in range(a.rounds):
            r = one_round(Path(tmp), i, rng)
            rows.append(r)
            print(f"round {i:2d}: {r['signal']:7s} after {r['delay_s']:4.2f} s -> status "
                  f"{r['status']!s:13s} leftovers {r['leftovers']} lost {r['lost']} "
                  f"({r['steps']} steps recorded)", flush=True)
    statuses = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    print(f"\n{len(rows)} rounds: leftover processes {sum(r['leftovers'] for r in rows)}, "
          f"stale run.json states {sum(r['stale'] for r in rows)}, lost steps "
          f"{sum(r['lost'] for r in rows)}; final states {statuses}")


if __name__ == "__main__":
    main()
