"""Lab 03's checks: the expected wait for the slowest rank, and the steps a restart redoes."""

from __future__ import annotations

import json
import math

import pytest

import gpuviz
from gpuviz import checks
from gpuviz.sync import inject
from gpuviz.sync.order_stats import expected_wait

MU, N = 0.015, 8
RIGHT = MU * sum(1 / i for i in range(2, N + 1))            # mu (H_8 - 1) = 25.77 ms
H8 = sum(1 / i for i in range(1, N + 1))


# -- straggler_wait --------------------------------------------------------------------------------

def test_the_order_statistics_are_correct_as_a_number_or_a_function():
    assert RIGHT == pytest.approx(expected_wait({"dist": "exponential", "mean_s": MU}, N))
    r = checks.straggler_wait(RIGHT, mean_s=MU, nproc=N)
    assert r and "25.77 ms" in r.message and repr(r).startswith("Correct!")
    assert checks.straggler_wait(lambda mu, n: mu * sum(1 / i for i in range(2, n + 1)), MU, N)
    assert checks.straggler_wait(
        lambda mu, n: expected_wait({"dist": "exponential", "mean_s": mu}, n), MU, N)


@pytest.mark.parametrize("answer, words", [
    (MU * H8, "E[max of N]"),                                   # forgot to subtract E[X]
    (MU * (math.log(N) + 0.5772156649), "E[max of N]"),
    (MU * math.log(N), "mu ln N"),
    (MU * (math.log(N) + 0.5772156649 - 1), "Close: you used H_N ~ ln N + 0.577"),
    (RIGHT * 1e3, "milliseconds"),
    (MU, "own mean delay"),
    (MU * (N - 1), "in proportion to N"),
    (MU * N, "in proportion to N"),
    (MU * sum(1 / i for i in range(1, N)), "*other* N-1"),
    (0, "waits unless it is the last"),
    (-0.01, "cannot be negative"),
    (0.1234, "You gave 123 ms"),
    (None, "Replace `None`"),
    ("25 ms", "should be a number"),
])
def test_common_mistakes_are_named(answer, words):
    r = checks.straggler_wait(answer, mean_s=MU, nproc=N)
    assert not r and words in r.message, r.message
    assert repr(r).startswith("Not yet.") and "Not yet." in r._repr_html_()


def test_a_function_must_hold_at_every_rank_count():
    r = checks.straggler_wait(lambda mu, n: RIGHT, MU, N)                # right at N = 8 only
    assert not r and r.message.startswith("Right at N = 8, but at N = 2 your function gives 25.8 ms")
    approx = checks.straggler_wait(lambda mu, n: mu * (math.log(n) + 0.5772156649 - 1), MU, 1024)
    assert not approx and "approximation H_N ~ ln N + 0.577" in approx.message
    boom = checks.straggler_wait(lambda mu, n: RIGHT if n == N else 1 / 0, MU, N)
    assert not boom and "ZeroDivisionError" in boom.message


def test_straggler_wait_checks_its_own_arguments():
    for kwargs, match in [({"mean_s": 0, "nproc": 8}, "mean_s=0"), ({"mean_s": MU, "nproc": 1}, "nproc=1"),
                          ({"mean_s": MU, "nproc": 2.0}, "nproc=2.0")]:
        with pytest.raises(ValueError, match=match):
            checks.straggler_wait(RIGHT, **kwargs)


# -- redone_steps ------------------------------------------------------------------------------------

EVERY, FAIL, STEPS = 4, 7, 10                 # checkpoint 4 is the last before the failure: 4, 5, 6


def _restarted(path, every=EVERY, fail=FAIL, steps=STEPS, restarted=True):
    """A 2-rank trace written by hand as a restarted mlp:train writes it: attempt 0 runs steps
    0..fail-1 and fails as ``fail`` starts; attempt 1 resumes at the last checkpoint."""
    resume = every * (fail // every)
    for rank in range(2):
        ev = []
        for attempt, first, last in [(0, 0, fail), (1, resume, steps)][:1 + restarted]:
            ev += [{"ph": "M", "name": "process_name", "pid": rank, "args": {"name": f"rank {rank}",
                                                                             "attempt": attempt}},
                   {"ph": "M", "name": "gpuviz_meta", "pid": rank,
                    "args": {"rank": rank, "world_size": 2, "start_time": 1000.0 + 20 * attempt}}]
            ev += [{"ph": "i", "s": "p", "name": "step_end", "cat": "step", "ts": 1e5 * (s + 1), "pid": rank,
                    "tid": 0, "args": {"step": s, "loss": 1.0 / (s + 1)}} for s in range(first, last)]
            if attempt == 0:
                ev.append({"ph": "i", "s": "p", "name": "error", "cat": "error", "ts": 1e5 * (fail + 1),
                           "pid": rank, "tid": 0, "args": {
                               "step": fail, "error": "InjectedFailure: injected failure" if rank == 1
                               else "RuntimeError: Connection closed by peer", "traceback": ""}})
        (path / f"rank{rank}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ev))
    (path / "run.json").write_text(json.dumps({"status": "ok", "max_restarts": 1,
                                               "args": {"steps": steps, "checkpoint_every": every}}))
    return gpuviz.load_run(path)


def redo(every, fail_step):
    return list(range(every * (fail_step // every), fail_step))


def test_the_redone_steps_are_correct_as_a_list_or_a_function(tmp_path):
    run = _restarted(tmp_path)
    assert run.meta["restarts"] == 1 and run.errors()["step"].iloc[0] == FAIL
    r = checks.redone_steps([4, 5, 6], run)
    assert r and "loaded checkpoint 4" in r.message and "ran steps 4 to 6 a second time" in r.message
    assert checks.redone_steps(range(4, 7), run)
    assert checks.redone_steps(redo, run)


@pytest.mark.parametrize("answer, words", [
    ([4, 5, 6, 7], "Step 7 failed as it started"),
    (list(range(7)), "does not start from scratch"),
    ([5, 6], "the first step run again is step 4"),
    ([5, 6, 7], "the first step run again is step 4"),
    ([6], "You gave [6]"),
    (3, "looks like a count"),
    (None, "Replace `None`"),
    ("4, 5, 6", "Give a list of step numbers"),
    ([4, "five"], "Give a list of integers"),
])
def test_common_mistakes_about_the_restart_are_named(tmp_path, answer, words):
    r = checks.redone_steps(answer, _restarted(tmp_path))
    assert not r and words in r.message, r.message


def test_a_function_must_hold_in_other_cases(tmp_path):
    run = _restarted(tmp_path)
    r = checks.redone_steps(lambda every, fail_step: [4, 5, 6], run)
    assert not r and r.message.startswith("Right for this run (checkpoints every 4 steps, failure as "
                                          "step 7 started), but with every = 4 and a failure at step 8")
    boom = checks.redone_steps(lambda every, fail_step: [4, 5, 6] if fail_step == FAIL else None.x, run)
    assert not boom and "AttributeError" in boom.message


def test_a_failure_before_the_first_checkpoint_starts_again(tmp_path):
    run = _restarted(tmp_path, every=5, fail=3)
    r = checks.redone_steps(redo, run)
    assert r and "no checkpoint was saved yet" in r.message and "steps 0 to 2" in r.message


def test_redone_steps_needs_a_restarted_run(tmp_path):
    with pytest.raises(ValueError, match="restarted after a failure"):
        checks.redone_steps([4, 5, 6], _restarted(tmp_path, restarted=False))


@pytest.mark.slow
def test_redone_steps_on_a_real_restart(tmp_path):
    run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, max_restarts=1,
                        args={"steps": 6, "hidden": 32, "checkpoint_every": 2},
                        inject=[inject.fail_at(1, 5)], run_dir=tmp_path / "r", progress=False,
                        stream=False)
    assert checks.redone_steps([4], run)
    assert checks.redone_steps(redo, run)
    assert not checks.redone_steps([4, 5], run)
