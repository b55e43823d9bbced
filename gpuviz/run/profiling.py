"""``launch(..., profile=True)``: torch.profiler on every rank, beside gpuviz's own spans.

Each rank runs ``torch.profiler.profile`` (CPU, and CUDA where the rank has a GPU) from the
tracer's start to its close, marks each gpuviz step as a ``ProfilerStep#N``, and writes
``profiler/rank{R}.pt.trace.json.gz`` in the run directory: the same job as the PyTorch
profiler sees it, which ``gpuviz.load_run(run.path / "profiler")``, Perfetto or Holistic
Trace Analysis read.

>>> from gpuviz.run import hooks
>>> hooks.option("profile").check(True, 4), hooks.option("profile").check(False, 4)
(True, None)
"""

from __future__ import annotations

import os

from gpuviz.run import hooks

ENV = "GPUVIZ_PROFILE"
FOLDER = "profiler"


def _check(value, world_size):
    if not isinstance(value, bool):
        raise ValueError(f"profile={value!r}: give True (record torch.profiler traces too) or False")
    return True if value else None


hooks.register_option(hooks.Option("profile", ENV, _check))


class Profiler(hooks.RankHook):
    """torch.profiler running on this rank; a step of gpuviz is a profiler step."""

    name = "profiler"

    def __init__(self, tracer):
        import torch
        from torch.profiler import ProfilerAction, ProfilerActivity, profile

        self.tracer = tracer
        acts = [ProfilerActivity.CPU]
        if torch.cuda.is_available() and getattr(tracer, "cuda", False):
            acts.append(ProfilerActivity.CUDA)
        self.activities = [a.name for a in acts]
        self.path = tracer.run_dir / FOLDER / f"rank{tracer.rank}.pt.trace.json.gz"
        # A schedule that always records: the profiler then marks each step (ProfilerStep#N).
        self.prof = profile(activities=acts, record_shapes=True,
                            schedule=lambda step: ProfilerAction.RECORD)
        self.prof.start()
        self._steps = 0

    def info(self) -> dict:
        return {"activities": self.activities, "trace": str(self.path.relative_to(self.tracer.run_dir))}

    def step_begins(self, step: int) -> None:
        if self._steps:
            self.prof.step()
        self._steps += 1

    def close(self) -> None:
        self.prof.stop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp.json")
        self.prof.export_chrome_trace(str(tmp))
        import gzip
        import shutil

        with open(tmp, "rb") as src, gzip.open(self.path.with_suffix(".gz.tmp"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(self.path.with_suffix(".gz.tmp"), self.path)
        tmp.unlink()


@hooks.register_rank_hook
def _profiler(tracer):
    return Profiler(tracer) if os.environ.get(ENV) == "true" else None
