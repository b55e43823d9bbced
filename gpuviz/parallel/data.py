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
``data_parallel.py``), are built on :class:`gpuviz.parallel.ddp.DataParallel` (the wrapper
for your own model and loop) and need a process group; ``tests/scripts/verify_data.py`` checks
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

import torch
from torch import nn

from gpuviz.parallel.ddp import Bucket, DataParallel, check_bucket_size, make_buckets  # noqa: F401
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
    after the whole backward pass (``DataParallel(model, bucket_size_mb=None, overlap=False)``).
    Not used in practice, but the starting point.

    ``group``: the ranks that replicate the model (default: all).
    """

    name = "naive_dp"

    def __init__(self, model: nn.Module, group=None, lr: float = LR):
        self.group, self.rank, self.world = members(group)
        self.model = model
        self.dp = self._wrap(model, group)
        self.opt = adam(model.parameters(), lr)
        self._memory: dict[str, int] | None = None

    def _wrap(self, model, group) -> DataParallel:
        return DataParallel(model, bucket_size_mb=None, group=group, overlap=False)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        x, y = local_batch(x, y, self.rank, self.world)
        with trace.span("forward"), ActivationMeter(self.model.parameters()) as meter:
            loss = lm_loss(self.dp(x), y)
        self.backward(loss)
        with trace.span("optimizer step", cat="optimizer"):
            self.opt.step()
            self._memory = self._measure(meter.bytes)
            self.opt.zero_grad(set_to_none=True)
        return global_mean_loss(loss, self.group)

    def backward(self, loss: torch.Tensor) -> None:
        """Local gradients, then each averaged over the ranks (a sum divided by ``world``):
        a barrier takes the wait for the slowest rank, then one all-reduce per parameter."""
        with trace.span("backward"):
            loss.backward()
        self.dp.finish_gradient_synchronization()

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


class BucketDataParallel(NaiveDataParallel):
    """Bucketed, overlapped data parallelism: PyTorch DDP's design (Li et al. 2020), as
    ``DataParallel(model, bucket_size_mb=bucket_mb)``.

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
        self.bucket_mb = check_bucket_size(bucket_mb if bucket_mb is not None else 0, "bucket_mb")
        super().__init__(model, group, lr)
        self.buckets = self.dp.buckets

    def _wrap(self, model, group) -> DataParallel:
        return DataParallel(model, bucket_size_mb=self.bucket_mb, group=group)

    def backward(self, loss: torch.Tensor) -> None:
        with trace.span("backward"):
            loss.backward()  # the hooks launch the buckets' all-reduces on the way
        with trace.span("wait for gradient buckets", cat="comm"):
            self.dp.finish_gradient_synchronization()

    def _measure(self, activations: int) -> dict[str, int]:
        return {**super()._measure(activations), "comm buffers": self.dp.comm_bytes}
