"""Test job: trains a few traced steps, then one rank raises (argv: RANK STEP)."""

import sys

import torch
import torch.distributed as dist

from gpuviz.run import trace

bad_rank, bad_step = int(sys.argv[1]), int(sys.argv[2])
x = torch.ones(1000)
for step in range(bad_step + 5):
    with trace.span("compute"):
        y = (x * step).sum()
        if dist.get_rank() == bad_rank and step == bad_step:
            raise ValueError(f"injected failure on rank {bad_rank} at step {step}")
    trace.all_reduce(x)
    trace.step()
