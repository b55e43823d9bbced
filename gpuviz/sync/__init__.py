"""Sync: everyone waits for the slowest, and what a failure or a hang costs (Lab 03).

- :mod:`~gpuviz.sync.inject`: delays, jitter, failures and hangs to inject into a job;
  :mod:`~gpuviz.sync.injector` acts on them on every rank;
- :mod:`~gpuviz.sync.stragglers`: who waited for whom in a run (functions over a Run);
  :mod:`~gpuviz.sync.order_stats`: the wait predicted by order statistics;
- :mod:`~gpuviz.sync.checkpoint`: save and resume, so a restarted job goes on;
- :mod:`~gpuviz.sync.relaxed`: synchronous training against accumulation and local SGD.
"""
