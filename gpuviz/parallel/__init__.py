"""Teaching implementations of parallelism and collectives, one idea per file.

Each file starts with the simplest version and names the paper it comes from.

>>> from gpuviz.parallel.ring import simulate_ring
>>> simulate_ring(4)[-1].state[0][0] == frozenset(range(4))
True
"""
