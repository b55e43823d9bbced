"""One time 0 for every rank of a job, so their spans can be drawn on one axis.

Ranks on one host read the same monotonic clock (``time.perf_counter_ns`` is
CLOCK_MONOTONIC on Linux), so they share rank 0's origin exactly. Ranks on other hosts
estimate their offset to rank 0 by ping-pong, keeping the round trip with the smallest
time (Cristian, 1989, "Probabilistic clock synchronization"); the error is at most half
that round trip. ``GPUVIZ_CLOCK=pingpong`` forces ping-pong on one host too (to test it).

>>> origin_ns, info = align()   # outside a job: this process's clock
>>> info["clock"]
'one process'
"""

from __future__ import annotations

import os
import socket
import time


def align(rounds: int = 16) -> tuple[int, dict]:
    """Return this rank's perf_counter_ns value of the job's time 0, and how it was found."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return time.perf_counter_ns(), {"clock": "one process", "clock_error_us": 0.0,
                                        "start_time": time.time()}
    for _ in range(2):  # the first collectives absorb connection set-up
        dist.barrier()
    rank, world = dist.get_rank(), dist.get_world_size()
    origin = [time.perf_counter_ns(), time.time()]  # rank 0's values are the job's
    dist.broadcast_object_list(origin, src=0)
    origin_ns, start_time = origin
    hosts: list = [None] * world
    dist.all_gather_object(hosts, socket.gethostname())
    forced = os.environ.get("GPUVIZ_CLOCK") == "pingpong"
    remote = [r for r in range(1, world) if forced or hosts[r] != hosts[0]]
    if not remote:
        return origin_ns, {"clock": "one host: every rank reads the same monotonic clock",
                           "clock_error_us": 0.0, "start_time": start_time}
    group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    offset, error_ns = _pingpong(rank, remote, rounds, group)
    if rank not in remote:
        return origin_ns, {"clock": "rank 0's host: the same monotonic clock",
                           "clock_error_us": 0.0, "start_time": start_time}
    return origin_ns - offset, {"clock": "offset to rank 0 by ping-pong (Cristian 1989)",
                                "clock_error_us": round(error_ns / 1000, 1), "start_time": start_time}


def _pingpong(rank: int, remote: list[int], rounds: int, group) -> tuple[int, int]:
    """For each remote rank in turn, ``rounds`` round trips with rank 0.

    Returns (offset, error) in ns on a remote rank, where rank 0's clock = own + offset.
    """
    import torch
    import torch.distributed as dist

    buf = torch.zeros(1, dtype=torch.int64)
    best_rtt, best_offset = None, 0
    for r in remote:
        if rank not in (0, r):
            continue
        for _ in range(rounds):
            if rank == 0:
                dist.recv(buf, src=r, group=group)
                buf[0] = time.perf_counter_ns()
                dist.send(buf, dst=r, group=group)
            else:
                t1 = time.perf_counter_ns()
                dist.send(buf, dst=0, group=group)
                dist.recv(buf, src=0, group=group)
                t2 = time.perf_counter_ns()
                if best_rtt is None or t2 - t1 < best_rtt:
                    best_rtt, best_offset = t2 - t1, int(buf[0]) - (t1 + t2) // 2
    return best_offset, (best_rtt or 0) // 2
