"""Figures: one function per figure, each returns a ``go.Figure`` and never shows it.

Like plotly.express: the data comes first, roles are keywords. Colours are
:data:`gpuviz.run.categories.COLORS`, the same in every figure; measured and estimated values
look different and the legend says which.

>>> import gpuviz
>>> run = gpuviz.launch("gpuviz.workloads.mlp:train", nproc=4)   # doctest: +SKIP
>>> gpuviz.plot.timeline(run)                                     # doctest: +SKIP
>>> gpuviz.plot.breakdown(run, normalize=True)                    # doctest: +SKIP
"""

from gpuviz.plot.at_scale import energy_per_token, power_cap
from gpuviz.plot.bench import alpha_beta, collectives
from gpuviz.plot.breakdown import breakdown
from gpuviz.plot.bucketing import bucket_sweep
from gpuviz.plot.energy import energy_breakdown, energy_per_sample, pareto, power_timeline
from gpuviz.plot.hardware import hardware_ladder, topology
from gpuviz.plot.notebook import setup_notebook
from gpuviz.plot.parallel import memory, scaling, timelines
from gpuviz.plot.pipeline import pipeline_bubble, pipeline_schedule
from gpuviz.plot.plan import layout_heatmap, model_breakdown, predicted_vs_measured
from gpuviz.plot.planner import precomputed_planner
from gpuviz.plot.real_gpus import busbw_beside_real
from gpuviz.plot.ring import ring_allreduce
from gpuviz.plot.spans import timeline
from gpuviz.plot.sync import relaxed_sync, stragglers, waiting_vs_ranks

__all__ = ["precomputed_planner", "timeline", "breakdown", "setup_notebook", "ring_allreduce", "hardware_ladder",
           "topology", "bucket_sweep", "collectives", "alpha_beta", "scaling", "memory",
           "pipeline_schedule", "pipeline_bubble", "timelines", "waiting_vs_ranks", "stragglers",
           "relaxed_sync", "energy_breakdown", "energy_per_sample", "pareto", "power_timeline",
           "energy_per_token", "power_cap", "model_breakdown", "layout_heatmap", "predicted_vs_measured",
           "busbw_beside_real"]
