"""Energy: the joules of every rank, step and category (Lab 04).

- :mod:`~gpuviz.energy.meters`: hardware counters through Zeus, or a labelled estimate;
  :mod:`~gpuviz.energy.sampler` reads them on every rank of a traced job;
- :mod:`~gpuviz.energy.attribution`: joules per rank, step and category (functions over a Run);
- :mod:`~gpuviz.energy.carbon`: joules to CO2 on several grids;
- :mod:`~gpuviz.energy.at_scale`: published GPU runs and a power-cap what-if (modelled).
"""
