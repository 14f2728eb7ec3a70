"""The `embodied` command: Hydra-configured jobs (`embodied demo`, `embodied collect env=franka episodes=20`,
`embodied train policy=bc env=franka dataset=PATH`, `embodied eval checkpoint=DIR`) and tools
(`embodied data info PATH`).

Configs ship inside the package (``embodied/configs``). Add your own config folders, e.g. an env file
``my_configs/env/my_env.yaml``, with ``hydra.searchpath=[file:///abs/path/my_configs]`` or the
``EMBODIED_CONFIG_PATH`` environment variable (paths separated by ':').
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

JOBS = {
    "demo": "collect a small dataset, train behaviour cloning, evaluate, write a report",
    "collect": "run a scripted expert and write an episode store",
    "train": "fit a policy to an episode store (policy=bc env=franka dataset=PATH)",
    "cache-features": "encode a store's frames once with a frozen encoder (same overrides as train)",
    "pretrain": "self-supervised encoder pretraining (encoder=vit objective=mae|tov_vicreg|time_contrastive)",
    "eval": "roll a checkpoint out in simulation (checkpoint=DIR episodes=50)",
}
TOOLS = {
    "bench encoders key=value ...": "frozen encoders compared: linear probes to sim state and BC success",
    "data info PATH [--verify]": "describe an episode store (schema, episodes, success, statistics)",
}
USAGE = "usage: embodied <command> [key=value ...]\n\ncommands:\n" + "\n".join(
    f"  {name:<32}{text}" for name, text in {**JOBS, **TOOLS}.items()
)


class UsageError(Exception):
    """Bad command-line input: printed without a traceback, exit status 2."""


def compose(command: str, overrides: list[str]):
    """The resolved config of a job, with Hydra's errors for unknown keys or group choices."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    extra = [p for p in os.environ.get("EMBODIED_CONFIG_PATH", "").split(":") if p]
    if extra:
        paths = ",".join(f"file://{Path(p).resolve()}" for p in extra)
        overrides = [f"hydra.searchpath=[{paths}]", *overrides]
    try:
        with initialize_config_module("embodied.configs", version_base="1.3"):
            return hydra_compose(config_name=command, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        raise UsageError(f"embodied {command}: {error}") from None


def validated(schema, cfg):
    """Merges ``cfg`` into the job's dataclass schema: unknown keys and wrong types fail with their name."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from embodied.envs import env_config

    def policy_config(section):
        if "name" not in section:  # e.g. pretrain: only policy.encoder, the encoder group's home
            return OmegaConf.to_container(section, resolve=True)
        from embodied.policies import POLICIES  # imports torch: only for jobs that have a policy

        return POLICIES.config_from(section)

    sections = {"env": env_config, "policy": policy_config}
    try:
        built = {key: check(cfg[key]) for key, check in sections.items() if key in cfg}
        rest = OmegaConf.masked_copy(cfg, [k for k in cfg if k not in sections])
        job = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), rest))
    except (OmegaConfBaseException, KeyError, ValueError) as error:
        raise UsageError(f"invalid config: {error}") from None
    for key, value in built.items():
        setattr(job, key, value)
    return job


def make_run_dir(command: str, requested: str | None) -> Path:
    run_dir = Path(requested) if requested else Path("outputs") / command / time.strftime("%Y-%m-%d_%H-%M-%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run directory: {run_dir.resolve()}", flush=True)
    return run_dir


def start_job(command: str, schema, overrides: list[str], check=None):
    """Composes and validates a job's config, runs ``check(job)`` (raising UsageError), then creates the run
    directory with the resolved ``config.yaml`` in it. Returns (job, run_dir)."""
    from omegaconf import OmegaConf

    cfg = compose(command, overrides)
    job = validated(schema, cfg)
    if check is not None:
        check(job)
    run_dir = make_run_dir(command, job.run_dir)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    return job, run_dir


def run_collect(overrides: list[str]) -> None:
    from embodied.collect import CollectConfig, collect

    job, run_dir = start_job("collect", CollectConfig, overrides)
    out = collect(job, run_dir)
    print(f"store: {out.resolve()}")
    print(f"describe it with: embodied data info {out}")


def _check_train(job) -> None:
    if not job.dataset:
        raise UsageError("embodied train needs dataset=PATH: an episode store written by `embodied collect`")
    if not Path(job.dataset).exists():
        raise UsageError(f"dataset {job.dataset!r} does not exist; write one with `embodied collect out={job.dataset}`")
    if job.resume and not job.run_dir:
        raise UsageError("resume=true needs run_dir=<the run to continue>, e.g. run_dir=outputs/train/<time>")


def run_train(overrides: list[str]) -> None:
    from embodied.train import TrainConfig, train

    job, run_dir = start_job("train", TrainConfig, overrides, _check_train)
    final = train(job, run_dir)
    print(f"checkpoint: {final}")
    print(f"evaluate it with: embodied eval checkpoint={run_dir / 'checkpoints' / 'last'}")


def run_cache_features(overrides: list[str]) -> None:
    from embodied.encoders.cache import compute_features
    from embodied.train import TrainConfig, build_policy, open_dataset
    from embodied.training_utils import resolve_device

    cfg = compose("train", overrides)
    job = validated(TrainConfig, cfg)
    _check_train(job)
    store = open_dataset(job.dataset)
    policy = build_policy(job, store, resolve_device(job.device))
    encoders = policy.image_encoders()
    if not encoders:
        raise UsageError("the policy reads no camera images: nothing to cache")
    if not all(encoder.frozen for encoder in encoders.values()):
        raise UsageError("only frozen encoders can be cached: add policy.encoder.train=frozen (and pass it to train)")
    directory = compute_features(store, encoders, batch_size=job.batch_size)
    print(f"features: {directory}")
    print("`embodied train` with the same overrides now reads them (feature_cache=auto)")


def run_pretrain(overrides: list[str]) -> None:
    from embodied.pretrain import PretrainConfig, pretrain

    job, run_dir = start_job("pretrain", PretrainConfig, overrides)
    out = pretrain(job, run_dir)
    name = job.policy["encoder"]["name"]
    print(f"encoder: {out}")
    print(f"use it with: encoder={name} policy.encoder.pretrained={out}")


def _check_eval(job) -> None:
    if not job.checkpoint:
        raise UsageError("embodied eval needs checkpoint=DIR, e.g. checkpoint=outputs/train/<time>/checkpoints/last")
    if not Path(job.checkpoint).is_dir():
        raise UsageError(f"checkpoint {job.checkpoint!r} is not a directory")


def run_eval(overrides: list[str]) -> None:
    from embodied.evaluate import EvalConfig, format_summary, run_eval

    job, run_dir = start_job("eval", EvalConfig, overrides, _check_eval)
    result = run_eval(job, run_dir)
    print(format_summary(result))
    print(f"results: {run_dir / 'results.json'}")


def run_demo(overrides: list[str]) -> None:
    from embodied.demo import DemoConfig, demo

    job, run_dir = start_job("demo", DemoConfig, overrides)
    report = demo(job, run_dir)
    print(report.read_text())
    print(f"report: {report}")


def run_bench(args: list[str]) -> None:
    from embodied.bench import BenchEncodersConfig, bench_encoders

    if not args or args[0] != "encoders":
        raise UsageError("usage: embodied bench encoders dataset=PATH 'encoders=[{name: cnn}, {name: resnet18}]'")

    def check(job) -> None:
        if not job.dataset or not Path(job.dataset).exists():
            raise UsageError(f"embodied bench encoders needs dataset=PATH of an existing store, got {job.dataset!r}")

    job, run_dir = start_job("bench_encoders", BenchEncodersConfig, args[1:], check)
    bench_encoders(job, run_dir)
    print((run_dir / "table.md").read_text())
    print(f"results: {run_dir / 'results.json'}, chart: {run_dir / 'encoders.png'}")


def run_data(args: list[str]) -> None:
    from embodied.datasets.info import describe_store

    if len(args) < 2 or args[0] != "info":
        raise UsageError("usage: embodied data info PATH [--verify]")
    print(describe_store(args[1], verify="--verify" in args[2:]))


COMMANDS = {
    "collect": run_collect,
    "train": run_train,
    "cache-features": run_cache_features,
    "pretrain": run_pretrain,
    "bench": run_bench,
    "eval": run_eval,
    "demo": run_demo,
    "data": run_data,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command in COMMANDS:
            COMMANDS[command](rest)
        else:
            raise UsageError(f"unknown command {command!r}\n\n{USAGE}")
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except Exception as error:
        from embodied.datasets.store import StoreError
        from embodied.train import TrainingDiverged

        # Errors about the user's input or files are printed plainly (EMBODIED_TRACEBACK=1 shows the traceback).
        expected = (StoreError, TrainingDiverged, FileExistsError, FileNotFoundError, ValueError, KeyError)
        if isinstance(error, expected) and not os.environ.get("EMBODIED_TRACEBACK"):
            print(f"error: {error}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        print(
            "interrupted; finished work is kept (collect resumes its store, train resumes with resume=true)",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
