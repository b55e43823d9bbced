"""Save training state, and resume from the last complete save after a failure.

Model and optimizer state go through ``torch.distributed.checkpoint`` (DCP): every rank
calls :func:`save` together; DCP plans who writes what (a tensor every rank holds is
written once) and rank 0 writes the index (``.metadata``) last. Training that is
restarted (torchrun ``--max-restarts``, :func:`gpuviz.launch`'s ``max_restarts``) calls
:func:`load_latest` first and continues from the step after the last checkpoint: the
steps since that checkpoint are done again, the ones before it are kept.

Checkpoints live in ``$GPUVIZ_RUN_DIR/checkpoints/step{k}``, where k is the number of
steps done (the step to resume at). A save is written to ``.step{k}.tmp`` and renamed
when complete, so a crash in the middle of a save leaves the previous checkpoint as the
latest: the rename is the commit.

Only checkpoints this job wrote are loaded: DCP reads a checkpoint's index with pickle,
which can run code, so one that another job (or another person) left in the run directory
is skipped with a warning. Each save records the job's id (``$GPUVIZ_JOB_ID``, a random
token :func:`gpuviz.launch` makes, shared by a restarted job's attempts); without one (a
``directory=`` of your own, outside ``gpuviz.launch``) every complete checkpoint there is
yours to load.

How often to save is a trade: each save costs time, each failure loses the work since the
last one. With save time C and mean time between failures M, the interval that wastes
least is about sqrt(2 C M) (Young, "A first order approximation to the optimum
checkpoint interval", CACM 17(9), 1974).

>>> import tempfile, torch
>>> model = torch.nn.Linear(4, 2)
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> d = tempfile.mkdtemp()
>>> str(save(3, model, opt, directory=d).name)
'step3'
>>> load_latest(model, opt, directory=d)
3
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path

from gpuviz.run import trace

_STEP_DIR = re.compile(r"^step(\d+)$")
#: The job's id, set by the launcher (shared by the attempts of a restarted job).
JOB_ENV = "GPUVIZ_JOB_ID"


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def checkpoint_root(directory: str | os.PathLike | None = None) -> Path:
    """Where checkpoints go: ``directory``, else ``checkpoints/`` in the run directory."""
    if directory is not None:
        return Path(directory)
    t = trace.get_tracer()
    run_dir = t.run_dir if t is not None else os.environ.get("GPUVIZ_RUN_DIR")
    if not run_dir:
        raise ValueError("directory is not given and there is no run directory (no tracer, "
                         "$GPUVIZ_RUN_DIR unset): pass directory= where checkpoints go")
    return Path(run_dir) / "checkpoints"


def _job_of(path: Path) -> str | None:
    try:
        return json.loads((path / "gpuviz_checkpoint.json").read_text(encoding="utf-8")).get("job")
    except (OSError, ValueError, AttributeError):
        return None


def list_checkpoints(directory: str | os.PathLike | None = None, *,
                     job: str | None = None) -> list[int]:
    """The steps of the complete checkpoints in ``directory`` that job ``job`` wrote (default:
    this job, ``$GPUVIZ_JOB_ID``; with none, every complete one), oldest first.

    >>> list_checkpoints("/nonexistent")
    []
    """
    root = checkpoint_root(directory)
    if not root.is_dir():
        return []
    job = job if job is not None else os.environ.get(JOB_ENV)
    complete = {int(m.group(1)): p for p in root.iterdir()
                if (m := _STEP_DIR.match(p.name)) and (p / ".metadata").is_file()}
    if job is None:
        return sorted(complete)
    mine = sorted(k for k, p in complete.items() if _job_of(p) == job)
    if len(mine) < len(complete):
        others = sorted(set(complete) - set(mine))
        warnings.warn(f"{root}: skipped the checkpoints of steps {others}, which another job "
                      "wrote: loading one reads its index with pickle, which can run code",
                      stacklevel=2)
    return mine


def _state(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    return {"model": model_sd, "optim": optim_sd}


def save(step: int, model, optimizer, directory: str | os.PathLike | None = None) -> Path:
    """Save ``model`` and ``optimizer`` as the state after ``step`` steps; every rank calls it.

    Traced as a ``save checkpoint`` span (``io``). Returns the checkpoint's directory.
    """
    import torch.distributed.checkpoint as dcp

    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step={step!r}: the number of steps done, an integer >= 0")
    root = checkpoint_root(directory)
    final, tmp = root / f"step{step}", root / f".step{step}.tmp"
    dist = _dist()
    rank = dist.get_rank() if dist else 0
    with trace.span("save checkpoint", cat="io", checkpoint_step=step):
        if rank == 0:
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # left by a crash in an earlier save
        if dist:
            dist.barrier()
        with warnings.catch_warnings():  # without a process group DCP warns it saves alone
            warnings.simplefilter("ignore", UserWarning)
            dcp.save(_state(model, optimizer), checkpoint_id=tmp, no_dist=dist is None)
        # dcp.save returns on rank 0 after every rank's data and the index are written.
        if rank == 0:
            (tmp / "gpuviz_checkpoint.json").write_text(json.dumps(
                {"step": step, "world_size": dist.get_world_size() if dist else 1,
                 "time": time.time(), "job": os.environ.get(JOB_ENV)}), encoding="utf-8")
            shutil.rmtree(final, ignore_errors=True)  # the same step saved again
            os.replace(tmp, final)
        if dist:
            dist.barrier()  # nobody goes on (and fails) before the checkpoint is committed
    return final


def load_latest(model, optimizer, directory: str | os.PathLike | None = None) -> int | None:
    """Load the latest complete checkpoint into ``model`` and ``optimizer``; every rank calls it.

    Returns its step (the step to run next) and makes the tracer count on from there
    (:func:`gpuviz.run.trace.resume`), or None when there is none (nothing is changed).
    Traced as a ``load checkpoint`` span (``io``).
    """
    dist = _dist()
    found = list_checkpoints(directory)
    latest = [found[-1] if found else None]
    if dist:  # rank 0 decides, so that every rank loads the same one
        dist.broadcast_object_list(latest, src=0)
    step = latest[0]
    if step is None:
        return None
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    t = trace.get_tracer()
    t0 = t.now() if t is not None else 0.0
    state = _state(model, optimizer)
    with warnings.catch_warnings():  # as in save
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=checkpoint_root(directory) / f"step{step}",
                 no_dist=dist is None)
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optim"])
    if t is not None:
        t.complete("load checkpoint", "io", t0, t.now() - t0, step=step, checkpoint_step=step)
    trace.resume(step)
    return step
