"""Offscreen rendering of a MuJoCo model to frames, PNG, GIF and MP4.

The GL backend (EGL, OSMesa, or the user's MUJOCO_GL) is chosen by liquid_control.sim.gl when the first
FrameRenderer is made, so code that never renders never needs GL. PNG and GIF are written with Pillow;
MP4 needs the imageio-ffmpeg package, and without it write_video says so and names the GIF alternative.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import mujoco
import numpy as np

from liquid_control.sim.gl import RenderError, make_context

__all__ = ["FrameRenderer", "RenderError", "record_episode", "save_png", "write_video"]


class FrameRenderer:
    """RGB frames of (model, data) from a named MJCF camera, or a free camera looking at the model's centre.

    The steps of mujoco.Renderer (update the scene, render offscreen, read the pixels, flip rows) on a GL
    context of our choosing: mujoco.Renderer takes its context class from MUJOCO_GL as it was when mujoco
    was imported, before any backend was known to work. test_render.py checks the frames are equal.
    """

    def __init__(self, model: mujoco.MjModel, width: int = 480, height: int = 480, camera: str | None = None):
        self.camera = mujoco.MjvCamera()
        if camera is None:
            mujoco.mjv_defaultFreeCamera(model, self.camera)
        else:
            cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            if cam_id < 0:
                raise RenderError(f"the MuJoCo model has no camera named {camera!r}")
            self.camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
            self.camera.fixedcamid = cam_id
        # The offscreen buffer is sized by the model; grow it (never shrink) to the requested frame.
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self._model = model
        self._context = make_context(width, height)
        self._mjr = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._mjr)
        self._scene = mujoco.MjvScene(model, maxgeom=10_000)
        self._option = mujoco.MjvOption()
        self._viewport = mujoco.MjrRect(0, 0, width, height)
        self._pixels = np.empty((height, width, 3), dtype=np.uint8)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """One (height, width, 3) uint8 frame of the current state."""
        self._context.make_current()
        mujoco.mjv_updateScene(self._model, data, self._option, None, self.camera, mujoco.mjtCatBit.mjCAT_ALL,
                               self._scene)
        mujoco.mjr_render(self._viewport, self._scene, self._mjr)
        mujoco.mjr_readPixels(self._pixels, None, self._viewport, self._mjr)
        return np.flipud(self._pixels).copy()  # OpenGL's first row is the bottom one

    def close(self) -> None:
        if self._context is not None:
            self._context.make_current()
            self._mjr.free()
            self._context.free()
            self._context = None


def save_png(frame: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(path, format="PNG")
    return path


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write frames as .gif (Pillow) or .mp4 (imageio with imageio-ffmpeg); the suffix decides."""
    path = Path(path)
    frames = [np.asarray(f, dtype=np.uint8) for f in frames]
    if not frames:
        raise RenderError(f"no frames to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000.0 / fps)), loop=0)
    elif suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401  (imageio's ffmpeg plugin needs it)
            import imageio.v2 as imageio
        except ImportError:
            raise RenderError(f"writing {path.name} needs the imageio-ffmpeg package, which is not installed; "
                              "write a .gif instead") from None
        # macro_block_size=1: frame sizes need not be multiples of 16.
        with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1) as writer:
            for f in frames:
                writer.append_data(f)
    else:
        raise RenderError(f"unsupported video format {suffix!r} for {path}; use .gif or .mp4")
    return path


def record_episode(env, policy: Callable[[np.ndarray], np.ndarray] | None = None, steps: int = 100,
                   seed: int | None = None, every: int = 1) -> list[np.ndarray]:
    """Frames of one episode of a SpecEnv made with render_mode="rgb_array" (random actions if no policy)."""
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    for i in range(steps):
        action = env.action_space.sample() if policy is None else policy(obs)
        obs, _r, terminated, truncated, _info = env.step(action)
        if (i + 1) % every == 0:
            frames.append(env.render())
        if terminated or truncated:
            break
    return frames
