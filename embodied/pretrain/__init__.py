"""Self-supervised encoder pretraining on robot data: objectives registered by name (``objective=``).

A new objective plugs in with a subclass of :class:`~embodied.pretrain.objective.Objective` taking
``(encoder, **objective_args)``: ``OBJECTIVES.register("my_objective")(MyObjective)``.
"""

from __future__ import annotations

from embodied.pretrain.domain_alignment import MMDObjective
from embodied.pretrain.language import LangDistObjective, LangRegObjective, StageClassifyObjective
from embodied.pretrain.mae import MAEObjective
from embodied.pretrain.objective import Objective
from embodied.pretrain.time_contrastive import TimeContrastiveObjective
from embodied.pretrain.tov_vicreg import TOVVICRegObjective
from embodied.registry import Registry

OBJECTIVES: Registry[type[Objective]] = Registry("objective")
OBJECTIVES.register("mae")(MAEObjective)
OBJECTIVES.register("tov_vicreg")(TOVVICRegObjective)
OBJECTIVES.register("time_contrastive")(TimeContrastiveObjective)
# language across visual domains (Lang4Sim2Real): need stores with stage captions (language_caption)
OBJECTIVES.register("lang_reg")(LangRegObjective)
OBJECTIVES.register("lang_dist")(LangDistObjective)
OBJECTIVES.register("stage_classify")(StageClassifyObjective)
# the domain-adaptation baseline: stage classification + MMD between the domains' features (no language)
OBJECTIVES.register("mmd")(MMDObjective)

__all__ = ["OBJECTIVES", "MAEObjective", "Objective", "TOVVICRegObjective", "TimeContrastiveObjective"]
