"""gpuviz's data parallel, sharded optimizer and fully sharded module on models it did not
write, in a plain training loop, beside PyTorch's own and one process.

Models (the shapes a university course's distributed-training tests use): a toy with a
frozen parameter and a frozen bias, tied weights, parameters of two dtypes, and an unused
parameter. Each is trained for ``--steps`` AdamW steps (weight decay on) by:

- ``single``: one process, the whole batch;
- ``dp_naive`` (``DataParallel(m, bucket_size_mb=None)``), ``dp_bucket`` (tiny buckets),
  ``torch_ddp`` (``DistributedDataParallel``);
- ``zero1`` (``DataParallel`` + ``ShardedOptimizer``), ``zero2`` (``reduce_scatter``),
  ``torch_zero1`` (``ZeroRedundancyOptimizer`` under DDP);
- ``fsdp`` (``fully_shard(m, units=nn.Linear)``), ``fsdp_replicated`` (small parameters
  kept whole), ``torch_fsdp2`` (FSDP2's ``fully_shard`` on each Linear and the root).

Each rank writes, per model and method, the largest difference of every final parameter
from ``single`` and from rank 0's, and whether the frozen parameters moved, to
``verify_own_models_rank{R}.json`` in ``$GPUVIZ_RUN_DIR``::

    gpuviz.launch("tests/scripts/verify_own_models.py", nproc=2)
"""

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

from gpuviz.parallel.ddp import DataParallel
from gpuviz.parallel.fsdp import fully_shard
from gpuviz.parallel.sharded import ShardedOptimizer

LR, WD = 0.01, 0.1


class ToyWithFrozen(nn.Module):
    """A frozen parameter and a frozen bias, as in a course's DDP tests."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 10, bias=False)
        self.ln = nn.LayerNorm(10)
        self.fc2 = nn.Linear(10, 5, bias=False)
        self.no_grad_fixed_param = nn.Parameter(torch.tensor([2.0, 2.0]), requires_grad=False)
        self.fc3 = nn.Linear(5, 5)
        self.fc3.bias.requires_grad_(False)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(self.ln(F.relu(self.fc1(x))))))


class Tied(nn.Module):
    """An embedding and an output layer that share one weight."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(12, 6)
        self.mlp = nn.Linear(6, 6)
        self.head = nn.Linear(6, 12, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x):
        return self.head(F.gelu(self.mlp(self.emb(x))))


class MixedDtypes(nn.Module):
    """A float32 layer, then a float64 one."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 8)
        self.b = nn.Linear(8, 5).to(torch.float64)

    def forward(self, x):
        return self.b(F.relu(self.a(x.float())).double())


class WithUnused(nn.Module):
    """A layer the forward pass never uses."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 8)
        self.unused = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


MODELS = {"frozen": (ToyWithFrozen, torch.float64), "tied": (Tied, None),
          "mixed_dtypes": (MixedDtypes, None), "unused": (WithUnused, torch.float64)}


def build(name: str) -> nn.Module:
    cls, dtype = MODELS[name]
    torch.manual_seed(0)
    m = cls()
    return m.to(dtype) if dtype is not None else m


def batch(name: str, step: int, n: int):
    g = torch.Generator().manual_seed(100 + step)
    if name == "tied":
        x = torch.randint(0, 12, (n, 4), generator=g)
        return x, torch.randint(0, 12, (n, 4), generator=g)
    x = torch.randn(n, 10, generator=g, dtype=torch.float64)
    return x, torch.randn(n, 5, generator=g, dtype=torch.float64)


def loss_fn(name: str, out, y):
    if name == "tied":
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return F.mse_loss(out.to(y.dtype), y)


def adamw(params):
    return torch.optim.AdamW(params, lr=LR, weight_decay=WD, foreach=False)


def local(x, y):
    r, w = dist.get_rank(), dist.get_world_size()
    n = x.shape[0] // w
    return x[r * n:(r + 1) * n], y[r * n:(r + 1) * n]


def train(name: str, method: str, steps: int, n: int) -> dict[str, torch.Tensor]:
    """Train model ``name`` with ``method``; the final full parameters by name."""
    m = build(name)
    unused = name == "unused"
    finish = None
    if method == "single":
        net, opt = m, adamw(m.parameters())
    elif method in ("dp_naive", "dp_bucket"):
        net = DataParallel(m, bucket_size_mb=None if method == "dp_naive" else 1e-4,
                           find_unused_parameters=unused)
        opt, finish = adamw(net.parameters()), net.finish_gradient_synchronization
    elif method == "torch_ddp":
        net = DistributedDataParallel(m, find_unused_parameters=unused)
        opt = adamw(net.parameters())
    elif method == "zero1":
        net = DataParallel(m, find_unused_parameters=unused)
        opt = ShardedOptimizer(net.parameters(), torch.optim.AdamW, lr=LR, weight_decay=WD, foreach=False)
        finish = net.finish_gradient_synchronization
    elif method == "zero2":
        net = DataParallel(m, sync_gradients=False)
        opt = ShardedOptimizer(net.parameters(), torch.optim.AdamW, reduce_gradients="reduce_scatter",
                               lr=LR, weight_decay=WD, foreach=False)
    elif method == "torch_zero1":
        net = DistributedDataParallel(m, find_unused_parameters=unused)
        opt = ZeroRedundancyOptimizer(net.parameters(), optimizer_class=torch.optim.AdamW, lr=LR,
                                      weight_decay=WD, foreach=False)
    elif method in ("fsdp", "fsdp_replicated"):
        units = nn.Linear if name != "tied" else [m.mlp]
        net = fully_shard(m, units=units, replicate_below=16 if method == "fsdp_replicated" else 0)
        opt = adamw(net.parameters())
    elif method == "torch_fsdp2":
        from torch.distributed.fsdp import fully_shard as torch_fully_shard

        for sub in [s for s in m.modules() if isinstance(s, nn.Linear)] if name != "tied" else [m.mlp]:
            torch_fully_shard(sub)
        net = torch_fully_shard(m)
        opt = adamw(net.parameters())
    else:
        raise ValueError(method)
    for step in range(steps):
        x, y = batch(name, step, n)
        if method != "single":
            x, y = local(x, y)
        loss_fn(name, net(x), y).backward()
        if finish is not None:
            finish()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if method in ("fsdp", "fsdp_replicated"):
        return net.full_state_dict()
    if method == "torch_fsdp2":
        return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
                for k, v in m.state_dict().items()}
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    methods = ["single", "dp_naive", "dp_bucket", "torch_ddp", "zero1", "zero2", "torch_zero1",
               "fsdp", "fsdp_replicated", "torch_fsdp2"]
    out: dict = {"world": dist.get_world_size(), "models": {}}
    for name in MODELS:
        init = {k: v.detach().clone() for k, v in build(name).state_dict().items()}
        frozen = [n for n, p in build(name).named_parameters() if not p.requires_grad]
        finals, res = {}, {}
        for method in methods:
            try:
                finals[method] = train(name, method, a.steps, a.batch)
            except Exception as e:  # noqa: BLE001 - recorded; the test says which may fail
                res[method] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
                continue
            f = finals[method]
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, {k: v.tolist() for k, v in f.items()})
            rank0 = {k: torch.tensor(v, dtype=f[k].dtype) for k, v in gathered[0].items()}
            res[method] = {
                "keys": sorted(f),
                "diff": {k: float((f[k] - finals["single"][k]).abs().max()) for k in f
                         if k in finals["single"]},
                "replica_diff": max(float((f[k] - rank0[k]).abs().max()) for k in f),
                "frozen_moved": {k: float((f[k] - init[k]).abs().max()) for k in frozen},
            }
        out["models"][name] = {"frozen": frozen, "dtypes": sorted({str(v.dtype) for v in init.values()}),
                               "results": res}
    path = Path(os.environ["GPUVIZ_RUN_DIR"]) / f"verify_own_models_rank{dist.get_rank()}.json"
    path.write_text(json.dumps(out, indent=1))
    if dist.get_rank() == 0:
        for name, m in out["models"].items():
            for method, r in m["results"].items():
                worst = max(r["diff"].values(), default=float("nan")) if "diff" in r else r["error"]
                print(f"{name:13s} {method:16s} max |param - single| {worst}")


if __name__ == "__main__":
    main()
