"""DDP's gradient buckets recorded in compiled code: no comm hook, no Python per bucket.

:func:`gpuviz.run.comm.ddp_comm_hook` is how Python sees a bucket, and any comm hook costs
DDP its own path (it scales gradients while copying them into the bucket; with a hook it
copies, then the hook scales), besides Python for every bucket and its completion. Here
DDP instead gets a process group whose CPU backend (``native_buckets.cpp``, compiled on
first use with torch's C++ extension tools, then cached) passes every call on to the job's
own gloo backend and keeps each all-reduce's launch and completion times and bytes in C++.
At each step's end the tracer turns them into the same ``all_reduce bucket i`` spans on the
comm lane. ``benchmarks/ddp_bucket_routes.py`` prints what each route costs a step.

On by default for CPU jobs on gloo; ``GPUVIZ_NATIVE_BUCKETS=0`` in the environment the
job starts from (the shell, or ``os.environ`` before ``gpuviz.launch``) keeps the comm hook.
The first job on a machine compiles it (about 20 s on 2 cores; ``gpuviz build-native``, which
``make setup`` runs, does it ahead). Where the extension cannot be built (no C++ compiler, no
ninja) the comm hook is used, and the rank's metadata (``run.meta["native_buckets"]``) says
why. Workloads get either route from :func:`ddp`.

>>> enabled({"GPUVIZ_NATIVE_BUCKETS": "0"}), enabled({})
(False, True)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gpuviz.run import compiled, hooks
from gpuviz.run.comm import ddp_comm_hook
from gpuviz.run.tracer import COMM_LANE, get_tracer

ENV = "GPUVIZ_NATIVE_BUCKETS"
_ON, _OFF = ("", "1", "on", "true", "yes"), ("0", "off", "false", "no")
_built: dict = {}   # "ext": the loaded module, or "why": why it could not be built


def enabled(environ=None) -> bool:
    """Whether DDP's buckets take the compiled route: yes unless ``$GPUVIZ_NATIVE_BUCKETS``
    is 0 (a ValueError naming the variable for a value that is neither on nor off)."""
    value = (os.environ if environ is None else environ).get(ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"${ENV}={value!r}: use 1 (record DDP's buckets in compiled code, the "
                     "default) or 0 (through the comm hook)")


def cache_dir() -> Path:
    """The folder the extension is built into: one per torch version, in
    :func:`gpuviz.run.compiled.cache_root`."""
    import torch

    return compiled.cache_root() / f"native-buckets-torch-{torch.__version__}"


def load():
    """The compiled extension (built on the first call in a cache folder, which later
    processes reuse), or None where it cannot be built; :func:`why_not` then says why."""
    if not _built:
        try:
            from torch.utils.cpp_extension import load as build

            folder = cache_dir()
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / "gpuviz_native_buckets.so").exists() and os.environ.get("RANK", "0") == "0":
                print(f"gpuviz: compiling the recorder of DDP's buckets, once for this machine "
                      f"(about 20 s on 2 cores), into {folder}", file=sys.stderr, flush=True)
            # -O1: the backend forwards calls and reads a clock; -O2 added 8 s of compiling
            _built["ext"] = build(name="gpuviz_native_buckets", verbose=False,
                                  sources=[str(Path(__file__).with_suffix(".cpp"))],
                                  build_directory=str(folder), extra_cflags=["-O1"])
        except Exception as e:  # noqa: BLE001 - any build failure: the comm hook remains
            last = (str(e).strip().splitlines() or [""])[-1]
            _built["why"] = f"the extension did not build ({type(e).__name__}: {last})"
    return _built.get("ext")


def why_not() -> str | None:
    """Why :func:`load` returned None (None if it has not failed)."""
    return _built.get("why")


class BucketRecorder(hooks.RankHook):
    """Turns the all-reduces the compiled backend kept into the step's bucket spans when it
    ends, numbered in launch order (as DDP launches its buckets). The backend's futures
    complete only once an all-reduce's times are kept, and DDP waits on them before its
    backward returns, so a step's buckets are all there at its end. With ``automatic`` the
    spans are marked as :mod:`gpuviz.run.auto` marks its collectives, with a sequence
    number (every rank launches the same buckets in the same order), so the loader splits
    off each bucket's wait for the last rank."""

    name = "native_buckets"

    def __init__(self, tracer, backend, automatic: bool = False):
        self.tracer, self.backend, self.automatic = tracer, backend, automatic
        self._seq = 0

    def sample(self) -> None:
        # the spans as Tracer.complete keeps them, made in C++ (no Python per bucket)
        t = self.tracer
        spans = self.backend.take_spans(t.origin_ns, t.step_index, COMM_LANE,
                                        self._seq if self.automatic else -1)
        if self.automatic:
            self._seq += len(spans)
        t._events.extend(spans)

    def close(self) -> None:
        self.sample()


def bucket_group(tracer, automatic: bool = False):
    """This job's group for DDP whose backend records the all-reduces (made once per
    tracer: every rank must call it, as ``dist.new_group``), or None with the reason in
    the rank's metadata. ``automatic``: see :class:`BucketRecorder`."""
    import torch
    import torch.distributed as dist

    made = getattr(tracer, "_native_group", False)
    if made is not False:
        return made
    group, why = None, None
    if tracer.cuda or dist.get_backend() != "gloo":
        why = "only CPU jobs on gloo record buckets in compiled code"
    elif load() is None:
        why = why_not()
    if why is None:
        ext = _built["ext"]
        if not hasattr(dist.Backend, "GPUVIZ_BUCKETS"):   # once per process
            # wraps the job's own gloo backend (its connections), whichever job is running
            dist.Backend.register_backend(
                "gpuviz_buckets", lambda store, rank, size, timeout: ext.TimingBackend(
                    dist.group.WORLD._get_backend(torch.device("cpu")), True), devices=["cpu"])
        group = dist.new_group(backend="gpuviz_buckets")
        backend = group._get_backend(torch.device("cpu"))
        tracer.hooks.append(BucketRecorder(tracer, backend, automatic))
    tracer.meta(native_buckets={"used": group is not None, "why_not": why})
    tracer._native_group = group
    return group


def release(tracer) -> None:
    """Let go of the group :func:`bucket_group` made for ``tracer`` (call it once the job's
    groups are destroyed), so that it, and the gloo backend it wraps, are freed while the
    interpreter still runs: freed at exit instead, gloo can abort the process ("terminate
    called without an active exception", seen at the end of a script that destroys its own
    group)."""
    tracer.__dict__.pop("_native_group", None)


def ddp(module, **kwargs):
    """``DistributedDataParallel(module, **kwargs)`` with every gradient bucket traced: in
    compiled code where ``$GPUVIZ_NATIVE_BUCKETS`` asks and it can, else through
    :func:`~gpuviz.run.comm.ddp_comm_hook`. Outside a traced job, plain DDP."""
    from torch.nn.parallel import DistributedDataParallel

    t = get_tracer()
    if t is not None and kwargs.get("process_group") is None and enabled():
        group = bucket_group(t)
        if group is not None:
            return DistributedDataParallel(module, process_group=group, **kwargs)
    model = DistributedDataParallel(module, **kwargs)
    if t is not None:
        model.register_comm_hook(state=None, hook=ddp_comm_hook)
    return model
