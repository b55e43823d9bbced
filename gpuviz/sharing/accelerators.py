"""Accelerators and the links between them, as published: the numbers the cluster model
(:mod:`gpuviz.plan`) plans with, each with its source. Links reuse the hardware ladder's
rows (:data:`gpuviz.sharing.hardware.CATALOGUE`) and carry NCCL's latencies.

>>> accelerator("H100 SXM")["memory_bytes"] / 2**30     # nvidia-smi's memory.total
79.6474609375
>>> interconnect("ib-ndr")["latency_s"]
9.6e-06
"""

from __future__ import annotations

from gpuviz.sharing.hardware import _A100, _H100, link

_A100_PDF = _A100
_H200 = "NVIDIA H200 Tensor Core GPU, https://www.nvidia.com/en-us/data-center/h200/"
_B200 = ("NVIDIA DGX B200 datasheet (8 B200 GPUs: 72 PFLOPS FP8 training, 1,440 GB HBM3e, 64 TB/s), "
         "https://www.nvidia.com/en-us/data-center/dgx-b200/; per-GPU dense rates at 1,000 W "
         "from NVIDIA's Blackwell datasheet as tabulated by G. Lockwood, "
         "https://glennklockwood.com/garden/processors/B200")
_MI300X = ("AMD Instinct MI300X data sheet, https://www.amd.com/content/dam/amd/en/documents/"
           "instinct-tech-docs/data-sheets/amd-instinct-mi300x-data-sheet.pdf")


_SMI = ("nvidia-smi's memory.total ({mib} MiB = {gib:.2f} GiB; the datasheet's '{label}' is the "
        "marketing size), {how}: J. Walsh (Modal), 'Why does an NVIDIA H100 80GB card offer 85.52 "
        "GB?', table of NVML-reported capacities, https://thundergolfer.com/blog/nvidia-gpu-memory-capacity")
_V100 = ("NVIDIA Tesla V100 datasheet, https://images.nvidia.com/content/technologies/volta/pdf/"
         "volta-v100-datasheet-update-us-1165301-r5.pdf")
_H800 = ("H800: the H100's die and memory with NVLink cut to 400 GB/s total (Philisun, 'NVIDIA "
         "H800 vs H100', https://www.philisun.com/technical-analysis/nvidia-h800-vs-h100-a-technical-"
         "deep-dive-into-politically-defined-ai-chips); trained on by DeepSeek-V3 (DeepSeek-AI "
         "2024, arXiv:2412.19437, https://arxiv.org/abs/2412.19437)")
_A800 = ("A800: the A100 with NVLink limited to 400 GB/s, same performance, 80 GB HBM2e, 400 W SXM "
         "(Tweakers after Reuters, https://tweakers.net/nieuws/203182/nvidia-introduceert-a800-gpu-"
         "voor-china-die-niet-onder-exportrestricties-vs-valt.html)")


def _mib(mib: int, label: str, like: str | None = None) -> tuple[float, str]:
    how = (f"as for the {like}, which has the same memory (assumed: not in the source's table)"
           if like else "as the source's table gives it for this card")
    return mib * 2**20, _SMI.format(mib=mib, gib=mib / 1024, label=label, how=how)


def _accelerator(name, vendor, bf16_flops, fp32_flops, memory_bytes, memory_bytes_per_s, tdp_w,
                 intra_link, source, tdp_source=None, idle_w=None, idle_source=None,
                 fp8_flops=None, memory_source=None):
    if isinstance(memory_bytes, tuple):
        memory_bytes, memory_source = memory_bytes
    return {"name": name, "vendor": vendor, "bf16_flops": float(bf16_flops),
            "fp32_flops": float(fp32_flops),
            "fp8_flops": float(fp8_flops) if fp8_flops else None,
            "memory_bytes": float(memory_bytes),
            "memory_source": memory_source or "the datasheet's decimal gigabytes (no nvidia-smi value here)",
            "memory_bytes_per_s": float(memory_bytes_per_s), "tdp_w": float(tdp_w),
            "tdp_source": tdp_source or source, "idle_w": idle_w, "idle_source": idle_source,
            "intra_link": intra_link, "source": source}


#: Accelerators by name. ``bf16_flops``: dense 16-bit tensor-core peak, FLOP/s (BF16; FP16
#: on the V100, which has no BF16), without structured sparsity, which doubles the
#: datasheets' headline; ``fp8_flops``: dense FP8 peak where the GPU has FP8 (else None);
#: ``fp32_flops``: dense FP32 (non-tensor) peak; ``memory_bytes``: the memory a program
#: can see, in bytes: nvidia-smi's ``memory.total`` in MiB where it is known (the units the
#: card reports, ``memory_source`` says which), else the datasheet's decimal GB;
#: ``memory_bytes_per_s``: HBM peak bandwidth; ``tdp_w``: maximum board power (NVIDIA "max
#: TDP", AMD "TBP") with ``tdp_source``; ``idle_w``: idle power where a source publishes
#: one (None: none does); ``intra_link``: the key in :data:`INTERCONNECTS` of its link
#: inside a server. Peaks, not what software achieves: :mod:`gpuviz.plan.prediction`
#: applies a fitted efficiency.
ACCELERATORS = {a["name"]: a for a in (
    _accelerator("V100 SXM2 32GB", "NVIDIA", 125e12, 15.7e12, 32 * 2**30, 900e9, 300, "nvlink2",
                 _V100 + ": Tensor Performance 125 TFLOPS (FP16; no BF16), FP32 15.7 TFLOPS, 32 GB "
                 "HBM2, 900 GB/s, 300 W", memory_source="32 GiB: HBM2 stacks are sized in binary "
                 "units (the datasheet's '32 GB')"),
    _accelerator("A100 SXM 40GB", "NVIDIA", 312e12, 19.5e12, _mib(40960, "40GB"), 1.555e12, 400,
                 "nvlink3", _A100_PDF + ": BF16 tensor core 312 TFLOPS (624 with sparsity), FP32 "
                 "19.5 TFLOPS, 40 GB HBM2, 1,555 GB/s, max TDP 400 W"),
    _accelerator("A100 SXM 80GB", "NVIDIA", 312e12, 19.5e12, _mib(81920, "80GB"), 2.039e12, 400,
                 "nvlink3",
                 _A100_PDF + ": BF16 tensor core 312 TFLOPS (624 with sparsity), FP32 19.5 TFLOPS, "
                 "80 GB HBM2e, 2,039 GB/s, max TDP 400 W"),
    _accelerator("A800 SXM 80GB", "NVIDIA", 312e12, 19.5e12, _mib(81920, "80GB", "A100 80GB"),
                 2.039e12, 400,
                 "nvlink-400", _A800 + ": as the A100 SXM 80GB (312 TFLOPS BF16, 2,039 GB/s, "
                 "400 W), NVLink 400 GB/s"),
    _accelerator("H100 SXM", "NVIDIA", 989e12, 67e12, _mib(81559, "80GB"), 3.35e12, 700, "nvlink4",
                 _H100 + ": BF16 tensor core 1,979 TFLOPS with sparsity (989 dense), FP8 3,958 "
                 "with sparsity (1,979 dense), FP32 67 TFLOPS, 80 GB, 3.35 TB/s, max TDP up to 700 W",
                 fp8_flops=1979e12),
    _accelerator("H800 SXM", "NVIDIA", 989e12, 67e12, _mib(81559, "80GB", "H100"), 3.35e12, 700,
                 "nvlink-400", _H800 + ": BF16 989 TFLOPS dense, FP8 1,979 dense, 80 GB, 3.35 TB/s, "
                 "700 W", fp8_flops=1979e12),
    _accelerator("H200 SXM", "NVIDIA", 989e12, 67e12, _mib(143771, "141GB"), 4.8e12, 700, "nvlink4",
                 _H200 + ": BF16 tensor core 1,979 TFLOPS with sparsity (989 dense), FP8 3,958 "
                 "with sparsity (1,979 dense), FP32 67 TFLOPS, 141 GB HBM3e, 4.8 TB/s, max TDP up "
                 "to 700 W", fp8_flops=1979e12),
    _accelerator("B200", "NVIDIA", 2.25e15, 80e12, 180e9, 8e12, 1000, "nvlink5",
                 _B200 + ": HGX B200 at 1,000 W: BF16 2,250 TFLOPS dense (4,500 sparse), FP8 4,500 "
                 "dense, FP32 80 TFLOPS; 180 GB and 8 TB/s per GPU (DGX B200 totals / 8)",
                 fp8_flops=4.5e15),
    _accelerator("MI300X", "AMD", 1307.4e12, 163.4e12, 192e9, 5.3e12, 750, "infinity-fabric",
                 _MI300X + ": peak BF16 1,307.4 TFLOPS dense (2,614.9 with sparsity), FP8 2,614.9 "
                 "dense, FP32 163.4 TFLOPS, 192 GB HBM3, 5.3 TB/s, 750 W peak board power (TBP)",
                 fp8_flops=2614.9e12),
)}


#: NCCL's own cost model of a ring collective with its Simple protocol (the one large
#: messages use): a base latency per collective, plus a latency per ring step over NVLink,
#: PCIe or the network. NVIDIA/nccl, src/graph/tuning.cc (baseLat and hwLat, Ring/Simple),
#: https://github.com/NVIDIA/nccl/blob/01afd20a77b5804e0ecf1042509dd9d20ebf9e93/src/graph/tuning.cc
NCCL_LATENCY = {"base": 8.4e-6, "nvlink": 3.4e-6, "pci": 5.7e-6, "net": 9.6e-6,
                "source": "NCCL's tuning model (src/graph/tuning.cc, Ring/Simple: base 8.4 us per "
                          "collective; per step 3.4 us NVLink, 5.7 us PCIe, 9.6 us network), "
                          "https://github.com/NVIDIA/nccl/blob/01afd20a77b5804e0ecf1042509dd9d20ebf9e93/"
                          "src/graph/tuning.cc"}


def _interconnect(key, where, bytes_per_s, source, latency_s=None, latency_source=None):
    return key, {"name": key, "where": where, "bytes_per_s": float(bytes_per_s),
                 "latency_s": latency_s, "latency_source": latency_source, "source": source}


def _from_ladder(key, where, rung, hop="net"):
    r = link(rung)
    return _interconnect(key, where, r["bytes_per_s"], f"{rung}: {r['published']}; {r['source']}",
                         NCCL_LATENCY[hop], NCCL_LATENCY["source"])


#: Links for the cluster model, by short name: ``bytes_per_s`` is per GPU and direction
#: (inside a server: the GPU's total link bandwidth each way; between servers: one NIC
#: port); ``latency_s``: one ring step in NCCL's cost model (:data:`NCCL_LATENCY`). The
#: ladder's rows (:data:`CATALOGUE`) are reused with their sources.
INTERCONNECTS = dict((
    _interconnect("nvlink2", "inside a server", 150e9,
                  _V100 + ": NVLink 300 GB/s (both directions), so 150 GB/s each way",
                  NCCL_LATENCY["nvlink"], NCCL_LATENCY["source"]),
    _from_ladder("nvlink3", "inside a server", "NVLink 3 (A100 SXM, per GPU)", "nvlink"),
    _interconnect("nvlink-400", "inside a server", 200e9,
                  _A800 + "; " + _H800 + ": NVLink 400 GB/s (both directions), so 200 GB/s each way",
                  NCCL_LATENCY["nvlink"], NCCL_LATENCY["source"]),
    _from_ladder("nvlink4", "inside a server", "NVLink 4 (H100 SXM, per GPU)", "nvlink"),
    _from_ladder("nvlink5", "inside a server", "NVLink 5 (Blackwell, per GPU)", "nvlink"),
    _interconnect("infinity-fabric", "inside a server", 448e9,
                  _MI300X + ": 7 AMD Infinity Fabric links, 896 GB/s peak aggregate (both "
                  "directions), so 448 GB/s each way", NCCL_LATENCY["nvlink"],
                  NCCL_LATENCY["source"] + " (NVLink's value, assumed for Infinity Fabric)"),
    _from_ladder("pcie4", "inside a server", "PCIe 4.0 x16", "pci"),
    _from_ladder("pcie5", "inside a server", "PCIe 5.0 x16", "pci"),
    _from_ladder("ib-hdr", "between servers", "InfiniBand HDR (one 200 Gb/s port)"),
    _from_ladder("ib-ndr", "between servers", "InfiniBand NDR (one 400 Gb/s NIC)"),
    _from_ladder("ib-xdr", "between servers", "InfiniBand XDR (one 800 Gb/s port)"),
    _from_ladder("eth-400g", "between servers", "400 GbE (one port)"),
    _from_ladder("eth-100g", "between servers", "100 GbE (one port)"),
    _interconnect("omni-path-100", "between servers", 12.5e9,
                  "Intel Omni-Path Architecture 100 series: 100 Gb/s per port (BLOOM's Jean Zay "
                  "nodes have 4 Omni-Path 100 Gb/s links each: Le Scao et al. 2022, 'BLOOM', "
                  "arXiv:2211.05100)", NCCL_LATENCY["net"], NCCL_LATENCY["source"]),
))


def _lookup(table: dict, what: str, name: str) -> dict:
    if name not in table:
        raise ValueError(f"{what}={name!r} is not in the catalogue; known: "
                         + ", ".join(map(repr, table)))
    return dict(table[name])


def accelerator(name: str) -> dict:
    """One accelerator of :data:`ACCELERATORS` (a copy), or a ValueError listing them.

    >>> accelerator("H100 SXM")["tdp_w"]
    700.0
    """
    return _lookup(ACCELERATORS, "gpu", name)


def interconnect(name: str) -> dict:
    """One link of :data:`INTERCONNECTS` (a copy), or a ValueError listing them.

    >>> interconnect("ib-ndr")["bytes_per_s"]
    50000000000.0
    """
    return _lookup(INTERCONNECTS, "link", name)
