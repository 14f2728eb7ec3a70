"""Feature descriptions shared by envs, stores and policies: shapes come from data, never hard-coded."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# What a feature is, so consumers pick encoders and normalisers without knowing key names.
KINDS = ("image", "proprio", "state", "action", "reward", "flag", "language")
# The one name of the language instruction: in env observations, stores (per step, as in Open-X/RLDS), batches
# and policy inputs.
INSTRUCTION = "language_instruction"
# The privileged per-step cost of a task with a hidden preference (kind "reward"): what the simulated person ranks
# rollouts by and learned rewards are scored against; never a policy input.
PREFERENCE_COST = "preference_cost"
# A per-step description of the task's stage ("gripper closing around the red cube"), written by the scripted
# experts (kind "language", stored as codes into the store's vocabulary); never a policy input: it is what
# language-supervised pretraining (Lang4Sim2Real) aligns images with.
CAPTION = "language_caption"
IMAGE_PREFIX = "images/"  # camera images are ``images/<camera>``


@dataclass(frozen=True)
class Feature:
    """One per-step quantity: `key` as stored (e.g. ``images/agentview``), per-step `shape`, numpy `dtype`, and its
    `kind` (one of :data:`KINDS`)."""

    key: str  # as stored and observed: images/<camera>, proprio, state, action, ...
    shape: tuple[int, ...]  # per step
    dtype: str  # numpy dtype name
    kind: str  # one of KINDS

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.key!r}: kind {self.kind!r} is not one of {KINDS}")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    def to_dict(self) -> dict:
        """JSON-ready form (store attributes, checkpoints)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Feature:
        """Inverse of :meth:`to_dict`."""
        return cls(key=d["key"], shape=tuple(d["shape"]), dtype=d["dtype"], kind=d["kind"])


def camera_name(key: str) -> str:
    """``images/agentview`` -> ``agentview`` (module and file names cannot hold '/')."""
    return key.split("/", 1)[-1]


def image_key(camera: str) -> str:
    """``agentview`` -> ``images/agentview``."""
    return IMAGE_PREFIX + camera
