"""Real GPU traces shipped with gpuviz (recorded elsewhere; sources in ``gpuviz/data/README.md``).

>>> sorted(REAL_TRACES)
['a100-2rank', 'dlrm-8xV100', 'sampled-128rank']
>>> len(real_trace_files("dlrm-8xV100"))
8
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "real-traces"

#: name -> (what it is, where it was published). Small test models, not tuned production runs.
REAL_TRACES = {
    "dlrm-8xV100": ("8 ranks of a DLRM test model on one node of Tesla V100-SXM2-32GB GPUs, NCCL",
                    "facebookresearch/param @ 1e115ff, et_replay/tests/inputs/dlrm_kineto.tar.gz (MIT)"),
    "a100-2rank": ("rank 0 of a 2-rank test job on A100 GPUs, NCCL 2.17.1",
                   "facebookresearch/HolisticTraceAnalysis @ f4d0062, "
                   "tests/data/nccl_parser_config/nccl_data.json.gz (MIT)"),
    "sampled-128rank": ("ranks 0 and 1 of a 128-rank NCCL job, subsampled (GPU model not stated)",
                        "facebookresearch/HolisticTraceAnalysis @ f4d0062, "
                        "tests/data/trace_filter/sampled_rank-{0,1}.json.gz (MIT)"),
}


def real_trace_files(name: str) -> list[Path]:
    """The trace files (one per rank) of a shipped real GPU job."""
    if name not in REAL_TRACES:
        raise ValueError(f"name={name!r}: use one of {', '.join(sorted(REAL_TRACES))}")
    return sorted((DATA / name).glob("*.json.gz"))


def load_real(name: str):
    """A shipped real GPU job as a :class:`~gpuviz.run.load.Run`; ``run.meta["recorded"]``
    says what it is and where it was published.

    >>> run = load_real("dlrm-8xV100")
    >>> run.world_size, run.meta["gpu"]
    (8, 'Tesla V100-SXM2-32GB')
    """
    import warnings

    from gpuviz.run.load import TraceWarning, load_run

    with warnings.catch_warnings():
        # Known and stated in REAL_TRACES: sampled ranks, no deviceProperties.
        warnings.simplefilter("ignore", TraceWarning)
        run = load_run(real_trace_files(name))
    what, where = REAL_TRACES[name]
    run.meta["recorded"] = {"name": name, "what": what, "source": where}
    return run
