"""Composing a job's config: Hydra over the dataclasses, which hold every default.

Each job's dataclass and each registered component's config dataclass (envs, policies, encoders) is a structured
config in Hydra's ConfigStore (``<name>_schema`` in its group); the YAML files beside this module only choose and
override (``configs/policy/diffusion_small.yaml`` starts from ``diffusion`` and changes the U-Net), so a default
lives in one place. A registered component without a YAML file (a plugin's) is a group choice all the same.
Unknown keys, wrong types and values out of range fail with the key's name (:func:`validated`).

Add config folders of your own with ``EMBODIED_CONFIG_PATH=/abs/dir[:/abs/dir2]`` (or a plugin's ``CONFIG_PATH``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from embodied.configs.checks import ConfigValueError
from embodied.jobs import JOBS

# group -> (the registry's module and attribute, the package its options land at)
GROUPS = {
    "env": ("embodied.envs:ENVS", "env"),
    "policy": ("embodied.policies:POLICIES", "policy"),
    "encoder": ("embodied.encoders:ENCODERS", "policy.encoder"),
}
SCHEMA_SUFFIX = "_schema"


def search_paths(extra: list[str] | None = None) -> list[str]:
    """Config folders beside the package's: ``EMBODIED_CONFIG_PATH`` entries and the plugins' ``CONFIG_PATH``."""
    paths = [f"file://{Path(p).resolve()}" for p in os.environ.get("EMBODIED_CONFIG_PATH", "").split(":") if p]
    for entry in extra or []:
        paths.append(entry if "://" in entry else f"file://{Path(entry).resolve()}")
    return paths


def register_schemas(schema: type, groups: list[str], paths: list[str]) -> None:
    """Stores the job's dataclass (``<job>_schema``) and every registered component of ``groups`` in Hydra's
    ConfigStore (see the module docstring)."""
    import importlib

    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    store.store(name=f"{_schema_name(schema)}{SCHEMA_SUFFIX}", node=schema)
    for group in groups:
        module, attribute = GROUPS[group][0].split(":")
        registry = getattr(importlib.import_module(module), attribute)
        yaml_choices = set(yaml_stems(group, paths))
        for name, _ in registry.items():
            config_class = registry.config_class(name)
            if config_class is None:
                continue
            node = OmegaConf.structured(config_class(name=name))
            if group == "policy" and "encoder" in node:
                node.encoder = "???"  # MISSING: the encoder group fills it; a schema merged later must not reset it
            store.store(group=group, name=f"{name}{SCHEMA_SUFFIX}", node=node, package=GROUPS[group][1])
            if name not in yaml_choices:  # e.g. a plugin's component: usable as `group=name` without any YAML
                store.store(group=group, name=name, node=node, package=GROUPS[group][1])


def compose(command: str, overrides: list[str], schema: type | None = None, groups: list[str] = (),
            extra_paths: list[str] | None = None):  # fmt: skip
    """The composed config of a job (``command``: its YAML's name), with Hydra's errors for unknown keys or group
    choices raised as :class:`ConfigValueError`."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    paths = search_paths(extra_paths)
    if schema is None:
        schema, groups = schema_of(command)
    register_schemas(schema, list(groups), paths)
    if paths:
        overrides = [f"hydra.searchpath=[{','.join(paths)}]", *overrides]
    try:
        with initialize_config_module("embodied.configs", version_base="1.3"):
            return hydra_compose(config_name=command, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigValueError(f"embodied {command}: {error}") from None


def validated(schema: type, cfg: Any):
    """Merges ``cfg`` into the job's dataclass: unknown keys, wrong types and values out of range fail with their
    name (:class:`ConfigValueError`). The env and policy sections are validated by their own registered schemas,
    and the policy's encoder by the encoder's."""
    from omegaconf import OmegaConf, SCMode
    from omegaconf.errors import OmegaConfBaseException

    from embodied.configs.checks import check_config
    from embodied.envs import env_config

    def policy_config(section):
        if "name" not in section:  # e.g. pretrain: only policy.encoder, the encoder group's home
            return section
        from dataclasses import fields

        from embodied.policies import POLICIES  # imports torch: only for jobs that have a policy

        schema = POLICIES.config_class(section["name"]) if section["name"] in POLICIES else None
        if schema is not None and "encoder" not in {f.name for f in fields(schema)}:
            section = {k: v for k, v in section.items() if k != "encoder"}  # the encoder group: for policies with one
        return POLICIES.config_from(section)

    def plain(node):  # structured nodes (the registered schemas) as plain dicts: Any-typed fields stay dicts
        return OmegaConf.to_container(node, resolve=True, structured_config_mode=SCMode.DICT)

    sections = {"env": env_config, "policy": policy_config}
    try:
        built = {key: check(plain(cfg[key])) for key, check in sections.items() if key in cfg and cfg[key] is not None}
        rest = OmegaConf.masked_copy(cfg, [k for k in cfg if k not in sections])
        job = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), rest))
        for key, value in built.items():
            setattr(job, key, value)
        check_config(job)
        encoder = _encoder_section(getattr(job, "policy", None))
        if encoder is not None:
            from embodied.encoders import ENCODERS

            check_config(ENCODERS.config_from(encoder), "policy.encoder.")
    except ConfigValueError:
        raise
    except (OmegaConfBaseException, KeyError, ValueError) as error:
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        raise ConfigValueError(f"invalid config: {message}") from None
    return job


def _encoder_section(policy: Any) -> Any:
    encoder = policy.get("encoder") if isinstance(policy, dict) else getattr(policy, "encoder", None)
    return encoder if isinstance(encoder, dict) and "name" in encoder else None


def schema_of(command: str) -> tuple[type, list[str]]:
    """The dataclass and config groups of the job whose YAML is ``command``."""
    for _, job in JOBS.items():
        if job.config_name == command:
            return job.schema(), list(job.groups)
    raise KeyError(f"no job composes {command!r}")


def yaml_stems(group: str, paths: list[str] = ()) -> list[str]:
    """The YAML stems of a config group: the package's and those in ``paths`` (file:// entries)."""
    from importlib.resources import files

    stems = {p.name[:-5] for p in (files("embodied.configs") / group).iterdir() if p.name.endswith(".yaml")}
    for entry in paths:
        if entry.startswith("file://"):
            stems |= {p.stem for p in (Path(entry[len("file://") :]) / group).glob("*.yaml")}
        elif entry.startswith("pkg://"):
            try:
                folder = files(entry[len("pkg://") :]) / group
                stems |= {p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")}
            except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
                continue
    return sorted(stems)


def config_choices(group: str, extra_paths: list[str] | None = None) -> list[str]:
    """What ``group=`` accepts: YAML presets and registered components (schemas hidden)."""
    import importlib

    choices = set(yaml_stems(group, search_paths(extra_paths)))
    module, attribute = GROUPS[group][0].split(":")
    choices |= set(getattr(importlib.import_module(module), attribute).names())
    return sorted(choices)


def _schema_name(schema: type) -> str:
    for _, job in JOBS.items():
        if job.schema() is schema:
            return job.config_name
    return schema.__name__.lower()


def job_config(command: str, overrides: list[str] = ()):
    """The validated config dataclass of a job, as the command line would build it (``job_config("train",
    ["policy=diffusion", "dataset=data/lift.zarr"])``), for scripts and tests."""
    spec = JOBS.get(command) if command in JOBS else next(j for _, j in JOBS.items() if j.config_name == command)
    schema = spec.schema()
    return validated(schema, compose(spec.config_name, list(overrides), schema, spec.groups))
