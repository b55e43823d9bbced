"""A hand-written gradient all-reduce loop that reads RANK and WORLD_SIZE from the
environment and ends with sys.exit(0); no gpuviz, no destroy_process_group."""

import os
import sys

import torch
import torch.distributed as dist
from helpers import batch, make_model

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
dist.init_process_group("gloo", rank=rank, world_size=world)
model = make_model()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(5):
    x, y = batch(rank, step)
    torch.nn.functional.mse_loss(model(x), y).backward()
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world
    opt.step()
    opt.zero_grad()
if rank == 0:
    print("plain_allreduce done")
sys.exit(0)
