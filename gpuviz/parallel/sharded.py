"""A sharded optimizer for your own model: ZeRO stages 1 and 2 as a ``torch.optim.Optimizer``,
as PyTorch's ``ZeroRedundancyOptimizer`` is.

Rajbhandari et al. 2020, "ZeRO" (SC20). The trainable parameters of each parameter group
(and dtype) are laid end to end in one flat vector, zero-padded to divide by the number of
ranks; the parameters become views of it. Each rank owns a 1/N slice (its shard) and builds
the optimizer you name, with your arguments, over its shards only, so the optimizer's state
(Adam's two moments) is held once in total instead of once per rank. ``step()`` steps the
shards, then all-gathers the flat vectors, which writes every rank's new parameters into
the model.

- Stage 1 (``reduce_gradients=None``): the gradients arrive averaged, from
  :class:`~gpuviz.parallel.ddp.DataParallel`; each rank reads its slice (the full
  gradients stay until ``zero_grad``). ``reduce_gradients="all_reduce"``: the optimizer
  averages them itself, one all-reduce per flat vector (the data-parallel module then
  must not: ``DataParallel(net, sync_gradients=False)``).
- Stage 2 (``reduce_gradients="reduce_scatter"``): one reduce-scatter per flat vector, so
  each rank receives only its shard's sum and the full gradients are freed; again with
  ``DataParallel(net, sync_gradients=False)``.

Parameters with ``requires_grad=False`` are not in any shard and never change (an AdamW's
weight decay does not touch them). The optimizer must be elementwise (SGD, Adam, AdamW,
Adagrad, RMSprop...): on a slice it then computes that slice of the whole; one that looks
at a whole tensor (LAMB's trust ratio, Adafactor) would not. A parameter without a gradient
(``.grad is None``, as :class:`~gpuviz.parallel.ddp.DataParallel` leaves one that no rank
used) keeps its value, as torch's optimizers skip it, though its slice of the optimizer's
state sees a zero gradient; where the optimizer reduces the gradients itself, a missing
gradient counts as zero (and weight decay applies).

>>> import torch, torch.distributed as dist
>>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
>>> net = torch.nn.Linear(4, 2)
>>> opt = ShardedOptimizer(net.parameters(), torch.optim.AdamW, lr=0.1, weight_decay=0.01)
>>> net(torch.ones(3, 4)).sum().backward()
>>> opt.step(); opt.zero_grad()
>>> type(opt.optim).__name__, opt.param_groups[0]["weight_decay"]
('AdamW', 0.01)
>>> dist.destroy_process_group()
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gpuviz.parallel.ring import members
from gpuviz.run import trace

# torch 2.13 renamed the single-tensor collectives; older versions have only the old names.
all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def flatten(tensors, world: int) -> torch.Tensor:
    """The tensors end to end in one new vector, zero-padded to a multiple of ``world``."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    return F.pad(flat, (0, -flat.numel() % world))


def view_into(params, flat: torch.Tensor) -> None:
    """Make each parameter a view of its slice of ``flat``: they share memory from now on."""
    offset = 0
    for p in params:
        p.data = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()


def take_grads(params, world: int, dtype=None) -> torch.Tensor:
    """The parameters' gradients in one padded vector (zeros for a parameter that got
    none), in ``dtype``; the gradients themselves are dropped."""
    flat = flatten([torch.zeros_like(p) if p.grad is None else p.grad for p in params], world)
    for p in params:
        p.grad = None
    return flat if dtype is None else flat.to(dtype)


class Shard:
    """One flat vector of parameters (one group, one dtype) and this rank's slice of it."""

    def __init__(self, name: str, params: list[nn.Parameter], rank: int, world: int):
        self.name, self.params = name, params
        self.flat = flatten(params, world)
        view_into(params, self.flat)
        per = self.flat.numel() // world
        # A view: the optimizer's in-place update writes into the model's parameters.
        self.param = nn.Parameter(self.flat[rank * per:(rank + 1) * per])
        self.padding = self.flat.numel() - sum(p.numel() for p in params)

    @property
    def nbytes(self) -> int:
        return self.flat.numel() * self.flat.element_size()


class ShardedOptimizer(torch.optim.Optimizer):
    """``optimizer_cls(**defaults)`` over this rank's shard of ``params`` (see the module).

    ``params`` are parameters or parameter groups, as for any optimizer; ``group`` the ranks
    that share the state (default: all). ``self.optim`` is the optimizer of this rank's
    shards; ``self.shards`` the flat vectors. Changing a group's hyperparameters (an LR
    scheduler) reaches the shards at the next step.
    """

    def __init__(self, params, optimizer_cls: type[torch.optim.Optimizer], group=None,
                 reduce_gradients: str | None = None, **defaults):
        if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
            raise ValueError(f"optimizer_cls={optimizer_cls!r}: give an optimizer class, "
                             "e.g. torch.optim.AdamW")
        if reduce_gradients not in (None, "all_reduce", "reduce_scatter"):
            raise ValueError(f"reduce_gradients={reduce_gradients!r}: give None (averaged already, "
                             "by DataParallel), 'all_reduce' (ZeRO-1) or 'reduce_scatter' (ZeRO-2)")
        super().__init__(params, defaults)
        self.group, self.rank, self.world = members(group)
        self.reduce_gradients = reduce_gradients
        self.shards: list[Shard] = []
        self._of_group: list[list[int]] = []    # local group indices of each of our groups
        local = []
        for gi, g in enumerate(self.param_groups):
            trainable = [p for p in g["params"] if p.requires_grad]
            by_kind: dict = {}
            for p in trainable:
                by_kind.setdefault((p.dtype, p.device), []).append(p)
            idx = []
            for (dtype, _), ps in by_kind.items():
                shard = Shard(f"group {gi} {str(dtype).removeprefix('torch.')}", ps, self.rank, self.world)
                self.shards.append(shard)
                idx.append(len(local))
                local.append({**{k: v for k, v in g.items() if k != "params"}, "params": [shard.param]})
            self._of_group.append(idx)
        if not local:
            raise ValueError("params: no parameter requires a gradient; nothing to optimize")
        self.optim = optimizer_cls(local, **defaults)
        # Every hyperparameter the class fills in (betas, eps...) shows in our groups too.
        for g, idx in zip(self.param_groups, self._of_group, strict=True):
            if idx:
                g.update({k: v for k, v in self.optim.param_groups[idx[0]].items()
                          if k != "params" and k not in g})

    @torch.no_grad()
    def step(self, closure=None):
        """Reduce (stage 2) or read (stage 1) this rank's gradient shards, step the shards,
        then all-gather every flat vector into the model's parameters."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g, idx in zip(self.param_groups, self._of_group, strict=True):
            for i in idx:
                self.optim.param_groups[i].update({k: v for k, v in g.items() if k != "params"})
        # A parameter with no gradient (unused by the forward pass) is skipped by torch's
        # optimizers; in a flat shard it would step with a zero gradient (and decay): keep it.
        # (Only where the gradients came averaged: then every rank agrees which have none.)
        keep = [] if self.reduce_gradients else [
            (p, p.detach().clone()) for shard in self.shards for p in shard.params if p.grad is None]
        for shard in self.shards:
            self._shard_grad(shard)
        with trace.span("optimizer step", cat="optimizer"):
            self.optim.step()
        for shard in self.shards:
            with trace.span(f"all_gather params{self._label(shard)}", cat="comm", bytes=shard.nbytes):
                # a copy of the shard: the input must not be part of the output
                all_gather_single(shard.flat, shard.param.detach().clone(), group=self.group)
        for p, old in keep:
            p.copy_(old)
        return loss

    def _label(self, shard: Shard) -> str:
        return "" if len(self.shards) == 1 else f" {shard.name}"

    def _shard_grad(self, shard: Shard) -> None:
        lo, n = self.rank * shard.param.numel(), shard.param.numel()
        flat = take_grads(shard.params, self.world)
        nbytes = flat.numel() * flat.element_size()
        if self.reduce_gradients == "reduce_scatter":
            grad = torch.empty_like(shard.param)
            with trace.span(f"reduce_scatter grads{self._label(shard)}", cat="comm", bytes=nbytes):
                reduce_scatter_single(grad, flat, group=self.group)
            del flat   # the full gradient is gone: only this rank's shard is kept
            shard.param.grad = grad.div_(self.world)
            return
        if self.reduce_gradients == "all_reduce":
            with trace.span(f"all_reduce grads{self._label(shard)}", cat="comm", bytes=nbytes):
                dist.all_reduce(flat, group=self.group)
            flat.div_(self.world)
        shard.param.grad = flat[lo:lo + n]   # a view: stage 1 keeps the full gradient

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        self.optim.zero_grad(set_to_none)

    def state_bytes(self) -> int:
        """Bytes of this rank's optimizer state (its shards' only)."""
        return sum(v.numel() * v.element_size() for s in self.optim.state.values()
                   for v in s.values() if isinstance(v, torch.Tensor))
