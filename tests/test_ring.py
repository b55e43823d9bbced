"""Ring all-reduce from send/recv: its schedule, its drawing, and real multi-process runs."""

from __future__ import annotations

import json
import re

import pytest
import torch

import gpuviz
from gpuviz.parallel.ring import (
    ALL_GATHER,
    REDUCE_SCATTER,
    chunk_sizes,
    ring_all_reduce,
    ring_schedule,
    simulate_ring,
)
from gpuviz.plot.ring import ring_allreduce

SIZES = (1, 7, 1001, 4099)             # none divides by 2..8 ranks; 1 and 7 are below 8
TOL = {"float32": 1e-5, "float64": 1e-12}


# -- the schedule, in plain Python ------------------------------------------------------------

@pytest.mark.parametrize("p", range(2, 9))
def test_simulation_ends_with_every_chunk_summed_over_all_ranks(p):
    steps = simulate_ring(p)
    assert len(steps) == 2 * (p - 1) + 1
    assert all(chunk == frozenset(range(p)) for rank in steps[-1].state for chunk in rank)
    # after the reduce-scatter, rank r holds chunk r+1 complete and nothing else complete
    mid = steps[p - 1].state
    for r in range(p):
        assert [c for c in range(p) if mid[r][c] == frozenset(range(p))] == [(r + 1) % p]


@pytest.mark.parametrize("p", range(2, 9))
def test_every_step_sends_each_chunk_once_to_the_right_neighbour(p):
    for s in simulate_ring(p)[1:]:
        assert sorted(c for _, _, c, _ in s.sends) == list(range(p))
        assert all(dst == (src + 1) % p for src, dst, _, _ in s.sends)
        assert s.phase in (REDUCE_SCATTER, ALL_GATHER) and 1 <= s.index <= p - 1


def test_schedule_receives_what_the_left_neighbour_sends():
    for p in range(2, 9):
        for step in range(2 * (p - 1)):
            for r in range(p):
                assert ring_schedule(r, p, step)[2] == ring_schedule((r - 1) % p, p, step)[1]


@pytest.mark.parametrize("numel", SIZES)
def test_chunk_sizes_follow_tensor_split(numel):
    for p in range(2, 9):
        assert chunk_sizes(numel, p) == [len(c) for c in torch.arange(numel).tensor_split(p)]


def test_ring_all_reduce_needs_a_process_group():
    with pytest.raises(RuntimeError, match="no process group"):
        ring_all_reduce(torch.ones(4))


# -- the drawing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [2, 4, 8])
def test_animation_has_a_frame_per_step_and_the_same_traces_in_each(p):
    fig = ring_allreduce(world=p, chunks=1001)
    assert [f.name for f in fig.frames] == (["start"] + [f"RS {k}" for k in range(1, p)]
                                            + [f"AG {k}" for k in range(1, p)])
    assert {len(f.data) for f in fig.frames} == {len(fig.data)}
    assert [s.label for s in fig.layout.sliders[0].steps] == [f.name for f in fig.frames]
    assert fig.layout.updatemenus[0].buttons[0].method == "animate"
    last = fig.frames[-1]
    chunk_traces = [t for t in last.data if re.fullmatch(r"chunk \d+", t.name or "")]
    assert len(chunk_traces) == p                      # one coloured trace per chunk
    full = "+".join(map(str, range(p))) if p <= 4 else f"all {p}"
    assert all(text == full for t in chunk_traces for text in t.text)
    assert "All-gather step" in last.layout.title.subtitle.text


def test_drawing_labels_partial_sums_in_the_order_they_were_added():
    first = ring_allreduce(world=4).frames[1]           # after reduce-scatter step 1
    chunk0 = next(t for t in first.data if t.name == "chunk 0")
    assert list(chunk0.text) == ["0", "0+1", "2", "3"]  # rank 1 added rank 0's chunk 0


@pytest.mark.parametrize("kwargs, arg", [
    ({"world": 1}, "world="), ({"world": 0}, "world="), ({"world": 2.0}, "world="),
    ({"world": True}, "world="), ({"world": 11}, "world="), ({"world": 4, "chunks": 0}, "chunks="),
])
def test_bad_world_or_chunks_is_a_clear_error(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        ring_allreduce(**kwargs)
    if "chunks" not in kwargs and kwargs["world"] != 11:      # any size of ring simulates
        with pytest.raises(ValueError, match="world="):
            simulate_ring(kwargs["world"])


# -- real runs -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def check_run(tmp_path_factory):
    """One 8-rank job: every group of ranks 0..w-1 (w = 2..8) and the odd ranks backwards,
    then one step of the lab's workload (ring beside torch's all-reduce) on all 8."""
    return gpuviz.launch("gpuviz.workloads.ring:check", nproc=8,
                         args={"sizes": list(SIZES), "then_main": 10_001},
                         run_dir=tmp_path_factory.mktemp("ring") / "run", progress=False,
                         stream=False, timeout=240)


def _results(run):
    return {r: json.loads((run.path / f"ring_check_rank{r}.json").read_text()) for r in range(8)}


@pytest.mark.slow
def test_ring_equals_dist_all_reduce_in_every_group(check_run):
    results = _results(check_run)
    groups = [list(range(w)) for w in range(2, 9)] + [[7, 5, 3, 1]]
    for rank, res in results.items():
        mine = [g for g in groups if rank in g]
        assert len(res) == len(mine) * len(SIZES) * 2, rank
        for r in res:
            assert r["group_rank"] == r["ranks"].index(rank)
            tol = TOL[r["dtype"]] * max(1.0, r["scale"])
            assert r["ring_err"] <= tol, r
            assert r["naive_err"] <= tol, r
    seen = {(tuple(r["ranks"]), r["numel"], r["dtype"]) for res in results.values() for r in res}
    assert len(seen) == len(groups) * len(SIZES) * 2


@pytest.mark.slow
def test_each_call_is_traced_as_2p_minus_2_ring_steps(check_run):
    sp = check_run.spans
    ring = sp[sp["name"].str.startswith("ring ")]
    for rank, res in _results(check_run).items():
        for r in res:
            p, numel = len(r["ranks"]), r["numel"]
            mine = ring[(ring["rank"] == rank) & (ring["step"] == r["step"])]
            assert sorted(mine["name"]) == sorted([f"ring reduce-scatter {k}" for k in range(1, p)]
                                                  + [f"ring all-gather {k}" for k in range(1, p)])
            assert (mine["cat"] == "comm").all()
            # bytes sent: every chunk but one in each phase, as the schedule says
            es = 4 if r["dtype"] == "float32" else 8
            size, g = chunk_sizes(numel, p), r["group_rank"]
            rs = mine[mine["name"].str.contains(REDUCE_SCATTER)]["bytes"].sum()
            ag = mine[mine["name"].str.contains(ALL_GATHER)]["bytes"].sum()
            assert rs == es * (numel - size[(g + 1) % p])
            assert ag == es * (numel - size[(g + 2) % p])


@pytest.mark.slow
def test_ring_workload_runs_beside_torchs_all_reduce(check_run):
    sp, ends = check_run.spans, check_run.events[check_run.events["name"] == "step_end"]
    last = int(ends["step"].max())
    for rank in range(8):
        names = list(sp[(sp["rank"] == rank) & (sp["step"] == last)]["name"])
        assert sum(n.startswith("ring ") for n in names) == 2 * 7
        assert "all_reduce (torch)" in names
    assert max(a["max_abs_diff"] for a in ends[ends["step"] == last]["args"]) < 1e-5
