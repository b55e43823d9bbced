"""Solutions to Lab 00's exercises (try them yourself first)."""


def idle_fraction(spans, rank):
    """Fraction of ``rank``'s wall time spent in ``idle`` spans (waiting for the others)."""
    mine = spans[spans["rank"] == rank]
    return mine.loc[mine["cat"] == "idle", "dur"].sum() / mine["end"].max()


def ring_bytes(nbytes, world):
    """Bytes one rank sends in a ring all-reduce: p-1 chunks of nbytes/p, twice."""
    return 2 * (world - 1) * nbytes / world
