"""Packs the parts of robosuite and bitsandbytes that the GPU check uses into one small tarball, so a GPU machine that
reaches no package index (the `device` tool's, which carries at most 64 MiB) can run the franka evaluation and the
VLA's 8/4-bit rows.

    python benchmarks/gpu_site.py --out .gpu-carry/site.tar.xz [--bitsandbytes WHEEL] [--cuda 130]

robosuite's wheel is 157 MB, nearly all of it meshes of robots we never build: the tarball keeps its code and
configuration files and only the asset files that the MJCF of each franka task references (read from the model
each task compiles here, so the list follows robosuite rather than being written down). bitsandbytes' wheel holds
one native library per CUDA and ROCm version: the tarball keeps the CPU one and those of CUDA ``--cuda`` (the GPU
image's PyTorch is built for CUDA 13.0). Extract it anywhere and put that folder on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import io
import re
import tarfile
import zipfile
from pathlib import Path

CODE = {".py", ".json", ".xml", ".yaml", ".yml", ".txt"}  # robosuite's code and configuration: all kept (~3 MB)
TASKS = ("lift", "lift_zone", "stack", "pick_place_can")


def robosuite_assets() -> set[Path]:
    """Absolute paths of every file the franka tasks' compiled MJCF names (meshes, textures)."""
    from embodied.envs.franka.config import FrankaConfig
    from embodied.envs.franka.env import FrankaEnv

    used: set[Path] = set()
    for task in TASKS:
        env = FrankaEnv(FrankaConfig(task=task, obs_mode="state"))
        try:
            used.update(Path(f).resolve() for f in re.findall(r'file="([^"]+)"', env._sim_env.model.get_xml()))
        finally:
            env.close()
    return used


def add_robosuite(tar: tarfile.TarFile) -> int:
    """robosuite's code and configuration, and the assets the franka tasks use; returns the bytes added."""
    from embodied.envs.franka._robosuite import import_robosuite

    root = Path(import_robosuite().__file__).resolve().parent
    assets = robosuite_assets()
    outside = [p for p in assets if root not in p.parents]
    if outside:
        raise RuntimeError(f"franka assets outside robosuite's package: {outside[:3]}")
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and (p.suffix in CODE or p.resolve() in assets)
    )  # fmt: skip
    for path in files:
        tar.add(path, arcname=f"robosuite/{path.relative_to(root)}")
    return sum(p.stat().st_size for p in files)


def add_bitsandbytes(tar: tarfile.TarFile, wheel: Path, cuda: str) -> int:
    """bitsandbytes' Python files and its CPU and CUDA ``cuda`` libraries from ``wheel``; returns the bytes added."""
    keep = re.compile(rf"libbitsandbytes_(cpu|cuda{cuda})\.\w+$")
    added = 0
    with zipfile.ZipFile(wheel) as archive:
        for entry in archive.infolist():
            name = entry.filename
            if entry.is_dir() or not name.startswith("bitsandbytes/"):
                continue
            if "/libbitsandbytes_" in name and not keep.search(name):
                continue
            data = archive.read(entry)
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name.endswith(".so") else 0o644
            tar.addfile(info, io.BytesIO(data))
            added += len(data)
    if not any(keep.search(n) and "cuda" in n for n in tar.getnames()):
        raise RuntimeError(f"{wheel.name} has no libbitsandbytes_cuda{cuda} library; pass --cuda for the GPU's build")
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the tarball to write (.tar.xz)")
    parser.add_argument("--bitsandbytes", type=Path, help="a bitsandbytes wheel (py3-none-manylinux)")
    parser.add_argument("--cuda", default="130", help="the CUDA build of the GPU machine's PyTorch, e.g. 130 for 13.0")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    with tarfile.open(partial, "w:xz") as tar:
        sizes = {"robosuite": add_robosuite(tar)}
        if args.bitsandbytes:
            sizes["bitsandbytes"] = add_bitsandbytes(tar, args.bitsandbytes, args.cuda)
    partial.replace(args.out)
    parts = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sizes.items())
    print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB ({parts} before compression)")


if __name__ == "__main__":
    main()
