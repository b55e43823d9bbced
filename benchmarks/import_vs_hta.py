"""gpuviz's PyTorch-profiler trace import against Holistic Trace Analysis, side by side.

Goals: gpuviz loads a folder of profiler traces faster than HTA (HTA time / gpuviz time
> 1) with at most a third of HTA's peak memory (gpuviz peak RSS / HTA peak RSS <= 0.33),
and both agree on each rank's idle, compute and communication time.

In one run, for each dataset, each tool loads the same folder in its own fresh process:

    gpuviz          this project's venv: ``gpuviz.load_run(folder)`` then ``run.summary()``.
    HTA, 1 process  HTA's venv: ``TraceAnalysis``, its ranks parsed one after another
                    (``Trace.load_traces(use_multiprocessing=False)``, else what
                    ``TraceAnalysis(trace_dir=...)`` does), then ``get_temporal_breakdown()``.
    HTA, pool       ``TraceAnalysis(trace_dir=...)`` as shipped: a fork pool parses the ranks
                    (one worker per core, at most one per rank), then the breakdown.

Time is wall time of the load and of the breakdown/summary; peak memory is the process's
peak RSS (``VmHWM`` in /proc/self/status: Linux's ``ru_maxrss`` of RUSAGE_SELF also keeps the
RSS of the process that started it, from before exec) and, for the pool, also its largest
worker's (``ru_maxrss`` of RUSAGE_CHILDREN) and the peak of parent + workers' RSS summed
(psutil, sampled every 20 ms; shared pages counted once per process). "above libs" is
the peak less the peak once the tool and its libraries are imported: the memory the import
itself takes, which the memory goal compares (a whole process's peak also holds numpy and
pandas, the same whatever the trace, as the verdict prints). Both tools read every
kernel: HTA is given ``include_last_profiler_step=True`` (by default it drops the last
profiled step, which gpuviz keeps).

Datasets: ``dlrm`` (the 8-rank DLRM V100 traces shipped in gpuviz/data/real-traces), and
``synth`` (8 ranks of ``tests/kineto_fakes`` traces, uncompressed JSON, ``--synth-mb`` MB
each, written under /tmp once). ``--big`` adds ``big``: 64 ranks, about 1 GB of JSON, for
gpuviz only unless ``--hta-big`` (HTA's parse time grows faster than linearly with the file:
7 s for one 12 MB rank, 25 s for one 24 MB rank on this machine, so ``big`` takes HTA 10-15
minutes per mode).

HTA lives in its own venv so it cannot disturb the project's: by default /tmp/hta-venv,
created on first run (``python -m venv``, then ``pip install torch==2.13.0`` and
``holistictraceanalysis==0.5.0 pandas<3``; torch is pinned so pip takes the local CPU wheel
rather than GBs of CUDA; pandas 3 breaks HTA 0.5.0's parser, see PANDAS_PIN). ``--hta-python`` names another interpreter; ``--no-install`` never
installs. Where HTA cannot be installed or run the script says so and prints gpuviz's
numbers alone.

Run::

    .venv/bin/python benchmarks/import_vs_hta.py                  # dlrm + synth, ~2 min on 2 cores
    .venv/bin/python benchmarks/import_vs_hta.py --synth-mb 25    # 8 x 25 MB: HTA takes ~5 min
    .venv/bin/python benchmarks/import_vs_hta.py --big            # + 64 ranks, ~1 GB, gpuviz only
    .venv/bin/python benchmarks/import_vs_hta.py --hta-mode pool  # HTA as shipped only

It always exits 0: it is a measurement; read the lines after "goals".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HTA_VENV = Path("/tmp/hta-venv")
DATA = Path("/tmp/gpuviz-bench-hta")
TORCH_PIN, HTA_PIN = "torch==2.13.0", "holistictraceanalysis==0.5.0"
# HTA 0.5.0 predates pandas 3, under which its parser fails on many traces (it downcasts the
# correlation column to int16, then writes event indices > 32767 into it: TypeError).
PANDAS_PIN = "pandas<3"
KERNELS_PER_STEP = 50          # compute kernels per step in the synthetic traces
GOAL_TIME, GOAL_MEM = 1.0, 1 / 3

# -- the two measured processes ---------------------------------------------------------------

# Runs in the project's venv. argv: folder, result.json
GPUVIZ_CHILD = r'''
import json, re, resource, sys, time, warnings

def maxrss_mb(who=resource.RUSAGE_SELF):
    if who == resource.RUSAGE_SELF:  # this address space's peak (ru_maxrss keeps the parent's
        try:                         # RSS from before exec on Linux)
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
    return resource.getrusage(who).ru_maxrss / 1024

folder, out = sys.argv[1], sys.argv[2]
import ijson, numpy as np, pandas as pd  # noqa: F401  (the libraries the import uses)
import gpuviz
import gpuviz.run.imported, gpuviz.run.load  # noqa: F401  (the tool's code, as HTA's is imported)
from gpuviz.run.device_time import is_gpu_lane
from gpuviz.run.intervals import length, union
libs = maxrss_mb()
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    run = gpuviz.load_run(folder)
t1 = time.perf_counter()
s = run.summary()
t2 = time.perf_counter()
peak = maxrss_mb()

# HTA 0.5.0's kernel classes (hta/utils/utils.py), applied to gpuviz's own GPU spans: a span
# is "compute" for HTA when it is not an NCCL kernel (gpuviz: cat comm, or idle for the wait
# it splits off), not a memory op and not a *Sync.
NCCL = re.compile(r"^nccl.*Kernel")
MEMORY = re.compile(r"(^Memcpy)|(^Memset)|(^dma)")
NOT_COMPUTE = re.compile(r"(^nccl.*Kernel)|(.*(Memcpy)|(Memset))|(.*Sync)")
sp = run.spans[is_gpu_lane(run.spans["lane"])]
hta_like = {}
for rank, g in sp.groupby("rank"):
    ok = [c not in ("comm", "idle") and not (NCCL.match(n) or MEMORY.match(n) or NOT_COMPUTE.match(n))
          for n, c in zip(g["name"].astype(str), g["cat"].astype(str))]
    iv = g.loc[ok, ["start", "end"]].to_numpy(float)
    hta_like[int(rank)] = float(length(union(iv))) if len(iv) else 0.0
rows = {}
for rank, r in s.iterrows():
    rows[int(rank)] = {k: float(r[k]) for k in s.columns}
    rows[int(rank)]["hta_def_compute"] = hta_like.get(int(rank), 0.0)
json.dump({"load_s": t1 - t0, "analysis_s": t2 - t1, "peak_mb": peak, "libs_mb": libs,
           "spans": int(len(run.spans)), "ranks": rows}, open(out, "w"))
'''

# Runs in HTA's venv. argv: folder, mode ("single" or "pool"), result.json
HTA_CHILD = r'''
import json, logging, os, resource, sys, threading, time

def maxrss_mb(who=resource.RUSAGE_SELF):
    if who == resource.RUSAGE_SELF:  # this address space's peak (ru_maxrss keeps the parent's
        try:                         # RSS from before exec on Linux)
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
    return resource.getrusage(who).ru_maxrss / 1024

folder, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
import pandas as pd  # noqa: F401
from hta.common.trace import Trace
from hta.trace_analysis import TraceAnalysis
logging.disable(logging.WARNING)
libs = maxrss_mb()

tree_peak = [0.0]
stop = threading.Event()
try:
    import psutil
except ImportError:
    psutil = None

def sample():
    me = psutil.Process(os.getpid())
    while not stop.is_set():
        try:
            procs = [me, *me.children(recursive=True)]
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            tree_peak[0] = max(tree_peak[0], total / 2**20)
        except psutil.Error:
            pass
        stop.wait(0.02)

if psutil is not None:
    threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
if mode == "pool":
    ta = TraceAnalysis(trace_dir=folder, include_last_profiler_step=True)
else:  # what TraceAnalysis.__init__ does, with its ranks parsed in this process
    ta = TraceAnalysis.__new__(TraceAnalysis)
    ta.t = Trace(trace_dir=folder)
    ta.t.load_traces(include_last_profiler_step=True, use_multiprocessing=False)
t1 = time.perf_counter()
df = ta.get_temporal_breakdown(visualize=False)
t2 = time.perf_counter()
stop.set()
rows = {}
for _, r in df.iterrows():
    rows[int(r["rank"])] = {"idle": float(r["idle_time(us)"]) / 1e6,
                            "compute": float(r["compute_time(us)"]) / 1e6,
                            "non_compute": float(r["non_compute_time(us)"]) / 1e6,
                            "kernel_time": float(r["kernel_time(us)"]) / 1e6}
json.dump({"load_s": t1 - t0, "analysis_s": t2 - t1, "peak_mb": maxrss_mb(), "libs_mb": libs,
           "children_mb": maxrss_mb(resource.RUSAGE_CHILDREN),
           "tree_mb": tree_peak[0] if psutil is not None else None,
           "ranks": rows}, open(out, "w"))
'''


def run_child(python: str, code: str, args: list[str], timeout: float) -> tuple[dict | None, str]:
    """Run one measured process; its result (or None) and, on failure, why."""
    with tempfile.TemporaryDirectory(prefix="gpuviz-hta-") as tmp:
        script, out = Path(tmp) / "child.py", Path(tmp) / "result.json"
        script.write_text(code)
        try:
            p = subprocess.run([python, str(script), *args, str(out)], cwd=ROOT, timeout=timeout,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout:.0f} s"
        if p.returncode != 0 or not out.exists():
            tail = " | ".join(p.stderr.strip().splitlines()[-3:])
            return None, f"exit {p.returncode}: {tail[-400:]}"
        return json.loads(out.read_text()), ""


# -- HTA's venv ---------------------------------------------------------------------------------

def _check_hta(python: Path) -> tuple[bool, str]:
    code = ("import importlib.metadata as m, hta.trace_analysis; print(' '.join("
            "f'{p} {m.version(p)},' for p in ('holistictraceanalysis', 'torch', 'pandas')))")
    try:
        p = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if p.returncode != 0:
        return False, (p.stderr.strip().splitlines() or ["?"])[-1]
    return True, p.stdout.strip()


def _step(cmd: list[str]) -> bool:
    print(f"  $ {' '.join(cmd)}", flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print("    failed: " + " | ".join((p.stderr or p.stdout).strip().splitlines()[-4:]))
    return p.returncode == 0


def ensure_hta(python: Path, install: bool) -> tuple[str | None, str]:
    """HTA's interpreter (installing it where allowed) and what it runs, or None and why."""
    ok, what = _check_hta(python) if python.exists() else (False, f"{python} does not exist")
    if ok and " pandas 3." in what and install:
        print(f"HTA's venv has {what.split(' pandas ')[1].strip(',')} pandas, which breaks "
              "HTA 0.5.0; installing pandas<3 there:")
        _step([str(python), "-m", "pip", "install", "-q", TORCH_PIN, PANDAS_PIN])
        ok, what = _check_hta(python)
    if ok:
        return str(python), what
    if not install:
        return None, f"{what} (--no-install given)"
    venv = python.parent.parent
    print(f"HTA is not ready ({what}); installing it into its own venv {venv}:")
    if not python.exists() and not _step([sys.executable, "-m", "venv", str(venv)]):
        return None, f"could not create the venv {venv}"
    pip = [str(python), "-m", "pip", "install", "-q"]
    if not (_step([*pip, TORCH_PIN]) and _step([*pip, TORCH_PIN, HTA_PIN, PANDAS_PIN])):
        return None, f"pip could not install {TORCH_PIN}, {HTA_PIN}, {PANDAS_PIN} into {venv}"
    ok, what = _check_hta(python)
    return (str(python), what) if ok else (None, f"installed, but HTA does not import: {what}")


# -- datasets -----------------------------------------------------------------------------------

def json_mb(files: list[Path]) -> tuple[float, float]:
    """MB on disk and MB of JSON (a .gz file's uncompressed size, from its trailer)."""
    disk = sum(f.stat().st_size for f in files)
    raw = 0
    for f in files:
        with open(f, "rb") as fh:
            if fh.read(2) == b"\x1f\x8b":
                fh.seek(-4, 2)
                raw += int.from_bytes(fh.read(4), "little")   # size mod 4 GiB: fine here
            else:
                raw += f.stat().st_size
    return disk / 1e6, raw / 1e6


def synthetic(name: str, world: int, mb_per_rank: float) -> Path:
    """A folder of ``world`` synthetic uncompressed traces of about ``mb_per_rank`` MB each
    (written once; kept in /tmp for the next run)."""
    sys.path.insert(0, str(ROOT))
    from tests import kineto_fakes

    sample = json.dumps({"traceEvents": kineto_fakes.events(0, world, n=KERNELS_PER_STEP,
                                                            steps=20)})
    steps = max(2, round(mb_per_rank * 1e6 / (len(sample) / 20)))
    folder = DATA / f"{name}-{world}x{steps}steps"
    done = folder / ".complete"
    if not done.exists():
        print(f"writing {folder} ({world} ranks x {steps} steps x {KERNELS_PER_STEP} kernels, "
              f"~{mb_per_rank * world:.0f} MB) ...", flush=True)
        t = time.perf_counter()
        kineto_fakes.write(folder, world, n=KERNELS_PER_STEP, steps=steps)
        done.write_text("ok\n")
        print(f"  written in {time.perf_counter() - t:.0f} s", flush=True)
    return folder


def dlrm() -> Path:
    from gpuviz.run.recorded import real_trace_files

    return real_trace_files("dlrm-8xV100")[0].parent


# -- comparing ----------------------------------------------------------------------------------

#: (what, HTA's column, gpuviz's value from a summary row, how gpuviz's is made)
AGREEMENT = [
    ("idle", "idle", lambda r: r["idle_gaps"],
     "HTA idle_time (span with no GPU kernel/memcpy/memset) vs gpuviz idle_gaps"),
    ("compute", "compute", lambda r: r["compute"] + r["optimizer"] + r["data"],
     "HTA compute_time vs gpuviz compute + optimizer + data"),
    ("communication", "non_compute", lambda r: r["comm"] + r["idle"] - r["idle_gaps"],
     "HTA non_compute_time vs gpuviz comm + (idle - idle_gaps), i.e. NCCL kernels incl. "
     "their waits, under no compute kernel"),
    ("span", "kernel_time", lambda r: r["wall"],
     "HTA kernel_time (first kernel start to last kernel end) vs gpuviz wall"),
    ("compute, one definition", "compute", lambda r: r["hta_def_compute"],
     "HTA compute_time vs gpuviz's GPU spans classed by HTA's kernel regexes "
     "(memcpy/memset/*Sync not compute)"),
]


def agreement(g: dict, h: dict) -> list[tuple[str, float, float, str]]:
    """Per quantity: max over ranks of |gpuviz - HTA| / HTA, and of |gpuviz - HTA| in us."""
    out = []
    ranks = sorted(set(map(int, g["ranks"])) & set(map(int, h["ranks"])))
    for what, col, fn, how in AGREEMENT:
        rel = ab = 0.0
        for r in ranks:
            gv, hv = fn(g["ranks"][str(r)]), h["ranks"][str(r)][col]
            ab = max(ab, abs(gv - hv) * 1e6)
            rel = max(rel, abs(gv - hv) / abs(hv) if hv else (0.0 if gv == hv else float("inf")))
        out.append((what, rel, ab, how))
    return out


def _peak(res: dict, mode: str) -> float:
    """HTA's peak for the ratio: the process's ru_maxrss; for the pool, the largest of the
    parent's, its largest worker's and the summed tree's (all ranks loaded in the parent)."""
    if mode == "single":
        return res["peak_mb"]
    return max(res["peak_mb"], res.get("children_mb") or 0.0, res.get("tree_mb") or 0.0)


def report(name: str, folder: Path, g: dict | None, gwhy: str, hta: dict, json_size: float,
           disk: float, nfiles: int) -> dict:
    print(f"\n== {name}: {nfiles} ranks, {folder}")
    print(f"   trace: {disk:.1f} MB on disk, {json_size:.1f} MB as JSON")
    print(f"   {'':<34}{'load s':>9}{'summary s':>10}{'total s':>9}{'peak MB':>9}"
          f"{'above libs':>11}{'peak/JSON MB':>13}")

    def line(label, res):
        tot = res["load_s"] + res["analysis_s"]
        print(f"   {label:<34}{res['load_s']:9.2f}{res['analysis_s']:10.2f}{tot:9.2f}"
              f"{res['peak_mb']:9.0f}{res['peak_mb'] - res['libs_mb']:11.0f}"
              f"{res['peak_mb'] / json_size:13.2f}")

    if g:
        line(f"gpuviz ({g['spans']:,} spans)", g)
    else:
        print(f"   gpuviz: FAILED ({gwhy})")
    out = {"name": name, "json_mb": json_size, "gpuviz": g}
    for mode, (res, why) in hta.items():
        label = {"single": "HTA, 1 process", "pool": "HTA, pool (as shipped)"}[mode]
        if res is None:
            print(f"   {label}: {why}")
            continue
        line(label, res)
        if mode == "pool":
            tree = f"{res['tree_mb']:.0f}" if res.get("tree_mb") is not None else "n/a"
            print(f"   {'':<6}pool peaks: parent {res['peak_mb']:.0f} MB, largest worker "
                  f"{res['children_mb']:.0f} MB, parent + workers summed {tree} MB")
    done = {m: r for m, (r, _) in hta.items() if r is not None}
    if not g or not done:
        return out
    gt = g["load_s"] + g["analysis_s"]
    print("   ratios (measured above, same run):")
    for mode, res in done.items():
        ht = res["load_s"] + res["analysis_s"]
        print(f"     vs HTA {mode:<6}: HTA time / gpuviz time = {ht / gt:6.2f} (load only "
              f"{res['load_s'] / g['load_s']:.2f});  gpuviz peak / HTA peak = "
              f"{g['peak_mb'] / _peak(res, mode):.2f} (above libs "
              f"{(g['peak_mb'] - g['libs_mb']) / max(_peak(res, mode) - res['libs_mb'], 1e-9):.2f})")
    ref_mode = "single" if "single" in done else "pool"
    print(f"   agreement per rank, gpuviz vs HTA ({ref_mode}); max over ranks of "
          "|gpuviz - HTA| / HTA (and in us):")
    for what, rel, ab, how in agreement(g, done[ref_mode]):
        print(f"     {what:<24}{rel * 100:8.2f}%  {ab:10.0f} us   {how}")
    out["time_ratio"] = min((r["load_s"] + r["analysis_s"]) / gt for r in done.values())
    out["mem_ratio"] = max(g["peak_mb"] / _peak(r, m) for m, r in done.items())
    out["hta_libs_mb"] = min(r["libs_mb"] for r in done.values())
    out["mem_ratio_own"] = max((g["peak_mb"] - g["libs_mb"]) / max(_peak(r, m) - r["libs_mb"], 1e-9)
                               for m, r in done.items())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hta-python", type=Path, default=DEFAULT_HTA_VENV / "bin" / "python",
                    help="interpreter with HTA (default: /tmp/hta-venv, created if missing)")
    ap.add_argument("--no-install", action="store_true", help="never create or pip-install HTA")
    ap.add_argument("--no-hta", action="store_true", help="gpuviz's numbers only")
    ap.add_argument("--hta-mode", choices=["both", "single", "pool"], default="both")
    ap.add_argument("--synth-mb", type=float, default=8.0,
                    help="MB of JSON per rank of the 8-rank synthetic trace (default 8)")
    ap.add_argument("--big", action="store_true", help="add 64 ranks, ~1 GB (gpuviz only)")
    ap.add_argument("--big-mb", type=float, default=1000.0, help="total MB of --big (1000)")
    ap.add_argument("--hta-big", action="store_true", help="run HTA on --big too (10+ min)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per measured process")
    a = ap.parse_args()

    print("gpuviz trace import vs Holistic Trace Analysis (HTA), measured side by side")
    hta_py, hta_what = (None, "--no-hta given") if a.no_hta else ensure_hta(a.hta_python,
                                                                          not a.no_install)
    if hta_py:
        print(f"HTA: {hta_py} ({hta_what.rstrip(',')})")
    else:
        print(f"HTA: NOT AVAILABLE: {hta_what}. Printing gpuviz's numbers only.")
    modes = ["single", "pool"] if a.hta_mode == "both" else [a.hta_mode]

    sets = [("dlrm-8xV100 (real, gz)", dlrm(), True),
            (f"synthetic 8 x {a.synth_mb:g} MB", synthetic("synth", 8, a.synth_mb), True)]
    if a.big:
        sets.append((f"big synthetic 64 x {a.big_mb / 64:.1f} MB",
                     synthetic("big", 64, a.big_mb / 64), a.hta_big))
    results = []
    for name, folder, with_hta in sets:
        from gpuviz.run.kineto import trace_files

        files = trace_files(folder)
        disk, size = json_mb(files)
        print(f"\nmeasuring {name} ...", flush=True)
        g, gwhy = run_child(sys.executable, GPUVIZ_CHILD, [str(folder)], a.timeout)
        hta: dict = {}
        for mode in modes:
            if not hta_py:
                hta[mode] = (None, "not run (HTA not available)")
            elif not with_hta:
                hta[mode] = (None, "not run (--big is gpuviz only; add --hta-big)")
            else:
                hta[mode] = run_child(hta_py, HTA_CHILD, [str(folder), mode], a.timeout)
                if hta[mode][0] is None:
                    hta[mode] = (None, f"FAILED ({hta[mode][1]})")
        results.append(report(name, folder, g, gwhy, hta, size, disk, len(files)))

    print("\ngoals (time: the faster of HTA's modes; memory: the smaller HTA peak, see above)")
    print(f"  1. gpuviz faster than HTA:           HTA time / gpuviz time > {GOAL_TIME:g}")
    print(f"  2. gpuviz peak <= 1/3 of HTA's peak: the import's own memory (peak RSS above the "
          f"RSS with the tool and its libraries imported), gpuviz / HTA <= {GOAL_MEM:.2f};")
    libs = [(r["gpuviz"]["libs_mb"], r["hta_libs_mb"]) for r in results if "hta_libs_mb" in r]
    print("     whole-process peaks beside it" + (
        f" (they hold the tools and their libraries: {min(g for g, _ in libs):.0f} MB in gpuviz, "
        f"{min(h for _, h in libs):.0f} MB in HTA, measured in this run, whatever the trace)" if libs else ""))
    for r in results:
        if "time_ratio" not in r:
            g = r["gpuviz"]
            if g:
                print(f"  {r['name']:<32} gpuviz only: {g['load_s'] + g['analysis_s']:.1f} s, "
                      f"peak {g['peak_mb']:.0f} MB = {g['peak_mb'] / r['json_mb']:.2f} MB per "
                      f"MB of JSON ({(g['peak_mb'] - g['libs_mb']) / r['json_mb']:.2f} above libs)")
            continue
        t, m, own = r["time_ratio"], r["mem_ratio"], r["mem_ratio_own"]
        print(f"  {r['name']:<32} time ratio {t:6.2f} ({'met' if t > GOAL_TIME else 'NOT met'}),"
              f"  memory ratio {own:5.2f} ({'met' if own <= GOAL_MEM else 'NOT met'};"
              f" whole process {m:.2f})")
    per_mb = [(r["name"], (r["gpuviz"]["peak_mb"] - r["gpuviz"]["libs_mb"]) / r["json_mb"],
               (r["gpuviz"]["peak_mb"] - r["gpuviz"]["libs_mb"]) * 2**20 / max(r["gpuviz"]["spans"], 1))
              for r in results if r["gpuviz"] and r["json_mb"] > 50]
    if per_mb:
        streamed = all(v < 1 for _, v, _ in per_mb)
        print("  gpuviz peak above libs per MB of JSON: " + ", ".join(
            f"{n}: {v:.2f} ({b:.0f} bytes per span kept)" for n, v, b in per_mb) + (
            "\n  -> streamed: the peak stays under the JSON's size (no file is held whole); "
            "what grows with the trace is the spans the run keeps" if streamed
            else "\n  -> NOT streamed: the peak exceeds the JSON's size"))


if __name__ == "__main__":
    main()
