"""Aligning a trained policy with a learned visual reward (`embodied align`): roll the policy out, score the rollouts
with the reward (RAPL's, RLHF's, or the true hidden cost as an oracle), and update the policy on what the reward
prefers, for several rounds — by a preference objective against the frozen starting policy (DPO, Diffusion-DPO for
the diffusion policy) or by reward-weighted / filtered behaviour cloning."""
