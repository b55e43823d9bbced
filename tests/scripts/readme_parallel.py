"""The README's "your own model" example, as written there, on every rank of a job."""

import torch
import torch.nn.functional as F

from gpuviz.parallel import DataParallel, MixedPrecision, ShardedOptimizer, fully_shard

torch.manual_seed(0)
def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
loader = [(torch.randn(4, 8), torch.randn(4, 1)) for _ in range(3)]
loss_fn = F.mse_loss
net = make()
model = DataParallel(net, bucket_size_mb=25)    # like DistributedDataParallel: .module, buckets
opt = ShardedOptimizer(model.parameters(), torch.optim.AdamW, lr=1e-3, weight_decay=0.1)  # ZeRO-1
for x, y in loader:
    loss = loss_fn(model(x), y)
    loss.backward()
    model.finish_gradient_synchronization()     # the averaged gradients are in .grad
    opt.step()
    opt.zero_grad()
net = make()
model = fully_shard(net, units=torch.nn.Linear, mp=MixedPrecision(param_dtype=torch.bfloat16))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
for x, y in loader:
    loss = loss_fn(model(x).float(), y)
    loss.backward()
    opt.step()
    opt.zero_grad()
print("readme example ok", float(loss.detach()))
