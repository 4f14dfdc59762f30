"""Offscreen rendering: the GL backend is chosen only when a frame is needed, our FrameRenderer draws what
mujoco.Renderer draws, and a machine without a working backend gets one line naming the fix."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, cwd=REPO)


def test_sim_and_bridge_work_without_loading_opengl():
    # MUJOCO_GL unset, as on a fresh machine: making and stepping an env, and loading the bridge module,
    # must not bind any GL library (a machine without OSMesa and EGL runs them all the same).
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    run = subprocess.run([sys.executable, "-c", """
import sys, gymnasium as gym, liquid_control.sim, liquid_control.ros.sim_bridge
env = gym.make("liquid_control/CartPole-v0"); env.reset(seed=0); env.step(env.action_space.sample())
print(sorted(m for m in sys.modules if m.split(".")[0] == "OpenGL" or m in ("mujoco.egl", "mujoco.osmesa")))
"""], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
    assert "MUJOCO_GL" not in run.stderr


def test_frames_equal_mujoco_renderers(offscreen_gl):
    # mujoco.Renderer takes the backend from MUJOCO_GL at import: a child with the chosen one set draws with
    # both, from a named camera and from the free camera (camera=-1: mjv_defaultFreeCamera, as ours).
    run = _python("""
import mujoco, numpy as np
from liquid_control.core.resources import share_dir
from liquid_control.sim.render import FrameRenderer
model = mujoco.MjModel.from_xml_path(str(share_dir() / "sim" / "reacher.xml"))
data = mujoco.MjData(model)
data.qpos[:] = [0.7, -1.1] + [0.0] * (model.nq - 2)
mujoco.mj_forward(model, data)
for camera in (None, "top"):
    ours = FrameRenderer(model, width=96, height=64, camera=camera)
    theirs = mujoco.Renderer(model, height=64, width=96)
    theirs.update_scene(data, camera=-1 if camera is None else camera)
    a, b = ours.render(data), theirs.render()
    assert a.shape == b.shape == (64, 96, 3), (a.shape, b.shape)
    assert a.std() > 5, "blank frame"
    np.testing.assert_array_equal(a, b)
    ours.close(); theirs.close()
print("ok")
""", MUJOCO_GL=offscreen_gl)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]


@pytest.mark.parametrize("choice, message", [
    ("vulkan", "invalid value for environment variable MUJOCO_GL: vulkan"),  # mujoco's own check, at import
    ("glx", "no offscreen OpenGL here (glx: "),  # a valid backend that needs a display: none here
])
def test_a_backend_that_cannot_work_is_one_line(choice, message, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    run = subprocess.run([sys.executable, "-m", "liquid_control.cli", "eval", "--robot", "reacher", "--episodes", "1",
                          "--video", str(tmp_path / "v.gif")], capture_output=True, text=True, timeout=120,
                         env={**env, "MUJOCO_GL": choice}, cwd=REPO)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], run.stderr[-3000:]


def _gl_libraries() -> list[str]:
    lib = Path("/usr/lib") / f"{os.uname().machine}-linux-gnu"
    return [str(p) for pattern in ("libOSMesa.so*", "libEGL*.so*") for p in lib.glob(pattern) if not p.is_symlink()]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="hiding the GL libraries needs root and unshare (CI runs as root)")
def test_without_osmesa_and_egl_a_video_fails_in_one_line(tmp_path):
    # A fresh machine: OSMesa and EGL libraries replaced by empty files in a private mount namespace.
    hide = "; ".join(f"mount --bind /dev/null {path}" for path in _gl_libraries())
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    cli = f"{sys.executable} -m liquid_control.cli"
    run = subprocess.run(["unshare", "-m", "sh", "-c",
                          f"{hide or 'true'}; {cli} eval --robot reacher --episodes 1 --video {tmp_path / 'v.gif'}"],
                         capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
    assert run.returncode != 0, run.stdout
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if "no offscreen OpenGL here" in line]
    assert len(errors) == 1 and "apt-get install libosmesa6" in errors[0], run.stderr[-3000:]
