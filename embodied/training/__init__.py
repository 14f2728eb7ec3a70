"""Training machinery shared by every job that fits a model: the one loop (``trainer``), its optimiser, checkpoints,
batch order, metrics and memory plan, and the wiring from episode stores to a policy (``fit_policy``)."""
