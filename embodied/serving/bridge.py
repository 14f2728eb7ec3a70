"""The robot bridge's core, shared by the ROS 1 node (tested on a real master) and the ROS 2 node (untested):
latest observations in, one safe command per control tick out.

Each tick (``control_rate`` Hz) the core:

1. publishes zero motion if the e-stop is engaged, or if any camera image or the state is older than
   ``stale_after_s`` (the watchdog; the action queue is dropped, so motion resumes from a fresh chunk);
2. otherwise takes the next action: from the policy in this process (a :class:`PolicyRunner`, the same as
   evaluation) or from ``embodied serve`` (openpi's websocket client, chunks queued by :class:`ChunkedClient`);
3. makes it safe: each dimension clipped to ``[action_low, action_high]``, its change since the last command
   limited to ``max_step_change`` (rate limiting), and translations that would leave the ``workspace`` box (from
   the end-effector position in the state) zeroed on that axis.

Actions are Open-X end-effector deltas: ``[dx, dy, dz, droll, dpitch, dyaw, gripper]``; ``twist_linear`` and
``twist_angular`` say which dimensions go to ``geometry_msgs/Twist`` and ``gripper_index`` which to the gripper
topic (``std_msgs/Float32``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from embodied.configs.checks import one_of, positive
from embodied.features import INSTRUCTION


@dataclass
class BridgeConfig:
    """`embodied ros`: topics, rates and safety limits of the robot bridge."""

    checkpoint: str | None = None  # run this policy in the bridge's process ...
    server: str | None = None  # ... or ask `embodied serve` at this websocket URL, e.g. ws://127.0.0.1:8000
    api_key: str | None = None  # the server's API key
    master_uri: str | None = None  # ROS_MASTER_URI (null: the environment's)
    node_name: str = "embodied_policy"
    # camera topics (sensor_msgs/Image: rgb8, bgr8 or rgba8) by the policy's image key
    image_topics: dict[str, str] = field(default_factory=lambda: {"images/agentview": "/camera/image_raw"})
    state_topic: str | None = "/robot/state"  # std_msgs/Float32MultiArray: the policy's proprio
    instruction: str = ""  # the language instruction sent with every observation ...
    instruction_topic: str | None = "/embodied/instruction"  # ... or the latest std_msgs/String here
    twist_topic: str = "/embodied/cmd_twist"  # geometry_msgs/Twist: end-effector translation and rotation deltas
    gripper_topic: str | None = "/embodied/cmd_gripper"  # std_msgs/Float32
    estop_topic: str = "/embodied/estop"  # std_msgs/Bool: true stops all motion until false
    twist_linear: list[int] = field(default_factory=lambda: [0, 1, 2])  # action dims of twist.linear x, y, z
    twist_angular: list[int] = field(default_factory=lambda: [3, 4, 5])  # action dims of twist.angular x, y, z
    gripper_index: int | None = 6
    control_rate: float = 20.0  # commands per second (the policy's training rate)
    stale_after_s: float = 0.5  # the watchdog: older observations mean zero motion
    action_low: list[float] = field(default_factory=lambda: [-1.0] * 7)  # per-dimension limits of the command
    action_high: list[float] = field(default_factory=lambda: [1.0] * 7)
    max_step_change: float | None = None  # largest change of any dimension between two commands (null: none)
    # [[x_min, x_max], [y_min, y_max], [z_min, z_max]] of the end effector (state dims 0-2), null: unchecked
    workspace: list[list[float]] | None = None
    temporal_ensemble: float | None = None  # ACT's m: query every tick and average overlapping chunks
    device: str = "auto"
    ros_version: int = 1  # 1: rospy (tested on a real master); 2: rclpy (written, never run: see serving/ros2.py)

    CHECKS: ClassVar = {"ros_version": one_of(1, 2), "control_rate": positive(), "stale_after_s": positive(),
                        "max_step_change": positive()}  # fmt: skip


class SafetyFilter:
    """Clipping, rate limiting and the workspace box (see the module docstring); ``zero`` is the stop command."""

    def __init__(self, config: BridgeConfig, action_dim: int):
        self.low = np.resize(np.asarray(config.action_low, dtype=np.float32), action_dim)
        self.high = np.resize(np.asarray(config.action_high, dtype=np.float32), action_dim)
        if (self.low > self.high).any():
            raise ValueError(f"action_low {config.action_low} must not exceed action_high {config.action_high}")
        self.max_change = config.max_step_change
        self.workspace = np.asarray(config.workspace, dtype=np.float64) if config.workspace else None
        index = config.gripper_index
        self.gripper = index if index is not None and index < action_dim else None
        self.zero = np.zeros(action_dim, np.float32)  # stopping is zero motion, whatever the limits
        self.last = self.zero.copy()

    def __call__(self, action: np.ndarray, position: np.ndarray | None = None) -> np.ndarray:
        action = np.asarray(action, np.float32)
        command = np.clip(np.where(np.isfinite(action), action, self.last), self.low, self.high)  # NaN: hold
        if self.max_change is not None:
            command = np.clip(command, self.last - self.max_change, self.last + self.max_change)
        if self.workspace is not None and position is not None:
            for axis in range(min(3, len(command))):
                below = position[axis] <= self.workspace[axis, 0] and command[axis] < 0
                above = position[axis] >= self.workspace[axis, 1] and command[axis] > 0
                if below or above:
                    command[axis] = 0.0  # never further out of the box
        self.last = command
        return command

    def stop(self) -> np.ndarray:
        """The zero-motion command (the gripper keeps its last command: stopping must not drop what it holds)."""
        command = self.zero.copy()
        if self.gripper is not None:
            command[self.gripper] = self.last[self.gripper]
        self.last = command
        return command


class BridgeCore:
    """Latest observations and the per-tick command (see the module docstring); thread-safe."""

    def __init__(self, config: BridgeConfig):
        self.config = config
        self._lock = threading.Lock()
        self._latest: dict[str, Any] = {}
        self._stamp: dict[str, float] = {}
        self.estopped = False
        self.instruction = config.instruction
        self._act, self.image_shapes, action_dim = self._action_source()
        self.safety = SafetyFilter(config, action_dim)
        self._episode_fresh = True
        self.stops = 0  # ticks answered with zero motion (watchdog or e-stop)

    def _action_source(self):
        config = self.config
        if (config.checkpoint is None) == (config.server is None):
            raise ValueError("embodied ros needs exactly one of checkpoint=DIR (policy in process) or server=ws://...")
        if config.checkpoint is not None:
            from embodied.policies import load_policy
            from embodied.policies.runner import PolicyRunner
            from embodied.runtime import resolve_device

            policy = load_policy(config.checkpoint, device=resolve_device(config.device))
            missing = [k for k in policy.image_keys if k not in config.image_topics]
            if missing:
                raise ValueError(f"image_topics has no topic for the policy's cameras {missing}")
            runner = PolicyRunner(policy, temporal_ensemble=config.temporal_ensemble)

            def act(obs: dict, fresh: bool) -> np.ndarray:
                (runner.reset if fresh else runner.observe)(0, obs)
                return runner.act([0])[0]

            shapes = {k: tuple(policy.features[k].shape) for k in policy.image_keys}
            return act, shapes, policy.action_dim
        from openpi_client.websocket_client_policy import WebsocketClientPolicy

        from embodied.serving.client import ChunkedClient

        remote = WebsocketClientPolicy(config.server, api_key=config.api_key)
        client = ChunkedClient(remote.infer, temporal_ensemble=config.temporal_ensemble)

        def act_remote(obs: dict, fresh: bool) -> np.ndarray:
            if fresh:
                client.reset()
            return client.act(obs)

        return act_remote, {}, int(remote.get_server_metadata()["action_dim"])

    # ------------------------------------------------------------------ inputs (subscriber callbacks)
    def set_image(self, key: str, image: np.ndarray) -> None:
        shape = self.image_shapes.get(key)
        if shape is not None and image.shape != shape:
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.BILINEAR))
        self._set(key, image)

    def set_state(self, values) -> None:
        self._set("proprio", np.asarray(values, dtype=np.float32))

    def set_instruction(self, text: str) -> None:
        self.instruction = str(text)

    def set_estop(self, engaged: bool) -> None:
        self.estopped = bool(engaged)

    def _set(self, key: str, value) -> None:
        with self._lock:
            self._latest[key], self._stamp[key] = value, time.monotonic()

    # ------------------------------------------------------------------ the tick
    def required(self) -> list[str]:
        return list(self.config.image_topics) + (["proprio"] if self.config.state_topic else [])

    def tick(self) -> np.ndarray:
        """The command for this control step."""
        now = time.monotonic()
        with self._lock:
            stale = [k for k in self.required() if now - self._stamp.get(k, -np.inf) > self.config.stale_after_s]
            obs = dict(self._latest)
        if self.estopped or stale:
            self._episode_fresh = True  # resume from a new chunk, not from where motion stopped
            self.stops += 1
            return self.safety.stop()
        obs = {k: obs[k] for k in self.required()}
        obs[INSTRUCTION] = self.instruction
        raw = self._act(obs, self._episode_fresh)  # the policy's own key names: `embodied serve` takes them too
        self._episode_fresh = False
        if self.estopped:  # engaged while the policy was thinking
            self.stops += 1
            return self.safety.stop()
        position = obs["proprio"][:3] if "proprio" in obs else None
        return self.safety(raw, position)

    def next_twist(self, twist, log_error) -> float | None:
        """Fills a geometry_msgs/Twist (ROS 1 or 2) with this tick's command and returns the gripper command; a
        failing policy is logged and answered by zero motion, never by stopping the node."""
        try:
            command = self.tick()
        except Exception as error:  # noqa: BLE001
            log_error(f"embodied ros: the policy failed ({type(error).__name__}: {error}); zero motion")
            command = self.safety.stop()
        linear, angular, gripper = self.split(command)
        twist.linear.x, twist.linear.y, twist.linear.z = linear
        twist.angular.x, twist.angular.y, twist.angular.z = angular
        return gripper

    def split(self, command: np.ndarray) -> tuple[list[float], list[float], float | None]:
        """(twist linear xyz, twist angular xyz, gripper) of a command."""

        def pick(indices):
            return [float(command[i]) if i is not None and i < len(command) else 0.0 for i in indices]

        gripper = self.config.gripper_index
        return (pick(self.config.twist_linear), pick(self.config.twist_angular),
                float(command[gripper]) if gripper is not None and gripper < len(command) else None)  # fmt: skip


def image_from_message(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/Image (ROS 1 or 2) with encoding rgb8, bgr8, rgba8 or bgra8."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(msg.encoding)
    if channels is None:
        raise ValueError(f"image encoding {msg.encoding!r} is not supported (rgb8, bgr8, rgba8, bgra8)")
    rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    image = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)[..., :3]
    return np.ascontiguousarray(image[..., ::-1] if msg.encoding.startswith("bgr") else image)
