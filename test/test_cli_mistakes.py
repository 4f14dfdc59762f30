"""Common user mistakes with every `liquid-control` subcommand (and the `controller` executable): each is a
clear message and a non-zero exit, never a traceback.

A mistake ends in exactly one error line on stderr, or in argparse's short usage message (usage lines and one
`error:` line). ROS log lines of a node that started ([INFO]/[WARN] ...) are not errors and are ignored.
All cases run at once in parallel subprocesses (module fixture); each test case only checks its result.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from liquid_control.cli.main import SUBCOMMANDS
from liquid_control.ros.background import interruptible

MISSING = "/nonexistent/liquid_control_test"
BAD_YAML = "liquid_controller:\n  ros__parameters:\n    rate_hz: [1, 2\n    robot: cartpole\n"
NO_ROS_PARAMETERS = "liquid_controller:\n  rate_hz: 50.0\n"


def _cli(*argv: str, hide: str | None = None) -> list[str]:
    """argv of `liquid-control ...`; `hide` makes that module unimportable, as if its pip extra were absent."""
    code = "import sys\n"
    if hide:
        code += f"sys.modules[{hide!r}] = None\n"
    code += "from liquid_control.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    return [sys.executable, "-c", code, *argv]


# id -> argv, with {tmp} for the case folder. Every subcommand of `liquid-control --help` is in here.
CASES: dict[str, list[str]] = {
    # missing files and folders
    "info-missing-file": _cli("info", MISSING + ".onnx"),
    "info-directory": _cli("info", "{tmp}"),
    "info-unknown-flag": _cli("info", "--nope", "x.onnx"),
    "export-missing-checkpoint": _cli("export", MISSING + ".pt", "--out", "{tmp}/p.onnx"),
    "export-no-out": _cli("export", MISSING + ".pt"),
    "eval-missing-model": _cli("eval", MISSING + ".onnx", "--episodes", "1"),
    "eval-directory-model": _cli("eval", "{tmp}", "--episodes", "1"),
    "eval-wrong-robot": _cli("eval", "--robot", "no_such_robot", "--episodes", "1"),
    "eval-bad-number": _cli("eval", "--episodes", "three"),
    "eval-malformed-spec-yaml": _cli("eval", "--robot", "{tmp}/bad.yaml", "--episodes", "1"),
    "train-wrong-robot": _cli("train", "--robot", "no_such_robot", "--steps", "64", "--out", "{tmp}/t"),
    "train-bad-number": _cli("train", "--steps", "lots"),
    "train-bad-lr": _cli("train", "--lr", "2", "--steps", "64", "--out", "{tmp}/t"),
    "train-unknown-flag": _cli("train", "--epochz", "3"),
    "train-without-torch": _cli("train", "--steps", "64", "--out", "{tmp}/t", hide="torch"),
    "distill-missing-teacher": _cli("distill", "--teacher", MISSING + ".zip", "--out", "{tmp}/d"),
    "distill-wrong-robot": _cli("distill", "--robot", "no_such_robot", "--out", "{tmp}/d"),
    "replay-missing-bag": _cli("replay", MISSING, "--robot", "cartpole"),
    "replay-file-as-bag": _cli("replay", "{tmp}/bad.yaml", "--robot", "cartpole"),
    "replay-without-rosbags": _cli("replay", MISSING, "--robot", "cartpole", hide="rosbags"),
    "replay-plot-without-matplotlib": _cli("replay", MISSING, "--robot", "cartpole", "--plot", "{tmp}/p.png",
                                           hide="matplotlib"),
    "play-missing-bag": _cli("play", MISSING),
    "play-bad-rate": _cli("play", MISSING, "--rate", "fast"),
    "record-wrong-robot": _cli("record", "--robot", "no_such_robot", "{tmp}/bag"),
    "record-no-robot": _cli("record", "{tmp}/bag"),
    "train-bc-missing-bag": _cli("train-bc", MISSING, "--robot", "cartpole", "--out", "{tmp}/bc.onnx"),
    "bench-unknown-benchmark": _cli("bench", "nope"),
    "sweep-unknown-grid-key": _cli("sweep", "--grid", "lrr=1e-3", "--out", "{tmp}/sw"),
    "sweep-without-ray": _cli("sweep", "--steps", "64", "--ray", "--out", "{tmp}/sw", hide="ray"),
    "run-missing-params": _cli("run", "--params", MISSING + ".yaml"),
    "run-directory-params": _cli("run", "--params", "{tmp}"),
    "run-malformed-params": _cli("run", "--params", "{tmp}/bad.yaml"),
    "run-params-without-ros-parameters": _cli("run", "--params", "{tmp}/nors.yaml"),
    "run-wrong-robot": _cli("run", "--robot", "no_such_robot"),
    "run-bad-number": _cli("run", "--rate", "fast"),
    "run-without-rclpy": _cli("run", hide="rclpy"),
    "sim-wrong-robot": _cli("sim", "--robot", "no_such_robot"),
    "sim-bad-number": _cli("sim", "--rate", "-5"),
    "sim-without-mujoco": _cli("sim", hide="mujoco"),
    "sim-unknown-command": _cli("sim", "--robot", "cartpole", "--command", "turn=1", "--duration", "1"),
    "sim-bad-command-value": _cli("sim", "--robot", "cartpole", "--command", "forward_speed=fast", "--duration", "1"),
    "demo-wrong-robot": _cli("demo", "--robot", "no_such_robot", "--out", "{tmp}/demo"),
    "demo-bad-duration": _cli("demo", "--duration", "-1", "--out", "{tmp}/demo"),
    "demo-without-matplotlib": _cli("demo", "--out", "{tmp}/demo", hide="matplotlib"),
    "controller-malformed-params": [str(Path(sys.executable).with_name("controller")), "--ros-args",
                                    "--params-file", "{tmp}/bad.yaml"],
    "controller-missing-params": [str(Path(sys.executable).with_name("controller")), "--ros-args",
                                  "--params-file", MISSING + ".yaml"],
    # the console scripts' own code (setup.py entry points), with a module of the ros / train extra hidden
    "controller-without-rclpy": [sys.executable, "-c", "import sys; sys.modules['rclpy'] = None\n"
                                 "from liquid_control.cli.entry import controller; sys.exit(controller())"],
    "sim_bridge-without-mujoco": [sys.executable, "-c", "import sys; sys.modules['mujoco'] = None\n"
                                  "from liquid_control.cli.entry import sim_bridge; sys.exit(sim_bridge())"],
}

# What the message must say, for the cases where the point is a particular line.
EXPECT = {
    "run-malformed-params": "bad.yaml:4",
    "controller-malformed-params": "bad.yaml:4",
    "run-params-without-ros-parameters": "nors.yaml:2",
    "run-directory-params": "is a directory",
    "train-without-torch": "liquid_control[train]",
    "sweep-unknown-grid-key": "did you mean lr?",
    "sweep-without-ray": "liquid_control[dist]",
    "replay-without-rosbags": "liquid_control[bags]",
    "replay-plot-without-matplotlib": "liquid_control[bags]",
    "run-without-rclpy": "liquid_control[ros]",
    "sim-without-mujoco": "liquid_control[train]",
    "sim-unknown-command": "no command named 'turn' (sim.commands: none)",
    "sim-bad-command-value": "expected NAME=VALUE with a finite number",
    "demo-without-matplotlib": "liquid_control[train]",
    "controller-without-rclpy": "liquid_control[ros]",
    "sim_bridge-without-mujoco": "liquid_control[train]",
}


def _run(case: str, argv: list[str], tmp: Path) -> subprocess.CompletedProcess:
    folder = tmp / case
    folder.mkdir()
    (folder / "bad.yaml").write_text(BAD_YAML)
    (folder / "nors.yaml").write_text(NO_ROS_PARAMETERS)
    argv = [a.replace("{tmp}", str(folder)) for a in argv]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("mistakes")
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        futures = {case: pool.submit(_run, case, argv, tmp) for case, argv in CASES.items()}
        return {case: f.result() for case, f in futures.items()}


def _error_lines(stderr: str) -> list[str]:
    """stderr without ROS log lines of a node that started (info, warnings)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("[INFO]", "[WARN]"))]


def test_every_subcommand_is_in_the_table():
    covered = {argv[3] for argv in CASES.values() if argv[:2] == [sys.executable, "-c"] and len(argv) > 3}
    assert covered == set(SUBCOMMANDS), set(SUBCOMMANDS) - covered


@pytest.mark.parametrize("case", sorted(CASES))
def test_mistake_is_one_clear_line(case, results):
    proc = results[case]
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode != 0, out
    lines = _error_lines(proc.stderr)
    usage = bool(lines) and lines[0].startswith("usage:")
    if usage:  # argparse: the usage (first line, then indented continuation lines), then one error line
        assert lines[-1].startswith("liquid-control") and ": error: " in lines[-1], lines
        assert all(ln.startswith(" ") for ln in lines[1:-1]), lines
    else:
        assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n" + "\n".join(lines)
    if case in EXPECT:
        assert EXPECT[case] in lines[-1], lines


def test_params_file_for_other_nodes_warns_with_the_sections_found(tmp_path):
    """A params file with no section for the node (nor /**) is applied to nobody: the node says so in one
    WARN naming the sections it found, and goes on with its defaults (one file may serve several nodes)."""
    import signal
    import time

    params = tmp_path / "other.yaml"
    params.write_text("other_node:\n  ros__parameters:\n    rate_hz: 50.0\n/ns/thing:\n  ros__parameters: {}\n")
    proc = subprocess.Popen(_cli("run", "--params", str(params), "--no-autostart"), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=interruptible)
    try:
        deadline, warned = time.monotonic() + 60, None
        while warned is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            if "[WARN]" in line and "has no section for this node" in line:
                warned = line
        assert warned is not None, "no WARN about the unmatched params file"
        assert "other_node, /ns/thing" in warned and "/liquid_controller" in warned, warned
        time.sleep(0.5)
        assert proc.poll() is None, "the node should go on with its defaults"
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[1]
    assert "Traceback" not in rest, rest


@pytest.mark.parametrize("key, node, applies", [
    ("/**", "/liquid_controller", True), ("liquid_controller", "/liquid_controller", True),
    ("/liquid_controller", "/liquid_controller", True), ("/**/liquid_controller", "/a/b/liquid_controller", True),
    ("/**/liquid_controller", "/liquid_controller", True), ("/robot1/*", "/robot1/liquid_controller", True),
    ("/robot1/*", "/liquid_controller", False), ("liquid_controller", "/robot1/liquid_controller", False),
    ("controller", "/liquid_controller", False),
])
def test_params_section_names_match_as_rcl_does(key, node, applies, tmp_path):
    from liquid_control.ros.params_file import unmatched_sections

    params = tmp_path / "p.yaml"
    params.write_text(f"{key}:\n  ros__parameters:\n    rate_hz: 50.0\n")
    assert (unmatched_sections([str(params)], node) == []) == applies
