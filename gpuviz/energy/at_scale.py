"""At scale: what training costs in energy on real GPU clusters, from published numbers.

Three tables, every number with its source beside it:

- :func:`gpu_power`: board power limits of data-centre GPUs (TDP and the lowest power
  limit the driver accepts);
- :func:`published_runs`: large training runs' reported GPU-hours, energy and emissions,
  with energy per token *derived* here (reported energy / reported tokens) so that a
  learner's joules per sample can sit beside them;
- :func:`power_cap_whatif`: a **model** of what a GPU power cap does to step time and energy
  (:func:`published_power_caps` holds the published measurement it is checked against).
  The toolkit never changes a GPU's power limit; this is arithmetic on paper.

>>> runs = published_runs()
>>> runs.loc[runs.model == "BLOOM 176B", "energy_mwh"].item()
433.196
>>> w = power_cap_whatif("H100 SXM", caps_w=[700, 500])
>>> w[["cap_w", "relative_time", "relative_energy"]].round(3).to_dict("records")
[{'cap_w': 700.0, 'relative_time': 1.0, 'relative_energy': 1.0}, {'cap_w': 500.0, 'relative_time': 1.119, 'relative_energy': 0.799}]
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import pandas as pd

from gpuviz.energy.carbon import J_PER_KWH
from gpuviz.sharing.accelerators import ACCELERATORS

_LLAMA2 = "https://github.com/meta-llama/llama/blob/main/MODEL_CARD.md"
_LLAMA3 = "https://github.com/meta-llama/llama3/blob/main/MODEL_CARD.md"
_LLAMA31 = "https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/MODEL_CARD.md"

#: Board power of data-centre GPUs, watts. ``tdp_w`` is the default (and maximum) power
#: limit, from :data:`gpuviz.sharing.accelerators.ACCELERATORS` (its source there); ``min_limit_w`` the
#: lowest limit ``nvidia-smi -pl`` accepts, with the source below.
GPUS: dict[str, dict] = {
    "A100 SXM": dict(
        tdp_w=ACCELERATORS["A100 SXM 80GB"]["tdp_w"], min_limit_w=100.0,
        # `nvidia-smi -q` of an A100 (max SM clock 1410 MHz, memory 1215 MHz: the SXM4 part)
        # quoted in NVIDIA/nvidia-docker issue #1648: "Default Power Limit 400.00 W ... Min
        # Power Limit 100.00 W, Max Power Limit 400.00 W". 400 W is also the per-GPU power in
        # the Llama 2 model card ("A100-80GB (TDP of 350-400W)") and Luccioni et al.'s BLOOM
        # estimate (1,082,990 GPU-hours x 0.4 kW = 433,196 kWh).
        source="nvidia-smi -q output in NVIDIA/nvidia-docker#1648; Llama 2 model card",
        url="https://github.com/NVIDIA/nvidia-docker/issues/1648"),
    "H100 SXM": dict(
        tdp_w=ACCELERATORS["H100 SXM"]["tdp_w"], min_limit_w=200.0,
        # `nvidia-smi -q -d power` on H100s in stackhpc/ansible-slurm-appliance PR #975:
        # "Default Power Limit 700.00 W, Min Power Limit 200.00 W, Max Power Limit 700.00 W",
        # and the driver refusing 50 W: "should be between 200.00 W and 700.00 W". NVIDIA's
        # DGX power-capping guide shows the same range for GPU_SXM_<id> ("AllowableMax": 700,
        # "AllowableMin": 200). Llama 3 model card: "H100-80GB (TDP of 700W)".
        source="nvidia-smi in stackhpc/ansible-slurm-appliance#975; NVIDIA DGX user guide, "
               "'Managing Power Capping'; Llama 3 model card",
        url="https://github.com/stackhpc/ansible-slurm-appliance/pull/975"),
}


def gpu_power() -> pd.DataFrame:
    """:data:`GPUS` as a DataFrame, one row per GPU.

    >>> gpu_power().loc["H100 SXM", ["tdp_w", "min_limit_w"]].tolist()
    [700.0, 200.0]
    """
    df = pd.DataFrame.from_dict(GPUS, orient="index")
    df.index.name = "gpu"
    return df


# One row per published training run. Energies and emissions are as the authors report
# them; ``energy_basis`` says how they got them. Where a source gives GPU-hours and a per-GPU
# power but no energy, energy = GPU-hours x power is *derived here* and labelled so.
_RUNS = [
    dict(model="GPT-3 175B", year=2020, gpus=None, gpu_type=None, gpu_hours=None,
         power_w=None, energy_mwh=1287.0, tco2e=552.0, tokens=300e9,
         energy_basis="reported: estimate by Patterson et al. (not measured by the trainer)",
         # Patterson et al. 2021, "Carbon Emissions and Large Neural Network Training",
         # arXiv:2104.10350: GPT-3 1,287 MWh, 552 tCO2e (the figure Zeus, You et al.
         # NSDI 2023, sec. 1, quotes as "training the GPT-3 model consumes 1,287 MWh"). Tokens: Brown et al. 2020, "Language Models are
         # Few-Shot Learners", arXiv:2005.14165, sec. 2.2: trained on 300 billion tokens.
         source="Patterson et al. 2021; tokens: Brown et al. 2020, sec. 2.2",
         url="https://arxiv.org/abs/2104.10350"),
    dict(model="BLOOM 176B", year=2022, gpus=384, gpu_type="A100 SXM 80GB",
         gpu_hours=1_082_990, power_w=400.0, energy_mwh=433.196, tco2e=24.7, tokens=366e9,
         energy_basis="reported: estimate, GPU-hours x 400 W TDP (Luccioni et al.); "
                      "emissions dynamic power only",
         # Luccioni, Viguier, Ligozat, "Estimating the Carbon Footprint of BLOOM, a 176B
         # Parameter Language Model", JMLR 24(253), 2023 (arXiv:2211.02001): Table 1,
         # 1,082,990 GPU-hours; 433,196 kWh; abstract: 24.7 tCO2eq for dynamic power (50.5 t
         # with idle power and manufacturing). BigScience, "BLOOM", arXiv:2211.05100: sec.
         # 3.4.1, 48 nodes x 8 A100 80GB = 384 GPUs; hyper-parameter table, 366B tokens.
         source="Luccioni et al. 2023 (JMLR), Table 1 and abstract; BigScience 2022, sec. 3.4.1",
         url="https://arxiv.org/abs/2211.02001"),
    dict(model="Llama 2 7B", year=2023, gpus=None, gpu_type="A100 80GB",
         gpu_hours=184_320, power_w=400.0, energy_mwh=None, tco2e=31.22, tokens=2.0e12,
         source="Llama 2 model card, 'CO2 emissions during pretraining' (2.0T tokens)", url=_LLAMA2),
    dict(model="Llama 2 13B", year=2023, gpus=None, gpu_type="A100 80GB",
         gpu_hours=368_640, power_w=400.0, energy_mwh=None, tco2e=62.44, tokens=2.0e12,
         source="Llama 2 model card, 'CO2 emissions during pretraining' (2.0T tokens)", url=_LLAMA2),
    dict(model="Llama 2 70B", year=2023, gpus=None, gpu_type="A100 80GB",
         gpu_hours=1_720_320, power_w=400.0, energy_mwh=None, tco2e=291.42, tokens=2.0e12,
         source="Llama 2 model card, 'CO2 emissions during pretraining' (2.0T tokens)", url=_LLAMA2),
    # Llama 3: "15T+" tokens ("over 15 trillion"), so J/token derived from 15e12 is an upper bound.
    dict(model="Llama 3 8B", year=2024, gpus=None, gpu_type="H100 80GB",
         gpu_hours=1.3e6, power_w=700.0, energy_mwh=None, tco2e=390.0, tokens=15e12,
         source="Llama 3 model card, 'CO2 emissions during pre-training' (15T+ tokens)", url=_LLAMA3),
    dict(model="Llama 3 70B", year=2024, gpus=None, gpu_type="H100 80GB",
         gpu_hours=6.4e6, power_w=700.0, energy_mwh=None, tco2e=1900.0, tokens=15e12,
         source="Llama 3 model card, 'CO2 emissions during pre-training' (15T+ tokens)", url=_LLAMA3),
    dict(model="Llama 3.1 8B", year=2024, gpus=None, gpu_type="H100 80GB",
         gpu_hours=1.46e6, power_w=700.0, energy_mwh=None, tco2e=420.0, tokens=15e12,
         source="Llama 3.1 model card, 'Training Energy Use' table, location-based (~15T tokens)",
         url=_LLAMA31),
    dict(model="Llama 3.1 70B", year=2024, gpus=None, gpu_type="H100 80GB",
         gpu_hours=7.0e6, power_w=700.0, energy_mwh=None, tco2e=2040.0, tokens=15e12,
         source="Llama 3.1 model card, 'Training Energy Use' table, location-based (~15T tokens)",
         url=_LLAMA31),
    dict(model="Llama 3.1 405B", year=2024, gpus=None, gpu_type="H100 80GB",
         gpu_hours=30.84e6, power_w=700.0, energy_mwh=None, tco2e=8930.0, tokens=15e12,
         source="Llama 3.1 model card, 'Training Energy Use' table, location-based (~15T tokens)",
         url=_LLAMA31),
]
# Meta's cards give "Time (GPU hours)" and "Power Consumption (W): peak power capacity per GPU
# device for the GPUs used adjusted for power usage efficiency" (Llama 2: 400 W on A100-80GB;
# Llama 3 and 3.1: 700 W on H100-80GB), and tCO2eq, but no energy.
_META_BASIS = "derived here: GPU-hours x per-GPU peak power from the model card (an upper bound)"

_COLUMNS = ["model", "year", "gpus", "gpu_type", "gpu_hours", "power_w", "energy_mwh",
            "energy_derived", "energy_basis", "tco2e", "tokens", "j_per_token", "source", "url"]


def published_runs() -> pd.DataFrame:
    """Large training runs as published: GPU-hours, energy (MWh), emissions (tCO2e), tokens.

    ``energy_derived`` is True where the source gives no energy and this table computes
    GPU-hours x per-GPU power; ``energy_basis`` says which. ``j_per_token`` is always
    derived here (energy / training tokens), to set beside a learner's joules per sample;
    it counts the GPUs (and the site overhead where the source includes it), not the
    experiments before the final run.

    >>> r = published_runs().set_index("model")
    >>> float(round(r.loc["Llama 2 70B", "energy_mwh"], 1)), bool(r.loc["Llama 2 70B", "energy_derived"])
    (688.1, True)
    >>> float(round(r.loc["GPT-3 175B", "j_per_token"], 1))
    15.4
    """
    rows = []
    for run in _RUNS:
        r = dict(run)
        derived = r["energy_mwh"] is None
        if derived:
            r["energy_mwh"] = r["gpu_hours"] * r["power_w"] / 1e6
            r["energy_basis"] = _META_BASIS
        r["energy_derived"] = derived
        r["j_per_token"] = r["energy_mwh"] * 1e3 * J_PER_KWH / r["tokens"]
        rows.append(r)
    df = pd.DataFrame(rows)[_COLUMNS]
    df["gpus"] = df["gpus"].astype("Int64")
    return df


#: Published measurement of training under a power cap, to check the model against.
POWER_CAP_MEASURED = [
    dict(gpu="V100 (MIT Supercloud, 250 W default)", default_w=250.0, cap_w=150.0,
         relative_time=1.068, relative_energy=0.863, workload="language-model training, larger scale",
         # McDonald, Li, Frey, Tiwari, Gadepally, Samsi, "Great Power, Great Responsibility:
         # Recommendations for Reducing Energy for Training Language Models", NAACL Findings
         # 2022, arXiv:2205.09646: a 150 W cap (default 250 W) gave on average 13.7% less
         # energy and 6.8% more training time for the larger-scale NLP training runs.
         source="McDonald et al. 2022 (MIT Lincoln Laboratory), arXiv:2205.09646",
         url="https://arxiv.org/abs/2205.09646"),
]


def published_power_caps() -> pd.DataFrame:
    """Published measurements of training under a GPU power cap (measured, not modelled).

    >>> published_power_caps()[["cap_w", "relative_energy"]].values.tolist()
    [[150.0, 0.863]]
    """
    return pd.DataFrame(POWER_CAP_MEASURED).assign(measured=True)


def _check_gpu(gpu: str) -> dict:
    if not isinstance(gpu, str) or gpu not in GPUS:
        raise ValueError(f"gpu={gpu!r} is not in the power table; known: " + ", ".join(GPUS))
    return GPUS[gpu]


def cap_model(cap_w, draw_w, exponent: float = 3.0) -> tuple[float, float]:
    """(relative time, relative energy) of a step when a GPU that draws ``draw_w`` is capped at ``cap_w``.

    A **model** (dynamic voltage and frequency scaling): a power cap lowers the clock until
    the board power fits; dynamic power goes as f x V^2 and V roughly as f, so power ~ f^3
    (``exponent``), the clock falls to (cap/draw)^(1/3) and a step whose time is set by the
    clock takes (draw/cap)^(1/3) longer, drawing the cap all the while. Energy is
    cap x time, i.e. (cap/draw)^(2/3): the model's curve is time = energy^(-1/2). Below the
    draw nothing changes. Assumes a compute-bound step, power entirely dynamic, no
    thermal effects; a memory-bound step slows less. GPU board energy only: the host draws
    power over the longer step too, so whole-node savings are smaller.

    >>> [round(v, 3) for v in cap_model(150, 187.1)]
    [1.076, 0.863]
    """
    if cap_w >= draw_w:
        return 1.0, 1.0
    clock = (cap_w / draw_w) ** (1.0 / exponent)
    t = 1.0 / clock
    return t, cap_w * t / draw_w


def _positive(value, what, allowed):
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value) or value <= 0:
        raise ValueError(f"{what}={value!r}: give {allowed}")
    return float(value)


def power_cap_whatif(gpu: str = "H100 SXM", caps_w=None, *, draw_w=None, n: int = 11,
                     exponent: float = 3.0) -> pd.DataFrame:
    """Predicted relative step time and energy of ``gpu`` under power caps: a **model**.

    ``caps_w``: the caps to try, watts (default ``n`` caps from the GPU's lowest power limit
    to its TDP, :data:`GPUS`); each must lie in that range. ``draw_w``: what the GPU draws
    uncapped while training (default: its TDP, as for large LLM training); caps above it
    change nothing. Relative values are against the uncapped GPU. Every row says
    ``modelled=True``; the model is :func:`cap_model` and :func:`published_power_caps` is
    the measurement it is checked against (``tests/test_at_scale.py``). Nothing here
    touches a GPU.

    >>> power_cap_whatif("A100 SXM", caps_w=[300], draw_w=350)["relative_energy"].round(3).item()
    0.902
    """
    spec = _check_gpu(gpu)
    tdp, lo = spec["tdp_w"], spec["min_limit_w"]
    draw = tdp if draw_w is None else _positive(draw_w, "draw_w", f"the uncapped board power in watts, "
                                                f"0 < draw_w <= {tdp:g} (the {gpu}'s TDP)")
    if draw > tdp:
        raise ValueError(f"draw_w={draw_w!r}: a {gpu} cannot draw more than its TDP, {tdp:g} W")
    _positive(exponent, "exponent", "the power-vs-clock exponent, > 0 (3 for DVFS)")
    if caps_w is None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n={n!r}: the number of caps, an integer >= 2")
        caps = np.linspace(lo, tdp, n)
    else:
        caps = [caps_w] if isinstance(caps_w, Real) and not isinstance(caps_w, bool) else list(caps_w)
        if not caps:
            raise ValueError("caps_w=[]: give at least one cap in watts")
        for c in caps:
            _positive(c, "caps_w", f"watts between {lo:g} and {tdp:g} for a {gpu}")
            if c > tdp:
                raise ValueError(f"caps_w: {c!r} W is above the {gpu}'s TDP ({tdp:g} W); "
                                 f"allowed {lo:g}..{tdp:g} W")
            if c < lo:
                raise ValueError(f"caps_w: {c!r} W is below the {gpu}'s lowest power limit "
                                 f"({lo:g} W); allowed {lo:g}..{tdp:g} W")
    rows = []
    for c in caps:
        t, e = cap_model(float(c), draw, exponent)
        rows.append(dict(gpu=gpu, cap_w=float(c), draw_w=draw, relative_power=min(c, draw) / draw,
                         relative_time=t, relative_energy=e, modelled=True,
                         model=f"DVFS: power ~ clock^{exponent:g}, compute-bound step"))
    return pd.DataFrame(rows)
