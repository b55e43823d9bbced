"""The energy lab's checks: the right answer passes (the lab's solutions), common mistakes are named."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

import gpuviz
from gpuviz import checks
from gpuviz.energy.attribution import config_energy, joules
from gpuviz.sync.inject import slow_rank

_SOL = Path(__file__).parent.parent / "labs" / "solutions" / "04_energy.py"
spec = importlib.util.spec_from_file_location("solutions04", _SOL)
solutions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(solutions)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    configs = [{"strategy": "ddp", "ranks": n, "batch": 8, "steps": 3} for n in (1, 2)]
    return gpuviz.launch("gpuviz.workloads.parallelism:sweep", nproc=2, args={"configs": configs},
                         run_dir=tmp_path_factory.mktemp("sweep"), energy="estimate",
                         progress=False, stream=False)


def test_energy_per_sample(sweep):
    assert checks.energy_per_sample(solutions.joules_per_sample, sweep, config=1)
    want = config_energy(sweep).set_index("config").loc[1]
    step = checks.energy_per_sample(want["joules_per_step"], sweep, config=1)
    assert not step and "whole step" in step.message
    assert "None" in checks.energy_per_sample(None, sweep, config=1).message
    with pytest.raises(ValueError, match="config=7"):
        checks.energy_per_sample(1.0, sweep, config=7)


def test_pareto_configs():
    df = pd.DataFrame({"config": [0, 1, 2, 3], "step_s": [1.0, 2.0, 3.0, 1.5],
                       "joules_per_sample": [3.0, 1.0, 2.0, 2.0]})
    assert checks.pareto_configs(solutions.on_the_frontier, df)
    assert checks.pareto_configs([0, 1, 3], df)
    r = checks.pareto_configs([0, 1], df)
    assert not r and "fastest and the cheapest" in r.message
    r = checks.pareto_configs([1, 3], df)
    assert not r and "[0] is beaten by none" in r.message
    r = checks.pareto_configs([0, 1, 2, 3], df)
    assert not r and "[2] is beaten" in r.message


def test_waiting_joules(tmp_path):
    run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=2, args={"steps": 4}, run_dir=tmp_path,
                        inject=[slow_rank(1, 0.1)], energy="estimate", progress=False, stream=False)
    assert checks.waiting_joules(solutions.waited_joules, run)
    cat = joules(run, "category")
    idle = cat[cat["category"] == "idle"]
    assert "seconds" in checks.waiting_joules(idle["seconds"].sum(), run).message
    assert "one rank" in checks.waiting_joules(idle["joules"].max(), run).message


def test_co2_grams():
    assert checks.co2_grams(solutions.grams_co2, joules=7.2e6, grid="france")
    assert "kWh first" in checks.co2_grams(7.2e6 * 56, joules=7.2e6, grid="france").message
    assert "kilograms" in checks.co2_grams(2 * 56 / 1000, joules=7.2e6, grid="france").message
