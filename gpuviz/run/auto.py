"""A timeline with no annotations: what a plain training script does, recorded by hooks.

``gpuviz run my_train.py`` (``--auto``, on by default for scripts) records, on every rank:

- ``forward`` (compute): the outermost module call (``nn.Module.__call__``, wrapped);
- ``backward`` (compute): every ``Tensor.backward()``;
- ``optimizer step`` (optimizer), and the end of each step, through torch's global
  optimizer-step hooks (the first optimizer that steps ends the step, and once it is gone,
  the next one that steps; a script that calls ``trace.step()`` itself keeps that job);
- ``load batch`` (data): every batch a ``DataLoader`` yields, and ``start loader`` (data):
  each epoch's start of one (its worker processes started, its first batches requested);
- every ``torch.distributed`` collective and point-to-point call (comm), with its bytes
  (the largest tensor argument), its group's ranks and a per-group sequence number; the
  loader splits a blocking collective into the wait for the last rank to arrive (idle) and
  the transfer (comm), from the ranks' aligned clocks
  (:func:`gpuviz.run.intervals.split_waits`); an asynchronous one (``async_op=True``, as
  FSDP2 issues them) is recorded as it is issued, and its wait falls in what the caller
  does next;
- DDP's gradient buckets on the comm lane: in a CPU job on gloo, a DDP made with no process
  group of its own gets :mod:`gpuviz.run.native_buckets`' group, which records them in
  compiled code, and no hook; otherwise (``GPUVIZ_NATIVE_BUCKETS=0``, NCCL, no compiler)
  :func:`gpuviz.run.trace.ddp_comm_hook`, registered at a DDP module's first forward unless
  the script registered a hook of its own.

Spans a script adds itself (``trace.span``) nest inside these. Nothing is recorded when no
tracer runs.

>>> uninstall = install()
>>> uninstall()
"""

from __future__ import annotations

import functools
import importlib
import threading
import weakref

from gpuviz.run import native_buckets
from gpuviz.run.comm import ddp_comm_hook
from gpuviz.run.tracer import get_tracer as _any_tracer
from gpuviz.run.tracer import span

#: The torch.distributed calls recorded, and whether each is a collective (all ranks of the
#: group take part: its wait can be split off) or point-to-point.
CALLS = {"all_reduce": True, "all_gather": True, "all_gather_into_tensor": True,
         "all_gather_single": True, "reduce_scatter": True, "reduce_scatter_tensor": True,
         "reduce_scatter_single": True, "broadcast": True,
         "reduce": True, "all_to_all": True, "all_to_all_single": True, "barrier": True,
         "gather": True, "scatter": True, "send": False, "recv": False, "isend": False,
         "irecv": False}

_local = threading.local()


def get_tracer():
    """The running tracer once its clock is aligned (before that, times mean nothing)."""
    t = _any_tracer()
    return t if t is not None and t.started and not t.closed else None


def _nbytes(obj) -> int:
    """Bytes of the tensors in ``obj`` (a tensor, or a list of them)."""
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o) for o in obj)
    return 0


def _traced_call(name: str, fn, collective: bool, dist):
    seq: dict = {}

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        if get_tracer() is None or getattr(_local, "in_call", False):
            return fn(*args, **kwargs)
        group = kwargs.get("group")
        try:
            ranks = tuple(dist.get_process_group_ranks(group)) if group is not None else None
        except (RuntimeError, ValueError):
            ranks = None
        key = ranks or "world"
        seq[key] = n = seq.get(key, 0) + 1
        nbytes = max([_nbytes(a) for a in (*args, *kwargs.values())] or [0])
        asynchronous = bool(kwargs.get("async_op")) or name in ("isend", "irecv")
        _local.in_call = True
        try:
            with span(name, cat="comm", bytes=nbytes, auto=True, seq=n,
                      group=list(ranks) if ranks else None,
                      collective=collective and not asynchronous, async_op=asynchronous):
                return fn(*args, **kwargs)
        finally:
            _local.in_call = False

    traced._gpuviz_original = fn
    return traced


def _bucket_hook():
    """A DDP module's comm hook: :func:`ddp_comm_hook`, its spans marked as automatic
    collectives with a sequence number, so the loader can split off the wait for the last
    rank (every rank launches the same buckets in the same order)."""
    count = [0]

    def hook(state, bucket):
        count[0] += 1
        return ddp_comm_hook(state, bucket, auto=True, collective=True, seq=count[0])

    return hook


def install() -> callable:
    """Put every hook in place; returns the function that takes them all away again."""
    import torch
    import torch.distributed as dist
    import torch.distributed.distributed_c10d as c10d
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import dataloader

    optim = importlib.import_module("torch.optim.optimizer")
    undo = []
    hooked: weakref.WeakSet = weakref.WeakSet()   # DDP modules given our comm hook

    # A DDP reducer with a Python comm hook that outlives its process group hangs in gloo's
    # destructor; a script that destroys the group before its model is freed would meet
    # that, so the reducers we hooked go first (the module cannot be used after it anyway).
    destroy = dist.destroy_process_group

    @functools.wraps(destroy)
    def destroy_process_group(*args, **kwargs):
        if not args and kwargs.get("group") is None:
            for m in list(hooked):
                m.reducer = None
        return destroy(*args, **kwargs)

    for mod in (dist, c10d):
        mod.destroy_process_group = destroy_process_group
        undo.append(functools.partial(setattr, mod, "destroy_process_group", destroy))

    # -- DDP's buckets in compiled code where it can: the group is given at construction ------
    ddp_init = DistributedDataParallel.__init__

    @functools.wraps(ddp_init)
    def traced_ddp_init(self, module, *args, **kwargs):
        t = get_tracer()
        group = None
        if (t is not None and len(args) < 6 and kwargs.get("process_group") is None
                and native_buckets.enabled()):   # process_group: the 6th after the module
            group = native_buckets.bucket_group(t, automatic=True)
            if group is not None:
                kwargs["process_group"] = group
        ddp_init(self, module, *args, **kwargs)
        if group is not None:
            self._gpuviz_hooked = True   # the group records its buckets: no comm hook

    DistributedDataParallel.__init__ = traced_ddp_init
    undo.append(lambda: setattr(DistributedDataParallel, "__init__", ddp_init))

    # -- forward: the outermost module call. Module.__call__ wrapped: one check per call;
    # torch's global module hooks would put every module's call on its slow path ----------
    call = nn.Module.__call__
    # torch's __call__ (_wrapped_call_impl) picks the compiled or the plain implementation;
    # doing that here, the wrapper adds no frame to the calls it passes on (the inner ones)
    known = call is getattr(nn.Module, "_wrapped_call_impl", None)

    @functools.wraps(call)
    def traced_call(self, *args, **kwargs):
        if getattr(_local, "depth", 0) or get_tracer() is None:
            if known:
                impl = self._compiled_call_impl
                return (self._call_impl if impl is None else impl)(*args, **kwargs)
            return call(self, *args, **kwargs)
        if (isinstance(self, DistributedDataParallel) and not self._comm_hooks
                and not getattr(self, "_gpuviz_hooked", False)):
            self.register_comm_hook(None, _bucket_hook())
            self._gpuviz_hooked = True
            hooked.add(self)
        _local.depth = 1
        try:
            with span("forward", cat="compute", module=type(self).__name__):
                return call(self, *args, **kwargs)
        finally:
            _local.depth = 0

    nn.Module.__call__ = traced_call
    undo.append(lambda: setattr(nn.Module, "__call__", call))

    # -- backward ----------------------------------------------------------------------------
    backward = torch.Tensor.backward

    @functools.wraps(backward)
    def traced_backward(self, *args, **kwargs):
        if get_tracer() is None:
            return backward(self, *args, **kwargs)
        with span("backward", cat="compute", auto=True):
            return backward(self, *args, **kwargs)

    torch.Tensor.backward = traced_backward
    undo.append(lambda: setattr(torch.Tensor, "backward", backward))

    # -- optimizer step, and the end of the step ---------------------------------------------
    # first: the optimizer that ends steps (weakly held: once it is gone, the next to step does)
    state = {"first": None, "steps": None}

    def pre_step(optimizer, args, kwargs):
        if get_tracer() is not None:
            s = span("optimizer step", cat="optimizer", optimizer=type(optimizer).__name__)
            s.__enter__()
            optimizer._gpuviz_span = s

    def post_step(optimizer, args, kwargs):
        s = getattr(optimizer, "_gpuviz_span", None)
        if s is not None:
            optimizer._gpuviz_span = None
            s.__exit__(None, None, None)
        t = get_tracer()
        if t is None:
            return
        first = state["first"]
        if first is None or first() is None:
            state["first"] = first = weakref.ref(optimizer)
        # the first optimizer ends the step, unless the script ends steps itself
        if first() is optimizer and state["steps"] in (None, t.step_index):
            t.step()
            state["steps"] = t.step_index

    undo.append(optim.register_optimizer_step_pre_hook(pre_step).remove)
    undo.append(optim.register_optimizer_step_post_hook(post_step).remove)

    # -- data loading --------------------------------------------------------------------------
    next_batch = dataloader._BaseDataLoaderIter.__next__

    @functools.wraps(next_batch)
    def traced_next(self):
        if get_tracer() is None:
            return next_batch(self)
        with span("load batch", cat="data"):
            return next_batch(self)

    dataloader._BaseDataLoaderIter.__next__ = traced_next
    undo.append(lambda: setattr(dataloader._BaseDataLoaderIter, "__next__", next_batch))

    # an epoch's iterator: worker processes started (or, persistent, reset) and batches
    # requested ahead, before the first batch is asked for
    new_epoch = dataloader.DataLoader.__iter__

    @functools.wraps(new_epoch)
    def traced_iter(self):
        if get_tracer() is None:
            return new_epoch(self)
        with span("start loader", cat="data", workers=self.num_workers):
            return new_epoch(self)

    dataloader.DataLoader.__iter__ = traced_iter
    undo.append(lambda: setattr(dataloader.DataLoader, "__iter__", new_epoch))

    # -- communication: the torch.distributed names scripts and libraries call (FSDP2 too);
    # torch's own calls inside distributed_c10d keep the originals ---------------------------
    for name, collective in CALLS.items():
        fn = getattr(dist, name, None)
        if fn is None or hasattr(fn, "_gpuviz_original"):
            continue
        setattr(dist, name, _traced_call(name, fn, collective, dist))
        undo.append(functools.partial(setattr, dist, name, fn))

    def uninstall() -> None:
        for f in reversed(undo):
            f()

    return uninstall
