"""The run engine: start jobs, record every rank, load what they recorded.

It depends on no topic (sharing, sync, energy...); topics plug in through
:mod:`gpuviz.run.hooks`. Kept light: a worker imports it before torch is ready.

- :mod:`~gpuviz.run.launch`: :func:`~gpuviz.run.launch.launch` runs a target under torchrun;
  :mod:`~gpuviz.run.job` watches the process, :mod:`~gpuviz.run.failures` says why it failed.
- :mod:`~gpuviz.run.worker`: the entry point on every rank; :mod:`~gpuviz.run.target`
  resolves ``module:function`` or a script path.
- :mod:`~gpuviz.run.trace` (``from gpuviz import trace``): spans and steps in a workload;
  :mod:`~gpuviz.run.tracer` records them, :mod:`~gpuviz.run.comm` traces collectives,
  :mod:`~gpuviz.run.native_buckets` records DDP's buckets in compiled code
  (:mod:`~gpuviz.run.compiled` builds it once per machine),
  :mod:`~gpuviz.run.clock` aligns the ranks' clocks.
- :mod:`~gpuviz.run.load`: a run directory as a :class:`~gpuviz.run.load.Run` of DataFrames;
  :mod:`~gpuviz.run.intervals` splits a lane's time; :mod:`~gpuviz.run.categories` names
  and colours the categories.
- :mod:`~gpuviz.run.imported`: PyTorch profiler traces of a real GPU job as a Run
  (:mod:`~gpuviz.run.kineto` reads one file, streamed; :mod:`~gpuviz.run.nccl_message` a
  collective's bytes; :mod:`~gpuviz.run.device_time` a GPU's time); :mod:`~gpuviz.run.recorded`
  the real traces shipped with gpuviz; :mod:`~gpuviz.run.profiling` runs torch.profiler
  beside gpuviz (``launch(profile=True)``).
"""
