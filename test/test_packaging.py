"""The package builds as a ROS 2 ament_python package and the top level imports without heavy deps."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
