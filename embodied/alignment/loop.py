"""`embodied align`: rounds of (roll the policy out, score the rollouts with the reward, update the policy), then the
starting and the aligned policy rolled out on the same evaluation scenes, and a report.

Run directory::

    alignment.json                the settings (a resume must match them)
    before/rollouts.zarr, after/rollouts.zarr   evaluation rollouts (seeds EVAL_SEED_OFFSET + seed + k); videos/
    rounds/round_NNN/rollouts.zarr   the round's rollouts of the current policy, scored by the reward
    rounds/round_NNN/checkpoints/    the round's training (the Trainer's; checkpoints/last: the updated policy)
    rounds/round_NNN/round.json      the round's metrics; written last, so its presence means the round is done
    policy/                       the aligned policy (`embodied eval checkpoint=<run_dir>/policy`)
    report.md, report.json, alignment_curves.png, reward_curves.png, videos/seed_<s>_before_after.mp4

Every stage resumes: a store holds the seeds it finished, a round's Trainer continues its last checkpoint, and
finished rounds are read back. The reference the DPO constraint holds the policy to is the starting policy.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from embodied.alignment.config import PolicyAlignConfig
from embodied.alignment.rollouts import (
    TRUE_COST,
    episode_costs_or_none,
    rollout_env_config,
    rollout_into_store,
    score_episodes,
)
from embodied.training.checkpoint import write_atomically

ROUND_SEED_BASE = 100_000_000  # alignment rollouts' seeds: above collection's, below evaluation's


def round_seeds(job: PolicyAlignConfig, k: int) -> list[int]:
    """The seeds of round ``k``'s rollouts (the same on a resumed run)."""
    base = ROUND_SEED_BASE + job.seed * 1_000_000 + k * job.episodes_per_round
    return list(range(base, base + job.episodes_per_round))


def eval_seeds(job: PolicyAlignConfig) -> list[int]:
    """The evaluation scenes, shared by the policy before and after."""
    from embodied.envs.base import EVAL_SEED_OFFSET

    return [EVAL_SEED_OFFSET + job.seed + k for k in range(job.eval_episodes)]


def load_alignment_reward(spec: str, device):
    """(reward, reward.json) for ``reward=``: a reward checkpoint, or (``true_cost``, None)."""
    if spec == TRUE_COST:
        return TRUE_COST, None
    from embodied.rewards.checkpoint import load_reward

    if not Path(spec).is_dir():
        raise FileNotFoundError(f"reward={spec}: not a directory; pass a `embodied reward align` output or {TRUE_COST}")
    return load_reward(spec, device)


def rollout_metrics(store, returns: np.ndarray, threshold: float) -> dict:
    """Success, learned return, and (where the env reports it) the hidden cost and the preference rate, with
    Wilson intervals."""
    from embodied.evaluation.metrics import wilson_interval

    success = np.asarray(store.episode_info()["success"], dtype=bool)
    n = len(success)
    out = {"episodes": n, "success_rate": float(success.mean()),
           "success_ci95": list(wilson_interval(int(success.sum()), n)),
           "mean_learned_return": float(np.mean(returns))}  # fmt: skip
    costs = episode_costs_or_none(store)
    if costs is not None:
        satisfied = costs <= threshold
        out.update(mean_true_cost=float(costs.mean()), preference_rate=float(satisfied.mean()),
                   preference_ci95=list(wilson_interval(int(satisfied.sum()), n)),
                   success_and_preference_rate=float((satisfied & success).mean()))  # fmt: skip
    return out


def align_policy(job: PolicyAlignConfig, run_dir: Path) -> Path:
    """Runs (or resumes) the alignment; returns the aligned policy's directory."""
    from omegaconf import OmegaConf

    from embodied.configs.checks import check_config
    from embodied.policies import load_policy
    from embodied.runtime import resolve_device, seed_everything

    check_config(job)
    run_dir = Path(run_dir)
    _check_resume(job, run_dir)
    device = resolve_device(job.device)
    checkpoint = Path(job.checkpoint)
    saved = OmegaConf.to_container(OmegaConf.load(checkpoint / "config.yaml"))
    initial = load_policy(checkpoint, device)
    check_method_fits(job.method, initial)
    reward, reward_info = load_alignment_reward(job.reward, device)
    camera = reward_info["camera"] if reward_info else None
    env_cfg = rollout_env_config(job.env or saved.get("env"), initial, reward_info, job.max_episode_steps)
    run_config = {k: v for k, v in saved.items() if k != "policy"}
    if job.env is not None:  # aligned in another env than it was trained in: `embodied eval` of the result runs there
        from dataclasses import asdict

        from embodied.envs import env_config

        run_config["env"] = asdict(env_config(job.env))
    progress = job.progress

    def evaluation(name: str, policy) -> dict:
        seed_everything(job.seed)  # the same sampling noise for the policy before and after
        label = f"eval {name}" if progress else None
        store = rollout_into_store(policy, env_cfg, eval_seeds(job), run_dir / name / "rollouts.zarr", job.num_envs,
                                   job.videos, run_dir / name / "videos", label)  # fmt: skip
        returns, per_step = score_episodes(reward, store, camera)
        result = {**rollout_metrics(store, returns, job.preference_threshold), "returns": returns.tolist()}
        store.close()
        return result, per_step

    before, before_steps = evaluation("before", initial)
    if progress:
        print(_describe("before", before), flush=True)
    policy = copy.deepcopy(initial)
    rounds = []
    for k in range(job.rounds):
        round_dir = run_dir / "rounds" / f"round_{k:03d}"
        done = round_dir / "round.json"
        if done.exists():
            rounds.append(json.loads(done.read_text()))
            policy = load_policy(round_dir / "checkpoints" / "last", device)
            continue
        seed_everything(job.seed + k)
        started = time.perf_counter()
        store = rollout_into_store(policy, env_cfg, round_seeds(job, k), round_dir / "rollouts.zarr", job.num_envs,
                                   progress=f"round {k + 1}/{job.rounds} rollouts" if progress else None)  # fmt: skip
        returns, _ = score_episodes(reward, store, camera)
        record = {"round": k, **rollout_metrics(store, returns, job.preference_threshold)}
        record["training"] = update_policy(job, policy, initial, store, returns, round_dir, run_config, k)
        store.close()
        record["seconds"] = round(time.perf_counter() - started, 1)
        _write_json(done, record)
        rounds.append(record)
        policy = load_policy(round_dir / "checkpoints" / "last", device)
        if progress:
            print(_describe(f"round {k + 1}", record), flush=True)
    out, marker = run_dir / "policy", run_dir / "after" / "rounds.json"
    if marker.exists() and json.loads(marker.read_text()) != job.rounds:  # resumed with more rounds: redo both
        shutil.rmtree(run_dir / "after")
        shutil.rmtree(out, ignore_errors=True)
    if not (out / "checksums.json").exists():
        write_atomically(out, lambda directory: policy.save_pretrained(directory, run_config=run_config))
    _write_json(marker, job.rounds)
    after, after_steps = evaluation("after", policy)
    from embodied.alignment.report import write_report

    write_report(run_dir, job, before, after, rounds, before_steps, after_steps, getattr(env_cfg, "control_freq", 20))
    if progress:
        print(_describe("after", after), flush=True)
    return out


def check_method_fits(method: str, policy) -> None:
    """Refuses, before any rollout, a likelihood-based method for a policy without an action likelihood."""
    from embodied.alignment.methods import ALIGN_METHODS
    from embodied.configs.checks import ConfigValueError
    from embodied.policies.base import Policy

    if ALIGN_METHODS.get(method).needs_likelihood and type(policy).chunk_log_likelihood is Policy.chunk_log_likelihood:
        raise ConfigValueError(
            f"method={method} compares action likelihoods, which policy {policy.config.name} does not give; use "
            "method=weighted_bc or method=filtered_bc"
        )


def update_policy(job, policy, reference, store, returns, round_dir: Path, run_config: dict, k: int) -> dict:
    """One round's update through the Trainer (resuming its last checkpoint); returns its last logged metrics."""
    from embodied.alignment.methods import ALIGN_METHODS, NoTrainingData, ScoredRollouts
    from embodied.datasets.window_dataset import WindowDataset
    from embodied.training.trainer import Trainer, TrainerConfig

    method = ALIGN_METHODS.get(job.method)
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    rollouts = ScoredRollouts(returns, np.asarray(store.episode_info()["success"], dtype=bool), starts, ends - starts)
    dataset = WindowDataset(store, policy.key_offsets())
    objective = method.objective(policy, reference, job.beta, job.sft_weight)
    config = TrainerConfig(steps=job.steps_per_round, batch_size=job.batch_size, micro_batch_size=job.batch_size,
                           optim=job.optim, log_every=max(1, min(25, job.steps_per_round)),
                           checkpoint_every=job.steps_per_round, resume=(round_dir / "checkpoints" / "last").exists(),
                           progress=job.progress, split=f"align round {k + 1}")  # fmt: skip
    try:
        batches = method.batches(dataset, rollouts, job, job.seed * 1000 + k)
    except NoTrainingData as error:  # the policy goes on unchanged; the next round's rollouts may give pairs
        print(f"round {k + 1}: {error}; the policy is left as it is this round", flush=True)
        write_atomically(round_dir / "checkpoints" / "last",
                         lambda directory: policy.save_pretrained(directory, run_config=run_config))  # fmt: skip
        return {"skipped": str(error)}
    trainer = Trainer(
        objective, batches, config, round_dir,
        export=lambda model, directory: model.policy.save_pretrained(directory, run_config=run_config, manifest=False),
        resume_check={**job.settings(), "round": k},
        diverged_hint=", or lower beta",
    )  # fmt: skip
    trainer.fit()
    return _last_metrics(round_dir / "metrics.jsonl")


def _last_metrics(path: Path) -> dict:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return lines[-1] if lines else {}


def _check_resume(job: PolicyAlignConfig, run_dir: Path) -> None:
    from embodied.configs.checks import ConfigValueError

    if not job.checkpoint or not job.reward:
        raise ConfigValueError(
            f"embodied align needs checkpoint=POLICY_DIR and reward=REWARD_DIR (or reward={TRUE_COST})"
        )
    if not Path(job.checkpoint).is_dir():
        raise ConfigValueError(f"checkpoint {job.checkpoint!r} is not a directory")
    if job.rounds * job.episodes_per_round > 1_000_000:  # each seed's round range holds a million scenes
        raise ConfigValueError("rounds x episodes_per_round must stay within 1,000,000 rollouts")
    record = run_dir / "alignment.json"
    settings = json.loads(json.dumps(job.settings(), default=str))
    if record.exists():
        if not job.resume:
            raise FileExistsError(f"{run_dir} already holds an alignment run; pass resume=true to continue it")
        before = json.loads(record.read_text())
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        if changed:
            was = ", ".join(f"{k}={before.get(k)!r}" for k in changed)
            raise ValueError(f"resume=true: {', '.join(changed)} differ from the run in {run_dir} ({was}); start a "
                             "new run_dir")  # fmt: skip
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(record, settings)


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, default=str))
    os.replace(tmp, path)


def _describe(label: str, metrics: dict) -> str:
    text = f"{label}: success {metrics['success_rate']:.2f}, learned return {metrics['mean_learned_return']:.3g}"
    if "preference_rate" in metrics:
        text += f", preference satisfied {metrics['preference_rate']:.2f}, hidden cost {metrics['mean_true_cost']:.2f}"
    return text
