"""Check tensor parallelism against one process and against torch's own tensor parallelism.

Every rank trains three copies of the same small GPT for a few steps on the same global
batches, one after the other, in each dtype asked for: ``SingleProcess`` (the whole
model, locally), :class:`~gpuviz.parallel.tensor.TensorParallel`, and torch's
``parallelize_module`` with ``ColwiseParallel`` (q, k, v, fc) and ``RowwiseParallel``
(both proj) on a CPU ``DeviceMesh`` over gloo, under the same
:func:`~gpuviz.parallel.strategy.adam`. Each training step ends with
``trace.step(strategy=..., dtype=...)``, and one more step (``phase="full_parameters"``)
holds the gathering of the final parameters; torch's collectives are counted with its
``CommDebugMode``. Then it checks that sizes the ranks cannot split are refused. Each rank writes its losses, the largest
parameter differences, the memory and the counts to ``verify_tensor_rank{R}.json`` in
``$GPUVIZ_RUN_DIR``::

    gpuviz.launch("tests/scripts/verify_tensor.py", nproc=4, args=["--steps", "3"])
"""

import argparse
import json
import os
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from gpuviz.parallel.strategy import SingleProcess, adam, replica_difference
from gpuviz.parallel.tensor import TensorParallel
from gpuviz.run import trace
from gpuviz.workloads.gpt import GPT, Attention, GPTConfig, TokenData, lm_loss


class TorchTP:
    """torch's tensor parallelism (``torch.distributed.tensor.parallel``) on the same GPT."""

    name = "torch_tp"

    def __init__(self, model, lr):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor.parallel import (
            ColwiseParallel,
            RowwiseParallel,
            parallelize_module,
        )

        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for block in model.blocks:
            parallelize_module(block.attn, mesh, {"q": ColwiseParallel(), "k": ColwiseParallel(),
                                                  "v": ColwiseParallel(), "proj": RowwiseParallel()})
            parallelize_module(block.mlp, mesh, {"fc": ColwiseParallel(), "proj": RowwiseParallel()})
        self.model, self.opt = model, adam(model.parameters(), lr)
        self.all_reduces = []   # (forward, backward) per step

    def train_step(self, x, y):
        from torch.distributed.tensor.debug import CommDebugMode

        comm = CommDebugMode()   # one mode over forward and backward (two fail in torch 2.13)
        # its module tracker hooks modules whose inputs need no grad; torch warns about that
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        with comm:
            with trace.span("forward"):
                loss = lm_loss(self.model(x), y)
            forward = sum(comm.get_comm_counts().values())
            with trace.span("backward"):
                loss.backward()
        self.all_reduces.append((forward, sum(comm.get_comm_counts().values()) - forward))
        with trace.span("optimizer step", cat="optimizer"):
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        return loss.item()

    def full_parameters(self):
        from torch.distributed.tensor import DTensor

        return {n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
                for n, p in self.model.named_parameters()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max(float((a[n] - b[n]).abs().max()) for n in a)




def refused(world: int) -> dict:
    """A GPT whose heads the ranks cannot share: the ValueError, and the model left whole."""
    heads = world + 1
    model = GPT(GPTConfig(vocab=16, seq_len=8, dim=8 * heads, heads=heads, layers=2))
    try:
        TensorParallel(model)
    except ValueError as e:
        return {"heads": heads, "error": str(e),
                "untouched": all(isinstance(b.attn, Attention) for b in model.blocks)}
    return {"heads": heads, "error": None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="global batch (sequences)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    a = ap.parse_args()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg = GPTConfig(vocab=64, seq_len=16, dim=a.dim, heads=a.heads, layers=a.layers)
    data = TokenData(cfg.vocab, cfg.seq_len)
    make = {"single": lambda m: SingleProcess(m, a.lr),
            "tp": lambda m: TensorParallel(m, lr=a.lr),
            "torch_tp": lambda m: TorchTP(m, a.lr)}
    trace.set_total_steps(len(a.dtypes) * len(make) * (a.steps + 1))
    out: dict = {"world": world, "steps": a.steps, "batch": a.batch, "seq_len": cfg.seq_len,
                 "dim": cfg.dim, "heads": cfg.heads, "layers": cfg.layers, "runs": {}}
    for dtype_name in a.dtypes:
        dtype = getattr(torch, dtype_name)
        finals, res = {}, {}
        for name, build in make.items():
            model = GPT(cfg, seed=0).to(dtype)
            full_bytes = {n: p.numel() * p.element_size() for n, p in model.named_parameters()}
            t = trace.get_tracer()
            first = t.step_index if t is not None else None
            try:
                strategy = build(model)
            except Exception as e:  # noqa: BLE001 - torch's TP may not run here: say why
                if name != "torch_tp":
                    raise
                res[name] = {"skipped": f"{type(e).__name__}: {e}"}
                continue
            losses = []
            for step in range(a.steps):
                losses.append(strategy.train_step(*data.batch(step, a.batch)))
                trace.step(strategy=name, dtype=dtype_name, loss=losses[-1])
            finals[name] = strategy.full_parameters()
            r = {"first_step": first, "losses": losses,
                 "param_diff": max_diff(finals[name], finals["single"]),
                 "rank_diff": replica_difference(finals[name])}
            trace.step(strategy=name, dtype=dtype_name, phase="full_parameters")
            if name != "torch_tp":
                r["memory"] = strategy.memory()
            if name == "tp":
                split = strategy.sharded()
                params = dict(strategy.model.named_parameters())
                r["sharded"] = sorted(split)
                r["sharded_bytes"] = sum(params[n].numel() * params[n].element_size() for n in split)
                r["sharded_full_bytes"] = sum(full_bytes[n] for n in split)
                r["full_params_bytes"] = sum(full_bytes.values())
            if name == "torch_tp":
                r["all_reduces"] = strategy.all_reduces
                r["vs_tp"] = max_diff(finals[name], finals["tp"])
            res[name] = r
        out["runs"][dtype_name] = res
    out["refused"] = refused(world) if world > 1 else None
    run_dir = Path(os.environ.get("GPUVIZ_RUN_DIR", "."))
    (run_dir / f"verify_tensor_rank{rank}.json").write_text(json.dumps(out, indent=1))
    if rank == 0:
        for dtype_name, res in out["runs"].items():
            for name, r in res.items():
                if "skipped" in r:
                    print(f"{dtype_name} {name:9s} skipped: {r['skipped']}")
                else:
                    print(f"{dtype_name} {name:9s} last loss {r['losses'][-1]:.8f}  "
                          f"max |param - single| {r['param_diff']:.2e}")


if __name__ == "__main__":
    main()
