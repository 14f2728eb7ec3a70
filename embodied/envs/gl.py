"""Choosing a headless OpenGL backend for MuJoCo before it is first imported (every MuJoCo env calls this).

MuJoCo reads ``MUJOCO_GL`` once, when it is first imported, so the backend is chosen before that import: EGL when an
EGL display can be initialised, otherwise OSMesa (Debian: ``libosmesa6``).
"""

from __future__ import annotations

import os
import subprocess
import sys


def _backend_works(backend: str) -> bool:
    """Creates a 1x1 MuJoCo GL context with ``backend`` in a child process (MuJoCo fixes it at import)."""
    probe = "import mujoco; c = mujoco.GLContext(1, 1); c.make_current(); c.free()"
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def choose_gl_backend() -> str:
    """Sets ``MUJOCO_GL``/``PYOPENGL_PLATFORM`` (unless the user did) and returns the backend in use.

    The choice is left in the environment, so subprocess workers inherit it without probing again.
    """
    backend = os.environ.get("MUJOCO_GL")
    if not backend:
        backend = next((b for b in ("egl", "osmesa") if _backend_works(b)), None)
        if backend is None:
            raise RuntimeError(
                "no headless OpenGL found for MuJoCo rendering: install Debian's libegl1 and libgl1-mesa-dri "
                "(EGL) or libosmesa6 (OSMesa), or use env.obs_mode=state"
            )
        os.environ["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    # Mesa's software rasteriser (llvmpipe) splits each frame over worker threads; for 84 px frames the
    # hand-off costs more than it saves and the threads compete with physics: rendering in the calling
    # thread measured 260 vs 200 frames/s here. Ignored by hardware drivers.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    return backend
