"""Offscreen rendering of a MuJoCo model to frames, PNG, GIF and MP4.

Headless machines render with MUJOCO_GL=osmesa (Debian: libosmesa6), set by liquid_control.sim when no
display is present; it must be chosen before mujoco is imported. PNG and GIF are written with Pillow; MP4
needs the imageio-ffmpeg package, and without it write_video says so and names the GIF alternative.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import mujoco
import numpy as np

from liquid_control.core.errors import LiquidControlError


class RenderError(LiquidControlError):
    """Offscreen rendering or video writing is not possible here (the message says why)."""


class FrameRenderer:
    """RGB frames of (model, data) from a named MJCF camera, or a free camera looking at the model's centre."""

    def __init__(self, model: mujoco.MjModel, width: int = 480, height: int = 480, camera: str | None = None):
        # The offscreen buffer is sized by the model; grow it (never shrink) to the requested frame.
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        try:
            self._renderer = mujoco.Renderer(model, height=height, width=width)
        except Exception as exc:  # no GL: osmesa/egl missing, or MUJOCO_GL set after mujoco was imported
            import os

            raise RenderError(f"cannot create an offscreen GL context (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): "
                              f"{exc}; on Debian/Ubuntu install libosmesa6 and set MUJOCO_GL=osmesa") from None
        if camera is not None and mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            raise RenderError(f"the MuJoCo model has no camera named {camera!r}")
        self.camera: str | mujoco.MjvCamera
        if camera is not None:
            self.camera = camera
        else:
            cam = mujoco.MjvCamera()
            mujoco.mjv_defaultFreeCamera(model, cam)
            self.camera = cam

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """One (height, width, 3) uint8 frame of the current state."""
        self._renderer.update_scene(data, camera=self.camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        self._renderer.close()


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
