"""Compiled helpers of gpuviz, built on first use and kept in one cache folder.

gpuviz ships C and C++ sources, not binaries: a helper is compiled the first time a
process needs it, into ``$GPUVIZ_NATIVE_CACHE`` (else ``~/.cache/gpuviz``), and every
later process loads the same file. Where nothing can be built (no compiler), each user of
a helper falls back to its Python route and says why. ``gpuviz build-native`` (and
``make setup``) builds them ahead, so no run waits for a compiler.

>>> from unittest import mock
>>> with mock.patch.dict(os.environ, {CACHE_ENV: "/tmp/gpuviz-cache"}):
...     cache_root()
PosixPath('/tmp/gpuviz-cache')
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path

#: Where compiled helpers are kept.
CACHE_ENV = "GPUVIZ_NATIVE_CACHE"


class BuildError(RuntimeError):
    """A helper could not be compiled here (the message says why)."""


def cache_root() -> Path:
    """``$GPUVIZ_NATIVE_CACHE``, else ``~/.cache/gpuviz``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gpuviz")


def c_compiler() -> list[str]:
    """The C compiler command: ``$CC``, else the one Python was built with, else ``cc``."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def _build(source: Path, name: str, flags: list[str], salt: str = "") -> Path:
    """``source`` compiled with ``flags`` into ``{name}-{digest}.so`` in the cache (one file
    per version of the source, compiler and ``salt``, so an edited source is built anew),
    built now if it is not there yet. Several processes may ask at once: each builds into a
    file of its own and renames it into place."""
    text = Path(source).read_bytes()
    digest = hashlib.sha256(text + " ".join([*c_compiler(), *flags, salt]).encode()).hexdigest()[:16]
    target = cache_root() / f"{name}-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [*c_compiler(), "-O2", "-shared", "-fPIC", *flags, str(source), "-o", tmp]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        os.unlink(tmp)
        raise BuildError(f"{' '.join(cmd[:1])} could not run ({type(e).__name__}: {e})") from e
    if done.returncode != 0:
        os.unlink(tmp)
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BuildError(f"{cmd[0]} failed with exit code {done.returncode}: {last}")
    os.replace(tmp, target)
    return target


def shared_library(source: Path, name: str) -> Path:
    """``source`` (C) compiled into a shared library in the cache, built now if it is not
    there yet; raises :class:`BuildError` saying why where it cannot be built."""
    return _build(source, name, ["-pthread"])


def extension_module(source: Path, name: str):
    """``source`` (C, a CPython extension whose init function is ``PyInit_{name}``) built
    for this Python in the cache and imported; raises :class:`BuildError` where it cannot
    be built (no compiler, no Python headers)."""
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        raise BuildError(f"this Python's headers are not installed (no Python.h in {include})")
    flags = [f"-I{include}"]
    if sysconfig.get_platform().startswith("macosx"):
        flags += ["-undefined", "dynamic_lookup"]
    path = _build(source, name, flags, salt=str(sysconfig.get_config_var("SOABI")))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
