"""Loading pretrained weights from a hub id or a local directory, offline-friendly, with the normalisation the
checkpoint declares."""

from __future__ import annotations


def load_pretrained(model_class, name_or_path: str, **kwargs):
    """``model_class.from_pretrained`` with an error that says what to do offline; a local directory we wrote
    (``embodied pretrain``'s output) is checked against its ``checksums.json`` first."""
    from pathlib import Path

    from embodied.integrity import verify_manifest

    if Path(name_or_path).is_dir():
        verify_manifest(name_or_path, what="pretrained directory")
    try:
        return model_class.from_pretrained(name_or_path, **kwargs)
    except OSError as error:
        raise OSError(
            f"could not load pretrained weights {name_or_path!r}: pass a local directory holding config.json and "
            f"model.safetensors, or a hub id this machine can download (offline: set HF_HUB_OFFLINE=1 and use the "
            f"cache). Original error: {error}"
        ) from None


def checkpoint_normalisation(pretrained: str | None, mean: tuple, std: tuple) -> tuple[tuple, tuple]:
    """``image_mean``/``image_std`` from a checkpoint's ``preprocessor_config.json`` (a local directory or a hub id,
    through transformers' file resolution and cache), else the given defaults."""
    if not pretrained:
        return mean, std
    import json

    from transformers.utils import cached_file

    try:
        path = cached_file(
            pretrained,
            "preprocessor_config.json",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except (OSError, ValueError):
        path = None
    if path:
        processor = json.loads(open(path).read())
        if "image_mean" in processor and "image_std" in processor:
            return tuple(processor["image_mean"]), tuple(processor["image_std"])
    return mean, std
