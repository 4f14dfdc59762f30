"""The launch files: launch_ros is not installable here, so check what can be checked without it —
they compile, define generate_launch_description(), declare the arguments robot, model and use_sim_time,
start the executables setup.py installs, and point at params files that exist for every robot."""
import ast
import py_compile
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = sorted((REPO / "launch").glob("*.launch.py"))


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _kw(call: ast.Call, key: str):
    return next((ast.literal_eval(k.value) for k in call.keywords if k.arg == key), None)


def test_both_launch_files_exist():
    assert {p.name for p in LAUNCH} >= {"controller.launch.py", "sim.launch.py"}


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_file_compiles_and_has_the_standard_form(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)
    tree = ast.parse(path.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    declared = {ast.literal_eval(c.args[0]) for c in _calls(tree, "DeclareLaunchArgument")}
    assert {"robot", "model", "use_sim_time"} <= declared
    setup = (REPO / "setup.py").read_text()
    for call in _calls(tree, "LifecycleNode") + _calls(tree, "Node"):
        assert _kw(call, "package") == "liquid_control"
        exe = _kw(call, "executable")
        assert re.search(rf'"{exe} = liquid_control\.[\w.]+:main"', setup), f"{exe} is not a console script"


def test_controller_launch_loads_the_params_yaml_of_each_robot():
    tree = ast.parse((REPO / "launch" / "controller.launch.py").read_text())
    node = _calls(tree, "LifecycleNode")[0]
    assert _kw(node, "name") == "liquid_controller" and _kw(node, "executable") == "controller"
    for spec in (REPO / "config" / "robots").glob("*.yaml"):
        params = REPO / "config" / spec.name
        assert params.is_file(), f"no params file config/{spec.name} for robot {spec.stem}"
        text = params.read_text()
        assert "liquid_controller:" in text and "ros__parameters:" in text and f"robot: {spec.stem}" in text
