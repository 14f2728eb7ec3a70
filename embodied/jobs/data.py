"""`embodied data info PATH [--verify]` and `embodied data recompute-stats PATH`: tools for episode stores."""

from __future__ import annotations

from embodied.configs.checks import ConfigValueError

USAGE = "usage: embodied data info PATH [--verify]   |   embodied data recompute-stats PATH"
HELP = f"""{USAGE}
  info PATH            schema, episodes, success, statistics (--verify: read and checksum every chunk)
  recompute-stats PATH rebuild a store's statistics from its episodes (after they were damaged)"""
FLAGS = {"info": ["--verify"], "recompute-stats": []}


def main(args: list[str]) -> None:
    """Runs one tool; bad arguments raise ConfigValueError (exit 2)."""
    if len(args) < 2 or args[0] not in FLAGS:
        raise ConfigValueError(USAGE)
    action, path, flags = args[0], args[1], args[2:]
    unknown = [flag for flag in flags if flag not in FLAGS[action]]
    if unknown:
        raise ConfigValueError(f"embodied data {action}: unknown option {' '.join(unknown)}\n{USAGE}")
    if path.startswith("-"):
        raise ConfigValueError(f"embodied data {action}: expected a store PATH, got option {path}\n{USAGE}")
    if action == "recompute-stats":
        from embodied.datasets.store import EpisodeStore

        with EpisodeStore.open(path, mode="a", check_stats=False) as store:
            store.recompute_stats()
            print(f"{path}: statistics recomputed from {store.n_episodes} episodes")
        return
    from embodied.datasets.info import describe_store

    print(describe_store(path, verify="--verify" in flags))
