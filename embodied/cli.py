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
    "train": "fit a policy to an episode store (policy=bc env=franka dataset=PATH; no dataset: the env's demo store)",
    "cache-features": "encode a store's frames once with a frozen encoder (same overrides as train)",
    "pretrain": "self-supervised encoder pretraining (encoder=vit objective=mae|tov_vicreg|time_contrastive)",
    "eval": "roll a checkpoint out in simulation (checkpoint=DIR episodes=50)",
}
TOOLS = {
    "bench encoders key=value ...": "frozen encoders compared: linear probes to sim state and BC success",
    "data info PATH [--verify]": "describe an episode store (schema, episodes, success, statistics)",
    "data recompute-stats PATH": "rebuild a store's statistics from its episodes",
}
USAGE = (
    "usage: embodied <command> [key=value ...]   (embodied <command> --help: its fields)\n\ncommands:\n"
    + "\n".join(f"  {name:<32}{text}" for name, text in {**JOBS, **TOOLS}.items())
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
        raise UsageError(f"invalid config: {_plain(error)}") from None
    for key, value in built.items():
        setattr(job, key, value)
    from embodied.config_checks import ConfigValueError, check_config

    try:
        check_config(job)
    except ConfigValueError as error:
        raise UsageError(f"invalid config: {error}") from None
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

    from embodied.config_checks import ConfigValueError

    cfg = compose(command, overrides)
    job = validated(schema, cfg)
    if check is not None:
        try:
            check(job)
        except ConfigValueError as error:
            raise UsageError(str(error)) from None
    run_dir = make_run_dir(command, job.run_dir)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    return job, run_dir


def run_collect(overrides: list[str]) -> None:
    from embodied.collect import CollectConfig, check_output, collect

    job, run_dir = start_job("collect", CollectConfig, overrides, check_output)
    out = collect(job, run_dir)
    print(f"store: {out.resolve()}")
    print(f"describe it with: embodied data info {out}")


def _check_train(job) -> None:
    if job.dataset is None:
        return  # the env's default demo store (collected on first use)
    paths = [job.dataset] if isinstance(job.dataset, str) else list(job.dataset)
    if not paths:
        raise UsageError("dataset=[] names no store; pass dataset=PATH or a list of stores")
    for path in paths:
        if not Path(path).exists():
            raise UsageError(f"dataset {path!r} does not exist; write one with `embodied collect out={path}`")
    if job.resume and not job.run_dir:
        raise UsageError("resume=true needs run_dir=<the run to continue>, e.g. run_dir=outputs/train/<time>")


def _default_dataset(job) -> None:
    """No ``dataset=``: the env's default demo store, collected once into the cache and reused."""
    if job.dataset is None:
        from embodied.collect import default_store

        job.dataset = str(default_store(job.env))


def run_train(overrides: list[str]) -> None:
    from embodied.train import train

    job, run_dir = start_job("train", _schema("train"), overrides, _check_train)
    _default_dataset(job)
    final = train(job, run_dir)
    print(f"checkpoint: {final}")
    print(f"evaluate it with: embodied eval checkpoint={run_dir / 'checkpoints' / 'last'}")


def run_cache_features(overrides: list[str]) -> None:
    from embodied.encoders.cache import compute_features
    from embodied.train import build_policy, open_dataset
    from embodied.training_utils import resolve_device

    job = validated(_schema("train"), compose("train", overrides))
    _check_train(job)
    _default_dataset(job)
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
    from embodied.pretrain import pretrain

    job, run_dir = start_job("pretrain", _schema("pretrain"), overrides)
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
    from embodied.evaluate import format_summary, run_eval

    job, run_dir = start_job("eval", _schema("eval"), overrides, _check_eval)
    result = run_eval(job, run_dir)
    print(format_summary(result))
    print(f"results: {run_dir / 'results.json'}")


def run_demo(overrides: list[str]) -> None:
    from embodied.demo import demo

    job, run_dir = start_job("demo", _schema("demo"), overrides)
    report = demo(job, run_dir)
    print(report.read_text())
    print(f"report: {report}")


def run_bench(args: list[str]) -> None:
    from embodied.bench import bench_encoders

    if not args or args[0] != "encoders":
        raise UsageError("usage: embodied bench encoders dataset=PATH 'encoders=[{name: cnn}, {name: resnet18}]'")

    def check(job) -> None:
        if not job.dataset or not Path(job.dataset).exists():
            raise UsageError(f"embodied bench encoders needs dataset=PATH of an existing store, got {job.dataset!r}")

    job, run_dir = start_job("bench_encoders", _schema("bench_encoders"), args[1:], check)
    bench_encoders(job, run_dir)
    print((run_dir / "table.md").read_text())
    print(f"results: {run_dir / 'results.json'}, chart: {run_dir / 'encoders.png'}")


DATA_USAGE = "usage: embodied data info PATH [--verify]   |   embodied data recompute-stats PATH"


def run_data(args: list[str]) -> None:
    from embodied.datasets.info import describe_store

    if len(args) < 2 or args[0] not in ("info", "recompute-stats"):
        raise UsageError(DATA_USAGE)
    action, path, flags = args[0], args[1], args[2:]
    allowed = {"info": ["--verify"], "recompute-stats": []}[action]
    unknown = [flag for flag in flags if flag not in allowed]
    if unknown:
        raise UsageError(f"embodied data {action}: unknown option {' '.join(unknown)}\n{DATA_USAGE}")
    if path.startswith("-"):
        raise UsageError(f"embodied data {action}: expected a store PATH, got option {path}\n{DATA_USAGE}")
    if action == "recompute-stats":
        from embodied.datasets.store import EpisodeStore

        with EpisodeStore.open(path, mode="a", check_stats=False) as store:
            store.recompute_stats()
            print(f"{path}: statistics recomputed from {store.n_episodes} episodes")
        return
    print(describe_store(path, verify="--verify" in flags))


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
# command -> (its config file, "module:ConfigClass"): what `--help` describes
SCHEMAS = {
    "collect": "embodied.collect:CollectConfig",
    "train": "embodied.train:TrainConfig",
    "cache-features": "embodied.train:TrainConfig",
    "pretrain": "embodied.pretrain:PretrainConfig",
    "eval": "embodied.evaluate:EvalConfig",
    "demo": "embodied.demo:DemoConfig",
    "bench_encoders": "embodied.bench:BenchEncodersConfig",
}
CONFIG_NAMES = {"cache-features": "train", "bench": "bench_encoders"}


def _schema(name: str) -> type:
    import importlib

    module, cls = SCHEMAS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def _plain(error: Exception) -> str:
    """An exception's message without the quotes str(KeyError) adds."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def print_help(command: str, overrides: list[str]) -> None:
    """Every field of the command's config (with the given overrides applied) with its doc, then the env's and
    the policy's own fields, and the choices of each config group."""
    from embodied.config_docs import describe_fields

    if command == "data":
        print(DATA_USAGE)
        print("  info PATH            schema, episodes, success, statistics (--verify: read and checksum every chunk)")
        print("  recompute-stats PATH rebuild a store's statistics from its episodes (after they were damaged)")
        return
    if command == "bench":
        overrides = overrides[1:] if overrides[:1] == ["encoders"] else overrides
    name = CONFIG_NAMES.get(command, command)
    print(f"usage: embodied {command} {'encoders ' if command == 'bench' else ''}[key=value ...]")
    print(f"  {JOBS.get(command) or TOOLS['bench encoders key=value ...']}\n")
    job = validated(_schema(name), compose(name, overrides))
    print("fields (value as composed, doc, allowed values):")
    sections = [f for f in ("env", "policy") if hasattr(job, f)]
    print("\n".join(describe_fields(job, skip=tuple(sections))))
    for section in sections:
        value = getattr(job, section)
        if value is None:
            continue
        choices = ", ".join(config_choices(section))
        if hasattr(value, "__dataclass_fields__"):
            print(f"\n{section}={value.name}   (choices: {choices})")
            print("\n".join(describe_fields(value, f"{section}.")))
        encoder = getattr(value, "encoder", None) if section == "policy" else None
        if isinstance(value, dict):
            encoder = value.get("encoder")
        if isinstance(encoder, dict) and "name" in encoder:
            from embodied.encoders import ENCODERS

            print(f"\nencoder={encoder['name']}   (at policy.encoder; choices: {', '.join(config_choices('encoder'))})")
            print("\n".join(describe_fields(ENCODERS.config_from(encoder), "policy.encoder.")))
    print("\nchange a value with key=value (e.g. steps=100), a group with group=choice (e.g. policy=diffusion)")


def config_choices(group: str) -> list[str]:
    """The YAML stems of a config group: the package's and the user's (EMBODIED_CONFIG_PATH)."""
    from importlib.resources import files

    stems = {p.name[:-5] for p in (files("embodied.configs") / group).iterdir() if p.name.endswith(".yaml")}
    for extra in (p for p in os.environ.get("EMBODIED_CONFIG_PATH", "").split(":") if p):
        stems |= {p.stem for p in (Path(extra) / group).glob("*.yaml")}
    return sorted(stems)


def main(argv: list[str] | None = None) -> int:
    from embodied.processes import sigterm_raises

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    with sigterm_raises():  # a cluster's SIGTERM saves work like Ctrl-C does
        return _run(command, rest)


def _run(command: str, rest: list[str]) -> int:
    from embodied.processes import Terminated

    try:
        if command not in COMMANDS:
            raise UsageError(f"unknown command {command!r}\n\n{USAGE}")
        if "-h" in rest or "--help" in rest:
            print_help(command, [a for a in rest if a not in ("-h", "--help")])
            return 0
        flags = [a for a in rest if a.startswith("-")] if command != "data" else []
        if flags:
            raise UsageError(
                f"embodied {command}: unknown option {' '.join(flags)}; settings are key=value "
                f"(see embodied {command} --help)"
            )
        COMMANDS[command](rest)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except Terminated:
        print("terminated (SIGTERM); finished work is kept (train resumes with resume=true)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(
            "interrupted; finished work is kept (collect resumes its store, train resumes with resume=true)",
            file=sys.stderr,
        )
        return 130
    except Exception as error:
        from embodied.datasets.store import StoreError
        from embodied.integrity import CheckpointError
        from embodied.train import TrainingDiverged
        from embodied.training.memory import InsufficientMemory

        # Errors about the user's input or files are printed plainly (EMBODIED_TRACEBACK=1 shows the traceback).
        expected = (StoreError, CheckpointError, TrainingDiverged, InsufficientMemory, FileExistsError,
                    FileNotFoundError, ValueError, KeyError)  # fmt: skip
        if isinstance(error, expected) and not os.environ.get("EMBODIED_TRACEBACK"):
            print(f"error: {_plain(error)}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
