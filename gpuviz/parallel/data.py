"""Data parallelism from scratch: every rank holds the whole model and trains on its slice.

Each rank takes ``1/world`` of the global batch, computes gradients on it, and the ranks
average their gradients before the same optimizer step, so the replicas stay identical
and compute what one process computes on the whole batch (:class:`SingleProcess`).

- :class:`NaiveDataParallel`: after backward, one all-reduce per parameter; simple,
  but every message is small and none of them overlaps the backward pass.
- :class:`BucketDataParallel`: what PyTorch's ``DistributedDataParallel`` does (Li et al.
  2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training", VLDB):
  gradients packed into buckets of about ``bucket_mb`` MiB, each all-reduced
  asynchronously as soon as its last gradient is ready, while backward goes on.

Both follow the contract of :mod:`gpuviz.parallel.strategy` (after picotron's
``data_parallel.py``) and need a process group; ``tests/scripts/verify_data.py`` checks
them against the reference and torch's ``DistributedDataParallel`` on 2 and 4 ranks.
On one rank they compute exactly what the reference computes:

>>> import torch.distributed as dist
>>> from gpuviz.parallel.strategy import SingleProcess
>>> from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData
>>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
>>> cfg = GPTConfig(layers=2, dim=32, seq_len=16, vocab=32)
>>> data = TokenData(cfg.vocab, cfg.seq_len)
>>> ddp, ref = BucketDataParallel(GPT(cfg), bucket_mb=0.02), SingleProcess(GPT(cfg))
>>> len(ddp.buckets)
5
>>> for step in range(3):
...     x, y = data.batch(step, 8)
...     assert ddp.train_step(x, y) == ref.train_step(x, y)
>>> theirs = ref.full_parameters()
>>> all(torch.equal(p, theirs[n]) for n, p in ddp.full_parameters().items())
True
>>> dist.destroy_process_group()
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn

from gpuviz.parallel.ring import members
from gpuviz.parallel.strategy import (
    LR,
    ActivationMeter,
    adam,
    global_mean_loss,
    local_batch,
    optimizer_bytes,
    tensor_bytes,
)
from gpuviz.run import trace
from gpuviz.workloads.gpt import lm_loss


class NaiveDataParallel:
    """Data parallelism, simplest version: all-reduce every gradient, one parameter at a time,
    after the whole backward pass. Not used in practice, but the starting point.

    ``group``: the ranks that replicate the model (default: all).
    """

    name = "naive_dp"

    def __init__(self, model: nn.Module, group=None, lr: float = LR):
        self.group, self.rank, self.world = members(group)
        self.model = model
        self.opt = adam(model.parameters(), lr)
        self._memory: dict[str, int] | None = None

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        x, y = local_batch(x, y, self.rank, self.world)
        with trace.span("forward"), ActivationMeter(self.model.parameters()) as meter:
            loss = lm_loss(self.model(x), y)
        self.backward(loss)
        with trace.span("optimizer step", cat="optimizer"):
            self.opt.step()
            self._memory = self._measure(meter.bytes)
            self.opt.zero_grad(set_to_none=True)
        return self._global_mean(loss)

    def backward(self, loss: torch.Tensor) -> None:
        """Local gradients, then each averaged over the ranks (a sum divided by ``world``)."""
        with trace.span("backward"):
            loss.backward()
        # The barrier takes the wait for the slowest rank, so the spans below are transfers.
        with trace.span("wait for others", cat="idle"):
            dist.barrier(group=self.group)
        for name, p in self.model.named_parameters():
            if p.grad is None:
                continue
            with trace.span(f"all_reduce {name}", cat="comm", bytes=tensor_bytes([p.grad])):
                dist.all_reduce(p.grad, group=self.group)
            p.grad.div_(self.world)

    def _global_mean(self, loss: torch.Tensor) -> float:
        """Every rank's slice has the same size, so the global mean is the mean of means."""
        return global_mean_loss(loss, self.group)

    def _measure(self, activations: int) -> dict[str, int]:
        params = list(self.model.parameters())
        return {"params": tensor_bytes(params), "grads": tensor_bytes(p.grad for p in params),
                "optimizer": optimizer_bytes(self.opt), "activations": activations}

    def full_parameters(self) -> dict[str, torch.Tensor]:
        """The model's parameters; every rank holds them whole, so nothing is sent."""
        return {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def memory(self) -> dict[str, int]:
        """Bytes by kind in the last step, taken after the optimizer step (before the
        gradients are freed); activations are what this rank's forward saved for backward."""
        if self._memory is None:
            raise RuntimeError("memory() is measured during a step: call train_step first")
        return dict(self._memory)


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


def make_buckets(params: list[nn.Parameter], bucket_mb: float) -> list[Bucket]:
    """Pack ``params`` in reverse order (the order backward makes their gradients) into
    buckets: a bucket closes once it holds ``bucket_mb`` MiB or more, as DDP's
    ``compute_bucket_assignment_by_size`` does, or before a parameter of another dtype."""
    cap = bucket_mb * 2**20
    groups: list[list[nn.Parameter]] = []
    size = cap
    for p in reversed(params):
        if size >= cap or p.dtype != groups[-1][0].dtype or p.device != groups[-1][0].device:
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += p.numel() * p.element_size()
    return [Bucket(i, g) for i, g in enumerate(groups)]


class BucketDataParallel(NaiveDataParallel):
    """Bucketed, overlapped data parallelism: PyTorch DDP's design (Li et al. 2020).

    A ``register_post_accumulate_grad_hook`` on each parameter counts the gradients ready
    in its bucket; the last one copies them into the bucket's flat buffer and launches an
    async all-reduce, which runs while backward computes the earlier layers. After
    backward, the rank waits for every bucket (the communication it did not hide) and
    copies the averaged gradients back.

    >>> BucketDataParallel(nn.Linear(2, 2), bucket_mb=0)
    Traceback (most recent call last):
    ValueError: bucket_mb=0: give the bucket size in MiB, a number > 0 (PyTorch DDP uses 25)
    """

    name = "ddp"

    def __init__(self, model: nn.Module, bucket_mb: float = 1.0, group=None, lr: float = LR):
        if (isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float))
                or not math.isfinite(bucket_mb) or bucket_mb <= 0):
            raise ValueError(f"bucket_mb={bucket_mb!r}: give the bucket size in MiB, "
                             "a number > 0 (PyTorch DDP uses 25)")
        super().__init__(model, group, lr)
        self.buckets = make_buckets([p for p in model.parameters() if p.requires_grad], bucket_mb)
        for bucket in self.buckets:
            for p in bucket.params:
                p.register_post_accumulate_grad_hook(lambda _p, b=bucket: self._grad_ready(b))

    def _grad_ready(self, bucket: Bucket) -> None:
        bucket.ready += 1
        if bucket.ready == len(bucket.params):
            for p, view in bucket.views():
                view.copy_(p.grad)
            bucket.buffer.div_(self.world)  # before the sum, as DDP's default hook does
            bucket.future = _traced_all_reduce(bucket.buffer, self.group, bucket.index)

    def backward(self, loss: torch.Tensor) -> None:
        for bucket in self.buckets:
            bucket.ready, bucket.future = 0, None
        with trace.span("backward"):
            loss.backward()  # the hooks launch the buckets' all-reduces on the way
        with trace.span("wait for gradient buckets", cat="comm"):
            for bucket in self.buckets:
                if bucket.future is None:
                    missing = [n for n, p in self.model.named_parameters()
                               if any(p is q for q in bucket.params) and p.grad is None]
                    raise RuntimeError(f"bucket {bucket.index} never became ready: parameters "
                                       f"{missing} got no gradient (unused in the forward pass)")
                bucket.future.wait()
                for p, view in bucket.views():
                    p.grad.copy_(view)
                bucket.future = None

    def _measure(self, activations: int) -> dict[str, int]:
        return {**super()._measure(activations),
                "comm buffers": tensor_bytes(b.buffer for b in self.buckets)}


def _traced_all_reduce(buffer: torch.Tensor, group, index: int):
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
