"""Learned visual rewards: RAPL's preference-aligned optimal-transport reward, the RLHF baseline and frozen-encoder
OT, trained through the Trainer from a store's preference table (``embodied reward simulate|align|score``).

Methods are registered in :data:`embodied.rewards.model.REWARD_METHODS` (``reward.method=<name>``); a plugin adds
one with ``REWARD_METHODS.register("mine")(RewardMethod(head, logits, matches_demos))``.
"""
