"""Fuzzing params files: generated sections (known names with values of every type, NaN and inf, huge
lists, typos, unknown names) and mangled YAML text. The checks before rcl must return one line or None and
never raise; a real controller started on such a file must exit 0, 1 or 2 with no traceback, or run."""
import signal

import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from fuzz_settings import fuzz
from liquid_control.ros.controller.params import PARAMS, check_param
from liquid_control.ros.params_file import check_files, unknown_parameters

from ros_helpers import NodeProcess, console_script

values = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10), st.sampled_from(["", "bad topic!", "/dev/zero", "zero", "hold", "events", "single"]),
    st.lists(st.floats(-10, 10), max_size=5), st.lists(st.floats(allow_nan=True), min_size=1, max_size=3),
    st.lists(st.integers(), max_size=3), st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
)
names = st.one_of(st.sampled_from(sorted(PARAMS)), st.sampled_from(["sensor_timout", "ratehz", "estop", "x.y"]))


@st.composite
def params_text(draw) -> str:
    section = draw(st.sampled_from(["liquid_controller", "/liquid_controller", "/**", "other_node"]))
    params = draw(st.dictionaries(names, values, max_size=5))
    text = yaml.safe_dump({section: {"ros__parameters": params}}, allow_unicode=True)
    if draw(st.booleans()):  # and sometimes mangled as text
        data = bytearray(text.encode())
        for _ in range(draw(st.integers(1, 3))):
            if not data:
                break
            i = draw(st.integers(0, len(data) - 1))
            data[i:i + 1] = draw(st.sampled_from([b":", b"- ", b"[", b"}", b"&a", b"*a", b"\t", b"'", b""]))
        text = data.decode("utf-8", errors="replace")
    return text


def _check(path) -> str | None:
    problem = check_files([str(path)])
    assert problem is None or (problem and "\n" not in problem)
    return problem


@fuzz(300)
@given(params_text())
def test_params_checks_are_one_line_or_none(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("p") / "params.yaml"
    path.write_text(text)
    if _check(path) is not None:
        event("refused before rcl: one line")
        return
    for line in unknown_parameters([str(path)], "/liquid_controller", list(PARAMS)):
        assert "\n" not in line
    data = yaml.safe_load(text) or {}
    body = next(iter(data.values()), {}) if isinstance(data, dict) else {}
    params = body.get("ros__parameters", {}) if isinstance(body, dict) else {}
    for name, value in (params.items() if isinstance(params, dict) else ()):
        if name in PARAMS and value is not None:
            try:
                problem = check_param(name, value)
            except TypeError:  # a value of another type than the parameter's: rclpy refuses it first
                problem = "type"
            assert problem is None or "\n" not in problem
    event("passed the checks")


@fuzz(4, 60)
@given(params_text())
def test_the_node_on_generated_params_exits_cleanly_or_runs(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("node")
    path = folder / "params.yaml"
    path.write_text(text)
    argv = console_script("controller", "--ros-args", "--params-file", str(path), "-p", "autostart:=true")
    with NodeProcess(argv, name="controller", log_dir=folder) as node:
        try:
            code = node.proc.wait(8.0)
            event(f"exited {code}")
        except Exception:  # still running: configured and active (or waiting); it must stop cleanly
            node.proc.send_signal(signal.SIGINT)
            code = node.wait_exit(20.0)
            event("ran, stopped by SIGINT")
        out = node.output()
    assert code in (0, 1, 2), out[-2000:]
    assert "Traceback" not in out, out[-3000:]
