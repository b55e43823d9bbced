"""Test job: many slow steps (for interrupt tests)."""

import time

import torch

from gpuviz.run import trace

x = torch.ones(10)
for _ in range(10_000):
    with trace.span("compute"):
        time.sleep(0.05)
    trace.all_reduce(x)
    trace.step()
