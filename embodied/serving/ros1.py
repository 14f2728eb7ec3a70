"""The ROS 1 (rospy) node of the robot bridge: topics in and out around :class:`~embodied.serving.bridge.BridgeCore`.

Subscribes to each camera's ``sensor_msgs/Image``, the state (``std_msgs/Float32MultiArray``), the instruction
(``std_msgs/String``) and the e-stop (``std_msgs/Bool``); publishes ``geometry_msgs/Twist`` and the gripper
(``std_msgs/Float32``) at the control rate. rospy comes from Debian (``python3-rospy``; setup.sh links it into the
virtualenv); tests start a real ``rosmaster`` on loopback.
"""

from __future__ import annotations

import os
import threading
import time

from embodied.serving.bridge import BridgeConfig, BridgeCore, image_from_message


def run_node(config: BridgeConfig, stop: threading.Event | None = None) -> BridgeCore:
    """Runs the bridge until ROS shuts down (Ctrl-C, SIGTERM, rosnode kill) or ``stop`` is set."""
    if config.master_uri:
        os.environ["ROS_MASTER_URI"] = config.master_uri
    try:
        import rospy
        from geometry_msgs.msg import Twist
        from sensor_msgs.msg import Image
        from std_msgs.msg import Bool, Float32, Float32MultiArray, String
    except ImportError as error:
        raise ImportError(
            f"embodied ros needs ROS 1's Python client ({error}); on Debian: apt-get install python3-rospy "
            "python3-sensor-msgs python3-geometry-msgs python3-std-msgs, then rerun ./setup.sh to link them"
        ) from None
    core = BridgeCore(config)
    own_stop = stop is None
    if own_stop:  # our own Ctrl-C / SIGTERM handling: rospy's closes the topics before the last zero command
        import signal

        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    rospy.init_node(config.node_name, anonymous=False, disable_signals=True)
    subscribers = [
        rospy.Subscriber(
            topic,
            Image,
            lambda msg, key=key: core.set_image(key, image_from_message(msg)),
            queue_size=1,
            buff_size=2**24,
        )  # large enough for a frame: rospy's default backs images up (stale)
        for key, topic in config.image_topics.items()
    ]
    if config.state_topic:
        subscribers.append(rospy.Subscriber(config.state_topic, Float32MultiArray, lambda m: core.set_state(m.data),
                                            queue_size=1))  # fmt: skip
    if config.instruction_topic:
        subscribers.append(rospy.Subscriber(config.instruction_topic, String, lambda m: core.set_instruction(m.data),
                                            queue_size=1))  # fmt: skip
    subscribers.append(rospy.Subscriber(config.estop_topic, Bool, lambda m: core.set_estop(m.data), queue_size=10))
    twist_pub = rospy.Publisher(config.twist_topic, Twist, queue_size=1)
    gripper_pub = rospy.Publisher(config.gripper_topic, Float32, queue_size=1) if config.gripper_topic else None
    rate = rospy.Rate(config.control_rate)
    rospy.loginfo(f"embodied ros: {config.node_name} publishing {config.twist_topic} at {config.control_rate} Hz")
    try:
        while not rospy.is_shutdown() and not stop.is_set():
            twist = Twist()
            gripper = core.next_twist(twist, rospy.logerr)
            twist_pub.publish(twist)
            if gripper_pub is not None and gripper is not None:
                gripper_pub.publish(Float32(gripper))
            try:
                rate.sleep()
            except rospy.ROSInterruptException:
                break
    finally:
        twist_pub.publish(Twist())  # leave the robot still
        time.sleep(0.2)  # let the zero command leave before the topics close
        for subscriber in subscribers:
            subscriber.unregister()
        if own_stop:
            rospy.signal_shutdown("embodied ros stopped")
    return core
