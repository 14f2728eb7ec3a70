"""The `embodied` command: Hydra-configured jobs (`embodied collect env=franka episodes=20`) and tools
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
    "collect": "run a scripted expert and write an episode store",
}
TOOLS = {
    "data info PATH [--verify]": "describe an episode store (schema, episodes, success, statistics)",
}
USAGE = "usage: embodied <command> [key=value ...]\n\ncommands:\n" + "\n".join(
    f"  {name:<28}{text}" for name, text in {**JOBS, **TOOLS}.items()
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

    try:
        env = env_config(cfg.env) if "env" in cfg else None
        rest = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "env"])
        job = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), rest))
    except (OmegaConfBaseException, KeyError, ValueError) as error:
        raise UsageError(f"invalid config: {error}") from None
    job.env = env
    return job


def make_run_dir(command: str, requested: str | None) -> Path:
    run_dir = Path(requested) if requested else Path("outputs") / command / time.strftime("%Y-%m-%d_%H-%M-%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run directory: {run_dir.resolve()}", flush=True)
    return run_dir


def run_collect(overrides: list[str]) -> None:
    from omegaconf import OmegaConf

    from embodied.collect import CollectConfig, collect

    cfg = compose("collect", overrides)
    job = validated(CollectConfig, cfg)
    run_dir = make_run_dir("collect", job.run_dir)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    out = collect(job, run_dir)
    print(f"store: {out.resolve()}")
    print(f"describe it with: embodied data info {out}")


def run_data(args: list[str]) -> None:
    from embodied.datasets.info import describe_store

    if len(args) < 2 or args[0] != "info":
        raise UsageError("usage: embodied data info PATH [--verify]")
    print(describe_store(args[1], verify="--verify" in args[2:]))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command == "collect":
            run_collect(rest)
        elif command == "data":
            run_data(rest)
        else:
            raise UsageError(f"unknown command {command!r}\n\n{USAGE}")
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except Exception as error:
        from embodied.datasets.store import StoreError

        if isinstance(error, StoreError):
            print(f"error: {error}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        print("interrupted; finished episodes are kept and `collect` resumes from them", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
