"""Plan a training run you cannot make: the cluster model (Lab 05). Every number is modelled.

- :mod:`~gpuviz.plan.transformer`: the network's shape and presets (GPT-3, Llama 3, Qwen3's
  mixtures of experts...);
- :mod:`~gpuviz.plan.config`: a planned run (hardware, layout, efficiencies);
- :mod:`~gpuviz.plan.terms`: the formulas of each term, with their papers;
- :mod:`~gpuviz.plan.prediction`: :func:`predict`, step time, memory, MFU and energy;
- :mod:`~gpuviz.plan.search`: every layout, and why the best one wins;
- :mod:`~gpuviz.plan.grid`: the best layouts precomputed, for a planner without a kernel;
- :mod:`~gpuviz.plan.calibrate`: the model fitted to your own runs;
- :mod:`~gpuviz.plan.published`: published large-scale runs it is checked against.

>>> from gpuviz.plan import Config, predict
>>> predict(Config("llama3-70b", gpus=64, dp=8, tp=8, global_batch=512, zero=1,
...                recompute="selective")).fits
True
"""

from gpuviz.plan.config import Config, Efficiency, default_efficiency, hardware
from gpuviz.plan.prediction import (
                                    MEMORY_TERMS,
                                    Prediction,
                                    allreduce_over_links,
                                    predict,
                                    ring_allreduce_seconds,
)
from gpuviz.plan.transformer import MODELLED, PRESETS, Transformer, transformer

__all__ = ["Config", "Efficiency", "Transformer", "Prediction", "PRESETS", "MODELLED",
           "MEMORY_TERMS", "predict", "transformer", "hardware", "default_efficiency",
           "ring_allreduce_seconds", "allreduce_over_links"]
