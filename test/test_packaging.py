"""The package builds as a ROS 2 ament_python package and the top level imports without heavy deps."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_colcon_build_installs_executables_and_share(tmp_path):
    colcon = Path(sys.executable).with_name("colcon")
    src = tmp_path / "ws" / "src" / "liquid_control"
    src.mkdir(parents=True)
    # Build from what git tracks (plus untracked, not ignored files): what a fresh clone holds.
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    proc = subprocess.run([str(colcon), "build"], cwd=tmp_path / "ws", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    install = tmp_path / "ws" / "install" / "liquid_control"
    for exe in ("liquid-control", "controller", "sim_bridge"):
        assert (install / "lib" / "liquid_control" / exe).exists(), exe
    share = install / "share" / "liquid_control"
    assert (share / "package.xml").exists()
    assert (share / "config" / "robots" / "cartpole.yaml").exists()
    assert (tmp_path / "ws" / "install" / "share" / "ament_index" / "resource_index" / "packages" / "liquid_control").exists() \
        or (install / "share" / "ament_index" / "resource_index" / "packages" / "liquid_control").exists()


def test_top_level_import_needs_no_torch_mujoco_or_rclpy():
    code = ("import sys, liquid_control, liquid_control.core.observation, liquid_control.core.spec;"
            "heavy = [m for m in ('torch', 'mujoco', 'rclpy', 'gymnasium') if m in sys.modules];"
            "assert not heavy, heavy; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_cli_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "liquid_control.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("info", "export", "run", "sim", "demo", "train", "eval", "replay", "play", "record", "bench"):
        assert name in out.stdout


def test_readme_spec_example_parses():
    import yaml

    from liquid_control.core.spec import parse_spec

    block = (ROOT / "README.md").read_text().split("```yaml\n")[1].split("```")[0]
    spec = parse_spec(yaml.safe_load(block))
    assert (spec.obs_size, spec.action_size) == (9, 2)  # 2 angles as cos, sin + 3 gyro + 2 goal


# ------------------------------------------------------------------ dependencies: rosdep, pip extras, floors
def _setup_kwargs(monkeypatch) -> dict:
    """The keyword arguments setup.py passes to setuptools.setup (run with setup() captured)."""
    import runpy

    import setuptools

    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(ROOT)  # setup.py lists data files relative to the source folder
    runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return captured


def _requirements(kw: dict) -> list:
    from packaging.requirements import Requirement

    return [Requirement(r) for r in kw["install_requires"] + [r for rs in kw["extras_require"].values() for r in rs]]


def _package_xml_keys() -> list[str]:
    import xml.etree.ElementTree as ET

    return [e.text.strip() for e in ET.parse(ROOT / "package.xml").getroot() if e.tag.endswith("depend")]


def test_package_xml_keys_resolve_in_rosdistro():
    """Every <*depend> key is a ROS package released in each supported distro or a rosdep key of rosdistro
    (test/rosdep_keys.yaml: a snapshot of ros/rosdistro written by rosdep/snapshot.py), or a key that our own
    rosdep/liquid_control.yaml defines because rosdistro has none."""
    import yaml

    snap = yaml.safe_load((ROOT / "test" / "rosdep_keys.yaml").read_text())
    ours = yaml.safe_load((ROOT / "rosdep" / "liquid_control.yaml").read_text())
    keys = _package_xml_keys()
    assert len(keys) == len(set(keys)), "a key is listed twice"
    known = set(snap["ros_packages"]) | set(snap["rosdep"]) | set(snap["not_in_rosdistro"])
    unknown = sorted(set(keys) - known)
    assert not unknown, f"{unknown} not in test/rosdep_keys.yaml: regenerate it (rosdep/snapshot.py) after checking rosdistro"
    assert set(snap["not_in_rosdistro"]) <= set(ours), "a key rosdistro lacks must be defined in rosdep/liquid_control.yaml"
    assert not set(ours) & (set(snap["rosdep"]) | set(snap["ros_packages"])), "our rosdep file must not shadow rosdistro"
    for key, rule in ours.items():
        for os_name in ("debian", "ubuntu"):
            assert rule[os_name]["pip"]["packages"], (key, os_name)


def test_rosdep_pip_keys_install_what_setup_py_declares(monkeypatch):
    """A `*-pip` key installs a PyPI package: it must be one setup.py declares (same name)."""
    import yaml

    snap = yaml.safe_load((ROOT / "test" / "rosdep_keys.yaml").read_text())
    ours = yaml.safe_load((ROOT / "rosdep" / "liquid_control.yaml").read_text())
    declared = {r.name.lower() for r in _requirements(_setup_kwargs(monkeypatch))}
    pip_keys = {k: v["ubuntu"] for k, v in snap["rosdep"].items() if k.endswith("-pip")}
    pip_keys.update({k: v["ubuntu"] for k, v in ours.items()})
    for key, rule in pip_keys.items():
        rule = rule.get("*", rule)  # per-release rules: the default one
        for name in rule["pip"]["packages"]:
            assert name.lower() in declared, f"{key} installs {name}, which setup.py does not declare"


def test_license_is_the_declared_apache_2(monkeypatch):
    import xml.etree.ElementTree as ET

    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert ET.parse(ROOT / "package.xml").getroot().findtext("license") == "Apache-2.0"
    assert _setup_kwargs(monkeypatch)["license"] == "Apache-2.0"


def test_min_requirements_are_setup_py_floors(monkeypatch):
    """requirements/min.txt (`make test-min`) pins exactly the lowest version setup.py allows, for each of
    its packages; and a library whose internals we use (rosbags) has an upper bound."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    reqs = _requirements(_setup_kwargs(monkeypatch))
    lines = [ln.strip() for ln in (ROOT / "requirements" / "min.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    pins = {Requirement(ln).name.lower(): Version(str(Requirement(ln).specifier).removeprefix("==")) for ln in lines}
    assert {"numpy", "onnx", "onnxruntime", "gymnasium", "mujoco", "rosbags"} <= set(pins)
    for name, version in pins.items():
        floors = {Version(s.version) for r in reqs if r.name.lower() == name for s in r.specifier if s.operator == ">="}
        assert floors == {version}, f"{name}: min.txt pins {version}, setup.py's floors are {floors or 'none'}"
    for r in reqs:
        if r.name == "rosbags":
            assert any(s.operator == "<" for s in r.specifier), f"{r}: rosbags internals are used, pin an upper bound"


# ------------------------------------------------------------------ the train extra needs no ncps
@pytest.mark.parametrize("units, output_dim, inputs", [(10, None, 4), (6, 2, 3), (1, None, 1)])
def test_dense_wiring_draws_as_ncps_fully_connected(units, output_dim, inputs):
    import numpy as np
    from ncps.wirings import FullyConnected

    from liquid_control.learning.dense_wiring import DenseWiring

    ours, theirs = DenseWiring(units, output_dim), FullyConnected(units, output_dim)
    ours.build(inputs)
    theirs.build(inputs)
    assert (ours.units, ours.output_dim, ours.input_dim) == (theirs.units, theirs.output_dim, theirs.input_dim)
    np.testing.assert_array_equal(ours.adjacency_matrix, theirs.adjacency_matrix)
    np.testing.assert_array_equal(ours.sensory_adjacency_matrix, theirs.sensory_adjacency_matrix)
    np.testing.assert_array_equal(ours.erev_initializer(), theirs.erev_initializer())


def test_cells_and_training_need_ncps_only_for_ncp_wirings():
    """With ncps unimportable (the `train` extra alone): fully connected CfC and LTC cells build and step,
    and --wiring ncp is one error naming the `ncps` extra."""
    code = """
import sys
sys.modules["ncps"] = None  # as if not installed
import torch
from liquid_control.learning import cells, ppo
from liquid_control.learning.errors import TrainingError
for cell in (cells.CfC(5, 8, proj_size=2), cells.LTC(5, 8, proj_size=2)):
    y, h = cell.step(torch.zeros(3, 5), torch.zeros(3, cell.state_size), torch.full((3, 1), 0.04))
    assert y.shape == (3, 2), y.shape
try:
    ppo.build_cell(ppo.PPOConfig(wiring="ncp", units=12), 5, 2)
except TrainingError as exc:
    assert "liquid_control[ncps]" in str(exc), exc
    print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
