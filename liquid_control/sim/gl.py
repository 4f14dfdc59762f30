"""The OpenGL backend MuJoCo renders offscreen with, chosen the first time a frame is needed.

Nothing here runs at import: the env, the sim bridge and the demo never render, so they never need GL.
The first renderer asks `backend()`, which takes, in order:

1. the user's `MUJOCO_GL` (egl | osmesa | glfw | glx), as set before the process started;
2. `egl` if an EGL context can be made (GPU drivers, or Mesa's software EGL);
3. `osmesa` (Debian: libosmesa6).

Each candidate is tried in a child process: PyOpenGL binds its platform once per process, so a failed
attempt here could not be undone. The choice is cached and written to `MUJOCO_GL`, so child processes
(the sim bridge's video, say) import mujoco with it directly. If none works, RenderError says how to
fix it in one line.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

from liquid_control.core.errors import LiquidControlError

CANDIDATES = ("egl", "osmesa")
CHOICES = ("egl", "osmesa", "glfw", "glx")
FIX = "install libosmesa6 (Debian/Ubuntu: apt-get install libosmesa6) or set MUJOCO_GL=egl|osmesa|glfw|glx"

# MUJOCO_GL as the process started, before backend() wrote its choice into the environment.
_USER_CHOICE = os.environ.get("MUJOCO_GL", "").strip().lower()
_chosen: str | None = None
_failure: str | None = None

_PROBE = """
import os, sys
os.environ["MUJOCO_GL"] = sys.argv[1]
import importlib
ctx = importlib.import_module("mujoco." + sys.argv[1]).GLContext(8, 8)
ctx.make_current()
ctx.free()
"""


class RenderError(LiquidControlError):
    """Offscreen rendering or video writing is not possible here (the message says why)."""


def probe(name: str, timeout: float = 60.0) -> str | None:
    """None if an offscreen context of backend `name` can be made here, else the last line of why not."""
    try:
        run = subprocess.run([sys.executable, "-c", _PROBE, name], capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "MUJOCO_GL": name, "PYOPENGL_PLATFORM": ""})
    except subprocess.TimeoutExpired:
        return f"no context within {timeout:.0f} s"
    if run.returncode == 0:
        return None
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit code {run.returncode}"


def backend() -> str:
    """The backend to render with (see the module doc); RenderError with the fix if none works."""
    global _chosen, _failure
    if _chosen is not None:
        return _chosen
    if _failure is not None:
        raise RenderError(_failure)
    if _USER_CHOICE:
        if _USER_CHOICE not in CHOICES:
            _failure = f"MUJOCO_GL={_USER_CHOICE!r} is not a backend; use one of {', '.join(CHOICES)}"
            raise RenderError(_failure)
        tried = [_USER_CHOICE]
    else:
        tried = list(CANDIDATES)
    reasons = []
    for name in tried:
        why = probe(name)
        if why is None:
            _chosen = name
            os.environ["MUJOCO_GL"] = name
            return name
        reasons.append(f"{name}: {why}")
    _failure = f"no offscreen OpenGL here ({'; '.join(reasons)}): {FIX}"
    raise RenderError(_failure)


def make_context(width: int, height: int):
    """A current offscreen GL context of the chosen backend (mujoco's own context classes)."""
    name = backend()
    try:
        context = importlib.import_module(f"mujoco.{name}").GLContext(width, height)
        context.make_current()
    except Exception as exc:  # e.g. PYOPENGL_PLATFORM bound to another platform earlier in this process
        raise RenderError(f"cannot create an offscreen {name} context: {exc}; {FIX}") from None
    return context
