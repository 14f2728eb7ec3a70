"""The `embodied` command: parse -> load plugins -> compose -> validate -> ``embodied.jobs.<command>.run``.

Jobs are Hydra-configured (`embodied train policy=bc env=franka dataset=PATH`); `embodied data ...` is a tool with
plain arguments. ``embodied <command> --help`` prints every field of the command's config. Plugins (components of
your own) load from the entry-point group ``embodied.plugins`` and from a ``plugins=[module, ...]`` override.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from embodied.training import distributed

SUBCOMMANDS = ("reward",)  # commands whose first word picks the job: `embodied reward align ...`
DATA_TOOLS = {
    "data info PATH [--verify]": "describe an episode store (schema, episodes, success, statistics)",
    "data recompute-stats PATH": "rebuild a store's statistics from its episodes",
    "data merge OUT STORE...": "merge stores (shards) into one, refusing overlapping seeds",
}


def usage() -> str:
    """The command list."""
    from embodied.jobs import JOBS

    lines = {("bench encoders key=value ..." if name == "bench" else name): job.description
             for name, job in JOBS.items()}  # fmt: skip
    lines.update(DATA_TOOLS)
    return "usage: embodied <command> [key=value ...]   (embodied <command> --help: its fields)\n\ncommands:\n" + (
        "\n".join(f"  {name:<32}{text}" for name, text in lines.items())
    )


def plugin_modules(overrides: list[str]) -> list[str]:
    """The modules a ``plugins=[a,b]`` (or ``+plugins=...``) override names."""
    import yaml

    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key == "plugins" and value:
            parsed = yaml.safe_load(value)
            return [str(m) for m in (parsed if isinstance(parsed, list) else [parsed])]
    return []


def start_job(command: str, overrides: list[str]):
    """Loads plugins, composes and validates the command's config, runs its ``check``, then creates the run
    directory with the resolved ``config.yaml``. Returns (job module, config, run_dir or None)."""
    from omegaconf import OmegaConf

    from embodied.configs.checks import ConfigValueError
    from embodied.jobs import JOBS
    from embodied.jobs.config import compose, validated
    from embodied.registry import load_plugins

    spec = JOBS.get(command)
    if distributed.launched() and not spec.distributed:
        raise ConfigValueError(
            f"embodied {command} runs in one process; start it without torchrun (torchrun launches train, collect "
            "and eval)"
        )
    extra_paths = load_plugins(plugin_modules(overrides))
    module = spec.load()
    cfg = compose(spec.config_name, overrides, module.SCHEMA, spec.groups, extra_paths)
    job = validated(module.SCHEMA, cfg)
    if hasattr(module, "check"):
        module.check(job)
    ctx = join_launch(job)
    run_dir = None
    if spec.run_dir:
        requested = getattr(job, "run_dir", None)
        name = spec.config_name
        stamp = distributed.broadcast(time.strftime("%Y-%m-%d_%H-%M-%S"))  # every rank: rank 0's directory
        run_dir = Path(requested) if requested else Path("outputs") / name / stamp
        run_dir.mkdir(parents=True, exist_ok=True)
        if ctx.is_main:
            print(f"run directory: {run_dir.resolve()}", flush=True)
            OmegaConf.save(cfg, run_dir / "config.yaml")
    return module, job, run_dir


def join_launch(job):
    """Under torchrun: joins the process group (train, collect and eval spread their work over the ranks); the rank
    exits when its torchrun agent dies (torchrun starts ranks in sessions of their own, so a killed launch would
    otherwise leave them running).
    Returns this process's :class:`~embodied.training.distributed.Context`."""
    from embodied.processes import die_with_parent

    if not distributed.launched():
        return distributed.context()
    die_with_parent(os.getppid())
    # training's collectives come every step (its timeout is distributed.timeout_minutes); collect and eval meet
    # only when every rank has finished its share, which may be hours apart
    timeout = getattr(getattr(job, "distributed", None), "timeout_minutes", 24 * 60.0)
    return distributed.init(getattr(job, "device", "cpu"), timeout)  # no device field (collect): gloo, no GPU


def print_help(command: str, overrides: list[str]) -> None:
    """Every field of the command's config (with the given overrides applied) with its doc, then the env's, the
    policy's and the encoder's own fields, and the choices of each config group."""
    from embodied.configs.docs import describe_fields
    from embodied.jobs import JOBS
    from embodied.jobs.config import compose, config_choices, validated
    from embodied.registry import load_plugins

    if command == "data":
        from embodied.jobs.data import HELP

        print(HELP)
        return
    spec = JOBS.get(command)
    if command == "bench":
        overrides = overrides[1:] if overrides[:1] == ["encoders"] else overrides
    extra_paths = load_plugins(plugin_modules(overrides))
    module = spec.load()
    print(f"usage: embodied {command} {'encoders ' if command == 'bench' else ''}[key=value ...]")
    print(f"  {spec.description}\n")
    job = validated(module.SCHEMA, compose(spec.config_name, overrides, module.SCHEMA, spec.groups, extra_paths))
    sections = [f for f in ("env", "policy") if hasattr(job, f)]
    print("fields (value as composed, doc, allowed values):")
    print("\n".join(describe_fields(job, skip=tuple(sections))))
    for section in sections:
        value = getattr(job, section)
        if hasattr(value, "__dataclass_fields__"):
            print(f"\n{section}={value.name}   (choices: {', '.join(config_choices(section, extra_paths))})")
            print("\n".join(describe_fields(value, f"{section}.")))
        encoder = value.get("encoder") if isinstance(value, dict) else getattr(value, "encoder", None)
        if section == "policy" and isinstance(encoder, dict) and "name" in encoder:
            from embodied.encoders import ENCODERS

            choices = ", ".join(config_choices("encoder", extra_paths))
            print(f"\nencoder={encoder['name']}   (at policy.encoder; choices: {choices})")
            print("\n".join(describe_fields(ENCODERS.config_from(encoder), "policy.encoder.")))
    print("\nchange a value with key=value (e.g. steps=100), a group with group=choice (e.g. policy=diffusion)")


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit status (2: bad input, 1: a failure it explains, 130/143: interrupted)."""
    from embodied.processes import sigterm_raises

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    with sigterm_raises():  # a cluster's SIGTERM saves work like Ctrl-C does
        try:
            return _run(argv[0], argv[1:])
        finally:
            distributed.shutdown()


def _run(command: str, rest: list[str]) -> int:
    from embodied.configs.checks import ConfigValueError
    from embodied.jobs import JOBS
    from embodied.processes import Terminated

    try:
        if command in SUBCOMMANDS:  # `embodied reward align ...`: the job is "reward align"
            if not rest or f"{command} {rest[0]}" not in JOBS:
                choices = " | ".join(n.split(" ", 1)[1] for n in JOBS.names() if n.startswith(f"{command} "))
                raise ConfigValueError(f"usage: embodied {command} {choices} key=value ...")
            command, rest = f"{command} {rest[0]}", rest[1:]
        if command not in JOBS and command != "data":
            raise ConfigValueError(f"unknown command {command!r}\n\n{usage()}")
        if "-h" in rest or "--help" in rest:
            print_help(command, [a for a in rest if a not in ("-h", "--help")])
            return 0
        if command == "data":
            from embodied.jobs.data import main as data_main

            data_main(rest)
            return 0
        if command == "bench":
            if not rest or rest[0] != "encoders":
                raise ConfigValueError("usage: embodied bench encoders dataset=PATH 'encoders=[{name: cnn}, ...]'")
            rest = rest[1:]
        flags = [a for a in rest if a.startswith("-")]
        if flags:
            raise ConfigValueError(
                f"embodied {command}: unknown option {' '.join(flags)}; settings are key=value "
                f"(see embodied {command} --help)"
            )
        module, job, run_dir = start_job(command, rest)
        module.run(job, run_dir)
    except ConfigValueError as error:
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
        from embodied.datasets.errors import StoreError
        from embodied.evaluation.rollout import EnvWorkerDied
        from embodied.integrity import CheckpointError
        from embodied.training.memory import InsufficientMemory
        from embodied.training.trainer import TrainingDiverged

        # Errors about the user's input or files are printed plainly (EMBODIED_TRACEBACK=1 shows the traceback).
        expected = (StoreError, CheckpointError, TrainingDiverged, InsufficientMemory, EnvWorkerDied, FileExistsError,
                    FileNotFoundError, ValueError, KeyError, ImportError)  # fmt: skip
        if isinstance(error, expected) and not os.environ.get("EMBODIED_TRACEBACK"):
            message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
            print(f"error: {message}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
