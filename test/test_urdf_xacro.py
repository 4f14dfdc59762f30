"""A xacro URDF (sim.urdf: NAME.urdf.xacro) is expanded by xacro before MuJoCo compiles it, with the spec's
sim.xacro_args: test/data/arm3.urdf.xacro is sim/arm3.urdf written with macros and a `prefix` argument, the
way ros2_control's demo robots are written."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from liquid_control.core.errors import SpecError
from liquid_control.core.resources import robot_spec_path
from liquid_control.core.spec import parse_spec
from liquid_control.sim.env import SpecEnv

XACRO = Path(__file__).parent / "data" / "arm3.urdf.xacro"


@pytest.fixture(scope="module")
def arm3():
    path = robot_spec_path("arm3")
    return path, yaml.safe_load(path.read_text())


def _spec(arm3, **sim):
    path, doc = arm3
    doc = copy.deepcopy(doc)
    doc["sim"].update(urdf=str(XACRO), **sim)
    return parse_spec(doc, source=path)


def test_expanded_with_its_defaults_it_is_the_urdf(arm3):
    ours, theirs = SpecEnv(_spec(arm3)), SpecEnv("arm3")
    a, b = ours.model, theirs.model
    for field in ("body_mass", "body_inertia", "body_pos", "jnt_range", "dof_damping", "actuator_ctrlrange",
                  "actuator_gainprm", "actuator_biasprm", "actuator_forcerange", "geom_size"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert [a.joint(i).name for i in range(a.njnt)] == [b.joint(i).name for i in range(b.njnt)]
    ours.close()
    theirs.close()


def test_xacro_args_reach_the_file(arm3):
    """prefix:=left_ renames the joints, so a spec must name them so: the URDF's names are the spec's."""
    with pytest.raises(SpecError, match="'joint1'; did you mean 'left_joint1'"):
        SpecEnv(_spec(arm3, xacro_args={"prefix": "left_"}))
    path, doc = arm3
    doc = copy.deepcopy(doc)
    names = [f"left_{n}" for n in doc["action"]["names"]]
    doc["action"]["names"] = names
    for entry in doc["observation"]:
        if entry.get("joints"):
            entry["joints"] = [f"left_{j}" for j in entry["joints"]]
    doc["sim"].update(urdf=str(XACRO), xacro_args={"prefix": "left_"})
    drives = doc["sim"].get("drives", {})
    doc["sim"]["drives"] = {k if k == "default" else f"left_{k}": v for k, v in drives.items()}
    env = SpecEnv(parse_spec(doc, source=path))
    assert [env.model.actuator(i).name for i in range(env.model.nu)] == names
    env.close()


@pytest.mark.parametrize("xacro_args, message", [
    ({"prefix": ["a"]}, "sim.xacro_args.prefix: expected a string"),
    ("prefix:=a", "sim.xacro_args: expected a mapping"),
])
def test_bad_xacro_args_are_one_line(arm3, xacro_args, message):
    with pytest.raises(SpecError, match=message) as info:
        SpecEnv(_spec(arm3, xacro_args=xacro_args))
    assert "\n" not in str(info.value)


def test_a_broken_xacro_is_one_line_naming_the_file(arm3, tmp_path):
    broken = tmp_path / "broken.urdf.xacro"
    broken.write_text(XACRO.read_text().replace('length="0.2"', 'length="${undefined_length}"'))
    with pytest.raises(SpecError, match=f"URDF {broken}: xacro failed: .*undefined_length") as info:
        SpecEnv(parse_spec({**arm3[1], "sim": {**arm3[1]["sim"], "urdf": str(broken)}}, source=arm3[0]))
    assert "\n" not in str(info.value)


def test_without_the_xacro_module_the_error_says_what_to_install():
    code = ("import sys; sys.modules['xacro'] = None\n"
            "from liquid_control.sim.urdf import _expand_xacro\n"
            "from liquid_control.core.errors import SpecError\n"
            f"try:\n    _expand_xacro(__import__('pathlib').Path({str(XACRO)!r}), {{}})\n"
            "except SpecError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "needs the Python module 'xacro'" in out and "rosdep key xacro" in out
