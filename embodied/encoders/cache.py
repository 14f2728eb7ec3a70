"""Frozen-encoder feature cache: every frame of a store encoded once, so training on top of a frozen encoder
reads vectors instead of running the backbone at every step (on a CPU, the difference between minutes and days).

Layout, inside the store directory (readers of the store ignore it)::

    <store>/feature_cache/<fingerprint>/manifest.json     encoder config, camera keys, dim, the store's size
    <store>/feature_cache/<fingerprint>/<camera>.npy      (n_steps, D) float32 pooled features, memory-mapped

The fingerprint hashes everything that changes the features: the encoder's class and config (minus training-only
fields), its input size and normalisation, and every weight and buffer. A cache is used only when its
fingerprint and the store's size both match; otherwise it is refused with the reason, never used silently.
Pooled vectors are cached (not tokens) and the training-time random shift cannot apply to them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

CACHE_DIR = "feature_cache"
_TRAINING_ONLY = ("train", "last_n", "lora_rank", "lora_alpha", "lora_dropout", "random_shift")


class FeatureCacheError(ValueError):
    """No usable cache: missing, computed with another encoder or weights, or for a smaller store."""


def describe_encoder(encoder) -> dict:
    """The parts of an encoder's config that change its features."""
    config = {k: v for k, v in asdict(encoder.config).items() if k not in _TRAINING_ONLY}
    return {"class": type(encoder).__name__, "config": config, "input_size": encoder.input_size}


def fingerprint(encoder) -> str:
    """A hash of everything that decides an encoder's features: its config, input size, normalisation and every
    weight."""
    digest = hashlib.sha256(json.dumps(describe_encoder(encoder), sort_keys=True, default=str).encode())
    tensors = sorted([*encoder.named_parameters(), *encoder.named_buffers()], key=lambda item: item[0])
    for name, tensor in tensors:
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_path(store_path: str | Path, encoder) -> Path:
    """Where a store's cached features for an encoder live."""
    return Path(store_path) / CACHE_DIR / fingerprint(encoder)


@torch.no_grad()
def compute_features(store, encoders: dict, batch_size: int = 64, progress: bool = True) -> Path:
    """Encodes every frame of each camera with its (frozen) encoder; ``encoders``: {image key: encoder}, all
    sharing one fingerprint directory per encoder. Returns the cache directory of the first encoder."""
    from tqdm.auto import tqdm

    out_dirs = []
    for key, encoder in encoders.items():
        encoder.eval()
        directory = cache_path(store.path, encoder)
        camera = key.split("/", 1)[-1]
        final = directory / f"{camera}.npy"
        out_dirs.append(directory)
        if final.exists() and _manifest_matches(directory, store):
            print(f"{key}: cache up to date in {directory}")
            continue
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{camera}.npy.tmp"
        features = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(store.n_steps, encoder.pooled_dim)
        )
        device = next(encoder.parameters()).device
        bar = tqdm(total=store.n_steps, desc=f"encode {camera}", unit="frame", disable=not progress)
        for start in range(0, store.n_steps, batch_size):
            stop = min(start + batch_size, store.n_steps)
            images = torch.from_numpy(store.read(key, start, stop)).to(device)
            features[start:stop] = encoder(images).pooled.float().cpu().numpy()
            bar.update(stop - start)
        bar.close()
        features.flush()
        del features
        tmp.replace(final)
        manifest = {
            **describe_encoder(encoder),
            "fingerprint": directory.name,
            "dim": encoder.pooled_dim,
            "n_steps": store.n_steps,
            "n_episodes": store.n_episodes,
        }
        cameras = set(_read_manifest(directory).get("cameras", [])) if (directory / "manifest.json").exists() else set()
        manifest["cameras"] = sorted(cameras | {camera})
        tmp_manifest = directory / ".manifest.json.tmp"
        tmp_manifest.write_text(json.dumps(manifest, indent=1))
        tmp_manifest.replace(directory / "manifest.json")
    return out_dirs[0]


def load_features(store, encoders: dict) -> dict[str, np.ndarray]:
    """{image key: (n_steps, D) memory-mapped features} for every camera, or FeatureCacheError saying why not."""
    arrays = {}
    for key, encoder in encoders.items():
        camera = key.split("/", 1)[-1]
        directory = cache_path(store.path, encoder)
        path = directory / f"{camera}.npy"
        if not path.exists():
            raise FeatureCacheError(_why_missing(store, encoder, camera, directory.name))
        if not _manifest_matches(directory, store):
            manifest = _read_manifest(directory)
            raise FeatureCacheError(
                f"the feature cache {directory} was computed for {manifest.get('n_steps')} steps but the store now has "
                f"{store.n_steps}; recompute it with `embodied cache-features` (same overrides as `embodied train`)"
            )
        arrays[key] = np.load(path, mmap_mode="r")
    return arrays


def clear_cache(store_path: str | Path) -> None:
    """Deletes every feature cache of a store."""
    shutil.rmtree(Path(store_path) / CACHE_DIR, ignore_errors=True)


def _why_missing(store, encoder, camera: str, ours_fingerprint: str) -> str:
    root = Path(store.path) / CACHE_DIR
    ours = describe_encoder(encoder)
    others = (
        [_read_manifest(d) for d in sorted(root.glob("*")) if (d / "manifest.json").exists()] if root.exists() else []
    )
    same_kind = [m for m in others if m.get("config", {}).get("name") == ours["config"].get("name")]
    hint = "run `embodied cache-features` with the same overrides as `embodied train`"
    if not same_kind:
        return f"no feature cache of {camera!r} for encoder {ours['config'].get('name')!r} in {root}; {hint}"
    diffs = []
    for manifest in same_kind:
        changed = [
            k
            for k in set(ours["config"]) | set(manifest["config"])
            if ours["config"].get(k) != manifest["config"].get(k)
        ]
        if manifest.get("input_size") != ours["input_size"]:
            changed.append(f"input_size ({manifest.get('input_size')} there, {ours['input_size']} now)")
        what = ", ".join(map(str, changed)) if changed else "the weights"
        diffs.append(f"{manifest['fingerprint']} differs in {what}")
    return (
        f"refusing stale feature caches for encoder {ours['config'].get('name')!r}: "
        + "; ".join(diffs)
        + f" (this encoder's fingerprint: {ours_fingerprint}); {hint}"
    )


def _read_manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def _manifest_matches(directory: Path, store) -> bool:
    if not (directory / "manifest.json").exists():
        return False
    manifest = _read_manifest(directory)
    return manifest.get("n_steps") == store.n_steps and manifest.get("n_episodes") == store.n_episodes
