"""Check the pipeline against a single process and torch.distributed.pipelining, on every rank.

Each rank trains, from the same initial GPT: ``SingleProcess`` (the whole model, locally),
``Pipeline`` with GPipe and with 1F1B, and torch's own ``PipelineStage`` with
``ScheduleGPipe`` and ``Schedule1F1B`` (same stages, same Adam). It writes the losses, the
largest differences of its stage's final parameters from the single process, the memory
and the traced steps of each to ``verify_pipeline_rank{R}.json`` in the run directory.

    gpuviz.launch("tests/scripts/verify_pipeline.py", nproc=4, args=["--micro-batches", "8"])
"""

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

from gpuviz.parallel.pipeline import Pipeline, Stage
from gpuviz.parallel.strategy import SingleProcess, adam
from gpuviz.run import trace
from gpuviz.workloads.gpt import GPT, GPTConfig, TokenData, lm_loss

ap = argparse.ArgumentParser()
ap.add_argument("--micro-batches", type=int, default=8)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--dim", type=int, default=32)
ap.add_argument("--seq-len", type=int, default=16)
ap.add_argument("--vocab", type=int, default=64)
ap.add_argument("--schedules", default="gpipe,1f1b")
ap.add_argument("--no-reference", action="store_true", help="pipelines only (bubble sweeps)")
a = ap.parse_args()

rank, world = dist.get_rank(), dist.get_world_size()
cfg = GPTConfig(layers=a.layers, dim=a.dim, heads=2, seq_len=a.seq_len, vocab=a.vocab)
data = TokenData(cfg.vocab, cfg.seq_len)
batches = [data.batch(step, a.batch) for step in range(a.steps)]
m = a.micro_batches
out = {"rank": rank, "world": world, "micro_batches": m, "batch": a.batch, "steps": a.steps}


def tracer_step() -> int:
    t = trace.get_tracer()
    return t.step_index if t is not None else 0


def max_diff(mine: dict, ref: dict) -> float:
    return max(float((t - ref[n]).abs().max()) for n, t in mine.items())


def record(name: str, losses: list, first: int, own: dict, extra: dict) -> None:
    out[name] = {"losses": losses, "steps": list(range(first, tracer_step())),
                 "loss_diff": max(abs(x - r) for x, r in zip(losses, ref_losses, strict=True)),
                 "param_diff": max_diff(own, ref_params) if ref_params else None, **extra}


ref_losses, ref_params = [float("nan")] * a.steps, {}
if not a.no_reference:
    ref = SingleProcess(GPT(cfg, seed=0))
    ref_losses = []
    for x, y in batches:
        ref_losses.append(ref.train_step(x, y))
        trace.step(strategy="single")
    ref_params = ref.full_parameters()
    out["single"] = {"losses": ref_losses}

for schedule in a.schedules.split(","):
    pipe = Pipeline(GPT(cfg, seed=0), schedule=schedule, micro_batches=m)
    dist.barrier()
    first, losses = tracer_step(), []
    for x, y in batches:
        losses.append(pipe.train_step(x, y))
        trace.step(strategy=schedule, loss=losses[-1])
    full = pipe.full_parameters()
    record(schedule, losses, first, pipe.own_parameters(), {
        "memory": pipe.memory(),
        "full_param_diff": max_diff(full, ref_params) if ref_params else None,
        "full_names": sorted(full) == sorted(ref_params) if ref_params else None})

# torch.distributed.pipelining on the same stages: its schedules average the micro-batch
# gradients (scale_grads=True), as our 1/m loss scaling does.
for name, cls in ([] if a.no_reference else [("torch gpipe", ScheduleGPipe),
                                             ("torch 1f1b", Schedule1F1B)]):
    model = GPT(cfg, seed=0)
    part = Stage(model, rank, world)
    sched = cls(PipelineStage(part, rank, world, torch.device("cpu")), n_microbatches=m,
                loss_fn=lm_loss)
    opt = adam(part.parameters())
    dist.barrier()
    first, losses = tracer_step(), []
    for x, y in batches:
        got: list = []
        with trace.span(f"{name} step"):
            if rank == 0 and rank == world - 1:
                sched.step(x, target=y, losses=got)
            elif rank == 0:
                sched.step(x)
            elif rank == world - 1:
                sched.step(target=y, losses=got)
            else:
                sched.step()
        loss = torch.stack([t.detach() for t in got]).mean() if got else torch.zeros(())
        dist.broadcast(loss, world - 1)
        with trace.span("optimizer step", cat="optimizer"):
            opt.step()
            opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        trace.step(strategy=name, loss=losses[-1])
    ids = {id(t) for t in part.parameters()}
    own = {n: t.detach() for n, t in model.named_parameters() if id(t) in ids}
    record(name, losses, first, own, {})

# Bad layouts: each a ValueError on every rank, raised before any communication.
out["errors"] = {}
for what, bad in [
        ("layers", lambda: Pipeline(GPT(GPTConfig(layers=world + 1, dim=8, heads=2, seq_len=4,
                                                  vocab=8)))),
        ("micro_batches", lambda: Pipeline(GPT(cfg), micro_batches=world - 1)),
        ("batch", lambda: Pipeline(GPT(cfg), micro_batches=m).train_step(*data.batch(0, m + 1)))]:
    try:
        bad()
        out["errors"][what] = None
    except ValueError as e:
        out["errors"][what] = str(e)

run_dir = Path(os.environ.get("GPUVIZ_RUN_DIR", "."))
(run_dir / f"verify_pipeline_rank{rank}.json").write_text(json.dumps(out, indent=1))
if rank == 0:
    print(json.dumps({k: v.get("loss_diff") for k, v in out.items() if isinstance(v, dict)}))
