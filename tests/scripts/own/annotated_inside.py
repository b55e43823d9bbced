"""A plain script that adds one annotation of its own inside its model's forward."""

import torch
import torch.distributed as dist
from helpers import batch
from torch import nn

from gpuviz import trace


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 32), nn.Linear(32, 1)

    def forward(self, x):
        with trace.span("my hidden layer"):
            h = torch.relu(self.a(x))
        return self.b(h)


def main() -> None:
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(Net())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(4):
        x, y = batch(dist.get_rank(), step)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
