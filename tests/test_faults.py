"""Planted faults and bad input, each with the message it must produce, the processes that
must be gone and the data that must be kept: a killed launcher, a rank that dies with no
Python exception, torchrun failing before any rank starts, broken trace lines, another
job's checkpoints, sockets beyond loopback, a full disk, and the lesser mistakes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psutil
import pytest

import gpuviz
from gpuviz.run import exit_grace, files, orphans
from gpuviz.run.failures import LaunchError, torchrun_failures
from gpuviz.run.load import TraceError, TraceWarning, load_run
from gpuviz.run.target import check_target
from tests.conftest import ROOT, assert_all_gone, wait_for_steps, worker_pids

MLP = "gpuviz.workloads.mlp:train"


# -- bad input: each a ValueError that names the argument and what is allowed ----------------

@pytest.mark.parametrize("kwargs, words", [
    ({"torchrun_args": "--foo"}, "torchrun_args='--foo': give a list of strings"),
    ({"torchrun_args": [1]}, "torchrun_args=[1]: give a list of strings"),
    ({"max_restarts": -1}, "max_restarts=-1: give an integer >= 0"),
    ({"nproc": 10_000}, "nproc=10000: at most"),
    ({"timeout": float("inf")}, "timeout=inf: give a finite number of seconds > 0"),
    ({"timeout": float("nan")}, "timeout=nan: give a finite number of seconds > 0"),
    ({"collective_timeout": float("inf")}, "collective_timeout=inf: give a finite number"),
    ({"nnodes": 0}, "nnodes=0: give an integer >= 1"),
    ({"run_dir": "/proc/gpuviz-cannot-be-here"}, "cannot write there"),
])
def test_bad_launch_arguments_name_the_argument(kwargs, words):
    with pytest.raises(ValueError) as e:
        gpuviz.launch(MLP, **kwargs)
    assert words in str(e.value)


def test_a_run_dir_that_is_a_file_is_a_clear_error(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file; give a folder"):
        gpuviz.launch(MLP, run_dir=f)


def test_a_full_disk_at_the_start_is_a_clear_error_and_leaves_no_temp_file(tmp_path, monkeypatch):
    def full(self, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "replace", full)
    with pytest.raises(ValueError, match="cannot write run.json .No space left on device"):
        gpuviz.launch(MLP, nproc=2, run_dir=tmp_path / "r")
    assert [p.name for p in (tmp_path / "r").iterdir()] == []   # no stray temp file


def test_write_json_is_whole_or_nothing(tmp_path, monkeypatch):
    p = tmp_path / "run.json"
    files.write_json(p, {"status": "running"})
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError):
        files.write_json(p, {"status": "ok"})
    monkeypatch.undo()
    assert json.loads(p.read_text()) == {"status": "running"}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run.json"]


def test_the_target_module_is_not_run_in_the_launcher(tmp_path, monkeypatch):
    (tmp_path / "sideeffect.py").write_text(
        "from pathlib import Path\nPath('ran.txt').write_text('ran')\n\ndef train():\n    pass\n")
    monkeypatch.chdir(tmp_path)
    assert check_target("sideeffect:train") == "function"   # found in the current folder
    assert not (tmp_path / "ran.txt").exists()               # and none of its code ran
    with pytest.raises(ValueError, match="defines no 'trian'; it has .*train"):
        check_target("sideeffect:trian")
    with pytest.raises(ValueError, match="no module 'nowhere'. Python looked in the current folder"):
        check_target("nowhere:train")


def test_the_cli_prints_no_traceback_for_a_mistake(capsys):
    from gpuviz import cli

    assert cli.main(["run", "nowhere:train", "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpuviz run: target='nowhere:train': no module 'nowhere'")
    assert "Traceback" not in err


def test_a_launch_error_shows_in_ipython_as_its_message():
    e = gpuviz.RankFailed("rank 2 failed at step 3: ValueError: boom\n\nTraceback of rank 2:")
    assert e._render_traceback_() == ["RankFailed: rank 2 failed at step 3: ValueError: boom", "",
                                      "Traceback of rank 2:"]


def test_torchrun_failures_are_read_from_its_report():
    report = ["Failures:", "[1]:", "  rank      : 2 (local_rank: 0)", "  exitcode  : -9 (pid: 98)",
              "  traceback : Signal 9 (SIGKILL) received by PID 98", "-" * 60,
              "Root Cause (first observed failure):", "[0]:", "  time      : 2026-12-04",
              "  rank      : 3 (local_rank: 1)", "  exitcode  : 7 (pid: 99)", "=" * 60]
    assert torchrun_failures(report) == {2: {"exitcode": -9, "pid": 98}, 3: {"exitcode": 7, "pid": 99}}
    assert torchrun_failures(["no report here"]) == {}


def test_the_launcher_watch_knows_a_dead_process_from_a_live_one():
    me = orphans.launcher_spec()
    assert orphans.launcher_alive(me)
    pid, ticks = me.split(":ticks ") if ":ticks " in me else (None, None)
    if ticks is not None:
        assert not orphans.launcher_alive(f"{pid}:ticks {int(ticks) - 100}")   # a reused pid
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    spec = orphans.launcher_spec(p.pid)
    p.wait()
    assert not orphans.launcher_alive(spec)


def test_a_wall_clock_change_does_not_make_a_live_launcher_look_gone(monkeypatch):
    """psutil's create_time moves when the wall clock is adjusted (psutil issue #2526);
    the start the watch compares does not."""
    me = orphans.launcher_spec()
    shifted = psutil.Process().create_time() + 1.5
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: shifted)
    assert orphans.launcher_alive(me)
    # where there is no /proc, create_time is all there is: a second either way is the same start
    monkeypatch.setattr(orphans, "_PROC", False)
    assert not orphans.launcher_spec().split(":")[1].startswith("ticks")
    assert orphans.launcher_alive(orphans.launcher_spec())
    assert orphans.launcher_alive(f"{os.getpid()}:{shifted - 0.6}")
    assert not orphans.launcher_alive(f"{os.getpid()}:{shifted - 100}")   # a reused pid


# -- trace files: a bad line is dropped and named, never the whole run ---------------------------

def _good_rank(run_dir: Path, rank: int, extra: list[str] = ()) -> None:
    lines = [{"ph": "M", "name": "process_name", "pid": rank, "args": {"name": f"rank {rank}"}},
             {"ph": "M", "name": "gpuviz_meta", "pid": rank, "args": {"world_size": 2}},
             {"ph": "X", "name": "forward", "cat": "compute", "ts": 0.0, "dur": 100.0, "pid": rank,
              "tid": 0, "args": {"step": 0}},
             {"ph": "i", "s": "p", "name": "step_end", "cat": "step", "ts": 200.0, "pid": rank,
              "tid": 0, "args": {"step": 0}}]
    text = "".join(json.dumps(x) + "\n" for x in lines) + "".join(e + "\n" for e in extra)
    (run_dir / f"rank{rank}.jsonl").write_text(text)


@pytest.mark.parametrize("bad, words", [
    ('{"ph": "X", "name": "f", "ts": "abc", "dur": 1}', "ts='abc' is not a finite number"),
    ('{"ph": "X", "name": "f", "dur": 1}', "no ts"),
    ('{"ph": "X", "name": "f", "ts": 1, "dur": 1, "args": [1, 2]}', "args is a list"),
    ('{"ph": "C", "name": "power", "ts": 1, "args": {"power W": "high"}}', "'power W'='high'"),
    ('{"ph": "X", "name": "f", "ts": NaN, "dur": 1}', "ts=nan is not a finite number"),
    ('{"ph": "X", "name": "f", "ts": Infinity, "dur": 1}', "ts=inf is not a finite number"),
    ('{"ph": "X", "name": "f", "ts": 1, "dur": -5}', "dur=-5 is not a finite number >= 0"),
    ('[1, 2, 3]', "a list, not an event object"),
])
def test_a_bad_line_is_dropped_with_its_file_and_line(tmp_path, bad, words):
    _good_rank(tmp_path, 0, [bad])
    _good_rank(tmp_path, 1)
    with pytest.warns(TraceWarning) as w:
        run = load_run(tmp_path)
    msg = str(w[0].message)
    assert "rank0.jsonl line 5:" in msg and words in msg
    assert run.ranks == [0, 1] and len(run.spans) == 2     # everything valid is kept
    assert run.summary().loc[0, "compute"] == pytest.approx(1e-4)
    with pytest.raises(TraceError, match="rank0.jsonl line 5"):
        load_run(tmp_path, strict=True)


def test_two_files_for_one_rank_are_an_error_naming_both(tmp_path):
    _good_rank(tmp_path, 0)
    _good_rank(tmp_path, 1)
    (tmp_path / "rank01.jsonl").write_text((tmp_path / "rank1.jsonl").read_text())
    with pytest.raises(TraceError, match="rank01.jsonl and rank1.jsonl .* are both rank 1"):
        load_run(tmp_path)


@pytest.mark.parametrize("content, words", [
    ("[1, 2]", "run.json is not a JSON object"),
    ("{not json", "run.json is unreadable"),
])
def test_a_bad_run_json_is_reported(tmp_path, content, words):
    _good_rank(tmp_path, 0)
    _good_rank(tmp_path, 1)
    (tmp_path / "run.json").write_text(content)
    with pytest.warns(TraceWarning, match=words):
        run = load_run(tmp_path)
    assert run.ranks == [0, 1]


def test_a_missing_run_json_is_reported_when_launch_made_the_run(tmp_path):
    _good_rank(tmp_path, 0)
    text = (tmp_path / "rank0.jsonl").read_text().replace(
        '"world_size": 2}', '"world_size": 1, "launched_by": "gpuviz.launch"}')
    (tmp_path / "rank0.jsonl").write_text(text)
    with pytest.warns(TraceWarning, match="run.json is missing"):
        load_run(tmp_path)


def test_an_absurd_world_size_is_not_believed_and_the_report_stays_fast(tmp_path):
    _good_rank(tmp_path, 0)
    _good_rank(tmp_path, 1)
    text = (tmp_path / "rank0.jsonl").read_text().replace('"world_size": 2', '"world_size": 100000000')
    (tmp_path / "rank0.jsonl").write_text(text)
    with pytest.warns(TraceWarning, match="world_size=100000000 .* cannot be"):
        run = load_run(tmp_path)
    t0 = time.perf_counter()
    assert run.world_size == 2 and run.missing_ranks() == ""
    run.where_report()
    assert time.perf_counter() - t0 < 5


# -- checkpoints: only this job's --------------------------------------------------------------

def test_another_jobs_checkpoint_is_skipped(tmp_path, monkeypatch):
    import torch

    from gpuviz.sync import checkpoint

    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monkeypatch.setenv(checkpoint.JOB_ENV, "someone-else")
    checkpoint.save(5, model, opt, directory=tmp_path)
    monkeypatch.setenv(checkpoint.JOB_ENV, "this-job")
    checkpoint.save(2, model, opt, directory=tmp_path)
    with pytest.warns(UserWarning, match=r"skipped the checkpoints of steps \[5\], which another job"):
        assert checkpoint.list_checkpoints(tmp_path) == [2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert checkpoint.load_latest(model, opt, directory=tmp_path) == 2


# -- real jobs -----------------------------------------------------------------------------------

def _cli_job(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gpuviz.cli", "run", "tests/scripts/slow_steps.py",
                             "--nproc", "2", "--run-dir", str(run_dir), "--no-progress", *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("sig, status", [(signal.SIGKILL, orphans.STATUS),
                                         (signal.SIGTERM, "interrupted")])
def test_a_killed_launcher_leaves_no_worker_and_says_so(tmp_path, sig, status):
    run_dir = tmp_path / "r"
    p = _cli_job(run_dir)
    assert wait_for_steps(run_dir, 3), "the job did not start"
    p.send_signal(sig)
    p.wait(timeout=30)
    assert_all_gone(worker_pids(load_run(run_dir)), timeout=15)
    run = load_run(run_dir)
    assert json.loads((run_dir / "run.json").read_text())["status"] == status
    assert run.meta["status"] == status
    for rank in run.ranks:   # no step lost: each rank's steps run 0, 1, 2... with no hole
        steps = sorted(run.events[(run.events["rank"] == rank)
                                  & (run.events["name"] == "step_end")]["step"])
        assert steps == list(range(len(steps))) and len(steps) >= 3
    if sig == signal.SIGTERM:   # the CLI's own message, no traceback
        err = p.stderr.read()
        assert "interrupted: every worker was stopped" in err and "Traceback" not in err
        assert p.returncode == 130


@pytest.mark.slow
@pytest.mark.parametrize("how, words", [
    ("3", "rank 1 exited with code 3 and no Python exception"),
    ("kill", "rank 1 was killed by SIGKILL (the kernel's OOM killer"),
])
def test_a_rank_that_dies_without_an_exception_is_the_one_blamed(tmp_path, how, words):
    with pytest.raises(gpuviz.RankFailed) as e:
        gpuviz.launch("tests/scripts/die_on_rank.py", nproc=3, args=["1", "2", how],
                      run_dir=tmp_path / "r", progress=False, stream=False)
    msg = str(e.value)
    # torchrun's report names the exit code; when it does not list the rank (it reports the
    # ranks it saw fail first) or trips itself (over a survivor's half-written error file),
    # the ranks' traces still name the rank
    unreported = "rank 1 ended with no Python exception and was not stopped by torchrun"
    assert msg.startswith((words, unreported)) and "during step 2" in msg
    assert "rank 1:" not in msg          # the survivors are listed as consequences, not rank 1
    assert_all_gone(worker_pids(e.value.run))


@pytest.mark.slow
@pytest.mark.parametrize("where, frame", [("exit", "in __del__"), ("teardown", "in destroy_blocks")])
def test_a_rank_that_cannot_end_is_ended_and_named(tmp_path, monkeypatch, where, frame):
    """Every step done, then each rank blocks: in a destructor as its interpreter exits, or
    in the destruction of its process group by the worker."""
    monkeypatch.setenv(exit_grace.ENV, "2")
    t0 = time.monotonic()
    with pytest.raises(gpuviz.RankFailed) as e:
        gpuviz.launch("tests/scripts/blocks_at_end.py", nproc=2, args=[where],
                      run_dir=tmp_path / "r", progress=False, stream=False)
    assert time.monotonic() - t0 < 120   # not the 600 s it blocks for
    msg, run = str(e.value), e.value.run
    assert "was killed by SIGALRM after step 2" in msg and "$GPUVIZ_EXIT_GRACE" in msg
    for rank in run.ranks:   # its data kept: every step
        assert sorted(run.events[(run.events["rank"] == rank)
                                 & (run.events["name"] == "step_end")]["step"]) == [0, 1, 2]
    assert_all_gone(worker_pids(run))
    logs = "".join(p.read_text() for p in (tmp_path / "r" / "logs").rglob("*.log"))
    assert "Timeout" in logs and frame in logs   # where it was stuck, from faulthandler
    assert "Where it was (its log):" in msg and "blocks_at_end.py" in msg and frame in msg


def test_an_armed_process_that_does_not_exit_prints_its_stack_and_ends():
    code = ("import time; from gpuviz.run import exit_grace; exit_grace.arm(0.5)\n"
            "def stuck(): time.sleep(60)\nstuck()")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == -signal.SIGALRM and time.monotonic() - t0 < 20
    assert "Timeout" in p.stderr and "in stuck" in p.stderr


@pytest.mark.parametrize("value, grace", [("", 60.0), ("off", None), ("2.5", 2.5)])
def test_the_exit_grace_is_read_from_its_variable(value, grace):
    assert exit_grace.grace_s({exit_grace.ENV: value}) == grace


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_a_bad_exit_grace_is_refused_naming_the_variable(value):
    with pytest.raises(ValueError, match=r"\$GPUVIZ_EXIT_GRACE=.*a number > 0.*or 'off'"):
        exit_grace.grace_s({exit_grace.ENV: value})


def test_launch_refuses_a_bad_exit_grace_before_starting_anything(tmp_path, monkeypatch):
    monkeypatch.setenv(exit_grace.ENV, "soon")
    with pytest.raises(ValueError, match=r"\$GPUVIZ_EXIT_GRACE='soon'"):
        gpuviz.launch(MLP, nproc=2, run_dir=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_torchrun_failing_before_any_rank_shows_torchruns_error(tmp_path):
    with pytest.raises(LaunchError) as e:
        gpuviz.launch(MLP, nproc=2, torchrun_args=["--no-such-option"], run_dir=tmp_path / "r",
                      progress=False, stream=False)
    msg = str(e.value)
    assert "before any rank recorded a step" in msg
    assert "unrecognized arguments: --no-such-option" in msg
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize("max_restarts", [0, 1])
def test_nothing_listens_beyond_loopback(tmp_path, max_restarts):
    """torchrun's stores, the ranks' store (their own when restarts are allowed) and gloo."""
    run_dir = tmp_path / "r"
    gpuviz.launch("tests/scripts/listening.py", nproc=2, run_dir=run_dir, progress=False,
                  stream=False, max_restarts=max_restarts)
    listening = json.loads((run_dir / "listening.json").read_text())
    assert len({pid for pid, _, _ in listening}) == 3          # torchrun and both ranks
    assert [x for x in listening if not (x[1].startswith("127.") or x[1] == "::1")] == []
