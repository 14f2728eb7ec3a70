"""The commands of `embodied`, one module each, side by side: a config dataclass and ``run(job, run_dir)``.

Jobs are wiring: they compose a config and call into the role folders (``training``, ``evaluation``, ``datasets``,
...); nothing imports a job. A job module defines ``SCHEMA`` (its config dataclass), ``run(job, run_dir)`` and,
optionally, ``check(job)`` (raises :class:`~embodied.configs.checks.ConfigValueError` before any work starts).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from embodied.registry import Registry


@dataclass(frozen=True)
class Job:
    """One command: where it lives, the YAML it composes and the config groups it has."""

    module: str  # embodied.jobs.<module>
    config_name: str  # configs/<config_name>.yaml
    groups: tuple[str, ...]  # config groups (env, policy, encoder) whose registered components it offers
    description: str  # one line for `embodied --help`
    run_dir: bool = True  # whether it writes a run directory (with the resolved config.yaml)
    distributed: bool = False  # whether it runs under torchrun, its work spread over the ranks

    def load(self):
        """The job's module."""
        return importlib.import_module(f"embodied.jobs.{self.module}")

    def schema(self) -> type:
        """The job's config dataclass."""
        return self.load().SCHEMA


JOBS: Registry[Job] = Registry("command")
POLICY_GROUPS = ("env", "policy", "encoder")
for _name, _job in {
    "demo": Job("demo", "demo", POLICY_GROUPS, "collect a small dataset, train behaviour cloning, evaluate, report"),
    "collect": Job(
        "collect", "collect", ("env",), "run a scripted expert and write an episode store", distributed=True
    ),
    "train": Job(
        "train",
        "train",
        POLICY_GROUPS,
        "fit a policy to episode stores (no dataset=: the env's demo store)",
        distributed=True,
    ),
    "cache-features": Job(
        "cache_features", "train", POLICY_GROUPS, "encode a store's frames once with a frozen encoder", run_dir=False
    ),
    "pretrain": Job("pretrain", "pretrain", ("encoder",), "self-supervised encoder pretraining on episode stores"),
    "eval": Job(
        "eval", "eval", (), "roll a checkpoint out in simulation (checkpoint=DIR episodes=50)", distributed=True
    ),
    "bench": Job("bench_encoders", "bench_encoders", ("env",), "bench encoders: frozen encoders compared"),
    "align": Job("align", "align", ("env",), "improve a trained policy on a learned reward (DPO, filtered BC)"),
    "label": Job("label", "label", (), "a page to answer preference queries by watching rollouts", run_dir=False),
    "reward simulate": Job(
        "reward_simulate",
        "reward_simulate",
        (),
        "a simulated person answers preference queries into a store",
        run_dir=False,
    ),
    "reward align": Job(
        "reward_align", "reward_align", ("encoder",), "learn a visual reward from preferences (RAPL, RLHF, frozen OT)"
    ),
    "serve": Job("serve", "serve", (), "a checkpoint for robot clients: openpi websocket, OpenVLA REST", run_dir=False),
    "ros": Job("ros", "ros", (), "a policy driving a robot over ROS, with watchdog, e-stop and limits", run_dir=False),
    "reward score": Job(
        "reward_score", "reward_score", (), "per-step learned rewards for a store's episodes", run_dir=False
    ),
}.items():
    JOBS.register(_name)(_job)
