"""Test job: one rank stops inside a compute span at a step; the others wait (argv: RANK STEP)."""

import sys
import time

import torch
import torch.distributed as dist

from gpuviz.run import trace

bad_rank, bad_step = int(sys.argv[1]), int(sys.argv[2])
x = torch.ones(1000)
for step in range(bad_step + 5):
    with trace.span("compute"):
        if dist.get_rank() == bad_rank and step == bad_step:
            while True:
                time.sleep(0.05)
    trace.all_reduce(x)
    trace.step()
