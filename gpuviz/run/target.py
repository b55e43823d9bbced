"""What a job runs: ``"package.module:function"`` or a path to a script.

:func:`check_target` (the launcher) finds the module and its function without running the
module's code; :func:`resolve_target` (every rank) imports it.

>>> check_target("gpuviz.workloads.mlp:train")
'function'
>>> resolve_target("gpuviz.workloads.mlp:train")[0]
'function'
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys

_FORM = "give 'package.module:function' or a path to a .py script"


def _split(target) -> tuple[str, str, str]:
    """("script", path, "") or ("function", module, name), or a ValueError."""
    if not isinstance(target, str) or not target:
        raise ValueError(f"target={target!r}: {_FORM}")
    if target.endswith(".py") or os.sep in target:
        if not os.path.isfile(target):
            raise ValueError(f"target={target!r}: no such script file (from {os.getcwd()})")
        return "script", os.path.abspath(target), ""
    module_name, sep, fn_name = target.partition(":")
    if not sep or not module_name or not fn_name.isidentifier():
        raise ValueError(f"target={target!r}: {_FORM}")
    return "function", module_name, fn_name


def _top_level_names(path: str) -> set[str] | None:
    """Names a module's source defines or imports at its top level (None: unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    names: set[str] = set()

    def collect(body) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
            else:  # if / try / with / for at the top level: what any branch may define
                for field in ("body", "orelse", "finalbody", "handlers"):
                    collect(getattr(node, field, None) or [])

    collect(tree.body)
    return names


def check_target(target) -> str:
    """``"function"`` or ``"script"`` if TARGET can run, else a ValueError; runs none of its
    code (a module is found, and its source read for the function, not imported)."""
    kind, where, fn_name = _split(target)
    if kind == "script":
        return kind
    # Every rank runs ``python -m``, which puts the current folder first on its path.
    sys.path.insert(0, os.getcwd())
    try:
        spec = importlib.util.find_spec(where)
    except (ImportError, ValueError) as e:
        spec, why = None, f" ({e})"
    else:
        why = ""
    finally:
        sys.path.pop(0)
    if spec is None:
        raise ValueError(f"target={target!r}: no module {where!r}{why}. Python looked in the "
                         f"current folder ({os.getcwd()}) and the installed packages; run from the "
                         "folder that holds it, or give the path of a script instead")
    origin = spec.origin or ""
    names = _top_level_names(origin) if origin.endswith(".py") else None
    if names is not None and fn_name not in names:
        defined = sorted(n for n in names if not n.startswith("_"))
        raise ValueError(f"target={target!r}: module {where!r} ({origin}) defines no {fn_name!r}; "
                         f"it has {', '.join(defined[:12]) or 'no public names'}")
    return kind


def resolve_target(target: str):
    """Return ``("function", fn)`` or ``("script", path)`` for TARGET, or raise ValueError.
    Imports the module: every rank does this, the launcher does not."""
    kind, where, fn_name = _split(target)
    if kind == "script":
        return kind, where
    try:
        module = importlib.import_module(where)
    except ImportError as e:
        raise ValueError(f"target={target!r}: cannot import module {where!r} ({e})") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ValueError(f"target={target!r}: module {where!r} has no function {fn_name!r}")
    return "function", fn
