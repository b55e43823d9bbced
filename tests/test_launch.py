"""The launcher: real torchrun jobs, bad input, failing and hanging ranks, many nodes."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import torch

import gpuviz
from tests.conftest import assert_all_gone, wait_for_steps, worker_pids

pytestmark = pytest.mark.slow


def test_launch_returns_a_run_with_every_rank(mlp_run):
    run = mlp_run
    assert run.world_size == 4 and run.ranks == [0, 1, 2, 3]
    assert run.meta["backend"] == "gloo" and run.meta["status"] == "ok"
    assert run.steps() == 6
    for rank in range(4):
        assert (run.path / f"rank{rank}.jsonl").exists()
        names = set(run.spans.loc[run.spans["rank"] == rank, "name"])
        assert {"forward", "backward", "all_reduce grads", "optimizer step"} <= names
    assert_all_gone(worker_pids(run))


def test_clocks_are_aligned_across_ranks(mlp_run):
    """Ranks inside one all-reduce overlap in time, which they only do if clocks agree."""
    comm = mlp_run.spans[mlp_run.spans["name"] == "all_reduce grads"]
    for _, same_step in comm.groupby("step"):
        assert len(same_step) == 4
        assert same_step["start"].max() < same_step["end"].min(), same_step


def test_gradient_bytes_are_recorded(mlp_run):
    from gpuviz.workloads.mlp import make_mlp

    nbytes = sum(p.numel() * 4 for p in make_mlp(64, 256, 4).parameters())
    comm = mlp_run.spans[mlp_run.spans["name"] == "all_reduce grads"]
    assert (comm["bytes"] == nbytes).all()


def test_ddp_hook_traces_buckets_that_overlap_backward(ddp_run):
    from gpuviz.workloads.mlp import make_mlp

    buckets = ddp_run.spans[ddp_run.spans["lane"] == "comm"]
    assert buckets["name"].str.startswith("all_reduce bucket").all()
    nbytes = sum(p.numel() * 4 for p in make_mlp(64, 256, 4).parameters())
    per_step = buckets.groupby(["rank", "step"])["bytes"].sum()
    assert (per_step == nbytes).all(), per_step
    assert len({a["bucket"] for a in buckets["args"]}) > 1  # 0.1 MB buckets: several
    assert (ddp_run.summary()["overlap"] > 0).all()


def test_ddp_hook_computes_the_same_training_as_one_all_reduce(mlp_run, ddp_run):
    def losses(run):
        ends = run.events[(run.events["name"] == "step_end") & (run.events["rank"] == 0)]
        return [a["loss"] for a in ends["args"]]

    assert losses(ddp_run) == pytest.approx(losses(mlp_run), rel=1e-4)


def test_script_target_gets_its_arguments(tmp_path, capsys):
    run = gpuviz.launch("tests/scripts/echo_args.py", nproc=2, args=["--lr", "3"],
                        run_dir=tmp_path / "r", progress=False)
    assert run.world_size == 2
    assert "ARGS --lr 3" in capsys.readouterr().out  # rank 0's output reaches the caller


@pytest.mark.parametrize("target, words", [
    ("no_such_module:main", "no module 'no_such_module'"),
    ("gpuviz.workloads.mlp:nope", "defines no 'nope'"),
    ("missing_script.py", "no such script file"),
    ("justaword", "package.module:function"),
])
def test_unknown_target_is_a_clear_error(target, words):
    with pytest.raises(ValueError, match="target=") as e:
        gpuviz.launch(target, nproc=2)
    assert words in str(e.value)


@pytest.mark.parametrize("nproc", [0, -1, 2.5, True, "4"])
def test_nproc_must_be_a_positive_integer(nproc):
    with pytest.raises(ValueError, match=r"nproc=.*integer >= 1"):
        gpuviz.launch("gpuviz.workloads.mlp:train", nproc=nproc)


def test_bad_backend_and_args_and_timeout():
    with pytest.raises(ValueError, match="backend='mpi'.*'auto', 'gloo', 'nccl'"):
        gpuviz.launch("gpuviz.workloads.mlp:train", backend="mpi")
    with pytest.raises(ValueError, match="dict of keyword arguments"):
        gpuviz.launch("gpuviz.workloads.mlp:train", args=["--steps", "3"])
    with pytest.raises(ValueError, match="list of strings"):
        gpuviz.launch("tests/scripts/echo_args.py", args={"steps": 3})
    with pytest.raises(ValueError, match="timeout=-1"):
        gpuviz.launch("gpuviz.workloads.mlp:train", timeout=-1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU, so NCCL is allowed")
def test_nccl_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="backend='nccl' needs CUDA GPUs"):
        gpuviz.launch("gpuviz.workloads.mlp:train", backend="nccl")


def test_port_already_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ValueError, match=f"port {port} is already in use"):
            gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, rdzv_endpoint=f"127.0.0.1:{port}")


def test_a_rank_that_raises_is_named_with_its_traceback(tmp_path):
    with pytest.raises(gpuviz.RankFailed) as e:
        gpuviz.launch("tests/scripts/raise_on_rank.py", nproc=4, args=["2", "3"],
                      run_dir=tmp_path / "r", progress=False, stream=False)
    msg = str(e.value)
    assert msg.startswith("rank 2 failed at step 3: ValueError: injected failure on rank 2")
    assert "raise_on_rank.py" in msg and "raise ValueError" in msg  # the traceback
    run = e.value.run
    assert run.meta["status"] == "failed"
    for rank in (0, 1, 3):  # the other ranks' traces are kept, steps 0-2 complete
        steps = run.events[(run.events["rank"] == rank) & (run.events["name"] == "step_end")]
        assert list(steps["step"]) == [0, 1, 2]
    assert_all_gone(worker_pids(run))


def test_a_hanging_rank_is_reported_by_the_timeout(tmp_path):
    with pytest.raises(gpuviz.RankHung) as e:
        gpuviz.launch("tests/scripts/hang_on_rank.py", nproc=4, args=["1", "2"],
                      run_dir=tmp_path / "r", progress=False, timeout=20)
    msg = str(e.value)
    assert "rank 1: step 2, in span 'compute' (compute)" in msg
    assert "not in a collective" in msg.split("rank 1:")[1].splitlines()[0]
    for rank in (0, 2, 3):
        assert f"rank {rank}: step 2, in span 'wait for others' (idle)" in msg
    run = e.value.run
    assert run.spans["interrupted"].sum() == 4  # each rank's open span was written on stop
    assert json.loads((run.path / "run.json").read_text())["status"] == "timeout"
    assert_all_gone(worker_pids(run))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_one_machine(tmp_path):
    """Two launches as two 'nodes' meet at one rendezvous; 4 ranks write into one run."""
    endpoint, out, errors = f"127.0.0.1:{_free_port()}", {}, []

    def node(rank):
        try:
            out[rank] = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, args={"steps": 3},
                                      run_dir=tmp_path / "run", nnodes=2, node_rank=rank,
                                      rdzv_endpoint=endpoint, progress=False, stream=False,
                                      timeout=120)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=node, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    run = gpuviz.load_run(tmp_path / "run")
    assert run.world_size == 4 and run.ranks == [0, 1, 2, 3]
    assert run.steps() == 3


def test_interrupting_the_cell_stops_every_worker(tmp_path):
    """A notebook interrupt is a KeyboardInterrupt in the kernel's main thread."""
    import _thread

    run_dir = tmp_path / "r"

    def interrupt_when_running():
        wait_for_steps(run_dir, 3)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_running, daemon=True).start()
    with pytest.raises(KeyboardInterrupt) as e:
        gpuviz.launch("tests/scripts/slow_steps.py", nproc=2, run_dir=run_dir, progress=False)
    # one line in a notebook: the workers were stopped, and where the partial run is
    assert isinstance(e.value, gpuviz.LaunchError) and len(e.value._render_traceback_()) == 1
    assert str(e.value).startswith("interrupted: every worker was stopped")
    assert str(run_dir) in str(e.value) and e.value.run.steps() >= 3
    run = gpuviz.load_run(run_dir)
    assert run.meta["status"] == "interrupted" and run.steps() >= 3
    assert run.spans["interrupted"].any()  # the span each rank was in is kept, cut at the stop
    assert_all_gone(worker_pids(run))


def test_ping_pong_clock_alignment(tmp_path, monkeypatch):
    """The clock sync used across hosts, forced on one host: collectives still line up."""
    monkeypatch.setenv("GPUVIZ_CLOCK", "pingpong")
    run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4, args={"steps": 4},
                        run_dir=tmp_path / "r", progress=False, stream=False)
    assert run.meta["clock"].startswith("offset to rank 0 by ping-pong")
    assert 0 < run.meta["clock_error_us"] < 20_000
    comm = run.spans[run.spans["name"] == "all_reduce grads"]
    for _, same_step in comm.groupby("step"):
        assert same_step["start"].max() < same_step["end"].min()


def test_two_launches_can_check_one_run_dir_at_once(tmp_path):
    """Two 'nodes' started from one process probe the same folder together."""
    from gpuviz.run.arguments import check_run_dir

    errors = []

    def probe():
        for _ in range(300):
            try:
                check_run_dir(tmp_path / "run")
            except ValueError as e:
                errors.append(e)

    threads = [threading.Thread(target=probe) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:2]
    assert list((tmp_path / "run").iterdir()) == []   # no probe left behind
