"""Instrumented training entry points that run under torchrun (``gpuviz.launch``)."""

from pathlib import Path


def script_path(name: str) -> Path:
    """The path of an example training script shipped in ``gpuviz/workloads/scripts/``.

    >>> script_path("plain_ddp").name
    'plain_ddp.py'
    """
    folder = Path(__file__).parent / "scripts"
    path = folder / f"{name}.py"
    if not path.is_file():
        there = sorted(p.stem for p in folder.glob("*.py"))
        raise ValueError(f"name={name!r}: no such example script; there are {', '.join(there)}")
    return path
