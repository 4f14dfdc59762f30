"""Helpers for tests that run real ROS 2 nodes in separate processes and talk to them over DDS.

    with NodeProcess([...argv...], name="controller") as node, Probe() as probe:
        cmds = probe.collect(Float64MultiArray, "effort_controller/commands")
        pub = probe.publisher(JointState, "joint_states")
        probe.wait_for(lambda: len(cmds) > 10, 10.0, "commands")

`NodeProcess` starts a process (in the environment test/conftest.py set up: a per-run ROS_DOMAIN_ID,
localhost-only discovery), sends its output to a log file, and on exit stops it with SIGINT, then
SIGKILL if it does not go. `Probe` is an rclpy node in the test process with its own Context and a
background executor thread, so several probes and tests never share global rclpy state.
Every wait is bounded and fails with a message saying what was waited for (and the node's log tail).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from liquid_control.ros.background import BackgroundNode, ChildProcess

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def console_script(name: str, *args: str) -> list[str]:
    """A console script of this environment (e.g. 'controller', 'liquid-control')."""
    return [str(BIN / name), *args]


def ros_params(**params: Any) -> list[str]:
    """['--ros-args', '-p', 'name:=value', ...] with Python values written as ROS expects."""
    out = ["--ros-args"]
    for k, v in params.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (list, tuple)):
            v = "[" + ",".join(repr(float(x)) for x in v) + "]"
        out += ["-p", f"{k}:={v}"]
    return out


def poll_until(predicate: Callable[[], Any], timeout: float, node: "NodeProcess | None" = None) -> bool:
    """Poll `predicate` for up to `timeout` s (or until `node` exits); whether it came true. For waits that
    only pace a test (lockstep with a node), where running out of time is not itself a failure."""
    end = time.monotonic() + timeout
    while not predicate() and time.monotonic() < end and (node is None or node.alive()):
        time.sleep(0.001)
    return bool(predicate())


class NodeProcess(ChildProcess):
    """A node (or any command) in its own process; output goes to a log file (a temp dir by default)."""

    def __init__(self, argv: list[str], name: str = "node", env: dict[str, str] | None = None,
                 log_dir: str | Path | None = None, cwd: str | Path | None = None):
        super().__init__(argv, name, log_dir or tempfile.mkdtemp(prefix=f"lc_{name}_"),
                         env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd or REPO)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout} s:\n{self.tail()}") from None


class Collector:
    """Messages received on one topic, with their receive time (time.monotonic()), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[float, Any]] = []

    def __call__(self, msg: Any) -> None:
        t = time.monotonic()
        with self._lock:
            self.items.append((t, msg))

    def __len__(self) -> int:
        with self._lock:
            return len(self.items)

    def snapshot(self) -> list[tuple[float, Any]]:
        with self._lock:
            return list(self.items)

    def since(self, t: float) -> list[Any]:
        with self._lock:
            return [m for (ts, m) in self.items if ts >= t]

    def last(self) -> Any:
        with self._lock:
            return self.items[-1][1] if self.items else None

    def clear(self) -> None:
        with self._lock:
            self.items.clear()


class Probe(BackgroundNode):
    """An rclpy node in the test process, spun by a background thread, on its own Context."""

    def __init__(self, name: str = "test_probe"):
        super().__init__(f"{name}_{os.getpid()}")

    def publisher(self, msg_type: type, topic: str, qos: Any = 10) -> Any:
        return self.node.create_publisher(msg_type, topic, qos)

    def collect(self, msg_type: type, topic: str, qos: Any = 100) -> Collector:
        c = Collector()
        self.node.create_subscription(msg_type, topic, c, qos)
        return c

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str,
                 node: NodeProcess | None = None) -> Any:
        """Poll `predicate` until truthy (returned) or fail after `timeout` s naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if node is not None and not node.alive():
                raise AssertionError(f"{node.name} exited while waiting for {what}:\n{node.tail()}")
            if time.monotonic() > deadline:
                tail = f"\n{node.name} log:\n{node.tail()}" if node is not None else ""
                raise AssertionError(f"timed out after {timeout} s waiting for {what}{tail}")
            time.sleep(0.01)

    def wait_for_subscribers(self, pub: Any, timeout: float = 10.0, what: str = "a subscriber") -> None:
        self.wait_for(lambda: pub.get_subscription_count() > 0, timeout, what)

    def call(self, srv_type: type, name: str, request: Any, timeout: float = 10.0,
             resend_s: float | None = 2.0) -> Any:
        """Call a service, waiting (bounded) for it to appear and answer.

        `wait_for_service` returns once the server's request reader is matched, which can be before its
        response writer has matched this client's reader; a response sent in that window is lost (DDS
        volatile durability). So an idempotent request is sent again every `resend_s` s until one answer
        arrives; pass `resend_s=None` for a request that must be sent once (a lifecycle transition)."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} did not appear within {timeout} s")
            deadline = time.monotonic() + timeout
            futures = [client.call_async(request)]
            while not any(f.done() for f in futures):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for an answer from {name}")
                wait = left if resend_s is None else min(left, resend_s)
                try:
                    self.wait_for(lambda: any(f.done() for f in futures), wait, f"an answer from {name}")
                except AssertionError:
                    if resend_s is not None and time.monotonic() < deadline:
                        futures.append(client.call_async(request))
            return next(f for f in futures if f.done()).result()
        finally:
            self.node.destroy_client(client)


# --------------------------------------------------------------------------- lifecycle + parameters

def lifecycle_state(probe: Probe, node_name: str, timeout: float = 10.0) -> str:
    from lifecycle_msgs.srv import GetState

    return probe.call(GetState, f"/{node_name}/get_state", GetState.Request(), timeout).current_state.label


def change_state(probe: Probe, node_name: str, transition: str, timeout: float = 20.0) -> bool:
    """Trigger a transition by label ('configure', 'activate', 'deactivate', 'cleanup', 'shutdown')."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
           "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP}
    req = ChangeState.Request()
    if transition in ids:
        req.transition.id = ids[transition]
    else:
        req.transition.label = transition
    return bool(probe.call(ChangeState, f"/{node_name}/change_state", req, timeout, resend_s=None).success)


def set_parameter(probe: Probe, node_name: str, name: str, value: Any, timeout: float = 10.0) -> Any:
    """Set one parameter through the node's set_parameters service; returns the SetParametersResult."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return probe.call(SetParameters, f"/{node_name}/set_parameters", req, timeout).results[0]
