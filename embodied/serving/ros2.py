"""The ROS 2 (rclpy) node of the robot bridge, on the same :class:`~embodied.serving.bridge.BridgeCore` as ROS 1.

UNTESTED: no ROS 2 Python client is installable on the machines this project is built on (not on the package
index, not in Debian bookworm), so this node has never run. It mirrors :mod:`embodied.serving.ros1` topic for
topic; run it with ``embodied ros ros_version=2`` inside a sourced ROS 2 environment and please report what breaks.
"""

from __future__ import annotations

from embodied.serving.bridge import BridgeConfig, BridgeCore, image_from_message


def run_node(config: BridgeConfig) -> BridgeCore:  # pragma: no cover - needs rclpy
    """Spins the bridge node until Ctrl-C."""
    try:
        import rclpy
        from geometry_msgs.msg import Twist
        from sensor_msgs.msg import Image
        from std_msgs.msg import Bool, Float32, Float32MultiArray, String
    except ImportError as error:
        raise ImportError(f"ros_version=2 needs rclpy ({error}): source a ROS 2 installation first") from None
    core = BridgeCore(config)
    rclpy.init()
    node = rclpy.create_node(config.node_name)
    for key, topic in config.image_topics.items():
        node.create_subscription(Image, topic, lambda msg, key=key: core.set_image(key, image_from_message(msg)), 1)
    if config.state_topic:
        node.create_subscription(Float32MultiArray, config.state_topic, lambda m: core.set_state(m.data), 1)
    if config.instruction_topic:
        node.create_subscription(String, config.instruction_topic, lambda m: core.set_instruction(m.data), 1)
    node.create_subscription(Bool, config.estop_topic, lambda m: core.set_estop(m.data), 10)
    twist_pub = node.create_publisher(Twist, config.twist_topic, 1)
    gripper_pub = node.create_publisher(Float32, config.gripper_topic, 1) if config.gripper_topic else None

    def publish() -> None:
        twist = Twist()
        gripper = core.next_twist(twist, node.get_logger().error)
        twist_pub.publish(twist)
        if gripper_pub is not None and gripper is not None:
            gripper_pub.publish(Float32(data=gripper))

    node.create_timer(1.0 / config.control_rate, publish)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        twist_pub.publish(Twist())
        node.destroy_node()
        rclpy.shutdown()
    return core
