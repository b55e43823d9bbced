"""Rank 0 writes every listening socket of this job's processes (torchrun and its workers)
to listening.json in the run directory, after a collective has connected every rank."""

import json
import os
from pathlib import Path

import psutil
import torch
import torch.distributed as dist

t = torch.ones(4)
dist.all_reduce(t)
dist.barrier()
if dist.get_rank() == 0:
    agent = psutil.Process(os.getppid())
    procs = [agent, *agent.children(recursive=True)]
    seen = []
    for p in procs:
        try:
            seen += [[p.pid, c.laddr.ip, c.laddr.port] for c in p.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            pass
    Path(os.environ["GPUVIZ_RUN_DIR"], "listening.json").write_text(json.dumps(seen))
dist.barrier()
