"""Training machinery shared by every job that fits a model: memory planning (``memory``)."""
