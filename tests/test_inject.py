"""Injected delays, failures and hangs: specs and their errors, the tracer acting on them,
a slow rank's delay measured as the others' wait, and a hang ended by the collective timeout."""

from __future__ import annotations

import json
import statistics
import time

import pytest

import gpuviz
from gpuviz.cli import build_parser
from gpuviz.run import trace
from gpuviz.run.failures import InjectionError, job_error
from gpuviz.sync import inject
from gpuviz.sync.injector import Injector
from tests.conftest import assert_all_gone

DELAY = 0.2  # seconds: large against this machine's noise (a few ms), so 10% is a fair bound


# -- specs and their errors (no job) -----------------------------------------------------------

def test_helpers_make_the_documented_dicts():
    assert inject.slow_rank(1, 0.05) == {"kind": "slow", "rank": 1, "delay_s": 0.05}
    assert inject.jitter("exponential", mean_s=0.02) == {
        "kind": "jitter", "dist": "exponential", "mean_s": 0.02, "ranks": None, "seed": 0}
    assert inject.fail_at(2, 5) == {"kind": "fail", "rank": 2, "step": 5}
    assert inject.hang_at(1, 3) == {"kind": "hang", "rank": 1, "step": 3}
    specs = [inject.slow_rank(1, 0.05), inject.jitter("lognormal", mean_s=0.01, sigma=1.0, seed=3)]
    assert inject.validate(json.loads(json.dumps(specs)), nproc=2) == specs  # JSON round trip


@pytest.mark.parametrize("spec, nproc, words", [
    (inject.slow_rank(4, 0.1), 4, r"inject\[0\]: rank=4 does not exist: with nproc=4 the ranks are 0 to 3"),
    ({"kind": "fail", "rank": -1, "step": 2}, 4, r"rank=-1 must be an integer >= 0"),
    ({"kind": "hang", "rank": 1.5, "step": 2}, 4, r"rank=1.5 must be an integer >= 0"),
    ({"kind": "slow", "rank": 0, "delay_s": -0.1}, 2, r"delay_s=-0.1 is negative"),
    ({"kind": "jitter", "dist": "exponential", "mean_s": -1}, 2, r"mean_s=-1 is negative"),
    ({"kind": "jitter", "dist": "normal", "mean_s": 0.1, "std_s": -1}, 2, r"std_s=-1 is negative"),
    ({"kind": "slow", "rank": 0, "delay_s": "1s"}, 2, r"delay_s='1s': give a number of seconds"),
    ({"kind": "explode", "rank": 0}, 2, r"kind='explode' is not an injection; use one of 'slow', "
                                         r"'jitter', 'fail', 'hang'"),
    ({"kind": "jitter", "dist": "poisson", "mean_s": 1}, 2,
     r"dist='poisson' is not a jitter distribution; use one of 'exponential', 'uniform'"),
    ({"kind": "jitter", "dist": "uniform", "low_s": 0.1}, 2, r"a 'uniform' jitter needs high_s="),
    ({"kind": "jitter", "dist": "uniform", "low_s": 0.2, "high_s": 0.1}, 2, r"high_s=0.1 is below low_s=0.2"),
    ({"kind": "jitter", "dist": "exponential", "mean_s": 1, "std_s": 1}, 2,
     r"std_s= is not an argument of a 'jitter' injection with dist='exponential'"),
    ({"kind": "jitter", "dist": "exponential", "mean_s": 1, "ranks": [0, 5]}, 2, r"rank=5 does not exist"),
    ({"kind": "jitter", "dist": "exponential", "mean_s": 1, "seed": -2}, 2, r"seed=-2"),
    ({"kind": "fail", "rank": 0, "step": -1}, 2, r"step=-1: must be an integer >= 0"),
    ({"kind": "fail", "rank": 0}, 2, r"a 'fail' injection needs step="),
    ("slow", 2, r"an injection is a dict"),
])
def test_bad_injections_are_clear_errors(spec, nproc, words):
    with pytest.raises(ValueError, match=words):
        inject.validate([spec], nproc=nproc)


def test_helpers_check_at_once():
    with pytest.raises(ValueError, match="delay_s=-1 is negative"):
        inject.slow_rank(0, -1)
    with pytest.raises(ValueError, match="dist='gamma' is not a jitter distribution"):
        inject.jitter("gamma", mean_s=1)
    with pytest.raises(ValueError, match=r"inject=.*give a list of injections"):
        inject.validate("slow")


def test_launch_refuses_bad_injections_before_starting(tmp_path):
    for bad, words in [([inject.slow_rank(2, 0.1)], "rank=2 does not exist: with nproc=2"),
                       ([{"kind": "fail", "rank": -1, "step": 3}], "rank=-1"),
                       ([{"kind": "nap", "rank": 0}], "kind='nap'")]:
        with pytest.raises(ValueError, match=words):
            gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, inject=bad, run_dir=tmp_path / "r")
    with pytest.raises(ValueError, match="collective_timeout=0"):
        gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, collective_timeout=0, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # nothing was started


def test_step_beyond_the_run_is_an_error_once_the_length_is_known():
    with pytest.raises(ValueError, match=r"inject\[1\]: step=6 is beyond the run: it has 6 steps \(0 to 5\)"):
        inject.check_steps([inject.fail_at(0, 5), inject.hang_at(1, 6)], total_steps=6)
    inject.check_steps([inject.slow_rank(0, 0.1)], total_steps=1)  # delays have no step


@pytest.mark.parametrize("spec", [
    inject.jitter("exponential", mean_s=0.02),
    inject.jitter("uniform", low_s=0.01, high_s=0.05),
    inject.jitter("normal", mean_s=0.01, std_s=0.02),   # often negative: slept as 0
    inject.jitter("lognormal", mean_s=0.02, sigma=0.8),
])
def test_mean_delay_is_the_mean_the_sampler_draws(spec):
    draws = inject.sample_delays(spec, rank=0, steps=40_000)
    assert min(draws) >= 0
    assert statistics.fmean(draws) == pytest.approx(inject.mean_delay(spec), rel=0.03)
    assert inject.mean_delay(inject.slow_rank(0, 0.3)) == 0.3
    with pytest.raises(ValueError, match="kind='hang'"):
        inject.mean_delay(inject.hang_at(0, 1))


def test_delays_are_reproducible_per_seed_and_rank():
    spec = inject.jitter("exponential", mean_s=0.02, seed=7)
    a = inject.sample_delays(spec, rank=1, steps=10)
    assert a == inject.sample_delays(spec, rank=1, steps=10)
    assert a != inject.sample_delays(spec, rank=2, steps=10)
    assert a != inject.sample_delays({**spec, "seed": 8}, rank=1, steps=10)
    skip = inject.Sampler(spec, rank=1)
    assert skip.delay(6) == a[6]  # a resumed run skips ahead and draws the same
    assert inject.sample_delays({**spec, "ranks": [0]}, rank=1, steps=3) == [0.0] * 3


def test_cli_parses_injections():
    a = build_parser().parse_args(["run", "gpuviz.workloads.mlp:train", "--inject", "slow:rank=1,delay_s=0.05",
                                   "--inject", "jitter:dist=uniform,low_s=0,high_s=0.02,ranks=[0,1]",
                                   "--inject", '{"kind": "fail", "rank": 0, "step": 2}',
                                   "--collective-timeout", "10"])
    assert a.inject == [inject.slow_rank(1, 0.05),
                        inject.jitter("uniform", low_s=0, high_s=0.02, ranks=[0, 1]), inject.fail_at(0, 2)]
    assert a.collective_timeout == 10
    with pytest.raises(ValueError, match="write KIND:KEY=VALUE"):
        inject.parse("fail:rank")


# -- the tracer acting on them, in this process ---------------------------------------------------

@pytest.fixture
def start_tracer(tmp_path, monkeypatch):
    """Start a tracer for rank ``rank`` of ``world`` with ``specs`` in the environment."""
    made = []

    def start(specs, rank=0, world=2, attempt=0):
        monkeypatch.setenv(inject.ENV, json.dumps(specs))
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(attempt))
        t = trace.Tracer(tmp_path / f"a{len(made)}", rank=rank, world_size=world)
        trace.set_tracer(t)
        made.append(t)
        t.start()
        return t

    yield start
    trace.set_tracer(None)
    for t in made:
        if not t.closed:
            t.close()


def _spans(t, name):
    t._write_now()
    ev = [json.loads(line) for line in t.path.read_text().splitlines()]
    return [e for e in ev if e.get("ph") == "X" and e["name"] == name]


def test_tracer_sleeps_at_each_step_start(start_tracer):
    t = start_tracer([inject.slow_rank(1, 0.03), inject.jitter("uniform", low_s=0.0, high_s=0.01)], rank=1)
    trace.set_total_steps(3)
    for _ in range(3):
        trace.step()
    delays = _spans(t, "injected delay")
    slow = [e for e in delays if e["args"]["kind"] == "slow"]
    jit = [e for e in delays if e["args"]["kind"] == "jitter"]
    assert [e["args"]["step"] for e in slow] == [0, 1, 2]  # none after the last step
    assert all(e["dur"] >= 0.03e6 and e["cat"] == "compute" and e["args"]["injected"] for e in slow)
    want = inject.sample_delays(inject.jitter("uniform", low_s=0.0, high_s=0.01), rank=1, steps=3)
    assert [e["args"]["delay_s"] for e in jit] == pytest.approx(want, abs=1e-6)
    assert all(e["dur"] >= e["args"]["delay_s"] * 1e6 - 1 for e in jit)


def test_other_ranks_are_not_touched(start_tracer):
    t = start_tracer([inject.slow_rank(1, 0.5), inject.fail_at(1, 1)], rank=0)
    trace.step()
    trace.step()
    assert _spans(t, "injected delay") == []


def test_failure_on_the_first_attempt_only(start_tracer):
    start_tracer([inject.fail_at(0, 2)], rank=0)
    trace.step()
    with pytest.raises(inject.InjectedFailure, match="rank 0 at the start of step 2"):
        trace.step()
    t = start_tracer([inject.fail_at(0, 2)], rank=0, attempt=1)
    trace.step()
    trace.step()
    assert t.step_index == 2


def test_a_step_beyond_the_run_fails_before_the_first_step(start_tracer):
    start_tracer([inject.hang_at(1, 9)], rank=0)
    with pytest.raises(ValueError, match=r"inject\[0\]: step=9 is beyond the run: it has 5 steps"):
        trace.set_total_steps(5)


def test_resume_continues_the_step_count(start_tracer):
    spec = inject.jitter("exponential", mean_s=0.001, seed=2)
    t = start_tracer([spec], rank=0)
    trace.resume(4)
    trace.step()
    assert t.step_index == 5
    delays = _spans(t, "injected delay")
    assert [e["args"]["step"] for e in delays] == [0, 4, 5]
    assert delays[1]["args"]["delay_s"] == pytest.approx(inject.sample_delays(spec, 0, 5)[4], abs=1e-6)
    ev = [json.loads(line) for line in t.path.read_text().splitlines()]
    assert [e["args"] for e in ev if e["name"] == "resumed"] == [{"step": 4, "from_step": 0, "attempt": 0}]
    with pytest.raises(ValueError, match="step=-1"):
        trace.resume(-1)


# -- real jobs --------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_slow_rank_is_the_others_wait(tmp_path):
    """Rank 1 sleeps DELAY each step; rank 0 waits for it at the barrier before the all-reduce."""
    spec = inject.slow_rank(1, DELAY)
    run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, args={"steps": 6, "hidden": 64},
                        inject=[spec], run_dir=tmp_path / "r", progress=False, stream=False)
    assert run.meta["inject"] == [spec]
    sp = run.spans
    wait = sp[sp["name"] == "wait for others"].groupby("rank")["dur"].median()
    assert wait[0] == pytest.approx(DELAY, rel=0.10), wait
    assert wait[1] < 0.1 * DELAY  # the slow rank arrives last and hardly waits
    slept = sp[(sp["name"] == "injected delay")]
    assert set(slept["rank"]) == {1} and sorted(slept["step"]) == list(range(6))
    assert (slept["dur"] >= DELAY).all()


@pytest.mark.slow
def test_a_hang_ends_by_the_collective_timeout_and_names_the_rank(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(gpuviz.RankHung) as e:
        gpuviz.launch("gpuviz.workloads.mlp:train", nproc=3, args={"steps": 6, "hidden": 32},
                      inject=[inject.hang_at(1, 3)], collective_timeout=4, run_dir=tmp_path / "r",
                      progress=False, stream=False)
    took = time.monotonic() - t0
    msg = str(e.value)
    assert msg.startswith("rank 1 never joined the collective that ranks 0, 2 waited in "
                          "('wait for others', step 3); after collective_timeout=4 s"), msg
    assert "rank 1: step 3, in span 'injected hang' (compute)" in msg
    for rank in (0, 2):
        assert f"rank {rank}: step 3, " in msg and "Timed out" in msg.split(f"rank {rank}: step 3, ")[1].splitlines()[0]
    run = e.value.run
    assert run.meta["status"] == "failed" and run.meta["collective_timeout"] == 4
    hung = run.spans[(run.spans["name"] == "injected hang")]
    assert list(hung["rank"]) == [1] and hung["interrupted"].all()
    assert_all_gone(p for a in run.meta["attempts"] for p in a["pids"].values())
    assert took < 120


# -- how the launcher names a failed job's cause (hand-made traces, no job) -------------------------

def _rank_trace(run_dir, rank, world, body):
    t = trace.Tracer(run_dir, rank=rank, world_size=world)
    trace.set_tracer(t)
    try:
        body(t)
    except Exception as e:  # noqa: BLE001 - recorded as the worker does
        t.error(e)
    finally:
        trace.set_tracer(None)
        t.close()


def test_an_injection_beyond_the_run_is_a_value_error_from_launch(tmp_path):
    def beyond(t):
        t.hooks = [Injector([inject.fail_at(1, 9)], t.rank, 2)]
        t.set_total_steps(5)

    for rank in (0, 1):
        _rank_trace(tmp_path, rank, 2, beyond)
    err = job_error(gpuviz.load_run(tmp_path), rc=1)
    assert isinstance(err, InjectionError) and isinstance(err, ValueError)
    assert isinstance(err, gpuviz.RankFailed)
    assert "OptionError: inject[0]: step=9 is beyond the run: it has 5 steps" in str(err)


def _waits_then_times_out(t):
    with trace.span("wait for others", cat="idle"):
        raise RuntimeError("[../gloo/pair.cc:129] Timed out waiting 4000ms for send operation")


def test_a_timeout_in_a_collective_names_the_rank_that_never_came(tmp_path):
    def hangs(t):
        with trace.span("injected hang", cat="compute"):
            t.write_open_spans("terminated")  # what SIGTERM writes

    for rank, body in [(0, _waits_then_times_out), (1, hangs), (2, _waits_then_times_out)]:
        _rank_trace(tmp_path, rank, 3, body)
    err = job_error(gpuviz.load_run(tmp_path), rc=1, collective_timeout=4)
    assert isinstance(err, gpuviz.RankHung)
    msg = str(err)
    assert msg.startswith("rank 1 never joined the collective that ranks 0, 2 waited in "
                          "('wait for others', step 0); after collective_timeout=4 s")
    assert "rank 0: step 0, waited in 'wait for others' (idle) for 0.0 s, then: RuntimeError: Timed out" in msg


def test_an_error_outside_a_collective_is_a_failure_not_a_hang(tmp_path):
    def raises(t):
        with trace.span("forward"):
            raise KeyError("bug")

    for rank, body in [(0, _waits_then_times_out), (1, raises)]:
        _rank_trace(tmp_path, rank, 2, body)
    err = job_error(gpuviz.load_run(tmp_path), rc=1, collective_timeout=4)
    assert type(err) is gpuviz.RankFailed
