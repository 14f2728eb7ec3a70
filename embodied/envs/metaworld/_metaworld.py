"""Importing Meta-World, with an error that says how to install it.

``metaworld`` 3.1.1 pins ``mujoco==3.3.0`` exactly while robosuite (franka) needs our ``mujoco==3.9.0``; it runs on
3.9.0 (its scripted policies: 246/250 successes over the 50 tasks), so ``setup.sh`` installs it with ``--no-deps``
and ``pyproject.toml`` lists its real dependencies (``scipy``, ``packaging``, which it imports undeclared).
"""

from __future__ import annotations

INSTALL = "pip install --no-deps metaworld==3.1.1 (setup.sh does this; it pins mujoco==3.3.0, but runs on 3.9.0)"


def import_metaworld():
    """Returns the ``metaworld`` module, after the MuJoCo GL backend is chosen (as for robosuite)."""
    from embodied.envs.gl import choose_gl_backend

    choose_gl_backend()
    try:
        import metaworld
    except ImportError as error:
        raise ImportError(f"env=metaworld needs the metaworld package ({error}); install it with: {INSTALL}") from None
    return metaworld
