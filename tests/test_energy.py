"""Energy meters: the estimate's formula, counters (wrap-around, backwards), fallbacks, windows,
and attribution of a real job's joules to ranks, steps and categories."""

from __future__ import annotations

import time

import pandas as pd
import pytest

import gpuviz
from gpuviz.energy import meters, native
from gpuviz.energy.attribution import config_energy, joules, pareto_front, power
from gpuviz.sync.inject import fail_at

# -- the estimate ------------------------------------------------------------------------------

def test_estimate_formula_on_known_inputs():
    # 3 s of CPU at 12 W, 10 s holding 2 GB at 0.3725 W/GB
    assert meters.estimate_joules(3.0, 10.0, 2.0) == pytest.approx(3 * 12 + 10 * 2 * 0.3725)
    assert meters.estimate_joules(1.0, 0.0, 0.0, watts_per_core=20) == 20.0
    assert meters.estimate_joules(0.0, 5.0, 1.0, watts_per_gb=1.0) == 5.0


@pytest.mark.parametrize("kw", [{"cpu_seconds": -1}, {"seconds": "3"}, {"memory_gb": True},
                                {"watts_per_core": -2}])
def test_estimate_rejects_bad_input(kw):
    args = {"cpu_seconds": 1.0, "seconds": 1.0, "memory_gb": 1.0, **kw}
    with pytest.raises(ValueError, match=next(iter(kw))):
        meters.estimate_joules(**args)


def test_estimate_meter_follows_cpu_time():
    m = meters.EstimateMeter(watts_per_gb=0.0)   # CPU part only: must equal 12 W x CPU time
    c0, e0 = time.process_time(), m.read()
    x = 0
    while time.process_time() - c0 < 0.3:
        x += sum(range(1000))
    c1, e1 = time.process_time(), m.read()
    assert e1 - e0 == pytest.approx(12.0 * (c1 - c0), rel=0.01)


def test_estimate_meter_charges_memory_while_sleeping():
    m = meters.EstimateMeter(watts_per_core=0.0, watts_per_gb=1000.0)
    e0 = m.read()
    time.sleep(0.2)
    e1 = m.read()
    gb = m._proc.memory_info().rss / 1e9
    assert e1 - e0 == pytest.approx(1000.0 * gb * 0.2, rel=0.2)


def test_readings_taken_elsewhere_become_the_estimate_s_joules_one_at_a_time_or_together():
    # the compiled sampler's readings (perf_counter s, process_time s, GB or None), in time order
    one, many = meters.EstimateMeter(), meters.EstimateMeter()
    for m in (one, many):
        m._t, m._cpu0, m._gb, m._memory_j = 100.0, 5.0, 2.0, 0.0
    readings = [(101.0, 6.0, None), (103.0, 6.5, 4.0), (104.0, 7.0, None), (103.5, 7.0, None)]
    # 1 s holding 2 GB, then 2 s at 2 GB (the new 4 GB counts from this reading on), then 1 s
    # at 4 GB; a reading out of order adds no time
    memory = [1 * 2.0, 3 * 2.0, 3 * 2.0 + 1 * 4.0, 3 * 2.0 + 1 * 4.0]
    expected = [meters.estimate_joules(cpu - 5.0, gb_s, 1.0)
                for (_, cpu, _), gb_s in zip(readings, memory, strict=True)]
    assert [one.at_many([r])[0] for r in readings] == pytest.approx(expected)
    assert many.at_many(readings) == pytest.approx(expected)
    assert (one._t, one._gb, one._memory_j) == (many._t, many._gb, many._memory_j)
    assert (many._t, many._gb, many._memory_j) == (104.0, 4.0, pytest.approx(10 * 0.3725))


# -- counters -----------------------------------------------------------------------------------

def test_counter_wraps_around():
    assert meters.counter_delta(10.0, 25.0) == 15.0
    # RAPL: energy_uj returns to 0 after max_energy_range_uj
    assert meters.counter_delta(262_140.0, 3.0, wrap_at=262_143.0) == pytest.approx(6.0)


def test_counter_going_backwards_without_a_range_is_an_error():
    with pytest.raises(meters.EnergyError, match="went backwards"):
        meters.counter_delta(100.0, 5.0)


class _FakeCpus:
    """Zeus's CPU object for a machine with one RAPL package (readings in mJ) that wraps."""

    class _Rapl:
        max_energy_range_uj = 1_000_000.0      # wraps at 1 J

    class _Cpu:
        rapl_file = None

    def __init__(self, readings_mj):
        from zeus.device.cpu.common import CpuDramMeasurement

        self._m = CpuDramMeasurement
        self.readings = list(readings_mj)
        cpu = self._Cpu()
        cpu.rapl_file = self._Rapl()
        self.cpus = [cpu]

    def __len__(self):
        return 1

    def get_total_energy_consumption(self, index):
        return self._m(cpu_mj=self.readings.pop(0) if len(self.readings) > 1 else self.readings[0])


def _no_gpus():
    from zeus.device.gpu.common import ZeusGPUInitError

    raise ZeusGPUInitError("NVML and AMDSMI unavailable.")


def test_rapl_meter_unwraps_and_shares_by_cpu_time(monkeypatch):
    import zeus.device

    fake = _FakeCpus([900.0, 900.0, 950.0, 200.0])   # +50 mJ, then a wrap: +250 mJ
    monkeypatch.setattr(zeus.device, "get_gpus", _no_gpus)
    monkeypatch.setattr(zeus.device, "get_cpus", lambda: fake)
    monkeypatch.setattr(meters, "_this_rank_gpu", lambda: None)
    cpu = iter([0.0, 1.0, 2.0])          # this process: 1 s of CPU per interval
    busy = iter([0.0, 2.0, 4.0])         # the machine: 2 s busy per interval
    monkeypatch.setattr(meters, "_process_cpu_seconds", lambda: next(cpu))
    monkeypatch.setattr(meters, "_busy_cpu_seconds", lambda _psutil: next(busy))
    m = meters.make_meter("zeus")
    assert not m.estimated and m.devices == ["cpu package 0"]
    assert m.read() == pytest.approx(0.050 / 2)
    assert m.read() == pytest.approx(0.050 / 2 + 0.250 / 2)


def _rapl_permission_denied():
    from zeus.device.cpu.common import ZeusCPUNoPermissionError

    raise ZeusCPUNoPermissionError("Permission denied: /sys/class/powercap/intel-rapl:0/energy_uj")


def test_rapl_permission_denied_falls_back_and_says_so(monkeypatch):
    import zeus.device

    monkeypatch.setattr(zeus.device, "get_gpus", _no_gpus)
    monkeypatch.setattr(zeus.device, "get_cpus", _rapl_permission_denied)
    monkeypatch.setattr(meters, "_this_rank_gpu", lambda: None)
    with pytest.warns(UserWarning, match="permission denied"):
        m = meters.make_meter("auto")
    assert m.estimated and "permission denied" in m.note and "root" in m.note
    with pytest.raises(meters.EnergyError, match="permission denied.*energy='auto'"):
        meters.make_meter("zeus")


def test_auto_on_a_machine_without_counters_is_an_estimate_that_says_why():
    m = meters.make_meter("auto", warn=False)
    if not m.estimated:
        pytest.skip("this machine has readable energy counters")
    assert "no energy counter can be read here" in m.note


def test_unknown_meter_is_a_clear_error():
    with pytest.raises(ValueError, match="energy='rapl' is not a meter; use one of 'auto'"):
        meters.make_meter("rapl")
    assert meters.make_meter("off") is None
    with pytest.raises(ValueError, match="energy='joules'"):
        gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, energy="joules")


# -- windows ------------------------------------------------------------------------------------

class _SlowCounter(meters.Meter):
    """A 50 W device whose counter only moves every 100 ms, like NVML's."""

    def __init__(self):
        super().__init__("fake", False, 0.1, ["fake gpu"])
        self.t0 = time.perf_counter()

    def read(self):
        t = time.perf_counter() - self.t0
        return 50.0 * (t // 0.1) * 0.1


def test_a_window_shorter_than_the_update_period():
    with pytest.raises(meters.EnergyError, match="shorter than the fake counter's update period"):
        with meters.Window(_SlowCounter(), strict=True):
            time.sleep(0.01)
    with meters.Window(_SlowCounter()) as w:
        time.sleep(0.01)
    assert w.method == "power x time"
    assert w.joules == pytest.approx(50.0 * w.seconds, rel=0.6)
    with meters.Window(_SlowCounter()) as w:
        time.sleep(0.35)
    assert w.method == "counter" and w.joules > 0
    with pytest.raises(ValueError, match="meter="):
        meters.Window("nvml")


# -- a real job ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, args={"steps": 8},
                         run_dir=tmp_path_factory.mktemp("energy"), energy="estimate",
                         progress=False, stream=False)


def test_categories_add_up_to_each_ranks_total(run):
    cat, total = joules(run, "category"), joules(run, "rank").set_index("rank")
    sums = cat.groupby("rank")["joules"].sum()
    for r in run.ranks:
        assert sums[r] == pytest.approx(total.loc[r, "joules"], rel=0.01)
        assert total.loc[r, "joules"] > 0
    assert set(cat["category"]) >= {"compute", "comm", "idle", "untraced"}
    assert cat["estimated"].all() and (cat["method"].str.startswith("estimate")).all()
    assert cat.loc[cat["category"] == "compute", "joules"].gt(0).all()


def test_steps_and_power_track(run):
    steps = joules(run, "step")
    assert sorted(steps.loc[steps["rank"] == 0, "step"]) == list(range(8))
    total = joules(run, "rank").set_index("rank")["joules"]
    assert steps.groupby("rank")["joules"].sum().le(total * 1.0001).all()
    pw = power(run)
    assert (pw["watts"] >= 0).all() and len(pw) > 8
    # a busy rank's estimated power cannot exceed one core (12 W) plus its memory by much
    assert pw["watts"].median() < 12.0 + 5.0
    meta = run.meta["energy"][0]
    assert meta["meter"] == "estimate" and meta["estimated"] and meta["model"]["watts_per_core"] == 12.0
    assert meta["thread"] == ("compiled thread" if native.load() is not None else "Python thread")


def test_energy_figures(run):
    fig = gpuviz.plot.energy_breakdown(run)
    assert "estimated" in fig.layout.title.subtitle.text
    assert any(b.marker.pattern.shape == "/" for b in fig.data)
    fig = gpuviz.plot.power_timeline(run, steps=range(2, 5))
    power = [t for t in fig.data if t.name and "power" in t.name]
    assert len(power) == 2 and all(t.line.dash == "dash" for t in power)


def test_a_failing_rank_keeps_its_joules(tmp_path):
    with pytest.raises(gpuviz.RankFailed) as err:
        gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, args={"steps": 6}, run_dir=tmp_path,
                      inject=[fail_at(1, 3)], progress=False, stream=False)
    by_rank = joules(err.value.run, "rank").set_index("rank")
    assert by_rank.loc[1, "joules"] > 0
    steps = joules(err.value.run, "step")
    assert set(steps.loc[steps["rank"] == 1, "step"]) == {0, 1, 2}


def test_energy_off_records_none(tmp_path):
    run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, args={"steps": 2}, run_dir=tmp_path,
                        energy="off", progress=False, stream=False)
    assert run.counters.empty or "energy J" not in set(run.counters["name"])
    with pytest.raises(ValueError, match="energy='off'"):
        joules(run)
    with pytest.raises(ValueError, match="by='phase'"):
        joules(run, "phase")


def test_sweep_energy_per_sample(tmp_path):
    configs = [{"strategy": "ddp", "ranks": 1, "batch": 8, "steps": 2},
               {"strategy": "ddp", "ranks": 2, "batch": 8, "steps": 2, "precision": "bf16"}]
    run = gpuviz.launch("gpuviz.workloads.parallelism:sweep", nproc=2, args={"configs": configs},
                        run_dir=tmp_path, energy="estimate", progress=False, stream=False)
    df = config_energy(run)
    assert list(df["ranks"]) == [1, 2] and list(df["precision"]) == ["fp32", "bf16"]
    assert (df["joules_per_sample"] > 0).all() and df["estimated"].all()
    assert df["joules_per_sample"].tolist() == pytest.approx((df["joules_per_step"] / 8).tolist())


def test_pareto_front():
    df = pd.DataFrame({"step_s": [1.0, 2.0, 3.0, 1.0], "joules_per_sample": [3.0, 1.0, 2.0, 4.0]})
    assert pareto_front(df).tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="y='joules'"):
        pareto_front(df, y="joules")
    fig = gpuviz.plot.pareto(df.assign(estimated=True))
    assert fig.data[0].name == "Pareto frontier" and list(fig.data[0].x) == [1.0, 2.0]


def test_bf16_needs_an_autocast_strategy():
    from gpuviz.workloads.parallelism import check_config

    with pytest.raises(ValueError, match="precision='fp16'"):
        check_config({"precision": "fp16"}, world=2)
    with pytest.raises(ValueError, match="bf16 is available for"):
        check_config({"strategy": "gpipe", "precision": "bf16"}, world=2)
