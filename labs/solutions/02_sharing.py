"""Solutions to Lab 02's exercise (try it yourself first)."""


def best_bucket_mb(measured):
    """The bucket size with the least exposed communication (``exposed_ms``: the all-reduce
    time a step still waits for after backward). Smaller sizes lose because every bucket
    pays the latency alpha (and, on shared CPU cores, slows the backward it overlaps);
    larger ones lose because their all-reduce cannot start until most of backward is done,
    so less of it hides behind the computation.

    ``measured`` is ``gpuviz.sharing.bucketing.bucket_sweep(sweep_run)``, section 7's table:
    ``checks.best_bucket_size(best_bucket_mb, measured)``.
    """
    return float(measured.loc[measured["exposed_ms"].idxmin(), "bucket_mb"])
