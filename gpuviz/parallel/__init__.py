"""Teaching implementations of parallelism and collectives, one idea per file.

Each file starts with the simplest version and names the paper it comes from. Three of them
wrap your own model in your own training loop, the way PyTorch's own do:

- :class:`~gpuviz.parallel.ddp.DataParallel` (like ``DistributedDataParallel``);
- :class:`~gpuviz.parallel.sharded.ShardedOptimizer` (ZeRO-1/2, like ``ZeroRedundancyOptimizer``);
- :func:`~gpuviz.parallel.fsdp.fully_shard` (ZeRO-3, like FSDP2's ``fully_shard``).

>>> from gpuviz.parallel.ring import simulate_ring
>>> simulate_ring(4)[-1].state[0][0] == frozenset(range(4))
True
"""

from gpuviz.parallel.ddp import DataParallel
from gpuviz.parallel.fsdp import FullyShardedModule, MixedPrecision, fully_shard
from gpuviz.parallel.sharded import ShardedOptimizer

__all__ = ["DataParallel", "ShardedOptimizer", "fully_shard", "FullyShardedModule", "MixedPrecision"]
