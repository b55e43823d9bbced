"""PyTorch profiler traces of real and synthetic GPU jobs, loaded as gpuviz runs."""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pytest

import gpuviz
from gpuviz import cli
from gpuviz.run.load import TraceError, TraceWarning
from gpuviz.run.recorded import load_real, real_trace_files
from gpuviz.sync.stragglers import waiting
from tests import kineto_fakes as fakes

# -- the real traces shipped with gpuviz --------------------------------------------------------


@pytest.fixture(scope="module")
def dlrm():
    return load_real("dlrm-8xV100")


def test_dlrm_8_v100s_load_with_everything_a_run_has(dlrm):
    assert dlrm.world_size == 8 and dlrm.ranks == list(range(8))
    assert dlrm.meta["source"] == "pytorch-profiler" and dlrm.meta["backend"] == "nccl"
    assert dlrm.meta["gpu"] == "Tesla V100-SXM2-32GB" and dlrm.meta["clock"] == "shared (one node)"
    assert dlrm.steps() == 1 and "facebookresearch/param" in dlrm.meta["recorded"]["source"]
    s = dlrm.summary()
    cats = ["compute", "comm", "optimizer", "data", "idle", "io"]
    np.testing.assert_allclose(s[cats].sum(axis=1), s["wall"], rtol=1e-9)
    assert (s["compute"] > 0).all() and (s["comm"] > 0).all() and (s["idle_gaps"] > 0).all()
    # 5 all_to_all and 3 all_reduce per rank, as the traces' source says
    c = dlrm.comm()
    assert c.groupby("rank")["collective"].value_counts().unstack().eq(
        {"all_to_all": 5, "all_reduce": 3}).all().all()
    assert (c["busbw"] > 0).all() and c["bytes"].gt(0).all()
    # every collective but the last rank's arrival holds a wait for the others
    w = waiting(dlrm, skip_warmup=False)
    assert len(w) > 0 and (w["wait_s"] > 0).all() and set(w["name"]) <= {
        n for n in dlrm.spans["name"] if n.startswith("nccl")}


def test_a100_kernel_message_sizes_and_nccl_version():
    run = load_real("a100-2rank")
    assert run.meta["nccl_version"] == "2.17.1" and run.meta["gpu"].startswith("NVIDIA A100")
    assert run.meta["ranks_present"] == 1 and run.world_size == 2
    c = run.comm()
    assert 6637568 * 4 in set(c["bytes"])                # In msg nelems x float, on the kernel
    how = {a.get("bytes_from") for a in run.spans["args"] if a.get("collective")}
    assert how == {"message size on the kernel"}
    first = c[c["collective"] == "all_reduce"].iloc[0]
    np.testing.assert_allclose(first["busbw"], first["algbw"] * 2 * (2 - 1) / 2)
    assert set(c["collective"]) == {"all_reduce", "broadcast"}


def test_sampled_128_rank_job_sizes_from_annotations():
    run = load_real("sampled-128rank")
    assert run.world_size == 128 and run.ranks == [0, 1] and run.meta.get("gpu") is None
    c = run.comm()
    ag = c[c["collective"] == "all_gather"]
    assert len(ag) and (ag["bytes"] == 1 << 30).all()   # c10d's output dims, not 128 x input
    assert {"all_reduce", "all_to_all"} <= set(c["collective"])
    assert any("deviceProperties" in p for p in run.problems)


def test_import_cli_perfetto_and_back(tmp_path, capsys):
    src = real_trace_files("dlrm-8xV100")[0].parent
    assert cli.main(["summary", str(src)]) == 0
    out = capsys.readouterr().out
    assert "idle_gaps" in out and "hold no energy" in out
    assert cli.main(["perfetto", str(src), str(tmp_path / "t.json")]) == 0
    doc = json.loads((tmp_path / "t.json").read_text())
    names = {e["args"]["name"] for e in doc["traceEvents"] if e.get("name") == "thread_name"}
    assert "GPU stream 7" in names and "CPU main thread" in names
    assert cli.main(["import", str(src), "--out", str(tmp_path / "run")]) == 0
    back, orig = gpuviz.load_run(tmp_path / "run"), load_real("dlrm-8xV100")
    assert back.imported and back.meta["gpu"] == orig.meta["gpu"]
    np.testing.assert_allclose(back.summary().to_numpy(), orig.summary().to_numpy(), atol=1e-9)
    assert cli.main(["import", str(src), "--out", str(tmp_path / "run")]) == 1   # never overwritten
    assert "already holds a run" in capsys.readouterr().err


def test_timeline_has_a_row_per_stream_and_thread(dlrm):
    fig = gpuviz.plot.timeline(dlrm, ranks=[0, 1])
    labels = list(fig.layout.yaxis.ticktext)
    assert "rank 0 · GPU stream 7" in labels and "rank 1 · CPU main thread" in labels
    assert labels.index("rank 0 · GPU stream 84") < labels.index("rank 0 · CPU main thread")
    gpu_only = gpuviz.plot.timeline(dlrm, ranks=[0], lanes="GPU")
    assert all("GPU" in t for t in gpu_only.layout.yaxis.ticktext)
    with pytest.raises(ValueError, match="lanes="):
        gpuviz.plot.timeline(dlrm, lanes="TPU")
    gpuviz.plot.breakdown(dlrm)


def test_energy_is_not_invented(dlrm):
    from gpuviz.energy.attribution import joules

    with pytest.raises(ValueError, match="no energy"):
        joules(dlrm, "rank")


# -- synthetic traces with a known answer, one per variant ----------------------------------------

VARIANTS = {
    "as kineto writes it": {},
    "NCCL >= 2.19 kernel names": {"new_nccl": True},
    "sizes only on annotations": {"sizes": "annotation"},
    "rank-only distributedInfo": {"dist_info": "rank"},
    "no distributedInfo, rank in file name": {"dist_info": None, "name": "rank-{r}"},
    "string pid and tid": {"str_ids": True},
    "float timestamps": {"float_ts": True},
    "gzipped": {"gz": True},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_gives_the_known_times(tmp_path, variant):
    world = 4
    fakes.write(tmp_path, world, **VARIANTS[variant])
    with warnings.catch_warnings():
        warnings.simplefilter("error", TraceWarning)
        run = gpuviz.load_run(tmp_path)
    assert run.ranks == list(range(world)) and run.imported
    s = run.summary()
    for r in range(world):
        want = fakes.expected(r, world)
        assert s.loc[r, "compute"] == pytest.approx(want["compute"], abs=1e-9)
        assert s.loc[r, "optimizer"] == pytest.approx(want["optimizer"], abs=1e-9)
        assert s.loc[r, "comm"] == pytest.approx(want["comm"], abs=1e-9)
        assert s.loc[r, "idle"] - s.loc[r, "idle_gaps"] == pytest.approx(want["wait"], abs=1e-9)
    c = run.comm()
    assert (c["collective"] == "all_reduce").all() and (c["bytes"] == (1 << 20) * 4).all()
    np.testing.assert_allclose(c["dur"], fakes.XFER_US / 1e6)


def test_imported_spans_are_typed_and_ordered_as_recorded_ones(tmp_path):
    fakes.write(tmp_path, 4)
    sp = gpuviz.load_run(tmp_path).spans
    assert {c: str(t) for c, t in sp.dtypes.items() if c in ("rank", "step", "bytes", "start")} == {
        "rank": "int64", "step": "Int64", "bytes": "Int64", "start": "float64"}
    assert sp[["rank", "start"]].equals(sp.sort_values(["rank", "start"], kind="stable")[["rank", "start"]])
    # each wait for the last rank ends where its transfer starts, on the same stream and step
    waits = sp[sp["name"] == "wait for others"]
    assert len(waits) and waits["bytes"].isna().all() and (waits["cat"] == "idle").all()
    for _, w in waits.iterrows():
        after = sp[(sp["rank"] == w["rank"]) & (sp["lane"] == w["lane"]) & (sp["cat"] == "comm")
                   & (sp["start"] == w["end"])]
        assert len(after) == 1 and after["step"].iloc[0] == w["step"] and after["bytes"].iloc[0] > 0


def test_ranks_on_other_nodes_are_aligned_on_their_collectives(tmp_path):
    # one GPU per node: every rank its own clock, each off by seconds
    fakes.write(tmp_path, 4, devices=1, clock_shift_us={1: 3_000_000, 2: -1_234_567, 3: 777})
    run = gpuviz.load_run(tmp_path)
    assert run.meta["clock"] == "aligned on shared collectives across nodes"
    assert run.meta["clock_error_us"] == pytest.approx(0.0, abs=1e-6)
    w = waiting(run, skip_warmup=False).groupby("rank")["wait_s"].sum()
    for r in range(4):
        assert w.get(r, 0.0) == pytest.approx(fakes.expected(r, 4)["wait"], abs=1e-9)


# -- bad input: named, and what is valid still loads ----------------------------------------------

def _load_warned(path):
    with pytest.warns(TraceWarning) as rec:
        run = gpuviz.load_run(path)
    return run, " ".join(str(w.message) for w in rec)


def test_a_file_that_is_not_a_trace_is_named(tmp_path):
    fakes.write(tmp_path, 2)
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    (tmp_path / "broken.json").write_text("this is not json")
    run, msg = _load_warned(tmp_path)
    assert run.ranks == [0, 1] and "notes.json: not a PyTorch profiler trace" in msg
    assert "broken.json: not readable JSON" in msg


def test_a_truncated_gz_keeps_what_was_read(tmp_path):
    paths = fakes.write(tmp_path, 2, gz=True, steps=300)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    run, msg = _load_warned(tmp_path)
    assert f"{paths[1].name}: truncated or corrupt" in msg and run.ranks == [0, 1]
    assert len(run.spans[run.spans["rank"] == 1]) < len(run.spans[run.spans["rank"] == 0])


def test_another_jobs_trace_is_left_out_by_name(tmp_path):
    fakes.write(tmp_path, 4)
    fakes.write(tmp_path / "x", 2, name="other{r}")
    (tmp_path / "x" / "other1.pt.trace.json").rename(tmp_path / "other1.pt.trace.json")
    run, msg = _load_warned(tmp_path)
    assert run.ranks == [0, 1, 2, 3] and "other1.pt.trace.json: from another job" in msg


def test_two_files_claiming_one_rank_is_an_error(tmp_path):
    fakes.write(tmp_path, 2)
    fakes.write(tmp_path, 2, name="copy{r}", ranks=[1])
    with pytest.raises(TraceError, match=r"copy1.pt.trace.json.*rank 1|rank 1.*copy1"):
        gpuviz.load_run(tmp_path)


def test_a_trace_with_no_gpu_events_is_named(tmp_path):
    fakes.write(tmp_path, 2)
    p = tmp_path / "worker1.pt.trace.json"
    doc = json.loads(p.read_text())
    doc["traceEvents"] = [e for e in doc["traceEvents"] if e["cat"] not in ("kernel",)]
    p.write_text(json.dumps(doc))
    run, msg = _load_warned(tmp_path)
    assert "worker1.pt.trace.json: no GPU kernels" in msg and run.ranks == [0, 1]
    s = run.summary()   # rank 1: its CPU main thread's ops, the time between them untraced
    assert s.loc[1, "comm_lane"] == 0.0 and s.loc[1, "optimizer"] > 0 and s.loc[1, "untraced"] > 0
    assert s.loc[0, "comm_lane"] > 0


def test_nothing_readable_is_an_error(tmp_path):
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(b"{"))
    with pytest.raises(TraceError, match="no file holds a readable PyTorch profiler trace"):
        gpuviz.load_run(tmp_path)


# -- the learner's own run, recorded by torch.profiler too ----------------------------------------

@pytest.mark.slow
def test_profile_writes_torch_profiler_traces_beside_the_spans(tmp_path):
    run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, args={"steps": 3}, profile=True,
                        run_dir=tmp_path / "run", progress=False)
    files = sorted(p.name for p in (run.path / "profiler").iterdir())
    assert files == ["rank0.pt.trace.json.gz", "rank1.pt.trace.json.gz"]
    with pytest.warns(TraceWarning, match="no GPU kernels"):
        prof = gpuviz.load_run(run.path / "profiler")
    assert prof.imported and prof.ranks == [0, 1] and prof.meta["backend"] == "gloo"
    assert prof.steps() == run.steps() == 3                # gpuviz's steps are the profiler's
    s = prof.summary()
    assert (s["compute"] > 0).all() and (s["wall"] > 0).all() and (s["optimizer"] > 0).all()
    assert "CPU main thread" in set(prof.spans["lane"])
    # the profiler's step windows lie inside the gpuviz run's wall time
    assert (s["wall"] <= run.summary()["wall"] * 1.5).all()
    with pytest.raises(ValueError, match="profile=1"):
        gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, profile=1)
