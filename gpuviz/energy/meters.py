"""Energy meters: joules measured by hardware counters where they exist, estimated elsewhere.

Three meters, chosen with ``gpuviz.launch(..., energy=...)`` (``$GPUVIZ_ENERGY`` on a rank):

- ``"zeus"``: hardware counters read through Zeus (https://ml.energy/zeus/): an NVIDIA
  GPU's total-energy counter (NVML), an AMD GPU's (amdsmi), or a CPU package's RAPL
  counter (Linux powercap). A rank owns its GPU; a CPU package is shared by every process on
  it, so a rank is given the share of the package's joules that its CPU time is of the
  machine's busy CPU time in each interval.
- ``"estimate"``: no counter; joules from this process's CPU time and memory with the
  Green Algorithms model (:func:`estimate_joules`). Everything it produces says
  ``estimated=True``.
- ``"auto"`` (the default): ``"zeus"`` where a counter can be read, else ``"estimate"``, and
  the meter's ``note`` says why (no RAPL, permission denied...). ``"off"``: no energy.

Each rank's tracer samples its meter every ``period_s`` on a background thread and at every step's
end, and records the ``energy J`` counter track (cumulative joules since the rank started); the
mean power between two readings is derived from it (:func:`gpuviz.energy.attribution.power`).
:mod:`gpuviz.energy.sampler` does that on every rank, and :mod:`gpuviz.energy.attribution` turns
the tracks into joules per rank, step and category.

A counter is read at intervals; NVML's total-energy counter updates only every 20-100 ms
(:data:`NVML_UPDATE_PERIOD_S`), so a window shorter than a meter's ``update_period_s`` is given
power x time, and says so (:class:`Window`).

>>> m = make_meter("estimate")
>>> m.estimated, m.name
(True, 'estimate')
>>> e0 = m.read(); _ = sum(i * i for i in range(200_000)); m.read() > e0
True
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass, field

#: Meters :func:`make_meter` knows.
METERS = ("auto", "zeus", "estimate", "off")
#: Environment variables the launcher sets for every rank.
ENV, PERIOD_ENV = "GPUVIZ_ENERGY", "GPUVIZ_ENERGY_PERIOD"
#: Default sampling period of the tracer's energy thread, in seconds (a meter whose counter
#: updates more slowly is sampled at its update period instead).
DEFAULT_PERIOD_S = 0.01

#: Power of one fully used CPU core, in W, when the CPU model is not known: the Green
#: Algorithms default for "Any" CPU (TDP per core), green-algorithms-tool,
#: data/v2.2/TDP_cpu.csv, https://github.com/GreenAlgorithms/green-algorithms-tool
#: (Lannelongue, Grealey & Inouye 2021, "Green Algorithms: Quantifying the Carbon
#: Footprint of Computation", Advanced Science 8, 2100707, https://doi.org/10.1002/advs.202100707).
WATTS_PER_CORE = 12.0
#: Power of memory, in W per GB: Lannelongue et al. 2021 (above), "power draw for memory".
WATTS_PER_GB = 0.3725
#: NVML's total-energy counter updates every 20-100 ms on newer GPUs (PETSc manual,
#: PetscLogGpuEnergyMeter, https://petsc.org/main/manualpages/Log/PetscLogGpuEnergyMeter;
#: Zeus 0.6.1 release notes: a window shorter than the update period can read 0 J,
#: https://github.com/ml-energy/zeus/releases/tag/v0.6.1): the longer bound is the one to respect.
NVML_UPDATE_PERIOD_S = 0.1
#: RAPL's energy counters update about every millisecond (Hähnel, Döbel, Völp & Härtig 2012,
#: "Measuring Energy Consumption for Short Code Paths Using RAPL", ACM SIGMETRICS Performance
#: Evaluation Review 40(3), https://doi.org/10.1145/2425248.2425252).
RAPL_UPDATE_PERIOD_S = 0.001


class EnergyError(RuntimeError):
    """An energy counter could not be read, went backwards, or a window was too short."""


def check_meter(meter: str | None) -> str:
    """``meter`` if it is one of :data:`METERS` (None means ``"off"``), else a ValueError.

    >>> check_meter("auto")
    'auto'
    """
    if meter is None:
        return "off"
    if meter not in METERS:
        raise ValueError(f"energy={meter!r} is not a meter; use one of {', '.join(map(repr, METERS))}")
    return meter


def estimate_joules(cpu_seconds: float, seconds: float, memory_gb: float,
                    watts_per_core: float = WATTS_PER_CORE, watts_per_gb: float = WATTS_PER_GB,
                    *, checked: bool = True) -> float:
    """Estimated joules of a process: CPU time x power per core + time x memory x power per GB.

    The Green Algorithms model (Lannelongue et al. 2021): energy = runtime x (cores x power
    per core x usage + memory x power per GB); here cores x usage x runtime is the CPU time
    the process was given, so a process blocked waiting (gloo's waits sleep) costs only its
    memory. Leaves out the rest of the machine (fans, disks, idle cores) and PUE.
    ``checked=False`` skips the checks (for clock readings, many a second).

    >>> estimate_joules(cpu_seconds=2.0, seconds=4.0, memory_gb=1.0)   # 2 x 12 + 4 x 0.3725
    25.49
    """
    for name, v in (("cpu_seconds", cpu_seconds), ("seconds", seconds), ("memory_gb", memory_gb),
                    ("watts_per_core", watts_per_core), ("watts_per_gb", watts_per_gb)) if checked else ():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{name}={v!r}: give a number >= 0")
    return cpu_seconds * watts_per_core + seconds * memory_gb * watts_per_gb


def counter_delta(prev: float, now: float, wrap_at: float | None = None) -> float:
    """Joules between two readings of a cumulative counter that wraps around at ``wrap_at``.

    RAPL's ``energy_uj`` returns to 0 after ``max_energy_range_uj``; a reading below the
    previous one is one wrap. With no known range a backwards reading is an error (a driver
    reset, or a wrap that cannot be sized).

    >>> counter_delta(262_000.0, 50.0, wrap_at=262_143.0)
    193.0
    """
    if now >= prev:
        return now - prev
    if wrap_at:
        return now + wrap_at - prev
    raise EnergyError(f"the energy counter went backwards, from {prev:g} J to {now:g} J, and its "
                      "wrap-around range is unknown (was the driver reset?)")


@dataclass
class Meter:
    """A source of cumulative joules for this process. ``read()`` returns joules since the
    meter was made; ``describe()`` is what the trace records about it."""

    name: str
    estimated: bool
    update_period_s: float
    devices: list[str] = field(default_factory=list)
    note: str = ""

    def read(self) -> float:  # pragma: no cover - every meter overrides it
        raise NotImplementedError

    def describe(self) -> dict:
        return {"meter": self.name, "estimated": self.estimated, "devices": self.devices,
                "update_period_s": self.update_period_s, "note": self.note}

    def close(self) -> None:
        """Release the meter's handles (nothing for most meters)."""


class EstimateMeter(Meter):
    """Joules of this process estimated from its CPU time and resident memory
    (:func:`estimate_joules`), ``estimated=True``.

    >>> EstimateMeter().describe()["model"]["watts_per_core"]
    12.0
    """

    def __init__(self, watts_per_core: float = WATTS_PER_CORE, watts_per_gb: float = WATTS_PER_GB,
                 note: str = "no energy counter used: estimated from CPU time and memory"):
        estimate_joules(0.0, 0.0, 0.0, watts_per_core, watts_per_gb)  # checks the arguments
        super().__init__("estimate", True, 0.0, ["this process's CPU time and memory"], note)
        import psutil

        self.watts_per_core, self.watts_per_gb = float(watts_per_core), float(watts_per_gb)
        self._proc = psutil.Process()
        self._lock = threading.Lock()
        self._cpu0 = time.process_time()
        self._t = self._rss_t = time.perf_counter()
        self._gb = self._proc.memory_info().rss / 1e9
        self._memory_j = 0.0

    def read(self) -> float:
        now = time.perf_counter()
        gb = None
        if now - self._rss_t > 0.2:   # memory moves slowly; reading it costs ~10 us
            gb, self._rss_t = self._proc.memory_info().rss / 1e9, now
        return self.at_many([(now, time.process_time(), gb)])[0]

    def at_many(self, readings) -> list[float]:
        """The joules at readings taken elsewhere, ``(t, cpu, memory_gb)`` in time order
        (``perf_counter`` s, ``process_time`` s, resident GB or None if not read then), in one
        pass: how the compiled sampler's readings become joules (the watts checked at __init__)."""
        w, cpu0 = (self.watts_per_core, self.watts_per_gb), self._cpu0
        with self._lock:
            t_last, gb, memory_j, out = self._t, self._gb, self._memory_j, []
            for t, cpu, memory_gb in readings:   # memory until t at the GB read before it
                memory_j += estimate_joules(0.0, max(0.0, t - t_last), gb, *w, checked=False)
                t_last, gb = max(t_last, t), gb if memory_gb is None else memory_gb
                out.append(estimate_joules(max(0.0, cpu - cpu0), 0.0, 0.0, *w, checked=False) + memory_j)
            self._t, self._gb, self._memory_j = t_last, gb, memory_j
        return out

    def describe(self) -> dict:
        return {**super().describe(), "model": {
            "formula": "cpu_seconds x watts_per_core + seconds x memory_gb x watts_per_gb",
            "watts_per_core": self.watts_per_core, "watts_per_gb": self.watts_per_gb,
            "source": "Lannelongue, Grealey & Inouye 2021, Green Algorithms, Advanced Science "
                      "8, 2100707 (12 W per core: their default for an unknown CPU)"}}


class ZeusMeter(Meter):
    """Joules from hardware counters through Zeus: this rank's GPU (NVML or amdsmi), else the
    CPU packages (RAPL) shared in proportion to this process's CPU time.

    ``gpu_index``: the GPU to measure; ``"auto"`` takes torch's current CUDA device if there is
    one, None measures no GPU (a CPU job on a GPU machine). Raises :class:`EnergyError`
    saying why when no counter can be read here.
    """

    def __init__(self, gpu_index: int | str | None = "auto"):
        reasons: list[str] = []
        self._gpus = self._gpu = None
        self._cpus = None
        self._last: dict[str, float] = {}
        self._total = 0.0
        self._lock = threading.Lock()
        if gpu_index == "auto":
            gpu_index = _this_rank_gpu()
        if gpu_index is None:
            reasons.append("no GPU")
        else:
            try:
                from zeus.device import get_gpus

                self._gpus, self._gpu = get_gpus(), gpu_index
                counter = self._gpus.supports_get_total_energy_consumption(gpu_index)
                super().__init__("zeus", False, NVML_UPDATE_PERIOD_S, [f"gpu{gpu_index}"],
                                 "GPU total-energy counter" if counter else
                                 "GPU power x time (this GPU has no energy counter)")
                self._gpu_counter = counter
                self._read_gpu_mj()
                return
            except Exception as e:  # noqa: BLE001 - Zeus raises its own classes per vendor
                reasons.append(f"GPU {gpu_index}: {e}")
                self._gpus = None
        try:
            from zeus.device import get_cpus

            self._cpus = get_cpus()
            self._cpus.get_total_energy_consumption(0)
        except Exception as e:  # noqa: BLE001
            reasons.append(_rapl_reason(e))
            raise EnergyError("no energy counter can be read here: " + "; ".join(reasons)) from e
        import psutil

        self._psutil = psutil
        self._cpu_self, self._cpu_all = _process_cpu_seconds(), _busy_cpu_seconds(psutil)
        self._wrap = [getattr(getattr(c, "rapl_file", None), "max_energy_range_uj", None)
                      for c in getattr(self._cpus, "cpus", [])]
        super().__init__("zeus", False, RAPL_UPDATE_PERIOD_S,
                         [f"cpu package {i}" for i in range(len(self._cpus))],
                         "RAPL package energy, split among processes by CPU time"
                         + ("; " + "; ".join(r for r in reasons if r != "no GPU") if len(reasons) > 1 else ""))
        self._last = self._read_rapl_j()

    def _read_gpu_mj(self) -> float:
        if self._gpu_counter:
            return float(self._gpus.get_total_energy_consumption(self._gpu))
        return float("nan")

    def _read_rapl_j(self) -> dict[str, float]:
        out = {}
        for i in range(len(self._cpus)):
            m = self._cpus.get_total_energy_consumption(i)
            out[f"cpu{i}"] = m.cpu_mj / 1000.0
            if m.dram_mj is not None:
                out[f"dram{i}"] = m.dram_mj / 1000.0
        return out

    def read(self) -> float:
        with self._lock:
            if self._gpus is not None:
                return self._read_gpu()
            now = self._read_rapl_j()
            joules = 0.0
            for key, value in now.items():
                idx = int(key[-1]) if key[-1].isdigit() else 0
                wrap = self._wrap[idx] / 1e6 if idx < len(self._wrap) and self._wrap[idx] else None
                joules += counter_delta(self._last.get(key, value), value, wrap)
            self._last = now
            cpu_self, cpu_all = _process_cpu_seconds(), _busy_cpu_seconds(self._psutil)
            d_self, d_all = cpu_self - self._cpu_self, cpu_all - self._cpu_all
            self._cpu_self, self._cpu_all = cpu_self, cpu_all
            self._total += joules * (min(1.0, d_self / d_all) if d_all > 0 else 0.0)
            return self._total

    def _read_gpu(self) -> float:
        t = time.perf_counter()
        if self._gpu_counter:
            mj = self._read_gpu_mj()
            prev = self._last.get("gpu", mj)
            self._total += counter_delta(prev / 1000.0, mj / 1000.0)
            self._last["gpu"] = mj
        else:   # power x time since the previous reading
            watts = self._gpus.get_instant_power_usage(self._gpu) / 1000.0
            self._total += watts * (t - self._last.get("t", t))
        self._last["t"] = t
        return self._total


def _this_rank_gpu() -> int | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.current_device()
    except Exception:  # noqa: BLE001 - no usable CUDA: measure the CPU instead
        pass
    return None


def _process_cpu_seconds() -> float:
    return time.process_time()


def _busy_cpu_seconds(psutil) -> float:
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _rapl_reason(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, PermissionError) or "ermission" in text:
        return ("RAPL: permission denied reading /sys/class/powercap/intel-rapl (readable only by "
                "root since the fix for CVE-2020-8694, Nov. 2020; Zeus's zeusd daemon can read it for you)")
    if not os.path.exists("/sys/class/powercap/intel-rapl"):
        return "no CPU counter (no RAPL at /sys/class/powercap/intel-rapl)"
    return f"RAPL: {e}"


def make_meter(meter: str = "auto", warn: bool = True, gpu_index: int | str | None = "auto",
               **estimate: float) -> Meter | None:
    """The meter named ``meter`` (one of :data:`METERS`); ``"auto"`` falls back to the
    estimate, whose ``note`` says why (and a warning, with ``warn``); ``"off"`` gives None.
    ``gpu_index``: see :class:`ZeusMeter`; ``estimate``: ``watts_per_core``, ``watts_per_gb``.

    >>> make_meter("estimate").estimated
    True
    >>> make_meter("joulemeter")
    Traceback (most recent call last):
    ...
    ValueError: energy='joulemeter' is not a meter; use one of 'auto', 'zeus', 'estimate', 'off'
    """
    meter = check_meter(meter)
    if meter == "off":
        return None
    if meter == "estimate":
        return EstimateMeter(**estimate)
    try:
        return ZeusMeter(gpu_index)
    except EnergyError as e:
        if meter == "zeus":
            raise EnergyError(f"energy='zeus': {e}. Use energy='auto' to fall back to the "
                              "estimate") from e
        note = f"estimated from CPU time and memory: {e}"
        if warn:
            warnings.warn(f"energy: {note}", stacklevel=2)
        return EstimateMeter(note=note, **estimate)


class Window:
    """Joules over a block of code, from one meter: ``joules``, ``seconds``, ``watts`` and
    ``method`` (``"counter"``, ``"power x time"`` or ``"estimate"``).

    A window shorter than the meter's ``update_period_s`` (NVML: up to 100 ms) is given the
    power of the surrounding ``update_period_s`` times its length, and ``method`` says so;
    with ``strict=True`` it is an :class:`EnergyError` instead.

    >>> with Window(make_meter("estimate")) as w:
    ...     _ = sum(i * i for i in range(100_000))
    >>> w.method, w.joules > 0
    ('estimate', True)
    """

    def __init__(self, meter: Meter, strict: bool = False):
        if not isinstance(meter, Meter):
            raise ValueError(f"meter={meter!r}: give a Meter from make_meter()")
        self.meter, self.strict = meter, strict
        self.joules = self.seconds = self.watts = float("nan")
        self.method = ""

    def __enter__(self) -> Window:
        self._t0, self._e0 = time.perf_counter(), self.meter.read()
        return self

    def __exit__(self, *exc) -> bool:
        t1, e1 = time.perf_counter(), self.meter.read()
        self.seconds = t1 - self._t0
        period = self.meter.update_period_s
        if self.meter.estimated:
            self.method, self.joules = "estimate", e1 - self._e0
        elif self.seconds >= period:
            self.method, self.joules = "counter", e1 - self._e0
        elif self.strict:
            raise EnergyError(f"the window lasted {1e3 * self.seconds:.1f} ms, shorter than the "
                              f"{self.meter.name} counter's update period ({1e3 * period:.0f} ms): "
                              "its joules cannot be measured; use strict=False for power x time")
        else:   # the counter may not have moved: power over a full update period x time
            time.sleep(period)
            e2 = self.meter.read()
            watts = (e2 - self._e0) / (time.perf_counter() - self._t0)
            self.method, self.joules = "power x time", watts * self.seconds
        self.watts = self.joules / self.seconds if self.seconds > 0 else float("nan")
        return False
