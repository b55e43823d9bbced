"""What every parallel strategy offers, and the single-process training they must equal.

A strategy is built on every rank from the same full model (the same ``seed``) and owns
its optimizer, because sharding the optimizer is part of what a strategy decides:

    strategy.train_step(x, y) -> float     # x, y: the step's *global* batch, the same on
                                           # every rank; returns the global mean loss
    strategy.full_parameters() -> dict     # name -> full tensor, named as in the model's
                                           # named_parameters(); a collective: every rank calls it
    strategy.memory() -> dict              # bytes this rank held in the last step: params,
                                           # grads, optimizer, activations (tensor accounting:
                                           # after the optimizer step, before grads are freed)

Every strategy uses the same optimizer, :func:`adam` (Adam, Kingma & Ba 2015, no weight
decay, no clipping), so its losses and final parameters can be compared with
:class:`SingleProcess`, which trains the whole model on the whole batch in one process.

>>> from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData
>>> cfg = GPTConfig(layers=2, dim=32, seq_len=16, vocab=32)
>>> ref = SingleProcess(GPT(cfg, seed=0))
>>> data = TokenData(cfg.vocab, cfg.seq_len)
>>> losses = [ref.train_step(*data.batch(step, 8)) for step in range(3)]
>>> losses[-1] < losses[0], sorted(ref.memory())
(True, ['activations', 'grads', 'optimizer', 'params'])
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from gpuviz.run import trace
from gpuviz.workloads.gpt import lm_loss

#: Learning rate every strategy uses unless told otherwise.
LR = 3e-3


def adam(params: Iterable[torch.Tensor], lr: float = LR) -> torch.optim.Adam:
    """The optimizer of every strategy: Adam with torch's defaults (betas 0.9, 0.999)."""
    return torch.optim.Adam(params, lr=lr, foreach=False)


def tensor_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    """Bytes held by ``tensors`` (``None`` counts 0), each storage counted once.

    >>> tensor_bytes([torch.zeros(10), None, torch.zeros(2, dtype=torch.float64)])
    56
    """
    seen, total = set(), 0
    for t in tensors:
        if t is None:
            continue
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key[0] and key in seen:
            continue
        seen.add(key)
        total += t.untyped_storage().nbytes()
    return total


def optimizer_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state tensors (Adam: two moments per parameter, and steps)."""
    return tensor_bytes(v for state in opt.state.values() for v in state.values()
                        if isinstance(v, torch.Tensor))


def local_batch(x: torch.Tensor, y: torch.Tensor, rank: int, world: int,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's equal slice of the global batch (data parallelism splits the batch).

    >>> xs, ys = local_batch(torch.arange(8), torch.arange(8), rank=1, world=4)
    >>> xs.tolist()
    [2, 3]
    """
    n = x.shape[0]
    if n < world or n % world:
        raise ValueError(f"batch={n} cannot be split evenly over {world} ranks: give a global "
                         f"batch that is a multiple of the world size (e.g. {world * max(1, n // world)})")
    per = n // world
    return x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]


def global_mean_loss(loss: torch.Tensor, group=None) -> float:
    """The mean of every rank's loss (a traced all-reduce): with equal slices of the batch,
    the loss of the whole global batch."""
    import torch.distributed as dist

    total = loss.detach().clone()
    with trace.span("all_reduce loss", cat="comm", bytes=total.element_size()):
        dist.all_reduce(total, group=group)
    return total.item() / dist.get_world_size(group)


def replica_difference(params: dict[str, torch.Tensor], group=None) -> float:
    """Largest difference between this rank's tensors and the first rank's (a collective):
    0.0 when every replica holds the same parameters, as data parallelism must."""
    import torch.distributed as dist

    src = dist.get_global_rank(group, 0) if group is not None else 0
    worst = 0.0
    for p in params.values():
        theirs = p.detach().clone()
        dist.broadcast(theirs, src=src, group=group)
        worst = max(worst, float((p.detach() - theirs).abs().max()))
    return worst


class ActivationMeter:
    """Counts the bytes autograd saves for backward inside the ``with`` block.

    Uses :func:`torch.autograd.graph.saved_tensors_hooks`; every storage counts once, and
    the storages of ``exclude`` (the parameters, which autograd saves too) not at all, nor
    any tensor for which ``skip(tensor)`` is true (for storages that do not exist yet when
    the meter is made, such as parameters gathered during forward).

    >>> lin = nn.Linear(4, 8)
    >>> with ActivationMeter(exclude=lin.parameters()) as meter:
    ...     lin(torch.ones(2, 4)).relu().sum()
    tensor(...)
    >>> meter.bytes                    # the input (2x4) and the relu output (2x8), float32
    96
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = (), skip=None):
        self._skip = {t.untyped_storage().data_ptr() for t in exclude}
        self._skip_if = skip
        self._seen: set[int] = set()
        self.bytes = 0

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if self._skip_if is not None and self._skip_if(t):
            return t
        if ptr not in self._skip and ptr not in self._seen:
            self._seen.add(ptr)
            self.bytes += t.untyped_storage().nbytes()
        return t

    def __enter__(self) -> ActivationMeter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


class SingleProcess:
    """The reference: the whole model, the whole global batch, one process.

    Traced like the parallel strategies (forward, backward, optimizer) when a tracer runs.
    """

    name = "single"

    def __init__(self, model: nn.Module, lr: float = LR):
        self.model = model
        self.opt = adam(model.parameters(), lr)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        with trace.span("forward"), ActivationMeter(self.model.parameters()) as meter:
            loss = lm_loss(self.model(x), y)
        with trace.span("backward"):
            loss.backward()
        with trace.span("optimizer step", cat="optimizer"):
            self.opt.step()
            params = list(self.model.parameters())
            # Measured here, where parameters, gradients and optimizer state all exist.
            self._memory = {"params": tensor_bytes(params),
                            "grads": tensor_bytes(p.grad for p in params),
                            "optimizer": optimizer_bytes(self.opt), "activations": meter.bytes}
            self.opt.zero_grad(set_to_none=True)
        return loss.item()

    def full_parameters(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def memory(self) -> dict[str, int]:
        """Bytes by kind in the last step, taken after the optimizer step (before the
        gradients are freed); activations are what the forward saved for backward."""
        return dict(self._memory)
