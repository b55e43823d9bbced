"""DDP gradient bucketing: one job trains the same model under several ``bucket_cap_mb``.

DistributedDataParallel (Li et al. 2020, "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training", VLDB) packs gradients into buckets and starts each
bucket's all-reduce as soon as its gradients are ready, so communication overlaps the
rest of ``backward``. Small buckets start early but pay one latency term each; one big
bucket pays it once but waits for the whole backward. This workload measures both ends.

For each bucket size the same initial weights (a deep copy) are wrapped in a fresh DDP
with :func:`gpuviz.run.trace.ddp_comm_hook` (or recorded in compiled code: see
:mod:`gpuviz.run.native_buckets`), so every bucket's all-reduce is a ``comm`` span
on the comm lane (``bytes``, ``bucket``). Main-lane spans are ``forward``, ``backward``
(which, under DDP, returns only once every bucket is reduced), inside it ``wait for
gradient buckets`` (from the last gradient computed to the end of backward: the exposed
communication), and ``optimizer step``. Every step's ``step_end`` carries ``bucket_mb``
and ``warmup``; :func:`gpuviz.sharing.bucketing.bucket_sweep` splits the run with them.

What torch 2.13 does with ``bucket_cap_mb`` (torch/nn/parallel/distributed.py,
``_BucketCapacityConfig``): "MB" is MiB (2**20 bytes). The small first bucket
(``dist._DEFAULT_FIRST_BUCKET_BYTES`` = 1 MiB) is used only when ``bucket_cap_mb`` is
left at None (25 MiB); an explicit ``bucket_cap_mb`` caps the first bucket too. With
``find_unused_parameters=False`` the first iteration reduces all gradients in one bucket
and DDP then rebuilds the buckets in the order gradients became ready: that is why each
size gets ``warmup`` unmeasured steps (at least 1). A bucket holds whole tensors, so caps
below one layer's gradient (256 KiB for the default width 256) give one bucket per layer.

    gpuviz run gpuviz.workloads.bucketing:sweep --nproc 4

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.bucketing:sweep", nproc=4,
...                     args={"bucket_mb": [0.3, 3, 100], "steps": 2})  # doctest: +SKIP
>>> gradient_bytes(width=256, layers=152)[:4]     # last layer's bias and weight, then the next
[4, 1024, 1024, 262144]
"""

from __future__ import annotations

import math

# torch is imported inside sweep(): the analysis (gpuviz.sharing.bucketing) imports this module's
# pure helpers without paying for torch.

#: The sweep of the lab: 0.1 MB to 100 MB, about 3x apart.
BUCKET_MB = (0.1, 0.3, 1, 3, 10, 30, 100)


def check_bucket_mb(bucket_mb) -> list[float]:
    """``bucket_mb`` as a list of positive floats, or a ValueError that says what is wrong.

    >>> check_bucket_mb((1, 10))
    [1.0, 10.0]
    """
    if isinstance(bucket_mb, (int, float)) and not isinstance(bucket_mb, bool):
        bucket_mb = [bucket_mb]
    try:
        sizes = [float(b) for b in bucket_mb]
    except (TypeError, ValueError):
        raise ValueError(f"bucket_mb={bucket_mb!r}: give a list of bucket sizes in MB "
                         "(numbers > 0), e.g. [0.1, 1, 10, 100]") from None
    if not sizes:
        raise ValueError("bucket_mb=[]: give at least one bucket size in MB, e.g. [1, 10]")
    bad = [b for b in sizes if not (math.isfinite(b) and b > 0)]
    if bad:
        raise ValueError(f"bucket_mb={bucket_mb!r}: bucket sizes must be finite numbers > 0 MB; "
                         f"got {bad}")
    return sizes


def gradient_bytes(width: int = 256, layers: int = 152) -> list[int]:
    """Bytes of each fp32 gradient of the sweep's model, in the order backward makes them
    (last layer first; within a layer the bias before the weight).

    Pass it as ``tensor_bytes`` to :func:`gpuviz.sharing.bucketing.predict_bucket_sweep`.

    >>> sum(gradient_bytes(width=256, layers=152)) / 1e6
    40.002564
    """
    sizes = [[width * width, width]] * layers + [[width, 1]]   # [weight, bias] per Linear
    return [4 * n for w, b in reversed(sizes) for n in (b, w)]


def sweep(bucket_mb=BUCKET_MB, steps: int = 3, warmup: int = 1, width: int = 256,
          layers: int = 152, batch: int = 64, lr: float = 1e-3, seed: int = 0) -> dict:
    """Train one model under DDP for each ``bucket_mb``; return this rank's step times.

    Args:
        bucket_mb: DDP ``bucket_cap_mb`` values (MiB), run in this order.
        steps: measured steps per bucket size; warmup: unmeasured steps before them.
        width, layers: the MLP ``width -> width x layers -> 1``; the default is
            10.0 M parameters (40 MB of fp32 gradients) in 306 tensors.
        batch: global batch, split over ranks. lr: SGD learning rate; seed: weights, data.
    """
    import copy

    import torch
    import torch.distributed as dist
    from torch import nn

    from gpuviz.run import native_buckets, trace
    from gpuviz.workloads.mlp import make_mlp, synthetic_regression

    sizes = check_bucket_mb(bucket_mb)
    world, rank = dist.get_world_size(), dist.get_rank()
    for name, v, lo in (("steps", steps, 1), ("warmup", warmup, 1), ("width", width, 1),
                        ("layers", layers, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}={v!r}: must be an integer >= {lo}")
    if batch < world:
        raise ValueError(f"batch={batch} is smaller than the {world} ranks: each rank needs >= 1 sample")
    local = batch // world
    cuda = dist.get_backend() == "nccl"              # one GPU per rank; gloo: CPU
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    x_all, y_all = synthetic_regression(batch, width, seed)
    x, y = (t[rank * local:(rank + 1) * local].to(device) for t in (x_all, y_all))
    base = make_mlp(width, width, layers, seed)
    trace.set_total_steps(len(sizes) * (steps + warmup))
    tracer = trace.get_tracer()
    times: dict[float, list[float]] = {}
    for b in sizes:
        with trace.span("wrap in DDP (broadcast weights)", cat="comm", bucket_mb=b):
            model = native_buckets.ddp(copy.deepcopy(base).to(device), bucket_cap_mb=b,
                                       device_ids=[device] if cuda else None)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for i in range(warmup + steps):
            t0 = tracer.now() if tracer is not None else 0.0
            with trace.span("forward", bucket_mb=b):
                loss = nn.functional.mse_loss(model(x), y)
            trace.backward(loss, model, bucket_mb=b)  # compute, then the wait for buckets
            with trace.span("optimizer step", cat="optimizer", bucket_mb=b):
                opt.step()
                opt.zero_grad(set_to_none=True)
            if tracer is not None and i >= warmup:
                times.setdefault(b, []).append((tracer.now() - t0) / 1e6)
            trace.step(bucket_mb=b, warmup=i < warmup, loss=loss.item())
        if rank == 0:
            ms = sorted(times.get(b, [0.0]))[len(times.get(b, [0.0])) // 2] * 1e3
            print(f"bucket_cap_mb {b:6g}: median step {ms:7.1f} ms")
        del model, opt
    return {str(b): t for b, t in times.items()}
