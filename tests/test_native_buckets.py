"""DDP's buckets recorded in compiled code (the default) against the comm hook (GPUVIZ_NATIVE_BUCKETS=0)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import gpuviz
from gpuviz.run import compiled, native_buckets

ARGS = {"steps": 6, "ddp": True, "bucket_cap_mb": 0.1}   # as conftest's ddp_run


def _buckets(run):
    sp = run.spans
    return sp[sp["name"].str.startswith("all_reduce bucket")].sort_values(["rank", "start"])


OWN = Path(__file__).resolve().parents[1] / "gpuviz" / "workloads" / "scripts"
TOOLS = [t for t in ("c++", "ninja") if shutil.which(t) is None]
needs_tools = pytest.mark.skipif(bool(TOOLS), reason=f"no {' or '.join(TOOLS)} on PATH: the "
                                 "extension cannot be built here")


@pytest.fixture(scope="module")
def native_cache(tmp_path_factory):
    """A cache of this module's own: the first job to use it builds the extension (part of
    the test)."""
    return tmp_path_factory.mktemp("native-cache")


@pytest.fixture(scope="module")
def hook_run(tmp_path_factory):
    """The DDP job of conftest's ``ddp_run`` with ``GPUVIZ_NATIVE_BUCKETS=0``: its buckets
    recorded through the comm hook."""
    with pytest.MonkeyPatch.context() as mp:   # for this job only
        mp.setenv(native_buckets.ENV, "0")
        return gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4, args=ARGS,
                             run_dir=tmp_path_factory.mktemp("hooked") / "run", progress=False)


@pytest.mark.slow
@needs_tools
def test_compiled_buckets_are_the_comm_hooks_buckets(ddp_run, hook_run):
    assert ddp_run.meta["native_buckets"] == {r: {"used": True, "why_not": None} for r in range(4)}
    assert hook_run.meta["native_buckets"] == {}   # the comm hook: nothing to say
    native, hooked = _buckets(ddp_run), _buckets(hook_run)
    key = ["rank", "step", "name", "lane"]
    assert native[key].values.tolist() == hooked[key].values.tolist()
    assert native["bytes"].tolist() == hooked["bytes"].tolist()
    assert (native["lane"] == "comm").all() and (native["dur"] > 0).all()
    assert set(native["step"]) == set(range(ARGS["steps"]))
    # each all-reduce lies inside its rank's step: after the forward, before the step ends
    steps = ddp_run.spans[ddp_run.spans["name"] == "forward"].set_index(["rank", "step"])
    for _, b in native.iterrows():
        assert b["start"] >= steps.loc[(b["rank"], b["step"]), "start"]


@pytest.mark.slow
@needs_tools
def test_a_plain_ddp_script_gets_its_buckets_recorded_in_compiled_code(
        tmp_path, monkeypatch, native_cache, capsys):
    monkeypatch.setenv(compiled.CACHE_ENV, str(native_cache))   # nothing built there yet
    # it destroys its process group at its end, the compiled group with it
    run = gpuviz.launch(str(OWN / "plain_ddp.py"), nproc=2, args=["--steps", "4"],
                        run_dir=tmp_path / "r", progress=False, timeout=180)
    out = capsys.readouterr()
    assert "done: 4 steps on 2 ranks" in out.out and run.meta["status"] == "ok"
    # the first job on a machine compiles the extension, and says so once
    assert (out.out + out.err).count("compiling the recorder of DDP's buckets") == 1
    assert all(m["used"] for m in run.meta["native_buckets"].values())
    sp = run.spans
    b = sp[sp["name"].str.startswith("all_reduce bucket")]
    assert set(b["rank"]) == {0, 1} and set(b["step"]) == set(range(4)) and (b["bytes"] > 0).all()
    assert all(a["auto"] and a["collective"] for a in b["args"])
    # marked as auto's collectives: each bucket's wait for the last rank is split off
    assert (sp["name"] == "wait for others").any() and run.summary()["idle"].sum() > 0


@pytest.mark.slow
def test_without_a_compiler_the_comm_hook_records_them_and_the_run_says_why(
        tmp_path, monkeypatch, ddp_run):
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path / "cache"))   # nothing built yet
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, args={**ARGS, "steps": 2},
                        run_dir=tmp_path / "run", progress=False)
    for info in run.meta["native_buckets"].values():
        assert info["used"] is False and "did not build" in info["why_not"]
    # every step of every rank all-reduced every gradient byte, through the comm hook
    grad_bytes = set(_buckets(ddp_run).groupby(["rank", "step"])["bytes"].sum())
    sums = _buckets(run).groupby(["rank", "step"])["bytes"].sum()
    assert len(grad_bytes) == 1 and set(sums) == grad_bytes and len(sums) == 2 * 2


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_bad_setting_is_refused_naming_the_variable(value):
    with pytest.raises(ValueError, match=r"\$GPUVIZ_NATIVE_BUCKETS='.*': use 1"):
        native_buckets.enabled({native_buckets.ENV: value})


def test_on_unless_turned_off():
    assert native_buckets.enabled({}) and native_buckets.enabled({native_buckets.ENV: "on"})
    assert not native_buckets.enabled({native_buckets.ENV: "0"})


RELEASE = """
import gc, sys, weakref
import torch.distributed as dist
from gpuviz.run import native_buckets, trace
dist.init_process_group("gloo", store=dist.FileStore(sys.argv[1] + "/store", 1), rank=0, world_size=1)
tracer = trace.Tracer(sys.argv[1] + "/run", 0, 1)
tracer.start()
group = native_buckets.bucket_group(tracer)
if group is None:
    print("no group:", native_buckets.why_not()); sys.exit(3)
freed = weakref.ref(group)
del group
tracer.close()
dist.destroy_process_group()
gc.collect()
print("held after destroy:", freed() is not None)
native_buckets.release(tracer)
print("held after release:", freed() is not None)
"""


@needs_tools
def test_release_frees_the_bucket_group_before_the_interpreter_exits(tmp_path):
    """Held by the tracer to the end, the group (and the gloo backend it wraps) was freed at
    exit, where gloo could abort the process; the worker releases it once the job's groups
    are destroyed."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", RELEASE, str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert "held after destroy: True" in out.stdout and "held after release: False" in out.stdout
