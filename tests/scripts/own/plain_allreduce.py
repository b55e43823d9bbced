"""A hand-written gradient all-reduce loop over a DataLoader with 2 worker processes; it
reads RANK and WORLD_SIZE from the environment and ends with sys.exit(0); no gpuviz, no
destroy_process_group."""

import os
import sys

import torch
import torch.distributed as dist
from helpers import make_model
from torch.utils.data import DataLoader, TensorDataset

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
dist.init_process_group("gloo", rank=rank, world_size=world)
g = torch.Generator().manual_seed(rank)
x = torch.randn(40, 16, generator=g)
loader = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=8,
                    num_workers=2)
model = make_model()
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for xb, yb in loader:
    torch.nn.functional.mse_loss(model(xb), yb).backward()
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world
    opt.step()
    opt.zero_grad()
if rank == 0:
    print("plain_allreduce done")
sys.exit(0)
