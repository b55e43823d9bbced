"""Sharing: how ranks pass data to each other, and how fast (Lab 02).

- :mod:`~gpuviz.sharing.bench`: collective benchmarks (algbw and busbw as nccl-tests
  defines them) and the alpha-beta fit of a link;
- :mod:`~gpuviz.sharing.bucketing`: DDP's gradient buckets, swept and predicted;
- :mod:`~gpuviz.sharing.hardware`: this machine, the hardware ladder, GPUs and links with
  their sources, recorded topologies.

The ring all-reduce written from send and receive is :mod:`gpuviz.parallel.ring`.
"""
