"""Synthetic PyTorch profiler traces with a known answer, in each variant real traces come in.

Every rank, every step: ``n`` compute kernels of 100 us on stream 7 (rank r's last one
``r * 50`` us longer, so later ranks arrive later), then an all_reduce whose NCCL kernel on
stream 13 starts when the rank arrives and ends 200 us after the last rank arrived, then an
optimizer kernel of 80 us. So each rank's compute, transfer, wait and optimizer time are
known exactly (:func:`expected`).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

STEP_US, GAP_US, XFER_US, OPT_US = 10_000, 100, 200, 80


def expected(rank: int, world: int, n: int = 4, steps: int = 2) -> dict:
    """Seconds the import must find on ``rank``: per category, summed over steps."""
    wait = (world - 1 - rank) * 50
    return {"compute": steps * (n * 100 + rank * 50) / 1e6, "comm": steps * XFER_US / 1e6,
            "wait": steps * wait / 1e6, "optimizer": steps * OPT_US / 1e6}


def events(rank: int, world: int, *, n: int = 4, steps: int = 2, new_nccl: bool = False,
           sizes: str = "kernel", str_ids: bool = False, float_ts: bool = False,
           clock_us: float = 1_700_000_000_000_000, nelems: int = 1 << 20) -> list[dict]:
    cpu_pid, tid = 4000 + rank, 4000 + rank
    out, corr = [], [1000]

    def t(x):
        return float(x) + 0.25 if float_ts else int(x)

    def pid(x):
        return str(x) if str_ids else x

    def kernel(name, ts, dur, stream, cpu_ts, args=None):
        corr[0] += 1
        out.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": pid(cpu_pid),
                    "tid": pid(tid), "ts": t(cpu_ts), "dur": 5, "args": {"correlation": corr[0]}})
        out.append({"ph": "X", "cat": "kernel", "name": name, "pid": pid(0), "tid": pid(stream),
                    "ts": t(ts), "dur": float(dur) if float_ts else dur, "args": {"stream": stream, "correlation": corr[0],
                                                        "device": 0, **(args or {})}})

    name = ("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)" if new_nccl
            else "ncclKernel_AllReduce_RING_LL_Sum_float(ncclDevComm*, unsigned long, ncclWork*)")
    for s in range(steps):
        base = clock_us + s * STEP_US
        out.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{s}", "pid": pid(cpu_pid),
                    "tid": pid(tid), "ts": t(base), "dur": STEP_US - 10, "args": {}})
        k = base + GAP_US
        for i in range(n):
            d = 100 + (rank * 50 if i == n - 1 else 0)
            kernel("void gemm_kernel<float>(...)", k, d, 7, base + 1 + i * 10)
            k += d
        arrival = k
        last = base + GAP_US + n * 100 + (world - 1) * 50
        cpu = base + 60
        kargs = ({"Collective name": "allreduce", "In msg nelems": nelems, "Out msg nelems": nelems,
                  "Group size": world, "dtype": "Float", "Process Group Name": "0"} if sizes == "kernel" else {})
        out.append({"ph": "X", "cat": "cpu_op", "name": "record_param_comms", "pid": pid(cpu_pid),
                    "tid": pid(tid), "ts": t(cpu), "dur": 30,
                    "args": {"Input Dims": [[], [], []], "Input type": ["TensorList", "Scalar", ""]}})
        out.append({"ph": "X", "cat": "user_annotation", "name": "nccl:all_reduce", "pid": pid(cpu_pid),
                    "tid": pid(tid), "ts": t(cpu + 2), "dur": 20,
                    "args": {"Input Dims": [[nelems]], "Input type": ["float"]}})
        kernel(name, arrival, last + XFER_US - arrival, 13, cpu + 5, kargs)
        out.append({"ph": "X", "cat": "user_annotation", "name": "Optimizer.step#SGD.step", "pid": pid(cpu_pid),
                    "tid": pid(tid), "ts": t(cpu + 100), "dur": 50, "args": {}})
        kernel("void sgd_update_kernel<float>(...)", last + XFER_US + 10, OPT_US, 7, cpu + 110)
    return out


def write(folder, world: int, *, dist_info: str | None = "full", gz: bool = False, name: str = "worker{r}",
          devices: int = 8, clock_shift_us=None, ranks=None, **kw) -> list[Path]:
    """Write one trace per rank into ``folder``; ``dist_info`` is "full", "rank" or None;
    ``devices`` GPUs per node in deviceProperties (0: none); ``clock_shift_us[r]`` moves rank
    r's whole clock (another node's)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in (range(world) if ranks is None else ranks):
        shift = (clock_shift_us or {}).get(r, 0)
        doc = {"schemaVersion": 1}
        if devices:
            doc["deviceProperties"] = [{"id": i, "name": "NVIDIA H100 80GB HBM3"} for i in range(devices)]
        if dist_info == "full":
            doc["distributedInfo"] = {"backend": "nccl", "rank": r, "world_size": world,
                                      "nccl_version": "2.21.5"}
        elif dist_info == "rank":
            doc["distributedInfo"] = {"rank": r}
        doc["traceEvents"] = events(r, world, clock_us=1_700_000_000_000_000 + shift, **kw)
        text = json.dumps(doc).encode()
        p = folder / (name.format(r=r) + ".pt.trace.json" + (".gz" if gz else ""))
        p.write_bytes(gzip.compress(text) if gz else text)
        paths.append(p)
    return paths
