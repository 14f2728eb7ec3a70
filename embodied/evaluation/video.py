"""Episode videos: frames kept in the env's worker while asked, written as mp4."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np


class FrameRecorder(gym.Wrapper):
    """Keeps ``env.render()`` frames of the current episode while ``recording`` is set (set per vector-env worker
    with ``set_attr``). ``pop_frames()`` hands over a finished episode's frames; a vector env calls it in every
    worker, so an episode still running keeps its frames. Rendering happens in the worker, only when asked."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.recording = False
        self.frames: list[np.ndarray] = []
        self.done = False

    def reset(self, **kwargs):
        """Resets the env; the first frame is kept when recording."""
        out = self.env.reset(**kwargs)
        self.frames = [self.env.render()] if self.recording else []
        self.done = False
        return out

    def step(self, action):
        """Steps the env; the frame after the step is kept when recording."""
        out = self.env.step(action)
        if self.recording:
            self.frames.append(self.env.render())
        self.done = bool(out[2] or out[3])
        return out

    def pop_frames(self) -> list[np.ndarray]:
        """The finished episode's frames (empty while it runs)."""
        if not self.done:
            return []
        frames, self.frames = self.frames, []
        return frames


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> str:
    """An H.264 mp4 of ``frames`` at ``fps``; returns its path."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, fps=fps, codec="libx264", macro_block_size=1)
    return str(path)


def video_name(record: dict) -> str:
    """``episode_003_seed_1000000003_success.mp4``."""
    outcome = "success" if record["success"] else "failure"
    return f"episode_{record['episode']:03d}_seed_{record['seed']}_{outcome}.mp4"
