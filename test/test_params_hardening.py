"""Params files that lie: huge, not files, typo'd names, bad topic names, huge arrays. Each is one line
(or one WARN for a parameter the node does not have), fast, never a traceback."""
import os
import time

import pytest

from liquid_control.ros.controller.params import MAX_ACTUATORS, PARAMS, check_param
from liquid_control.ros.params_file import check_files, unknown_parameters

from ros_helpers import NodeProcess, console_script


def test_files_that_are_no_params_files_are_refused_before_parsing(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("liquid_controller:\n  ros__parameters:\n    command_lower: [" + ", ".join(["-1.0"] * 100_000) + "]\n")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    start = time.perf_counter()
    assert "is larger than 256 KiB" in check_files([str(big)])
    assert "is not a regular file" in check_files([str(fifo)])
    assert "is not a regular file" in check_files(["/dev/zero"])
    assert "is a directory" in check_files([str(tmp_path)])
    assert time.perf_counter() - start < 1.0


def test_parameters_the_node_does_not_have_are_named(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("liquid_controller:\n  ros__parameters:\n    sensor_timout: 0.3\n    use_sim_time: false\n"
                 "other_node:\n  ros__parameters:\n    anything: 1\n"
                 "/**:\n  ros__parameters:\n    frobnicate: 2\n    qos_overrides./clock.subscription.depth: 1\n")
    lines = unknown_parameters([str(f)], "/liquid_controller", list(PARAMS))
    assert len(lines) == 2
    assert "unknown parameter 'sensor_timout' is ignored (did you mean 'sensor_timeout'?)" in lines[0]
    assert "section /**: unknown parameter 'frobnicate' is ignored" in lines[1]


@pytest.mark.parametrize("name, value, words", [
    ("estop_topic", "bad topic!", "estop_topic 'bad topic!' is not a valid topic name"),
    ("estop_topic", "", "estop_topic '' is not a valid topic name"),
    ("command_lower", [-1.0] * (MAX_ACTUATORS + 1), f"has {MAX_ACTUATORS + 1} values; at most {MAX_ACTUATORS}"),
    ("command_upper", [1.0, float("nan")], "must be a list of numbers"),
])
def test_bad_values_are_one_line(name, value, words):
    assert words in check_param(name, value)
    assert check_param("estop_topic", "robot1/estop") is None and check_param("command_lower", [-1.0]) is None


def test_node_with_a_bad_topic_name_exits_2_in_one_line(tmp_path):
    argv = console_script("controller", "--ros-args", "-p", "estop_topic:=bad topic!", "-p", "autostart:=true")
    with NodeProcess(argv, name="controller", log_dir=tmp_path) as node:
        assert node.wait_exit(30.0) == 2
        out = node.output()
        assert "is not a valid topic name" in out and "Traceback" not in out
