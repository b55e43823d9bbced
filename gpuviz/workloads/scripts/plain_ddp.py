"""An ordinary DDP training script with no gpuviz in it: torchrun runs it
as it is, and so does ``gpuviz run plain_ddp.py`` (Lab 00, §9).

    torchrun --standalone --nproc-per-node 4 plain_ddp.py --steps 10
"""

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=256)  # per rank and step
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.01)
    a = ap.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    x = torch.randn(a.steps * a.batch * world, 32)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True))
    sampler = DistributedSampler(data, shuffle=False)
    loader = DataLoader(data, batch_size=a.batch, sampler=sampler)
    h = a.hidden
    model = DDP(nn.Sequential(
        nn.Linear(32, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
        nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=a.lr)
    for xb, yb in loader:
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if rank == 0:
        local = os.environ["LOCAL_RANK"]
        print(f"done: {a.steps} steps on {world} ranks (local rank {local}),"
              f" last loss {loss.item():.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
