"""Check data parallelism against one process and against torch's DistributedDataParallel.

Every rank trains four copies of the same small GPT for a few steps on the same global
batches, one after the other: ``SingleProcess`` (the whole batch, locally),
``NaiveDataParallel``, ``BucketDataParallel`` and torch's ``DistributedDataParallel``
(with the same :func:`~gpuviz.parallel.strategy.adam`). Each step is traced and ends
with ``trace.step(strategy=..., loss=...)``. Each rank writes the losses, the largest
difference of the final parameters from ``SingleProcess`` and from rank 0's replica, and
the memory, to ``verify_data_rank{R}.json`` in ``$GPUVIZ_RUN_DIR``::

    gpuviz.launch("tests/scripts/verify_data.py", nproc=4, args=["--steps", "5"])
"""

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from gpuviz.parallel.data import BucketDataParallel, NaiveDataParallel
from gpuviz.parallel.strategy import SingleProcess, adam, local_batch, replica_difference
from gpuviz.run import trace
from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData, lm_loss


class TorchDDP:
    """torch's DistributedDataParallel under the strategy contract, its buckets traced."""

    name = "torch_ddp"

    def __init__(self, model, bucket_mb, lr):
        self.model = DistributedDataParallel(model, bucket_cap_mb=bucket_mb)
        self.model.register_comm_hook(state=None, hook=trace.ddp_comm_hook)
        self.opt = adam(self.model.parameters(), lr)

    def train_step(self, x, y):
        world = dist.get_world_size()
        x, y = local_batch(x, y, dist.get_rank(), world)
        with trace.span("forward"):
            loss = lm_loss(self.model(x), y)
        trace.backward(loss, self.model)
        with trace.span("optimizer step", cat="optimizer"):
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        total = loss.detach().clone()
        dist.all_reduce(total)
        return total.item() / world

    def full_parameters(self):
        return {n: p.detach().clone() for n, p in self.model.module.named_parameters()}


def param_diffs(a: dict, b: dict) -> dict[str, float]:
    """Largest absolute difference, parameter by parameter."""
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return {n: float((a[n] - b[n]).abs().max()) for n in a}




def run_strategies(a, dtype: torch.dtype) -> dict:
    """Train every strategy ``a.steps`` steps from the same model in ``dtype``; compare."""
    cfg = GPTConfig(vocab=64, seq_len=32, dim=a.dim, layers=a.layers)
    data = TokenData(cfg.vocab, cfg.seq_len)
    make = {"single": lambda m: SingleProcess(m, a.lr),
            "naive_dp": lambda m: NaiveDataParallel(m, lr=a.lr),
            "ddp": lambda m: BucketDataParallel(m, bucket_mb=a.bucket_mb, lr=a.lr),
            "torch_ddp": lambda m: TorchDDP(m, a.bucket_mb, a.lr)}
    out, finals = {}, {}
    for name, build in make.items():
        strategy = build(GPT(cfg, seed=0).to(dtype))
        t = trace.get_tracer()
        res = {"first_step": t.step_index if t else None, "losses": []}
        for step in range(a.steps):
            res["losses"].append(strategy.train_step(*data.batch(step, a.batch)))
            trace.step(strategy=name, dtype=str(dtype), loss=res["losses"][-1])
        finals[name] = strategy.full_parameters()
        res["param_diff"] = param_diffs(finals[name], finals["single"])
        res["replica_diff"] = replica_difference(finals[name])
        if name != "torch_ddp":
            res["memory"] = strategy.memory()
        if name == "ddp":
            res["buckets"] = [b.nbytes for b in strategy.buckets]
            res["bucket_params"] = [len(b.params) for b in strategy.buckets]
        if name in ("naive_dp", "ddp"):  # a batch that does not split fails before any collective
            try:
                strategy.train_step(*data.batch(0, dist.get_world_size() + 1))
            except ValueError as e:
                res["uneven_batch_error"] = str(e)
        out[name] = res
    out["ddp_vs_torch_ddp"] = param_diffs(finals["ddp"], finals["torch_ddp"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8, help="global batch (sequences)")
    ap.add_argument("--bucket-mb", type=float, default=0.05)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--dtypes", default="float32,float64")
    a = ap.parse_args()
    dtypes = a.dtypes.split(",")
    trace.set_total_steps(a.steps * 4 * len(dtypes))
    out = {"world": dist.get_world_size(), "steps": a.steps, "bucket_mb": a.bucket_mb,
           **{dt: run_strategies(a, getattr(torch, dt)) for dt in dtypes}}
    path = Path(os.environ["GPUVIZ_RUN_DIR"]) / f"verify_data_rank{dist.get_rank()}.json"
    path.write_text(json.dumps(out, indent=1))
    if dist.get_rank() == 0:
        for dt in dtypes:
            for name in ("single", "naive_dp", "ddp", "torch_ddp"):
                res = out[dt][name]
                print(f"{dt} {name:10s} last loss {res['losses'][-1]:.6f}  "
                      f"max |param - single| {max(res['param_diff'].values()):.2e}")


if __name__ == "__main__":
    main()
