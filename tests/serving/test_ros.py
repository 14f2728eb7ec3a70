"""`embodied ros` on a real ROS 1 master (Debian's rosmaster on loopback): the bridge process subscribes to a camera
and the state published by this test's rospy node, and publishes clipped commands, zero motion on stale images or
e-stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

rospy = pytest.importorskip("rospy", reason="ROS 1 from Debian (setup.sh installs python3-rospy and links it)")

from embodied.policies import load_policy  # noqa: E402
from embodied.policies.bc import BCConfig  # noqa: E402
from embodied.training.fit_policy import TrainConfig, train  # noqa: E402

LIMIT = 0.05  # the bridge's |command| limit in this test (the untrained policy's actions are far larger)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def ros_master():
    if shutil.which("rosmaster") is None:
        pytest.skip("rosmaster is not installed (apt-get install python3-rosmaster)")
    port = _free_port()
    env = {**os.environ, "ROS_IP": "127.0.0.1"}
    master = subprocess.Popen(["rosmaster", "--core", "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    os.environ["ROS_MASTER_URI"], os.environ["ROS_IP"] = uri, "127.0.0.1"
    import rosgraph

    _wait(lambda: rosgraph.Master("/probe", master_uri=uri).is_online(), "rosmaster")
    yield uri
    master.terminate()
    master.wait(timeout=30)


@pytest.fixture(scope="module")
def checkpoint(image_store, tmp_path_factory):
    run = tmp_path_factory.mktemp("ros_bc")
    return train(TrainConfig(policy=BCConfig.tiny(), dataset=str(image_store), steps=3, batch_size=8, run_dir=str(run),
                             progress=False), run)  # fmt: skip


def test_the_bridge_publishes_clipped_actions_stops_on_stale_images_and_honours_the_estop(ros_master, checkpoint):
    from geometry_msgs.msg import Twist
    from sensor_msgs.msg import Image
    from std_msgs.msg import Bool, Float32, Float32MultiArray

    limits = ",".join([str(LIMIT)] * 7)
    bridge = subprocess.Popen(
        [sys.executable, "-m", "embodied.cli", "ros", f"checkpoint={checkpoint}", f"master_uri={ros_master}",
         f"action_low=[{','.join([str(-LIMIT)] * 7)}]", f"action_high=[{limits}]", "stale_after_s=0.5",
         "control_rate=20", "instruction_topic=null"],
        env={**os.environ, "ROS_IP": "127.0.0.1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    rospy.init_node("embodied_test", anonymous=True, disable_signals=True)
    received: list[tuple[float, np.ndarray]] = []
    grippers: list[float] = []
    lock = threading.Lock()

    def on_twist(msg):
        with lock:
            received.append((time.monotonic(), np.array([msg.linear.x, msg.linear.y, msg.linear.z, msg.angular.x,
                                                          msg.angular.y, msg.angular.z])))  # fmt: skip

    subscriptions = [rospy.Subscriber("/embodied/cmd_twist", Twist, on_twist),
                     rospy.Subscriber("/embodied/cmd_gripper", Float32, lambda m: grippers.append(m.data))]  # fmt: skip
    image_pub = rospy.Publisher("/camera/image_raw", Image, queue_size=1)
    state_pub = rospy.Publisher("/robot/state", Float32MultiArray, queue_size=1)
    estop_pub = rospy.Publisher("/embodied/estop", Bool, queue_size=1, latch=True)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    state = rng.normal(size=9).astype(np.float32)
    streaming = threading.Event()
    streaming.set()
    done = threading.Event()

    def publish_observations():
        while not done.is_set():
            if streaming.is_set():
                image_pub.publish(Image(height=32, width=32, encoding="rgb8", step=96, data=frame.tobytes()))
                state_pub.publish(Float32MultiArray(data=state.tolist()))
            time.sleep(0.02)

    publisher = threading.Thread(target=publish_observations, daemon=True)
    publisher.start()

    def since(t0: float) -> list[np.ndarray]:
        with lock:
            return [v for t, v in received if t > t0]

    try:
        expected = load_policy(checkpoint).predict_action({"images/agentview": frame[None], "proprio": state[None]})
        clipped = np.clip(expected[0].numpy(), -LIMIT, LIMIT)
        _wait(lambda: sum(np.abs(v).sum() > 0 for v in since(0)) >= 10, "moving commands")
        moving = [v for v in since(0) if np.abs(v).sum() > 0]
        assert all(np.abs(v).max() <= LIMIT + 1e-6 for v in moving)  # clipped to the limits
        for v in moving:  # each one is a row of the policy's (clipped) chunk for this observation
            assert np.abs(clipped[:, :6] - v).max(axis=1).min() < 1e-5
        assert grippers and all(abs(g) <= LIMIT + 1e-6 for g in grippers)

        estop_pub.publish(Bool(True))
        t0 = time.monotonic()
        _wait(lambda: any(np.abs(v).sum() == 0 for v in since(t0)), "zero motion on e-stop")
        t1 = time.monotonic()
        _wait(lambda: len(since(t1)) >= 5, "commands during the e-stop")
        assert all(np.abs(v).sum() == 0 for v in since(t1))  # images still arrive, the robot stays still
        estop_pub.publish(Bool(False))
        t2 = time.monotonic()
        _wait(lambda: any(np.abs(v).sum() > 0 for v in since(t2)), "motion after the e-stop is released")

        streaming.clear()  # the camera goes quiet: the watchdog stops the robot
        t3 = time.monotonic()
        _wait(lambda: any(np.abs(v).sum() == 0 for v in since(t3)), "zero motion on stale images")
        t4 = time.monotonic()
        _wait(lambda: len(since(t4)) >= 5, "commands while the images are stale")
        assert all(np.abs(v).sum() == 0 for v in since(t4))
        streaming.set()
        t5 = time.monotonic()
        _wait(lambda: any(np.abs(v).sum() > 0 for v in since(t5)), "motion once images are fresh again")
    finally:
        done.set()
        bridge.send_signal(signal.SIGTERM)
        code = bridge.wait(timeout=30)
        for s in subscriptions:
            s.unregister()
    assert code == 0, bridge.stdout.read()
    _wait(lambda: received and np.abs(received[-1][1]).sum() == 0, "the zero command on shutdown", timeout=10)
