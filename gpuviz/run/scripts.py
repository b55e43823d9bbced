"""A training script as it is, under the worker: a script that makes its own process group
makes it, with its own backend, timeout and options.

The worker makes the process group for a function target and for a script that does not
make one (its clock is aligned on it). An ordinary torchrun script calls
``dist.init_process_group`` itself, and a second one would fail ("trying to initialize the
default process group twice"); so for a script whose source calls it, the worker makes
none, and the tracer starts (its clock aligned) right after the script's own call. A
script that destroys its group at the end is followed: the trace is written first, and no
closing barrier waits for a group that is gone. The script runs as ``__main__`` with its
own ``sys.argv`` and its folder first on ``sys.path`` (its sibling modules import), as
under plain torchrun.

>>> import pathlib, tempfile
>>> p = pathlib.Path(tempfile.mkdtemp()) / "train.py"
>>> _ = p.write_text("import torch.distributed as dist\\ndist.init_process_group('gloo')\\n")
>>> makes_its_own_group(str(p))
True
"""

from __future__ import annotations

import ast
import contextlib
import os
import runpy
import sys
import warnings


def _parse(path: str) -> ast.Module | None:
    try:
        with open(path, encoding="utf-8") as f:
            return ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None


def makes_its_own_group(path: str) -> bool:
    """Whether the script's source calls ``init_process_group`` anywhere."""
    tree = _parse(path)
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name == "init_process_group":
                return True
    return False


def plain_script(path: str) -> bool:
    """Whether the script imports no gpuviz itself (then its timeline is recorded
    automatically: :mod:`gpuviz.run.auto`)."""
    tree = _parse(path)
    if tree is None:
        return False
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n == "gpuviz" or n.startswith("gpuviz.") for n in names):
            return False
    return True


@contextlib.contextmanager
def script_owns_the_group(start_tracer, tracer=None):
    """While inside, ``dist.init_process_group`` makes the script's group and then calls
    ``start_tracer()`` once; ``dist.destroy_process_group`` writes the trace first."""
    import torch.distributed as dist
    import torch.distributed.distributed_c10d as c10d

    init, destroy = dist.init_process_group, dist.destroy_process_group

    def init_process_group(*args, **kwargs):
        if dist.is_initialized():   # the worker made it (a helper module calls this)
            warnings.warn(f"init_process_group(backend={dist.get_backend()!r}) was already made "
                          "by gpuviz's worker, which found no call to it in the script; the "
                          "script's own call is skipped and its arguments unused", stacklevel=2)
            return None
        out = init(*args, **kwargs)
        start_tracer()
        return out

    def destroy_process_group(*args, **kwargs):
        if tracer is not None and not tracer.closed:
            tracer._write_now()
        return destroy(*args, **kwargs)

    dist.init_process_group = c10d.init_process_group = init_process_group
    dist.destroy_process_group = c10d.destroy_process_group = destroy_process_group
    try:
        yield
    finally:
        dist.init_process_group = c10d.init_process_group = init
        dist.destroy_process_group = c10d.destroy_process_group = destroy


def run_script(path: str, args: list[str], start_tracer, tracer=None) -> None:
    """Run the script at ``path`` as ``__main__`` with ``args``, as torchrun would."""
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    with script_owns_the_group(start_tracer, tracer):
        runpy.run_path(path, run_name="__main__")
