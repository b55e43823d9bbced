"""Data parallelism from scratch: equal to one process and to torch's DDP, traced as designed."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.distributed as dist
from torch import nn

import gpuviz
from gpuviz.parallel.data import BucketDataParallel, NaiveDataParallel, make_buckets
from gpuviz.parallel.strategy import SingleProcess, local_batch
from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData

CFG = GPTConfig(vocab=32, seq_len=16, dim=32, layers=2)
PARALLEL = ("naive_dp", "ddp", "torch_ddp")

# Tolerances, from what the runs show (2 and 4 ranks, float32 and float64):
#   losses: a global mean summed in another order differs by ~1 ulp (observed <= 1.3e-7
#   relative in float32, 2.3e-16 in float64).
#   parameters after 5 Adam steps: observed <= 1.3e-5 in float32 (up to 3.7e-5 for other
#   seeds), <= 6e-14 in float64. Adam divides each gradient element by its own running
#   RMS, so an element whose gradient is near rounding noise (the key biases, whose exact
#   gradient is zero because softmax ignores a shift shared by all keys) takes a step of a
#   sizable fraction of lr in either run, whatever the summation order. 1e-4 is 1/150 of
#   the 5 * lr an element can move. float64 leaves no such noise, so its check is sharp: a
#   gradient not divided by the world size moves parameters by ~5e-4 there.
LOSS_RTOL = {"float32": 1e-5, "float64": 1e-12}
PARAM_ATOL = {"float32": 1e-4, "float64": 1e-10}


# -- without a job ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "1", None])
def test_bad_bucket_mb_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="bucket_mb="):
        BucketDataParallel(nn.Linear(2, 2), bucket_mb=bad)


@pytest.mark.parametrize("strategy", [NaiveDataParallel, BucketDataParallel])
def test_strategies_need_a_process_group(strategy):
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="no process group"):
        strategy(nn.Linear(2, 2))


@pytest.mark.parametrize("batch, world", [(6, 4), (3, 4), (7, 2)])
def test_a_batch_that_does_not_split_over_the_ranks_is_a_clear_error(batch, world):
    x = torch.zeros(batch, 4)
    with pytest.raises(ValueError, match=f"batch={batch} cannot be split evenly over {world}"):
        local_batch(x, x, 0, world)


def test_buckets_hold_every_parameter_once_in_reverse_order_up_to_the_cap():
    params = list(GPT(CFG).parameters())
    cap_mb = 0.02
    buckets = make_buckets(params, cap_mb)
    flat = [p for b in buckets for p in b.params]
    assert [id(p) for p in flat] == [id(p) for p in reversed(params)]
    for b in buckets:
        assert b.nbytes == sum(p.numel() * 4 for p in b.params)
        # closed once it reaches the cap: without its last parameter it was below the cap
        assert b.nbytes - b.params[-1].numel() * 4 < cap_mb * 2**20
    assert all(b.nbytes >= cap_mb * 2**20 for b in buckets[:-1])
    assert len(make_buckets(params, 100.0)) == 1
    assert len(make_buckets(params, 1e-9)) == len(params)


def test_buckets_split_where_the_dtype_changes():
    params = [nn.Parameter(torch.zeros(4)), nn.Parameter(torch.zeros(4, dtype=torch.float64))]
    assert [len(b.params) for b in make_buckets(params, 100.0)] == [1, 1]


@pytest.fixture
def one_rank_group():
    """A real gloo process group of one rank in this process (no ports: a HashStore)."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("make", [lambda m: NaiveDataParallel(m),
                                  lambda m: BucketDataParallel(m, bucket_mb=0.01)])
def test_on_one_rank_equal_to_the_single_process_bit_for_bit(one_rank_group, make):
    data = TokenData(CFG.vocab, CFG.seq_len)
    ref, dp = SingleProcess(GPT(CFG)), make(GPT(CFG))
    with pytest.raises(RuntimeError, match="call train_step first"):
        dp.memory()
    for step in range(3):
        assert dp.train_step(*data.batch(step, 4)) == ref.train_step(*data.batch(step, 4))
    theirs = ref.full_parameters()
    assert all(torch.equal(p, theirs[n]) for n, p in dp.full_parameters().items())
    assert {k: v for k, v in dp.memory().items() if k != "comm buffers"} == ref.memory()


def test_bucketed_memory_counts_the_bucket_buffers(one_rank_group):
    dp = BucketDataParallel(GPT(CFG), bucket_mb=0.01)
    dp.train_step(*TokenData(CFG.vocab, CFG.seq_len).batch(0, 2))
    assert dp.memory()["comm buffers"] == dp.memory()["params"] == 4 * GPT(CFG).num_params()


def test_a_parameter_without_gradient_is_named(one_rank_group):
    model = GPT(CFG)
    model.unused = nn.Linear(3, 3)        # registered last: its bucket is launched first
    dp = BucketDataParallel(model, bucket_mb=0.01)
    with pytest.raises(RuntimeError, match=r"bucket 0 never became ready.*unused\.weight"):
        dp.train_step(*TokenData(CFG.vocab, CFG.seq_len).batch(0, 2))


# -- real jobs: 2 and 4 ranks -------------------------------------------------------------------

@pytest.fixture(scope="module", params=[2, 4], ids=["2 ranks", "4 ranks"])
def verify_run(request, tmp_path_factory):
    """tests/scripts/verify_data.py on 2 or 4 ranks: every strategy, float32 and float64."""
    n = request.param
    run = gpuviz.launch("tests/scripts/verify_data.py", nproc=n,
                        run_dir=tmp_path_factory.mktemp(f"dp{n}") / "run",
                        progress=False, stream=False, timeout=240)
    results = {r: json.loads((run.path / f"verify_data_rank{r}.json").read_text())
               for r in range(n)}
    return run, results


def _strategy_steps(run, strategy: str, dtype: str) -> list[int]:
    ends = run.events[(run.events["name"] == "step_end") & (run.events["rank"] == 0)]
    return [a["step"] for a in ends["args"]
            if a["strategy"] == strategy and a["dtype"] == f"torch.{dtype}"]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_losses_and_parameters_equal_the_single_process(verify_run, dtype):
    run, results = verify_run
    for rank, res in results.items():
        assert res["world"] == run.world_size
        out = res[dtype]
        ref = out["single"]["losses"]
        assert len(ref) == 5 and ref[-1] < ref[0]
        for name in PARALLEL:
            assert out[name]["losses"] == pytest.approx(ref, rel=LOSS_RTOL[dtype]), (rank, name)
            worst = max(out[name]["param_diff"].items(), key=lambda kv: kv[1])
            assert worst[1] <= PARAM_ATOL[dtype], (rank, name, worst)
            # every rank averages the same gradients: replicas stay identical, bit for bit
            assert out[name]["replica_diff"] == 0.0, (rank, name)
        assert max(out["ddp_vs_torch_ddp"].values()) <= PARAM_ATOL[dtype]
        assert results[0][dtype]["ddp"]["losses"] == out["ddp"]["losses"]


@pytest.mark.slow
def test_memory_by_kind(verify_run):
    run, results = verify_run
    world = run.world_size
    for out in results.values():
        for dtype, size in (("float32", 4), ("float64", 8)):
            single, naive, ddp = (out[dtype][s]["memory"] for s in ("single", "naive_dp", "ddp"))
            params = single["params"]
            assert params % size == 0 and naive["params"] == ddp["params"] == params
            assert naive["grads"] == ddp["grads"] == ddp["comm buffers"] == params
            assert sum(out[dtype]["ddp"]["buckets"]) == params
            assert naive["optimizer"] == ddp["optimizer"] == single["optimizer"] >= 2 * params
            # each rank keeps the activations of 1/world of the batch
            assert math.isclose(naive["activations"] * world, single["activations"], rel_tol=0.05)
            assert ddp["activations"] == naive["activations"]


@pytest.mark.slow
def test_a_batch_that_does_not_split_fails_on_every_rank(verify_run):
    run, results = verify_run
    for out in results.values():
        for name in ("naive_dp", "ddp"):
            msg = out["float32"][name]["uneven_batch_error"]
            assert f"batch={run.world_size + 1} cannot be split evenly" in msg


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bucketed_trace_one_comm_span_per_bucket_launched_during_backward(verify_run, dtype):
    run, results = verify_run
    sp = run.spans
    steps = _strategy_steps(run, "ddp", dtype)
    assert len(steps) == 5
    for rank in run.ranks:
        sizes = results[rank][dtype]["ddp"]["buckets"]
        assert len(sizes) >= 4
        for step in steps:
            mine = sp[(sp["rank"] == rank) & (sp["step"] == step)]
            comm = mine[mine["lane"] == "comm"].sort_values("start")
            assert list(comm["name"]) == [f"all_reduce bucket {i}" for i in range(len(sizes))]
            assert (comm["cat"] == "comm").all()
            assert [int(b) for b in comm["bytes"]] == sizes
            assert [a["bucket"] for a in comm["args"]] == list(range(len(sizes)))
            (bw,) = mine[mine["name"] == "backward"].itertuples()
            (wait,) = mine[mine["name"] == "wait for gradient buckets"].itertuples()
            # overlap: each bucket is launched while backward still runs
            assert ((comm["start"] >= bw.start) & (comm["start"] <= bw.end)).all()
            assert comm["start"].iloc[0] < bw.end
            assert wait.cat == "comm" and wait.start >= bw.end
            assert comm["end"].max() <= wait.end + 1e-3


@pytest.mark.slow
def test_naive_trace_one_all_reduce_per_parameter_after_a_wait(verify_run):
    run, results = verify_run
    sp = run.spans
    steps = _strategy_steps(run, "naive_dp", "float32")
    for rank in run.ranks:
        for step in steps:
            mine = sp[(sp["rank"] == rank) & (sp["step"] == step)].sort_values("start")
            names = list(mine["name"])
            assert (mine["lane"] == "main").all()
            grads = mine[mine["name"].str.startswith("all_reduce ")
                         & (mine["name"] != "all_reduce loss")]
            assert len(grads) == len(results[rank]["float32"]["naive_dp"]["param_diff"])
            assert (grads["cat"] == "comm").all()
            assert grads["bytes"].sum() == results[rank]["float32"]["naive_dp"]["memory"]["params"]
            first = names.index(grads["name"].iloc[0])
            assert names[:first] == ["forward", "backward", "wait for others"]
            assert names[-2:] == ["optimizer step", "all_reduce loss"]
