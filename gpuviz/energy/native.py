"""The energy sampler's readings taken by a compiled thread, which never needs the GIL.

A Python thread that reads a meter 100 times a second takes the GIL from a training loop
that runs Python each time, and runs Python of its own between the loop's kernels
(``benchmarks/trace_parts.py`` prints what each thread costs a step). ``native_sampler.c``
is a thread in C that reads this process's CPU time and resident memory every period and
keeps the readings; :class:`Readings` starts it (built on first use with the C compiler,
in :mod:`gpuviz.run.compiled`'s cache, and loaded with ctypes) and hands its readings to
Python, where :class:`gpuviz.energy.sampler.CompiledSampler` turns them into the estimate
meter's joules. Linux clocks: the readings' times are ``perf_counter`` seconds and their
CPU times ``process_time`` seconds.

>>> r = Readings(period_s=0.005)
>>> _ = sum(i * i for i in range(300_000)); r.read_now(); rows = r.take(); r.close()
>>> len(rows) >= 2, rows[-1][1] > rows[0][1], rows[0][2] > 0   # time, CPU s, memory GB
(True, True, True)
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from gpuviz.run import compiled

SOURCE = Path(__file__).with_name("native_sampler.c")
_lib: dict = {}   # "lib": the loaded library, or "why": why it could not be built or loaded


class _Reading(ctypes.Structure):
    _fields_ = [("t_ns", ctypes.c_int64), ("cpu_ns", ctypes.c_int64), ("rss_bytes", ctypes.c_int64)]


def load():
    """The compiled sampler library (built on first use), or None with :func:`why_not`."""
    if not _lib:
        try:
            lib = ctypes.CDLL(str(compiled.shared_library(SOURCE, "native-energy")), use_errno=True)
        except (compiled.BuildError, OSError) as e:
            _lib["why"] = f"the compiled sampler is not available ({e})"
            return None
        handle = ctypes.c_void_p
        for name, args, res in (("gv_start", [ctypes.c_int64, ctypes.c_int64], handle),
                                ("gv_read_now", [handle], None), ("gv_stop", [handle], None),
                                ("gv_free", [handle], None), ("gv_lost", [handle], ctypes.c_int64),
                                ("gv_take", [handle, ctypes.POINTER(_Reading), ctypes.c_size_t],
                                 ctypes.c_size_t)):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
        _lib["lib"] = lib
    return _lib.get("lib")


def why_not() -> str | None:
    """Why :func:`load` returned None (None if it has not failed)."""
    return _lib.get("why")


class Readings:
    """A compiled thread reading this process's CPU time every ``period_s`` seconds (and its
    resident memory every ``memory_every_s``), from creation to :meth:`close`."""

    _BATCH = 512

    def __init__(self, period_s: float, memory_every_s: float = 0.2):
        lib = load()
        if lib is None:
            raise RuntimeError(why_not())
        if not period_s > 0:
            raise ValueError(f"period_s={period_s!r}: give a sampling period in seconds > 0")
        self._lib = lib
        self._h = lib.gv_start(int(period_s * 1e9), int(memory_every_s * 1e9))
        if not self._h:
            raise RuntimeError(f"the compiled sampler's thread did not start (errno {ctypes.get_errno()})")
        self._out = (_Reading * self._BATCH)()

    def read_now(self) -> None:
        """Take a reading from this thread now (a step's end)."""
        self._lib.gv_read_now(self._h)

    def take(self) -> list[tuple[float, float, float | None]]:
        """The readings kept since the last call, oldest first: ``(perf_counter s,
        process_time s, resident GB or None where memory was not read)``."""
        rows = []
        while True:
            k = self._lib.gv_take(self._h, self._out, self._BATCH)
            rows += [(r.t_ns / 1e9, r.cpu_ns / 1e9, r.rss_bytes / 1e9 if r.rss_bytes >= 0 else None)
                     for r in self._out[:k]]
            if k < self._BATCH:
                return rows

    def lost(self) -> int:
        """Readings the thread could not keep (memory ran out)."""
        return self._lib.gv_lost(self._h) if self._h else self._lost

    def close(self) -> None:
        """Stop the thread and free it (readings not taken are dropped: take them first)."""
        if self._h:
            self._lost = self._lib.gv_lost(self._h)
            self._lib.gv_free(self._h)
            self._h = None
