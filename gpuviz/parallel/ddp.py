"""Data parallelism for your own model: an ``nn.Module`` wrapper, as PyTorch's
``DistributedDataParallel`` is.

Every rank holds the whole model; the wrapper broadcasts rank 0's parameters and buffers at
construction, so every replica starts the same, and averages the gradients during
backward: a ``post_accumulate_grad`` hook on each parameter counts the gradients ready in
its bucket and the last one launches the bucket's all-reduce (asynchronous), so it runs
while backward computes the earlier layers (Li et al. 2020, "PyTorch Distributed", VLDB).
``finish_gradient_synchronization()`` waits for them and puts the averages in each
parameter's ``.grad``; call it after ``loss.backward()`` and before the optimizer's step.

``bucket_size_mb=None`` gives one bucket per parameter (the naive version: many small
messages); a number packs parameters in reverse order into buckets of about that many MiB,
as DDP does (25 by default). ``overlap=False`` waits until
``finish_gradient_synchronization()`` to start any all-reduce (nothing hidden behind
backward); ``sync_gradients=False`` leaves the gradients to a sharded optimizer that
reduces them itself (``ShardedOptimizer(..., reduce_gradients=...)``, :mod:`gpuviz.parallel.sharded`). Parameters with ``requires_grad=False`` are left alone; a parameter shared by
two modules (tied weights) is one parameter, reduced once. A parameter the forward pass did
not use is an error, as in DDP, unless ``find_unused_parameters=True``: then its gradient
counts as zero on the ranks that did not use it, and one that no rank used keeps
``.grad = None`` (the optimizer skips it).

>>> import torch, torch.distributed as dist
>>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
>>> model = DataParallel(torch.nn.Linear(4, 2), bucket_size_mb=1)
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
>>> model(torch.ones(3, 4)).sum().backward()
>>> model.finish_gradient_synchronization()
>>> opt.step(); model.module.bias.grad.tolist()
[3.0, 3.0]
>>> dist.destroy_process_group()
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.distributed as dist
from torch import nn

from gpuviz.parallel.ring import members
from gpuviz.run import trace


class Bucket:
    """Parameters whose gradients are all-reduced together in one flat ``buffer``."""

    def __init__(self, index: int, params: list[nn.Parameter]):
        self.index, self.params = index, params
        self.buffer = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype,
                                  device=params[0].device)
        self.ready = 0          # gradients accumulated in this backward
        self.future = None      # the launched all-reduce, until it is waited for

    def views(self):
        offset = 0
        for p in self.params:
            yield p, self.buffer[offset:offset + p.numel()].view_as(p)
            offset += p.numel()

    @property
    def nbytes(self) -> int:
        return self.buffer.numel() * self.buffer.element_size()


def make_buckets(params: list[nn.Parameter], bucket_mb: float | None) -> list[Bucket]:
    """Pack ``params`` in reverse order (the order backward makes their gradients) into
    buckets: a bucket closes once it holds ``bucket_mb`` MiB or more, as DDP's
    ``compute_bucket_assignment_by_size`` does, or before a parameter of another dtype or
    device; ``None``: one bucket per parameter."""
    cap = math.inf if bucket_mb is None else bucket_mb * 2**20
    groups: list[list[nn.Parameter]] = []
    size = cap
    for p in reversed(params):
        if (bucket_mb is None or size >= cap or p.dtype != groups[-1][0].dtype
                or p.device != groups[-1][0].device):
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += p.numel() * p.element_size()
    return [Bucket(i, g) for i, g in enumerate(groups)]


def check_bucket_size(bucket_size_mb, name: str = "bucket_size_mb") -> float | None:
    if bucket_size_mb is None:
        return None
    if (isinstance(bucket_size_mb, bool) or not isinstance(bucket_size_mb, (int, float))
            or not math.isfinite(bucket_size_mb) or bucket_size_mb <= 0):
        raise ValueError(f"{name}={bucket_size_mb!r}: give the bucket size in MiB, a number "
                         "> 0 (PyTorch DDP uses 25)" + (", or None for one bucket per parameter"
                                                        if name == "bucket_size_mb" else ""))
    return float(bucket_size_mb)


class DataParallel(nn.Module):
    """``module`` replicated on every rank of ``group``, its gradients averaged over them.

    Use it as DDP: ``model = DataParallel(net)``; ``model(x)``; ``loss.backward()``;
    ``model.finish_gradient_synchronization()``; ``opt.step()``. The wrapped model is
    ``.module``; ``parameters()``, ``state_dict()`` and the rest are the module's (under
    ``module.``, as DDP's). Each all-reduce is traced as a comm-lane span.

    >>> DataParallel(nn.Linear(2, 2), bucket_size_mb=0)
    Traceback (most recent call last):
    ValueError: bucket_size_mb=0: give the bucket size in MiB, a number > 0 (PyTorch DDP uses 25), or None for one bucket per parameter
    """

    def __init__(self, module: nn.Module, bucket_size_mb: float | None = 25.0, group=None,
                 overlap: bool = True, broadcast: bool = True, sync_gradients: bool = True,
                 find_unused_parameters: bool = False):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"module={type(module).__name__}: give an nn.Module")
        for name, v in (("overlap", overlap), ("broadcast", broadcast), ("sync_gradients", sync_gradients),
                        ("find_unused_parameters", find_unused_parameters)):
            if not isinstance(v, bool):
                raise ValueError(f"{name}={v!r}: give True or False")
        self.module = module
        self.bucket_size_mb = check_bucket_size(bucket_size_mb)
        self.group, self.rank, self.world = members(group)
        self.overlap, self._sync, self._next = overlap, True, 0
        if broadcast:
            src = 0 if group is None else dist.get_global_rank(group, 0)
            with torch.no_grad():
                for t in [*module.parameters(), *module.buffers()]:
                    dist.broadcast(t.data, src=src, group=self.group)
        # Tied weights are one parameter: reduced once. sync_gradients=False: the optimizer
        # reduces them (ShardedOptimizer(..., reduce_gradients=...)).
        params = [p for p in module.parameters() if p.requires_grad and sync_gradients]
        self.buckets = make_buckets(params, self.bucket_size_mb) if params else []
        self._names = {id(p): n for n, p in module.named_parameters()}
        self.find_unused_parameters = find_unused_parameters
        for bucket in self.buckets:
            for p in bucket.params:
                p.register_post_accumulate_grad_hook(lambda _p, b=bucket: self._grad_ready(b))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Accumulate gradients locally (no communication) inside the block, as DDP's."""
        old, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = old

    def _grad_ready(self, bucket: Bucket) -> None:
        if not self._sync:
            return
        bucket.ready += 1
        if not self.overlap:
            return
        # Every rank must start the same all-reduces in the same order: buckets go in index
        # order, a ready bucket waiting for the ones before it (as DDP's reducer does).
        while (self._next < len(self.buckets)
               and self.buckets[self._next].ready == len(self.buckets[self._next].params)):
            self._launch(self.buckets[self._next])
            self._next += 1

    def _fill(self, bucket: Bucket) -> None:
        """The bucket's gradients (zeros where none), divided by the number of ranks."""
        for p, view in bucket.views():
            if p.grad is None:
                view.zero_()
            else:
                view.copy_(p.grad)
        bucket.buffer.div_(self.world)  # before the sum, as DDP's default hook does

    def _launch(self, bucket: Bucket) -> None:
        self._fill(bucket)
        bucket.future = traced_all_reduce(bucket.buffer, self.group, bucket.index)

    def finish_gradient_synchronization(self) -> None:
        """Wait for every bucket's all-reduce and put the averaged gradients in ``.grad``.

        Buckets not started during backward (a parameter without a gradient, or
        ``overlap=False``) are all-reduced now, in bucket order on every rank."""
        late = [b for b in self.buckets if b.ready < len(b.params)]
        if late and not self.find_unused_parameters:
            missing = [n for n, p in self.module.named_parameters()
                       if p.requires_grad and p.grad is None]
            raise RuntimeError(f"bucket {late[0].index} never became ready: parameters {missing} "
                               "got no gradient (unused in the forward pass); give "
                               "find_unused_parameters=True, as to PyTorch's DDP")
        used = self._used_anywhere() if self.find_unused_parameters else None
        if not self.overlap:
            self._reduce_now()
        for bucket in self.buckets:
            if bucket.future is None:
                self._launch(bucket)
        self._next = 0
        for bucket in self.buckets:
            bucket.future.wait()
            for p, view in bucket.views():
                if used is not None and not used[id(p)]:
                    p.grad = None                  # no rank computed one: as DDP leaves it
                elif p.grad is None:
                    p.grad = view.clone()
                else:
                    p.grad.copy_(view)
            bucket.future, bucket.ready = None, 0

    def _used_anywhere(self) -> dict[int, bool]:
        """Which parameters got a gradient on some rank: one small all-reduce of a 0/1 map
        (DDP's ``local_used_map``), needed only where parameters may go unused."""
        params = [p for b in self.buckets for p in b.params]
        flags = torch.tensor([float(p.grad is not None) for p in params])
        with trace.span("all_reduce used parameters", cat="comm", bytes=flags.numel() * 4):
            dist.all_reduce(flags, group=self.group)
        return {id(p): bool(f > 0) for p, f in zip(params, flags.tolist(), strict=True)}

    def _reduce_now(self) -> None:
        """``overlap=False``: after backward, one blocking all-reduce per bucket, traced on
        the main thread after a barrier that takes the wait for the slowest rank."""
        with trace.span("wait for others", cat="idle"):
            dist.barrier(group=self.group)
        for bucket in self.buckets:
            self._fill(bucket)
            label = (self._names.get(id(bucket.params[0]), "?") if len(bucket.params) == 1
                     else f"bucket {bucket.index}")
            with trace.span(f"all_reduce {label}", cat="comm", bytes=bucket.nbytes):
                dist.all_reduce(bucket.buffer, group=self.group)
            bucket.future = _Done()

    @property
    def comm_bytes(self) -> int:
        """Bytes of the buckets' buffers (the communication memory DDP adds)."""
        return sum(b.nbytes for b in self.buckets)


class _Done:
    """A finished all-reduce (the blocking kind)."""

    def wait(self) -> None:
        return None


def traced_all_reduce(buffer: torch.Tensor, group, index: int):
    """Launch an async all-reduce of ``buffer``; a future that completes after it is traced
    as one comm-lane span from launch to completion (as :func:`gpuviz.run.trace.ddp_comm_hook`)."""
    t = trace.get_tracer()
    if t is None:
        return dist.all_reduce(buffer, group=group, async_op=True).get_future()
    name, nbytes, step = f"all_reduce bucket {index}", buffer.numel() * buffer.element_size(), t.step_index
    start_ev = t.cuda_event() if t.cuda else None
    t0 = t.now()
    fut = dist.all_reduce(buffer, group=group, async_op=True).get_future()

    def done(f):
        if t.cuda:
            event = {"ph": "X", "name": name, "cat": "comm", "ts": 0.0, "dur": 0.0, "pid": t.rank,
                     "tid": trace.COMM_LANE, "args": {"step": step, "bytes": nbytes, "bucket": index}}
            t.complete_cuda(start_ev, t.cuda_event(), event)
        else:
            t.complete(name, "comm", t0, t.now() - t0, lane=trace.COMM_LANE, step=step,
                       bytes=nbytes, bucket=index)
        return f.value()

    return fut.then(done)
