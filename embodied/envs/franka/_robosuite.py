"""Imports robosuite quietly and with a working headless OpenGL backend.

robosuite prints a page of warnings at import (missing private macros, optional IK packages); registering
a private macro module first keeps the console for our own progress bars. The GL backend is chosen first
(:func:`embodied.envs.gl.choose_gl_backend`).
"""

from __future__ import annotations

import sys
import types

from embodied.envs.gl import choose_gl_backend


def import_robosuite():
    """Returns the robosuite module, imported with warnings silenced and a GL backend chosen."""
    if "robosuite" in sys.modules:
        return sys.modules["robosuite"]
    choose_gl_backend()
    if "robosuite.macros_private" not in sys.modules:
        macros = types.ModuleType("robosuite.macros_private")
        macros.CONSOLE_LOGGING_LEVEL = "ERROR"
        sys.modules["robosuite.macros_private"] = macros
    import robosuite

    return robosuite
