"""Test job: rank 0 prints its argv; every rank records one step."""

import sys

import torch.distributed as dist

from gpuviz.run import trace

with trace.span("compute"):
    if dist.get_rank() == 0:
        print("ARGS", " ".join(sys.argv[1:]))
trace.step()
