"""A user's policy, registered from outside the package: an MLP on proprio and object state (``policy=tiny_mlp``),
and a preset of it in the plugin's own config folder (``policy=tiny_mlp_wide``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from embodied.policies import POLICIES, Policy, PolicyConfig

CONFIG_PATH = "pkg://embodied_tiny_plugin.configs"  # the plugin's YAML presets, added to the search path


@dataclass
class TinyMLPConfig(PolicyConfig):
    """An MLP from the low-dimensional observations to an action chunk."""

    name: str = "tiny_mlp"
    obs_keys: list[str] | None = field(default_factory=lambda: ["proprio", "state"])
    width: int = 32  # hidden width

    @classmethod
    def tiny(cls) -> TinyMLPConfig:
        return cls()


class TinyMLPPolicy(Policy):
    """Normalised proprio and state -> MLP -> (horizon, action_dim) normalised actions."""

    def __init__(self, config, features, stats, checkpoint_dir=None):
        super().__init__(config, features, stats, checkpoint_dir)
        width = sum(int(self.features[k].shape[-1]) for k in self.lowdim_keys) * config.n_obs_steps
        self.net = nn.Sequential(nn.Linear(width, config.width), nn.ReLU(), nn.Linear(config.width,
                                 config.horizon * self.action_dim))  # fmt: skip

    def predict_chunk(self, obs):
        import torch

        x = torch.cat([obs[k] for k in self.lowdim_keys], -1).flatten(1)
        return self.net(x).view(x.shape[0], self.config.horizon, self.action_dim)

    def compute_loss(self, batch):
        loss = self.masked_action_loss(self.predict_chunk(self.prepare_obs(batch)), batch)
        return loss, {"l1": loss.item()}


POLICIES.register("tiny_mlp", config=TinyMLPConfig)(TinyMLPPolicy)
