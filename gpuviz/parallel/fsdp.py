"""Fully sharded data parallelism for your own model: ZeRO stage 3, used as FSDP2's
``fully_shard`` is.

Zhao et al. 2023, "PyTorch FSDP" (VLDB). The model is cut into units: each module you name
(``units=``, a module class or a list of modules) and the root for the rest. A unit's
parameters (per dtype) are laid end to end in one flat vector, padded to divide by the
number of ranks, and each rank keeps only its 1/N slice: the shard, an ``nn.Parameter``.
Just before a unit's forward its vector is all-gathered (the module's own parameters are
views of it), and freed after it (the root's stays, as in FSDP2); gathered again before the
unit's backward; once all its gradients are computed they are reduce-scattered, so each
rank receives the averaged gradient of its shard, and the full gradients are freed.

What you use: ``model = fully_shard(net, units=Block)``; ``opt = AdamW(model.parameters())``
(the parameters *are* the shards, as FSDP2's are); ``loss.backward()``; ``opt.step()``. After
backward each shard's ``.grad`` is this rank's slice of the gradient averaged over the
ranks; the module's original parameters hold no gradient (they are freed with the gathered
vector). ``model.full_state_dict()`` gathers the full parameters under their original
names.

- ``replicate_below=n``: a parameter of fewer than ``n`` elements (biases, norms) is not
  sharded but kept whole on every rank, its gradient all-reduced at the end of backward
  (not with ``mp.param_dtype``: it stays in its own dtype).
- ``mp=MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)``: the shards
  (the optimizer's copy) stay in their dtype; the gathered parameters, and so the forward
  and backward compute, are in ``param_dtype`` (floating inputs are cast to it); gradients
  are reduce-scattered in ``reduce_dtype``.

Simplest version: every collective is synchronous, no prefetching. Parameters with
``requires_grad=False`` stay as they are on every rank. A parameter the forward pass did not
use gets a zero gradient in its shard, so an optimizer with weight decay still decays it
(FSDP2, sharding each parameter on its own, leaves its gradient ``None``). Create the model
on its device first: the parameters are views of the gather buffers, which ``.to()`` does
not move.

>>> import torch, torch.distributed as dist
>>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> model = fully_shard(net, units=torch.nn.Linear)
>>> [tuple(p.shape) for p in model.parameters()]       # one flat shard per unit
[(40,), (18,)]
>>> model(torch.ones(3, 4)).sum().backward()
>>> sorted(model.full_state_dict())
['0.bias', '0.weight', '2.bias', '2.weight']
>>> dist.destroy_process_group()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from gpuviz.parallel.ring import members
from gpuviz.parallel.sharded import (
    all_gather_single,
    flatten,
    reduce_scatter_single,
    take_grads,
    view_into,
)
from gpuviz.run import trace


@dataclass(frozen=True)
class MixedPrecision:
    """Dtypes of the gathered parameters (and the compute) and of the gradient reduction;
    None keeps the parameter's own."""

    param_dtype: torch.dtype | None = None
    reduce_dtype: torch.dtype | None = None
    cast_inputs: bool = True


class _Piece:
    """Parameters of one unit and one dtype: the gather buffer and this rank's shard."""

    def __init__(self, params, rank: int, world: int, gather_dtype):
        self.params = params
        master = flatten(params, world)
        per = master.numel() // world
        self.shard = nn.Parameter(master[rank * per:(rank + 1) * per].clone())
        self.full = torch.empty(master.numel(), dtype=gather_dtype or master.dtype)
        self.padding = master.numel() - sum(p.numel() for p in params)
        view_into(params, self.full)

    @property
    def gathered(self) -> bool:
        return self.full.untyped_storage().nbytes() > 0

    def free(self) -> None:
        self.full.untyped_storage().resize_(0)


class _Unit:
    def __init__(self, name: str, module: nn.Module, params, rank, world, mp: MixedPrecision):
        self.name, self.module = name, module
        by_dtype: dict = {}
        for p in params:
            by_dtype.setdefault(p.dtype, []).append(p)
        self.pieces = [_Piece(ps, rank, world, mp.param_dtype) for ps in by_dtype.values()]
        self.n_params, self.ready, self.reduced = len(params), 0, False
        self.free()

    def free(self) -> None:
        for piece in self.pieces:
            piece.free()

    @property
    def gathered(self) -> bool:
        return all(p.gathered for p in self.pieces)

    @property
    def params(self) -> list:
        """The module's parameters this unit holds, in order (all dtypes)."""
        return [p for pc in self.pieces for p in pc.params]

    @property
    def full(self) -> torch.Tensor:
        """The gather buffer, for a unit of one dtype (the common case)."""
        if len(self.pieces) != 1:
            raise ValueError(f"unit {self.name} has parameters of {len(self.pieces)} dtypes: "
                             "read .pieces[i].full")
        return self.pieces[0].full


class FullyShardedModule(nn.Module):
    """``module`` sharded over ``group``: see :func:`fully_shard`."""

    def __init__(self, module: nn.Module, units=None, group=None, replicate_below: int = 0,
                 mp: MixedPrecision | None = None):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"module={type(module).__name__}: give an nn.Module")
        if isinstance(replicate_below, bool) or not isinstance(replicate_below, int) or replicate_below < 0:
            raise ValueError(f"replicate_below={replicate_below!r}: give a number of elements >= 0")
        if mp is not None and not isinstance(mp, MixedPrecision):
            raise ValueError(f"mp={mp!r}: give gpuviz.parallel.fsdp.MixedPrecision(...) or None")
        if mp is not None and mp.param_dtype is not None and replicate_below:
            raise ValueError("replicate_below with mp.param_dtype: a replicated parameter stays in "
                             "its own dtype, so it cannot join a computation in param_dtype; "
                             "use one or the other")
        self.module, self.mp = module, mp or MixedPrecision()
        self.group, self.rank, self.world = members(group)
        self._names: dict[int, list[str]] = {}   # tied weights: one parameter, several names
        for n, p in module.named_parameters(remove_duplicate=False):
            self._names.setdefault(id(p), []).append(n)
        src = 0 if group is None else dist.get_global_rank(group, 0)
        with torch.no_grad():   # every rank starts from rank 0's weights, as DDP does
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=src, group=self.group)
        chosen = _pick_units(module, units)
        self.replicated = [p for p in module.parameters()
                           if p.requires_grad and p.numel() < replicate_below]
        skip = {id(p) for p in self.replicated}
        taken, groups = set(), []
        for name, m in chosen:
            ps = [p for p in m.parameters() if p.requires_grad and id(p) not in skip | taken]
            taken |= {id(p) for p in ps}
            groups.append((name, m, ps))
        rest = [p for p in module.parameters() if p.requires_grad and id(p) not in skip | taken]
        groups.append(("root", module, rest))
        self.units = [_Unit(n, m, ps, self.rank, self.world, self.mp) for n, m, ps in groups if ps]
        self.shards = nn.ParameterList([pc.shard for u in self.units for pc in u.pieces])
        for u in self.units:
            _unregister(module, u.params)
            self._hook(u, root=u.name == "root")
        module.register_forward_pre_hook(self._before_root_forward, prepend=True)
        self._callback_queued, self.peak_gathered = False, 0

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    # -- hooks ----------------------------------------------------------------------------
    def _hook(self, unit: _Unit, root: bool) -> None:
        def grad_ready(_p):
            self._queue_final()
            unit.ready += 1
            if unit.ready == unit.n_params:
                self._reduce(unit)

        def after_forward(_module, _args, output):
            unit.free()
            # Gather again when backward reaches this unit: a hook on its outputs' gradients.
            outs = [t for t in torch.utils._pytree.tree_leaves(output)
                    if torch.is_tensor(t) and t.requires_grad]
            if outs:
                torch.autograd.graph.register_multi_grad_hook(
                    outs, lambda _grads: (self._queue_final(), self._gather(unit)), mode="any")

        unit.module.register_forward_pre_hook(lambda _m, _a: self._gather(unit))
        if not root:   # the root's backward starts as soon as its forward ends: keep it
            unit.module.register_forward_hook(after_forward)
        for p in unit.params:
            p.register_post_accumulate_grad_hook(grad_ready)

    def _before_root_forward(self, _module, args):
        for u in self.units:
            u.ready, u.reduced = 0, False
        self.peak_gathered = 0
        dtype = self.mp.param_dtype
        if dtype is None or not self.mp.cast_inputs:
            return None
        return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    def _queue_final(self) -> None:
        if not self._callback_queued:
            self._callback_queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._end_of_backward)

    def _end_of_backward(self) -> None:
        """Units some parameters of which got no gradient are reduced now (zeros for them),
        in unit order on every rank; then the replicated parameters' gradients."""
        self._callback_queued = False
        for u in self.units:
            if not u.reduced:
                self._reduce(u)
        if self.replicated:
            self._all_reduce_replicated()

    def _gather(self, unit: _Unit) -> None:
        if unit.gathered:
            return
        for pc in unit.pieces:
            nbytes = pc.full.numel() * pc.full.element_size()
            pc.full.untyped_storage().resize_(nbytes)
            with trace.span(f"all_gather params {unit.name}", cat="comm", bytes=nbytes):
                all_gather_single(pc.full, pc.shard.detach().to(pc.full.dtype), group=self.group)
        self.peak_gathered = max(self.peak_gathered, self.gathered_bytes())

    def _reduce(self, unit: _Unit) -> None:
        """Reduce-scatter the unit's gradients into its shards', then free them and it."""
        unit.reduced = True
        for pc in unit.pieces:
            flat = take_grads(pc.params, self.world, self.mp.reduce_dtype)
            grad = torch.empty(pc.shard.numel(), dtype=flat.dtype)
            with trace.span(f"reduce_scatter grads {unit.name}", cat="comm",
                            bytes=flat.numel() * flat.element_size()):
                reduce_scatter_single(grad, flat, group=self.group)
            grad = grad.div_(self.world).to(pc.shard.dtype)
            pc.shard.grad = grad if pc.shard.grad is None else pc.shard.grad.add_(grad)
        unit.free()

    def _all_reduce_replicated(self) -> None:
        by_dtype: dict = {}
        for p in self.replicated:
            by_dtype.setdefault(p.dtype, []).append(p)
        for ps in by_dtype.values():   # one all-reduce per dtype
            flat = flatten([torch.zeros_like(p) if p.grad is None else p.grad for p in ps], 1)
            with trace.span("all_reduce replicated grads", cat="comm",
                            bytes=flat.numel() * flat.element_size()):
                dist.all_reduce(flat, group=self.group)
            flat.div_(self.world)
            offset = 0
            for p in ps:
                p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
                offset += p.numel()

    # -- what a user reads ------------------------------------------------------------------
    def gathered_bytes(self) -> int:
        return sum(pc.full.untyped_storage().nbytes() for u in self.units for pc in u.pieces)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Every parameter whole, in its own dtype, under its name in the module; and the
        buffers. A collective: every rank calls it."""
        out = {}
        for u in self.units:
            for pc in u.pieces:
                full = torch.empty(pc.shard.numel() * self.world, dtype=pc.shard.dtype)
                all_gather_single(full, pc.shard.detach(), group=self.group)
                offset = 0
                for p in pc.params:
                    whole = full[offset:offset + p.numel()].view(p.shape).clone()
                    out.update({n: whole for n in self._names[id(p)]})
                    offset += p.numel()
        for n, t in [*self.module.named_parameters(remove_duplicate=False), *self.module.named_buffers()]:
            out[n] = t.detach().clone()
        order = {n: i for i, n in enumerate(n for ns in self._names.values() for n in ns)}
        return dict(sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))))


def _pick_units(module: nn.Module, units) -> list[tuple[str, nn.Module]]:
    if units is None:
        return []
    if isinstance(units, type) and issubclass(units, nn.Module):
        found, covered = [], []
        for name, m in module.named_modules():
            if isinstance(m, units) and m is not module and not any(name.startswith(c + ".") for c in covered):
                found.append((name, m))
                covered.append(name)
        if not found:
            raise ValueError(f"units={units.__name__}: the module has no submodule of that class")
        return found
    if isinstance(units, (list, tuple, nn.ModuleList)):
        names = {id(m): n for n, m in module.named_modules()}
        bad = [type(m).__name__ for m in units if id(m) not in names or m is module]
        if bad:
            raise ValueError(f"units: {bad} are not submodules of the module")
        return [(names[id(m)], m) for m in units]
    raise ValueError(f"units={units!r}: give a module class, a list of submodules, or None")


def _unregister(owner: nn.Module, params) -> None:
    """Take ``params`` out of their modules' registered parameters, keeping each as a plain
    attribute (so ``forward`` still reads it): the module's parameters are now the shards."""
    ids = {id(p) for p in params}
    for m in owner.modules():
        for name, p in list(m._parameters.items()):
            if p is not None and id(p) in ids:
                del m._parameters[name]
                object.__setattr__(m, name, p)


def fully_shard(module: nn.Module, units=None, group=None, replicate_below: int = 0,
                mp: MixedPrecision | None = None) -> FullyShardedModule:
    """Shard ``module`` over the ranks of ``group`` (see the module docstring): ``units`` a
    module class or a list of submodules (each gathered and freed on its own; the root holds
    the rest), ``replicate_below`` the size under which a parameter stays whole,
    ``mp`` the mixed precision. Needs a process group."""
    return FullyShardedModule(module, units, group, replicate_below, mp)
