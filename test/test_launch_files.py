"""The launch files under real `launch` + `launch_ros`, once per launch release installed in this venv.

`make venv` installs the launch and launch_ros wheels of humble, jazzy and rolling (../shared/ros-launch)
each into its own folder, <venv>/launch/<distro>; a process imports only one launch, so each run is a
subprocess, test/launch_runner.py, with PYTHONPATH=<that folder>. The test process watches the ROS graph
with rclpy over DDS (the run's own ROS_DOMAIN_ID, localhost discovery: test/conftest.py).

FindPackageShare and launch_ros's executable lookup need liquid_control in an ament prefix: the module
lays one out in a temporary folder as `colcon build --symlink-install` would (share/liquid_control links to
this checkout's launch/, config/, sim/, policies/; lib/liquid_control holds the console scripts).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ros_helpers import REPO, NodeProcess, Probe, lifecycle_state

LAUNCH_ROOT = Path(sys.prefix) / "launch"
# A release is a folder holding a `launch` package (other folders there, e.g. a shim's sources, are not).
VERSIONS = sorted(p.parent.name for p in LAUNCH_ROOT.glob("*/launch") if p.is_dir())
RUNNER = REPO / "test" / "launch_runner.py"
CONTROLLER = "liquid_controller"
HINGE_LIMIT = 0.2  # rad: the cart-pole task's failure bound (liquid_control/sim/tasks.py, as `make demo` judges)


@pytest.fixture(scope="module")
def ament_prefix(tmp_path_factory) -> Path:
    """An ament prefix holding liquid_control, as setup.py's data_files and setup.cfg lay it out."""
    prefix = tmp_path_factory.mktemp("ament_prefix")
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "liquid_control").write_text("")
    share = prefix / "share" / "liquid_control"
    share.mkdir()
    for item in ("launch", "config", "sim", "policies", "package.xml"):
        (share / item).symlink_to(REPO / item)
    lib = prefix / "lib" / "liquid_control"
    lib.mkdir(parents=True)
    for script in ("controller", "sim_bridge"):
        (lib / script).symlink_to(Path(sys.prefix) / "bin" / script)
    return prefix


@pytest.fixture(scope="module", params=VERSIONS or ["none"])
def launch_env(request, ament_prefix) -> dict[str, str]:
    """The environment of a launch run under one release; skips where it is missing or cannot import."""
    if request.param == "none":
        pytest.skip(f"no launch release installed under {LAUNCH_ROOT} (make venv installs ../shared/ros-launch)")
    env = {"PYTHONPATH": str(LAUNCH_ROOT / request.param),
           "AMENT_PREFIX_PATH": os.pathsep.join(filter(None, [str(ament_prefix), sys.prefix,
                                                              os.environ.get("AMENT_PREFIX_PATH")]))}
    probe = subprocess.run([sys.executable, "-c", "import launch, launch_ros.actions"], env={**os.environ, **env},
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines() or ["(no output)"]
        pytest.skip(f"launch_ros of {request.param} cannot be imported: {lines[-1]}")
    return env


def _launch(env: dict[str, str], file: str, *arguments: str) -> NodeProcess:
    """launch/<file> with name:=value arguments, in its own process (stopped with SIGINT on exit)."""
    argv = [sys.executable, str(RUNNER), str(REPO / "launch" / file), *arguments, "--time-limit", "90"]
    return NodeProcess(argv, name=f"launch_{Path(env['PYTHONPATH']).name}_{file.split('.')[0]}", env=env)


def _nodes(probe: Probe) -> set[str]:
    """Full names of the nodes in the graph."""
    return {f"{ns.rstrip('/')}/{name}" for name, ns in probe.node.get_node_names_and_namespaces()}


def _wait_for_nodes(probe: Probe, launched: NodeProcess, *names: str) -> None:
    probe.wait_for(lambda: set(names) <= _nodes(probe), 30.0, f"nodes {names} in the graph", launched)


def _parameters(probe: Probe, node: str, names: list[str]) -> dict:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    values = probe.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=names), 15.0).values
    return {n: parameter_value_to_python(v) for n, v in zip(names, values)}


def _stopped_cleanly(launched: NodeProcess) -> None:
    """Ctrl-C as a terminal sends it, SIGINT to the launch's whole process group: the nodes shut down and
    the launch exits 0 (3: a node had died before). (SIGINT to the launch process alone is a ctrl-c to
    launch too, which then waits 5 s for its nodes to get theirs before it sends SIGTERM.)"""
    os.killpg(launched.proc.pid, signal.SIGINT)
    rc = launched.wait_exit(20.0)
    launched.stop()
    assert rc == 0, f"the launch exited with {rc}:\n{launched.tail(40)}"


def test_controller_launch_brings_the_node_up_active(launch_env):
    """controller.launch.py with its defaults: the robot's params file found through the ament index, the
    lifecycle node in the graph, configured and activated (autostart), commanding the spec's topic."""
    from std_msgs.msg import Float64MultiArray

    with _launch(launch_env, "controller.launch.py") as launched, Probe("launch_probe") as probe:
        _wait_for_nodes(probe, launched, f"/{CONTROLLER}")
        probe.wait_for(lambda: lifecycle_state(probe, CONTROLLER) == "active", 30.0, "the controller active",
                       launched)
        shipped = yaml.safe_load((REPO / "config" / "cartpole.yaml").read_text())[CONTROLLER]["ros__parameters"]
        assert _parameters(probe, f"/{CONTROLLER}", list(shipped)) == shipped
        commands = probe.collect(Float64MultiArray, "/effort_controller/commands")
        # No sensors are running: the node sends the safe command, the spec's 0.0.
        probe.wait_for(lambda: len(commands) > 0, 15.0, "a command", launched)
        assert list(commands.last().data) == [0.0]
        _stopped_cleanly(launched)


def test_a_node_that_dies_fails_the_launch(launch_env):
    """The runner's verdict can fail: a model path that does not exist makes the controller exit 1 at
    start-up (autostart), and the launch ends with the runner's 'a node died' status."""
    with _launch(launch_env, "controller.launch.py", "model:=/nonexistent/policy.onnx") as launched:
        rc = launched.wait_exit(60.0)
        assert rc == 3, f"exit {rc}:\n{launched.tail(40)}"
        assert "controller-1 exited with 1" in launched.output()


def test_sim_launch_passes_params_file_and_namespace(launch_env, tmp_path):
    """sim.launch.py namespace:=... params_file:=...: both nodes come up in the namespace, the controller
    reads the user's file (step_debug on, which the shipped file has off, shows as its ~/step_debug topic)
    and the loop closes inside the namespace."""
    from sensor_msgs.msg import JointState

    ns = "/lc_launch_test"
    shipped = (REPO / "config" / "cartpole.yaml").read_text()
    assert "step_debug: false" in shipped
    user_file = tmp_path / "my_cartpole.yaml"
    user_file.write_text(shipped.replace("step_debug: false", "step_debug: true"))
    with _launch(launch_env, "sim.launch.py", f"namespace:={ns.strip('/')}",
                 f"params_file:={user_file}") as launched, Probe("launch_probe") as probe:
        _wait_for_nodes(probe, launched, f"{ns}/{CONTROLLER}", f"{ns}/sim_bridge")
        assert not {f"/{CONTROLLER}", "/sim_bridge"} & _nodes(probe), "a node outside the namespace"
        assert _parameters(probe, f"{ns}/{CONTROLLER}", ["step_debug"]) == {"step_debug": True}
        probe.wait_for(lambda: probe.node.count_publishers(f"{ns}/{CONTROLLER}/step_debug") > 0, 15.0,
                       "the ~/step_debug publisher the user's file turns on", launched)
        states = probe.collect(JointState, f"{ns}/joint_states")
        probe.wait_for(lambda: _moving(states), 30.0, f"the physics running in {ns}", launched)
        _stopped_cleanly(launched)


def _moving(states) -> bool:
    """The cart-pole state has changed: the sim bridge's physics runs, which in lockstep means the
    controller answers its /clock with commands (before the first answer the physics is frozen)."""
    items = states.snapshot()
    return len(items) > 1 and any(list(m.position) != list(items[0][1].position) for _, m in items)


def test_sim_launch_balances_the_pole_for_10_s_of_sim_time(launch_env):
    """sim.launch.py with its defaults (lockstep, use_sim_time): over 10 s of sim time (joint_states are
    stamped with /clock) from the first moving state seen, the pole angle stays within the task's bound.
    (With the controller's e-stop engaged, the same check sees the pole fall: |angle| reaches 1.57 rad.)"""
    from sensor_msgs.msg import JointState

    # Subscribed before the launch: the sim runs many times faster than real time, and the window should
    # start at the physics' first step (the soft start and the first swings included) whenever discovery
    # matches this reader before the bridge's first samples, which it usually does.
    with Probe("launch_probe") as probe:
        states = probe.collect(JointState, "/joint_states", qos=1000)
        with _launch(launch_env, "sim.launch.py") as launched:
            _wait_for_nodes(probe, launched, f"/{CONTROLLER}", "/sim_bridge")
            start = probe.wait_for(lambda: _physics_start(states), 40.0, "the physics running", launched)
            # The probe is a Python reader beside a sim running ~100x real time: on a loaded machine it
            # can miss samples, so the window runs until it holds 200 states and spans 10 s of sim time.
            probe.wait_for(lambda: len(_since(states, start)) >= 200
                           and _stamp(states.last()) >= start + 10.0, 40.0, "10 s of sim time", launched)
            _stopped_cleanly(launched)
    run = _since(states, start)
    hinge = run[0].name.index("hinge")
    angles = [m.position[hinge] for m in run]
    assert len(run) >= 200 and _stamp(run[-1]) - start >= 10.0
    worst = max(abs(a) for a in angles)
    assert worst < HINGE_LIMIT, f"the pole fell: |angle| reached {worst:.3f} rad"
    assert max(angles) != min(angles)


def _stamp(msg) -> float:
    """Sim time the bridge stamped on a state (0 before any)."""
    if msg is None:
        return 0.0
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def _since(states, start: float) -> list:
    """The states stamped at or after sim time `start`."""
    return [m for _, m in states.snapshot() if _stamp(m) >= start]


def _physics_start(states) -> float | None:
    """Sim time of the last state before the first change (the physics' first step), or None yet."""
    items = [m for _, m in states.snapshot()]
    for before, after in zip(items, items[1:]):
        if list(after.position) != list(before.position):
            return _stamp(before)
    return None
