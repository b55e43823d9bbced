"""The run directory's small JSON files, written whole or not at all.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "run.json"
>>> write_json(p, {"status": "running"}); update_json(p, status="ok")["status"]
'ok'
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` to ``path`` whole or not at all (a temporary file, then a rename); the
    temporary file is removed when the write fails (a full disk)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def update_json(path: Path, **changes) -> dict:
    """Read the JSON object at ``path`` (an empty one if unreadable), apply ``changes``, write it."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        obj = {}
    if not isinstance(obj, dict):
        obj = {}
    obj.update(changes)
    write_json(path, obj)
    return obj
