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
no prefetching, no buckets. Stage 3 uses module hooks (forward pre/post, full backward
pre) and a post-accumulate-grad hook per parameter, the most direct to read.

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
>>> dist.destroy_process_group()
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
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

# torch 2.13 renamed the single-tensor collectives; older versions have only the old names.
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


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


def _flatten(tensors, world: int) -> torch.Tensor:
    """The tensors end to end in one new vector, zero-padded to a multiple of ``world``."""
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    return F.pad(flat, (0, -flat.numel() % world))


def _view_into(params, flat: torch.Tensor) -> None:
    """Make each parameter a view of its slice of ``flat``: they share memory from now on."""
    offset = 0
    for p in params:
        p.data = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()


def _take_grads(params, world: int) -> torch.Tensor:
    """The parameters' gradients in one padded vector (zeros for a parameter that got
    none); the gradients themselves are dropped, so only the vector holds them now."""
    flat = _flatten([torch.zeros_like(p) if p.grad is None else p.grad
                     for p in params], world)
    for p in params:
        p.grad = None
    return flat


class _Unit:
    """Stage 3: parameters gathered and freed together. ``full`` is the gather buffer,
    its memory freed (storage resized to 0) between uses; the parameters are views of it,
    so what autograd saved in forward reads the parameters again once they are regathered
    (the trick of FSDP's first version)."""

    def __init__(self, name: str, params: list, rank: int, world: int):
        self.name, self.params = name, params
        self.full = _flatten(params, world)
        per = self.full.numel() // world
        self.shard = nn.Parameter(self.full[rank * per:(rank + 1) * per].clone())
        self.padding = self.full.numel() - sum(p.numel() for p in params)
        self.ready = 0  # parameters whose gradient is complete in this backward
        _view_into(params, self.full)
        self.free()

    @property
    def gathered(self) -> bool:
        return self.full.untyped_storage().nbytes() > 0

    def free(self) -> None:
        self.full.untyped_storage().resize_(0)


def _gathered_now(units: list[_Unit]):
    """A test for :class:`ActivationMeter`'s ``skip``: is this tensor a gathered unit's
    parameters? (Stage 3 gathers into fresh memory each time, so no list made in advance
    can name them.)"""
    def skip(t: torch.Tensor) -> bool:
        ptr = t.untyped_storage().data_ptr()
        return any(u.gathered and ptr == u.full.untyped_storage().data_ptr() for u in units)

    return skip


class ZeRO:
    """Data parallelism with ZeRO ``stage`` 1, 2 or 3 sharding (see the module docstring).

    Follows the contract of :mod:`gpuviz.parallel.strategy`; needs a process group.
    ``group``: the ranks that share the model state (default: all). ``padding``: zeros
    added so the flat vectors divide by the world size. ``memory()`` has, in stage 3,
    ``"gathered params"`` too: the most full parameters held at one time in the last step.
    """

    def __init__(self, model: nn.Module, stage: int, group=None, lr: float = LR):
        if isinstance(stage, bool) or not isinstance(stage, int) or stage not in (1, 2, 3):
            raise ValueError(f"stage={stage!r}: ZeRO stages are 1 (optimizer state), "
                             "2 (and gradients) and 3 (and parameters)")
        if not isinstance(model, nn.Module) or not any(True for _ in model.parameters()):
            raise ValueError(f"model={type(model).__name__}: give an nn.Module with parameters")
        dtypes = {p.dtype for p in model.parameters()}
        if len(dtypes) > 1:
            raise ValueError(f"model has parameters of {len(dtypes)} dtypes ({sorted(map(str, dtypes))}): "
                             "ZeRO flattens them into one vector, so they must share one dtype")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr={lr!r}: the learning rate must be a number > 0")
        self.group, self.rank, self.world = members(group)
        self.stage, self.name, self.model = stage, f"zero{stage}", model
        self._memory: dict[str, int] | None = None
        params = list(model.parameters())
        if stage < 3:
            self.flat = _flatten(params, self.world)
            _view_into(params, self.flat)
            per = self.flat.numel() // self.world
            # A view of this rank's slice: Adam's in-place update writes into the model.
            self.shard = nn.Parameter(self.flat[self.rank * per:(self.rank + 1) * per])
            self.padding = self.flat.numel() - sum(p.numel() for p in params)
            self.opt = adam([self.shard], lr)
            return
        blocks = list(getattr(model, "blocks", None) or [])
        in_blocks = {id(p) for b in blocks for p in b.parameters()}
        rest = [p for p in params if id(p) not in in_blocks]
        groups = [(f"blocks.{i}", b, list(b.parameters())) for i, b in enumerate(blocks)]
        groups += [("root", model, rest)] if rest else []
        self.units = [_Unit(name, ps, self.rank, self.world) for name, _, ps in groups if ps]
        self.padding = sum(u.padding for u in self.units)
        self._peak = 0
        for unit, (_, module, _) in zip(self.units, groups, strict=True):
            self._hook(unit, module, root=module is model)
        self.opt = adam([u.shard for u in self.units], lr)

    # -- stage 3: hooks that gather, free and reduce each unit ------------------------------
    def _hook(self, unit: _Unit, module: nn.Module, root: bool) -> None:
        def before_forward(_module, _args):
            self._gather(unit)

        def after_forward(_module, _args, _output):
            unit.free()

        def before_backward(_module, _grad_output):
            self._gather(unit)

        def grad_ready(_param):
            unit.ready += 1
            if unit.ready == len(unit.params):
                self._reduce(unit)

        module.register_forward_pre_hook(before_forward)
        if not root:  # the root's backward starts as soon as its forward ends: keep it
            module.register_forward_hook(after_forward)
            module.register_full_backward_pre_hook(before_backward)
        for p in unit.params:
            p.register_post_accumulate_grad_hook(grad_ready)

    def _gather(self, unit: _Unit) -> None:
        if unit.gathered:
            return
        nbytes = unit.full.numel() * unit.full.element_size()
        unit.full.untyped_storage().resize_(nbytes)
        with trace.span(f"all_gather params {unit.name}", cat="comm", bytes=nbytes):
            _all_gather(unit.full, unit.shard.detach(), group=self.group)
        self._peak = max(self._peak, tensor_bytes(u.full for u in self.units))

    def _reduce(self, unit: _Unit) -> None:
        """Reduce-scatter the unit's gradients into its shard's, then free them and it."""
        flat = _take_grads(unit.params, self.world)
        unit.free()
        grad = torch.empty_like(unit.shard)
        with trace.span(f"reduce_scatter grads {unit.name}", cat="comm",
                        bytes=flat.numel() * flat.element_size()):
            _reduce_scatter(grad, flat, group=self.group)
        unit.shard.grad = grad.div_(self.world)

    # -- stages 1 and 2: one flat vector, reduced after backward ----------------------------
    def _reduce_flat(self) -> None:
        flat = _take_grads(list(self.model.parameters()), self.world)
        nbytes = flat.numel() * flat.element_size()
        with trace.span("wait for others", cat="idle"):
            dist.barrier(group=self.group)
        if self.stage == 1:
            with trace.span("all_reduce grads", cat="comm", bytes=nbytes):
                dist.all_reduce(flat, group=self.group)
            lo = self.rank * self.shard.numel()
            self.shard.grad = flat.div_(self.world)[lo:lo + self.shard.numel()]  # keeps all
        else:
            grad = torch.empty_like(self.shard)
            with trace.span("reduce_scatter grads", cat="comm", bytes=nbytes):
                _reduce_scatter(grad, flat, group=self.group)
            del flat  # the full gradient is gone: only this rank's shard is kept
            self.shard.grad = grad.div_(self.world)

    # -- the contract -------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        x, y = local_batch(x, y, self.rank, self.world)
        if self.stage == 3:
            self._peak = 0
            for u in self.units:
                u.ready = 0
            meter = ActivationMeter(skip=_gathered_now(self.units))
            with trace.span("wait for others", cat="idle"):  # before the first all-gather
                dist.barrier(group=self.group)
        else:
            meter = ActivationMeter([self.flat])
        with trace.span("forward"), meter:
            loss = lm_loss(self.model(x), y)
        with trace.span("backward"):
            loss.backward()
        if self.stage == 3:
            for u in self.units:  # a unit whose parameters were not all used this step
                if u.ready < len(u.params):
                    self._reduce(u)
        else:
            self._reduce_flat()
        with trace.span("optimizer step", cat="optimizer"):
            self.opt.step()
            self._memory = self._measure(meter.bytes)
            self.opt.zero_grad(set_to_none=True)
        if self.stage < 3:
            nbytes = self.flat.numel() * self.flat.element_size()
            with trace.span("all_gather params", cat="comm", bytes=nbytes):
                # a copy of the shard: the input must not be part of the output
                _all_gather(self.flat, self.shard.detach().clone(), group=self.group)
        return global_mean_loss(loss, self.group)

    def _measure(self, activations: int) -> dict[str, int]:
        shards = [self.shard] if self.stage < 3 else [u.shard for u in self.units]
        memory = {"params": tensor_bytes([*self.model.parameters(), *shards]),
                  "grads": tensor_bytes(s.grad for s in shards),
                  "optimizer": optimizer_bytes(self.opt), "activations": activations}
        if self.stage == 3:
            memory["gathered params"] = self._peak
        return memory

    def full_parameters(self) -> dict[str, torch.Tensor]:
        if self.stage < 3:  # every rank holds them all after each step's all-gather
            return {n: p.detach().clone() for n, p in self.model.named_parameters()}
        names = {id(p): n for n, p in self.model.named_parameters()}
        out = {}
        for u in self.units:
            was_gathered = u.gathered
            self._gather(u)
            out.update({names[id(p)]: p.detach().clone() for p in u.params})
            if not was_gathered:
                u.free()
        return {n: out[n] for n in names.values()}

    def memory(self) -> dict[str, int]:
        """Bytes this rank held in the last step, after the optimizer step: the persistent
        params (stage 3: its shards), grads, optimizer state and saved activations."""
        if self._memory is None:
            raise RuntimeError("memory() is measured during train_step: run a step first")
        return dict(self._memory)
