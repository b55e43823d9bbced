"""ZeRO: data parallelism whose model state is cut in shards, one per rank.

Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter
Models" (SC20). Plain data parallelism keeps parameters, gradients and Adam's two moments
on every rank, (4 + 4 + 8) bytes per parameter in float32; ZeRO keeps one copy in total,
in N shards, and moves each piece to where it is needed:

- stage 1: gradients all-reduced in full; each rank keeps Adam's state only for its 1/N
  shard of the flat parameter vector, updates that shard, then all-gathers the parameters;
- stage 2: gradients reduce-scattered, each rank keeps only its gradient shard (the full
  gradient is freed once reduced); then as stage 1;
- stage 3 (FSDP: Zhao et al. 2023, "PyTorch FSDP", VLDB): parameters sharded too, per
  unit: each module of ``model.blocks``, and the root for the rest (FSDP2's ``fully_shard``
  per block and on the root). A unit is all-gathered just before its forward and freed
  after it (the root stays, as in FSDP2), gathered again before its backward, and its
  gradients reduce-scattered once all are computed. Adam steps on the local shards only.

Adam is elementwise, so Adam on a shard is that slice of Adam on the whole: every stage
trains what :class:`~gpuviz.parallel.strategy.SingleProcess` trains, up to float32
rounding of the gradient sums. Flat vectors are zero-padded to divide by N (the padding
gets zero gradients and stays zero). Simplest versions: every collective is synchronous,
no prefetching, no buckets. Parameters with ``requires_grad=False`` are in no shard and
never change.

The strategies are built on the pieces you can use on your own model and loop: stages 1
and 2 on :class:`~gpuviz.parallel.sharded.ShardedOptimizer` (any optimizer class, with
its arguments) beside :class:`~gpuviz.parallel.ddp.DataParallel`; stage 3 on
:func:`~gpuviz.parallel.fsdp.fully_shard` (module hooks, a hook on each unit's outputs'
gradients, and a post-accumulate-grad hook per parameter).

Collectives: ``all_gather_single`` / ``reduce_scatter_single`` (torch 2.13's names for
``all_gather_into_tensor`` / ``reduce_scatter_tensor``); a span's ``bytes`` is the full
vector's size (nccl-tests' S). gloo has both, but its reduce-scatter is an all-reduce of
the whole vector and a copy of this rank's slice (``reduce_scatter_tensor_coalesced`` in
torch/csrc/distributed/c10d/ProcessGroupGloo.cpp): on CPU it moves what an all-reduce
moves, NCCL's half. ``tests/scripts/verify_zero.py`` checks every stage against the
reference, torch's ``ZeroRedundancyOptimizer`` and FSDP2 on 2 and 4 ranks.

On one rank every stage computes exactly what the reference computes:

>>> import torch.distributed as dist
>>> from gpuviz.parallel.strategy import SingleProcess
>>> from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData
>>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
>>> cfg = GPTConfig(layers=2, dim=32, seq_len=16, vocab=32)
>>> data = TokenData(cfg.vocab, cfg.seq_len)
>>> ref, zero = SingleProcess(GPT(cfg)), [ZeRO(GPT(cfg), stage) for stage in (1, 2, 3)]
>>> for step in range(3):
...     x, y = data.batch(step, 8)
...     loss = ref.train_step(x, y)
...     assert all(z.train_step(x, y) == loss for z in zero)
>>> theirs = ref.full_parameters()
>>> all(torch.equal(p, theirs[n]) for z in zero for n, p in z.full_parameters().items())
True
>>> sorted(zero[2].memory())
['activations', 'gathered params', 'grads', 'optimizer', 'params']

A frozen parameter is left alone, even by AdamW's weight decay:

>>> model = GPT(cfg)
>>> model.head.bias = nn.Parameter(torch.full((cfg.vocab,), 2.0), requires_grad=False)
>>> z = ZeRO(model, 1, optimizer_cls=torch.optim.AdamW, weight_decay=0.1)
>>> for step in range(3):
...     _ = z.train_step(*data.batch(step, 8))
>>> model.head.bias.unique().tolist()
[2.0]
>>> dist.destroy_process_group()
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from gpuviz.parallel.ddp import DataParallel
from gpuviz.parallel.fsdp import fully_shard
from gpuviz.parallel.ring import members
from gpuviz.parallel.sharded import ShardedOptimizer
from gpuviz.parallel.strategy import (
    LR,
    ActivationMeter,
    global_mean_loss,
    local_batch,
    optimizer_bytes,
    tensor_bytes,
)
from gpuviz.run import trace
from gpuviz.workloads.gpt import lm_loss


def zero_memory(n_params, world: int, stage: int, param_bytes=4, grad_bytes=4,
                optim_bytes=8) -> dict[str, float]:
    """Model-state bytes per rank under ZeRO ``stage`` (0 is plain data parallelism).

    The paper's formula (Rajbhandari et al. 2020, Figure 1) with Ψ =
    ``n_params``, N = ``world`` and p, g, o bytes per parameter: stage 0 (p+g+o)Ψ;
    1: (p+g)Ψ + oΨ/N; 2: pΨ + (g+o)Ψ/N; 3: (p+g+o)Ψ/N. The paper's Figure 1 is mixed
    precision Adam, p = g = 2 and o = K = 12 (float32 master weights and two moments);
    the defaults are our float32 Adam, 4 + 4 + 8. Activations are not model state.

    Figure 1's example, a 7.5 B parameter model on 64 GPUs (120, 31.4, 16.6, 1.9 GB):

    >>> [round(zero_memory(7.5e9, 64, s, 2, 2, 12)["total"] / 1e9, 1) for s in range(4)]
    [120.0, 31.4, 16.6, 1.9]
    >>> zero_memory(1000, 4, stage=2)
    {'params': 4000.0, 'grads': 1000.0, 'optimizer': 2000.0, 'total': 7000.0}
    """
    if isinstance(n_params, bool) or not isinstance(n_params, (int, float)) or not n_params > 0:
        raise ValueError(f"n_params={n_params!r}: give the number of parameters, a number > 0")
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"world={world!r}: the number of ranks must be an integer >= 1")
    if isinstance(stage, bool) or not isinstance(stage, int) or stage not in (0, 1, 2, 3):
        raise ValueError(f"stage={stage!r}: ZeRO stages are 0 (none), 1, 2 and 3")
    for name, b in (("param_bytes", param_bytes), ("grad_bytes", grad_bytes),
                    ("optim_bytes", optim_bytes)):
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b >= 0:
            raise ValueError(f"{name}={b!r}: bytes per parameter must be a number >= 0")
    shard = n_params / world
    p = param_bytes * (shard if stage >= 3 else n_params)
    g = grad_bytes * (shard if stage >= 2 else n_params)
    o = optim_bytes * (shard if stage >= 1 else n_params)
    return {"params": float(p), "grads": float(g), "optimizer": float(o), "total": float(p + g + o)}


def _gathered_now(units):
    """A test for :class:`ActivationMeter`'s ``skip``: is this tensor a gathered unit's
    parameters? (Stage 3 gathers into fresh memory each time, so no list made in advance
    can name them.)"""
    def skip(t: torch.Tensor) -> bool:
        ptr = t.untyped_storage().data_ptr()
        return any(pc.gathered and ptr == pc.full.untyped_storage().data_ptr()
                   for u in units for pc in u.pieces)

    return skip


class ZeRO:
    """Data parallelism with ZeRO ``stage`` 1, 2 or 3 sharding (see the module docstring).

    Follows the contract of :mod:`gpuviz.parallel.strategy`; needs a process group.
    ``group``: the ranks that share the model state (default: all). The optimizer is Adam
    (:func:`~gpuviz.parallel.strategy.adam`) unless ``optimizer_cls`` (and its keyword
    arguments) say otherwise. ``padding``: zeros added so the flat vectors divide by the
    world size. ``memory()`` has, in stage 3, ``"gathered params"`` too: the most full
    parameters held at one time in the last step.
    """

    def __init__(self, model: nn.Module, stage: int, group=None, lr: float = LR,
                 optimizer_cls: type[torch.optim.Optimizer] | None = None, **optimizer_kwargs):
        if isinstance(stage, bool) or not isinstance(stage, int) or stage not in (1, 2, 3):
            raise ValueError(f"stage={stage!r}: ZeRO stages are 1 (optimizer state), "
                             "2 (and gradients) and 3 (and parameters)")
        if not isinstance(model, nn.Module) or not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"model={type(model).__name__}: give an nn.Module with trainable parameters")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr={lr!r}: the learning rate must be a number > 0")
        self.group, self.rank, self.world = members(group)
        self.stage, self.name, self.model = stage, f"zero{stage}", model
        self.names = {id(p): n for n, p in model.named_parameters()}
        self._memory: dict[str, int] | None = None
        opt_cls = optimizer_cls or torch.optim.Adam
        kwargs = {"lr": lr, **({"foreach": False} if optimizer_cls is None else {}), **optimizer_kwargs}
        if stage < 3:
            self.dp = DataParallel(model, group=group, sync_gradients=False)
            self.opt = ShardedOptimizer(model.parameters(), opt_cls, group=group,
                                        reduce_gradients="all_reduce" if stage == 1 else "reduce_scatter",
                                        **kwargs)
            self.shards = self.opt.shards
            self.flat = self.shards[0].flat if len(self.shards) == 1 else None
            self.padding = sum(s.padding for s in self.shards)
            self.shard_optimizer = self.opt.optim
            return
        blocks = list(getattr(model, "blocks", None) or [])
        self.fsdp = fully_shard(model, units=blocks or None, group=group)
        self.units = self.fsdp.units
        self.padding = sum(pc.padding for u in self.units for pc in u.pieces)
        self.opt = self.shard_optimizer = opt_cls(self.fsdp.parameters(), **kwargs)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        x, y = local_batch(x, y, self.rank, self.world)
        if self.stage == 3:
            meter = ActivationMeter(skip=_gathered_now(self.units))
            with trace.span("wait for others", cat="idle"):  # before the first all-gather
                dist.barrier(group=self.group)
            net = self.fsdp
        else:
            meter, net = ActivationMeter([s.flat for s in self.shards]), self.dp
        with trace.span("forward"), meter:
            loss = lm_loss(net(x), y)
        with trace.span("backward"):
            loss.backward()     # stage 3: each unit's gradients reduce-scattered on the way
        if self.stage < 3:
            with trace.span("wait for others", cat="idle"):
                dist.barrier(group=self.group)
            self.opt.step()     # reduce, the optimizer step on the shards, all-gather
        else:
            with trace.span("optimizer step", cat="optimizer"):
                self.opt.step()
        self._memory = self._measure(meter.bytes)
        self.opt.zero_grad(set_to_none=True)
        return global_mean_loss(loss, self.group)

    def _measure(self, activations: int) -> dict[str, int]:
        shards = ([s.param for s in self.shards] if self.stage < 3
                  else [pc.shard for u in self.units for pc in u.pieces])
        memory = {"params": tensor_bytes([*self.model.parameters(), *shards]),
                  "grads": tensor_bytes(s.grad for s in shards),
                  "optimizer": optimizer_bytes(self.shard_optimizer), "activations": activations}
        if self.stage == 3:
            memory["gathered params"] = self.fsdp.peak_gathered
        return memory

    def full_parameters(self) -> dict[str, torch.Tensor]:
        if self.stage < 3:  # every rank holds them all after each step's all-gather
            return {n: p.detach().clone() for n, p in self.model.named_parameters()}
        whole = self.fsdp.full_state_dict()
        return {n: whole[n] for n in self.names.values()}

    def memory(self) -> dict[str, int]:
        """Bytes this rank held in the last step, after the optimizer step: the persistent
        params (stage 3: its shards), grads, optimizer state and saved activations."""
        if self._memory is None:
            raise RuntimeError("memory() is measured during train_step: run a step first")
        return dict(self._memory)
