"""`embodied cache-features` (the overrides of `embodied train`): a frozen encoder's pooled features of every frame,
computed once, so training on top of it stops re-encoding images."""

from __future__ import annotations

from pathlib import Path

from embodied.configs.checks import ConfigValueError
from embodied.training.fit_policy import TrainConfig, check_datasets, resolve_dataset

SCHEMA = TrainConfig
check = check_datasets


def run(job: TrainConfig, run_dir: Path | None) -> None:
    """Encodes the store's frames and says how training picks them up."""
    from embodied.datasets.mixture import open_dataset
    from embodied.encoders.cache import compute_features
    from embodied.runtime import resolve_device
    from embodied.training.fit_policy import build_policy

    resolve_dataset(job)
    store = open_dataset(job.dataset)
    policy = build_policy(job, store, resolve_device(job.device))
    encoders = policy.image_encoders() if policy.reads_pooled_features else {}
    if not encoders:
        raise ConfigValueError("the policy reads no pooled camera features: nothing to cache")
    if not all(encoder.frozen for encoder in encoders.values()):
        raise ConfigValueError(
            "only frozen encoders can be cached: add policy.encoder.train=frozen (and pass it to train)"
        )
    directory = compute_features(store, encoders, batch_size=job.batch_size)
    print(f"features: {directory}")
    print("`embodied train` with the same overrides now reads them (feature_cache=auto)")
