"""The most ordinary DDP script: no gpuviz in it. Run it with torchrun, or gpuviz run."""

import argparse
import os

import torch
import torch.distributed as dist
from helpers import batch, make_model
from torch.nn.parallel import DistributedDataParallel as DDP


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    dist.init_process_group("gloo")
    rank, local = dist.get_rank(), int(os.environ["LOCAL_RANK"])
    model = DDP(make_model())
    opt = torch.optim.SGD(model.parameters(), lr=a.lr)
    for step in range(a.steps):
        x, y = batch(rank, step)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if rank == 0:
        print(f"plain_ddp done: local rank {local}, loss {loss.item():.4f}, lr {a.lr}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
