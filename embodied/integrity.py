"""Checksum manifests for directories we write (policy checkpoints, pretrained encoders).

``checksums.json`` lists every file with its size and SHA-256, written after the last file; loading checks it
first, so a truncated, zeroed or overwritten file fails with one error naming it instead of surfacing later as a
parser traceback, silently wrong weights or NaN actions. Directories without a manifest (written by earlier
versions or by other tools) load unchecked.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST = "checksums.json"
_CHUNK = 8 << 20


class CheckpointError(RuntimeError):
    """A checkpoint (or pretrained directory) that cannot be used: damaged, incomplete or not ours."""


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | Path) -> Path:
    """Writes ``checksums.json`` covering every file under ``directory`` (atomically: temp file + rename)."""
    directory = Path(directory)
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[path.relative_to(directory).as_posix()] = {"bytes": path.stat().st_size, "sha256": file_digest(path)}
    target = directory / MANIFEST
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=1))
    os.replace(tmp, target)
    return target


def verify_manifest(directory: str | Path, what: str = "checkpoint") -> bool:
    """Checks every file the manifest lists (present, same size, same SHA-256); raises CheckpointError naming
    the first damaged one. Returns False when the directory has no manifest (nothing to check)."""
    directory = Path(directory)
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return False
    try:
        listed = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{manifest} is damaged ({error}); the {what} cannot be checked") from None
    for name, expected in listed.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{what} {directory} is incomplete: {name} is missing (listed in {MANIFEST})")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise CheckpointError(
                f"{what} {directory} is damaged: {name} has {size} bytes, {expected['bytes']} were written "
                "(truncated or overwritten); use another checkpoint or re-save it"
            )
        if file_digest(path) != expected["sha256"]:
            raise CheckpointError(
                f"{what} {directory} is damaged: {name} does not match its SHA-256 in {MANIFEST} (the bytes "
                "changed after it was written); use another checkpoint or re-save it"
            )
    return True
