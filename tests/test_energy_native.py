"""The energy sampler's compiled thread (gpuviz.energy.native): its readings, the tracks it
records beside the Python thread's, and the fallback where nothing can be compiled."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import pytest

from gpuviz.energy import meters, native
from gpuviz.energy.sampler import CompiledSampler, Sampler, make_sampler
from gpuviz.run import trace

needs_cc = pytest.mark.skipif(native.load() is None, reason=f"{native.why_not()}")


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(1000))


@needs_cc
def test_readings_come_every_period_with_cpu_time_and_memory():
    r = native.Readings(period_s=0.01, memory_every_s=0.1)
    busy(0.3)
    r.read_now()
    rows = r.take()
    r.close()
    times = [t for t, _, _ in rows]
    assert 15 <= len(rows) <= 40   # 30 periods in 0.3 s, and the one read now
    cpu = [c for _, c, _ in rows]
    assert times == sorted(times) and cpu == sorted(cpu)
    # the same clocks as Python: perf_counter and process_time
    assert abs(times[-1] - time.perf_counter()) < 0.05
    assert rows[-1][1] - rows[0][1] == pytest.approx(0.3, abs=0.1)
    memory = [gb for _, _, gb in rows if gb is not None]
    assert 2 <= len(memory) <= 6 and all(0.001 < gb < 100 for gb in memory)


@needs_cc
def test_readings_are_all_kept_however_many():
    r = native.Readings(period_s=0.0001)
    time.sleep(0.4)     # a few thousand readings: more than the thread's first buffer holds
    rows = r.take()
    more = r.take()
    r.close()
    assert len(rows) > 1500 and r.lost() == 0
    assert len(more) < 100 and all(t > rows[-1][0] for t, _, _ in more)   # none twice


def tracks(tmp_path, kind, seconds=0.3):
    t = trace.Tracer(tmp_path / kind.__name__, rank=0, world_size=1)
    s = kind(t, meters.EstimateMeter(), 0.01)
    busy(seconds / 2)
    s.sample()              # a step's end
    busy(seconds / 2)
    s.close()
    t.close()
    events = [json.loads(line) for line in open(t.path)]
    energy = [(e["ts"], e["args"]["energy J"]) for e in events if e.get("name") == "energy"]
    watts = [(j1 - j0) / (t1 - t0) * 1e6 for (t0, j0), (t1, j1) in itertools.pairwise(energy)]
    return energy, watts


@needs_cc
def test_compiled_and_python_threads_record_the_same_tracks(tmp_path):
    for kind in (CompiledSampler, Sampler):
        energy, watts = tracks(tmp_path, kind)
        ts = [x for x, _ in energy]
        assert ts == sorted(ts) and 15 <= len(energy) <= 45, kind
        gaps = sorted(b - a for a, b in itertools.pairwise(ts))
        assert 5_000 < gaps[len(gaps) // 2] < 20_000, kind   # about 10 ms apart
        assert [j for _, j in energy] == sorted(j for _, j in energy)
        # one busy core: the estimate's 12 W per core, plus its memory
        assert 6.0 < sorted(watts)[len(watts) // 2] < 12.0 + 5.0, kind


def test_without_a_compiler_the_python_thread_says_why(tmp_path):
    code = ("from gpuviz.energy import meters, sampler; from gpuviz.run import trace\n"
            f"t = trace.Tracer({str(tmp_path)!r}, rank=0, world_size=1)\n"
            "s = sampler.make_sampler(t, meters.EstimateMeter()); s.close()\n"
            "print(type(s).__name__, '|', s.info()['thread'], '|', s.info()['why_python'])")
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "GPUVIZ_NATIVE_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    kind, thread, why = (x.strip() for x in out.stdout.split("|"))
    assert (kind, thread) == ("Sampler", "Python thread")
    assert "no-such-cc" in why and "could not run" in why


@needs_cc
def test_other_meters_keep_the_python_thread(tmp_path):
    class Counter(meters.Meter):
        def read(self):
            return time.perf_counter()

    t = trace.Tracer(tmp_path, rank=0, world_size=1)
    s = make_sampler(t, Counter("test", False, 0.0), 0.01)
    s.close()
    assert type(s) is Sampler and "estimate meter only" in s.info()["why_python"]


@needs_cc
def test_a_stopping_rank_writes_every_reading_the_thread_holds(tmp_path):
    # the thread's readings reach the trace at most every take_every_s at a step's end; a
    # rank that stops (an error, a hang report) writes them all before it may die
    t = trace.Tracer(tmp_path, rank=0, world_size=1)
    s = CompiledSampler(t, meters.EstimateMeter(), 0.01)
    t.hooks.append(s)
    busy(0.25)
    s.sample()   # a step's end soon after the start: nothing taken from the thread yet
    t.write_open_spans("error")
    events = [json.loads(line) for line in open(t.path)]
    t.close()
    assert len([e for e in events if e.get("name") == "energy"]) >= 15
