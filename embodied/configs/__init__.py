"""The YAML presets of every job and config group (package data), and the value rules (:mod:`.checks`) and field
docs (:mod:`.docs`) of config dataclasses. Composition itself is :mod:`embodied.jobs.config`."""
