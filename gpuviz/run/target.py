"""What a job runs: ``"package.module:function"`` or a path to a script.

>>> resolve_target("gpuviz.workloads.mlp:train")[0]
'function'
"""

from __future__ import annotations

import importlib
import os


def resolve_target(target: str):
    """Return ``("function", fn)`` or ``("script", path)`` for TARGET, or raise ValueError."""
    if not isinstance(target, str) or not target:
        raise ValueError(f"target={target!r}: give 'package.module:function' or a path to a .py script")
    if target.endswith(".py") or os.sep in target:
        if not os.path.isfile(target):
            raise ValueError(f"target={target!r}: no such script file")
        return "script", os.path.abspath(target)
    if ":" not in target:
        raise ValueError(f"target={target!r}: give 'package.module:function' or a path to a .py script")
    module_name, _, fn_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"target={target!r}: cannot import module {module_name!r} ({e})") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ValueError(f"target={target!r}: module {module_name!r} has no function {fn_name!r}")
    return "function", fn
