"""FSDP2 (fully_shard) on CPU with gloo, its own process group and timeout; no gpuviz."""

from datetime import timedelta

import torch
import torch.distributed as dist
from helpers import batch, make_model
from torch.distributed.fsdp import fully_shard

if __name__ == "__main__":
    dist.init_process_group(backend="gloo", timeout=timedelta(seconds=120))
    model = make_model()
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(5):
        x, y = batch(dist.get_rank(), step)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    if dist.get_rank() == 0:
        print(f"plain_fsdp2 done: loss {loss.item():.4f}")
    dist.destroy_process_group()
