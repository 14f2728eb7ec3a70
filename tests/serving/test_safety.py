"""The bridge's safety filter: limits, rate limiting, the workspace box, stopping; and camera message decoding."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.serving.bridge import BridgeConfig, SafetyFilter, image_from_message


def test_commands_are_clipped_rate_limited_kept_in_the_workspace_and_stopped_without_dropping_the_gripper():
    config = BridgeConfig(action_low=[-0.1] * 6 + [-1.0], action_high=[0.1] * 6 + [1.0], max_step_change=0.04,
                          workspace=[[0.0, 1.0], [-0.5, 0.5], [0.8, 1.5]])  # fmt: skip
    safety = SafetyFilter(config, 7)
    inside = np.array([0.5, 0.0, 1.0])
    first = safety(np.array([5.0, -5.0, 0.02, np.nan, 0, 0, 1.0]), inside)
    np.testing.assert_allclose(first, [0.04, -0.04, 0.02, 0, 0, 0, 0.04], atol=1e-7)  # change limited from rest
    for _ in range(5):
        command = safety(np.array([5.0, -5.0, 0.02, 0, 0, 0, 1.0]), inside)
    np.testing.assert_allclose(command, [0.1, -0.1, 0.02, 0, 0, 0, 0.24], atol=1e-6)  # clipped at the limits
    at_floor = safety(np.array([0.1, -0.1, -0.1, 0, 0, 0, 1.0]), np.array([0.5, 0.0, 0.8]))
    assert at_floor[2] == 0.0 and at_floor[0] == pytest.approx(0.1)  # no further down, other axes untouched
    at_wall = safety(np.array([0.1, 0.1, 0.1, 0, 0, 0, 1.0]), np.array([1.2, 0.0, 1.0]))
    assert at_wall[0] == 0.0 and at_wall[2] > 0  # outside in x: only moving back in is allowed
    gripper = at_wall[6]
    stop = safety.stop()
    np.testing.assert_array_equal(stop[:6], 0)
    assert stop[6] == gripper  # stopping keeps the grasp
    with pytest.raises(ValueError, match="must not exceed"):
        SafetyFilter(BridgeConfig(action_low=[1.0] * 7, action_high=[0.0] * 7), 7)


def test_camera_messages_decode_rgb_bgr_and_padded_rows():
    msg_module = pytest.importorskip("sensor_msgs.msg", reason="ROS 1 messages from Debian (setup.sh)")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    rgb = msg_module.Image(height=4, width=5, encoding="rgb8", step=15, data=image.tobytes())
    np.testing.assert_array_equal(image_from_message(rgb), image)
    padded = np.concatenate([image[..., ::-1].reshape(4, 15), np.zeros((4, 1), np.uint8)], 1)  # 16-byte rows
    bgr = msg_module.Image(height=4, width=5, encoding="bgr8", step=16, data=padded.tobytes())
    np.testing.assert_array_equal(image_from_message(bgr), image)
    with pytest.raises(ValueError, match="mono16"):
        image_from_message(msg_module.Image(height=1, width=1, encoding="mono16", step=2, data=b"\x00\x00"))
