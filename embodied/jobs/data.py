"""`embodied data info PATH [--verify]`, `embodied data recompute-stats PATH` and `embodied data merge OUT STORE...`:
tools for episode stores."""

from __future__ import annotations

from embodied.configs.checks import ConfigValueError

USAGE = (
    "usage: embodied data info PATH [--verify]   |   embodied data recompute-stats PATH   |   "
    "embodied data merge OUT STORE [STORE ...]"
)
HELP = f"""{USAGE}
  info PATH            schema, episodes, success, statistics (--verify: read and checksum every chunk)
  recompute-stats PATH rebuild a store's statistics from its episodes (after they were damaged)
  merge OUT STORE...   append the stores' episodes to OUT (created if missing), e.g. shards collected on several
                       machines; refuses stores that share a (task, seed), skips episodes OUT already holds"""
FLAGS = {"info": ["--verify"], "recompute-stats": [], "merge": []}


def main(args: list[str]) -> None:
    """Runs one tool; bad arguments raise ConfigValueError (exit 2)."""
    if len(args) < 2 or args[0] not in FLAGS:
        raise ConfigValueError(USAGE)
    action, path, flags = args[0], args[1], args[2:]
    unknown = [flag for flag in flags if flag.startswith("-") and flag not in FLAGS[action]]
    unknown += [flag for flag in flags if not flag.startswith("-") and action != "merge"]
    if unknown:
        raise ConfigValueError(f"embodied data {action}: unknown option {' '.join(unknown)}\n{USAGE}")
    if path.startswith("-"):
        raise ConfigValueError(f"embodied data {action}: expected a store PATH, got option {path}\n{USAGE}")
    if action == "merge":
        from embodied.datasets.merge import merge_stores

        if len(flags) < 1:
            raise ConfigValueError(f"embodied data merge: name the output and at least one store\n{USAGE}")
        added = merge_stores(path, flags)
        print(f"{path}: {added} episodes added from {len(flags)} stores")
        return
    if action == "recompute-stats":
        from embodied.datasets.store import EpisodeStore

        with EpisodeStore.open(path, mode="a", check_stats=False) as store:
            store.recompute_stats()
            print(f"{path}: statistics recomputed from {store.n_episodes} episodes")
        return
    from embodied.datasets.info import describe_store

    print(describe_store(path, verify="--verify" in flags))
