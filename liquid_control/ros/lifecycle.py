"""rclpy lifecycle behaviour that differs between distros, made the same for our nodes."""
from __future__ import annotations

from typing import Any, Callable

from rclpy.lifecycle import Node as LifecycleNode


def refusing_impossible_transitions(node: LifecycleNode, callback: Callable[[Any, Any], Any]) -> Callable:
    """The change_state service callback, answering success=False to a transition the current state does not
    have. rclpy 9 does that itself; rclpy 7 (Jazzy) lets rcl's error out of the callback, which stops the
    executor and so the node (`ros2 lifecycle set` of a wrong transition would end the controller)."""
    def change_state(request: Any, response: Any) -> Any:
        try:
            return callback(request, response)
        except RuntimeError as exc:  # rclpy's RCLError
            transition = request.transition.label or f"id {request.transition.id}"
            node.get_logger().error(f"change_state: transition {transition} refused: {exc}")
            response.success = False
            return response
    return change_state
