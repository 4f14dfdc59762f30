"""The policy runtime: load an artifact, keep the hidden state, step it with the measured dt.

    policy = Policy.load("policies/cartpole.onnx", spec=load_spec("cartpole"))
    policy.reset()
    action = policy.step(obs, dt)      # obs (I,), dt seconds since the previous step

Every input is checked before the hidden state is touched: a bad observation or dt raises StepError
naming the problem and leaves the state as it was; so does a non-finite result from the backend (the
caller decides whether to reset). The returned action is a fresh array the caller may keep.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from liquid_control.core.artifact import Artifact, check_spec, read_artifact
from liquid_control.core.backends import make_backend
from liquid_control.core.errors import StepError
from liquid_control.core.spec import RobotSpec

F = np.float32
_F32 = np.dtype(F)


def all_finite(x: np.ndarray, zeros: np.ndarray) -> bool:
    """np.isfinite(x).all() for a float vector, given zeros of its shape and dtype: x . 0 is 0 exactly when
    every element is finite (0 * inf and 0 * nan are NaN, and a product with 0 cannot overflow). One
    BLAS call and no temporary array; Policy.step runs it three times a tick, which bench step and bench
    replay measure. test_policy.py checks it against np.isfinite(x).all()."""
    return x.dot(zeros) == 0.0


def _require_finite(obs: np.ndarray, problem: str) -> None:
    if not np.isfinite(obs).all():
        bad = np.flatnonzero(~np.isfinite(obs))
        raise StepError(f"observation has {problem} at index {bad.tolist()[:8]}")


class Policy:
    """A loaded policy with its hidden state. Create with `Policy.load`."""

    def __init__(self, artifact: Artifact, backend: Any, backend_name: str) -> None:
        self.artifact = artifact
        self.backend_name = backend_name
        self._backend = backend
        self._I, self._N = artifact.obs_size, artifact.state_size
        self._shape = (self._I,)
        self._h = np.zeros(self._N, F)
        self._obs32 = np.empty(self._I, F)  # conversion buffer for observations that are not float32
        self._zeros_obs, self._zeros_h = np.zeros(self._I, F), np.zeros(self._N, F)  # for all_finite
        self._zeros_action = np.zeros(artifact.action_size, F)

    @classmethod
    def load(cls, path: str | Path | Artifact, backend: str = "numpy", spec: RobotSpec | None = None,
             threads: int = 1) -> "Policy":
        """Load an artifact file (or an already read Artifact) on a backend: "numpy" (default, fastest at
        batch 1), "onnxruntime" (runs the file's graph; `threads` intra-op threads) or "torch".
        With `spec`, refuse a model trained for a different robot interface (ArtifactError)."""
        artifact = path if isinstance(path, Artifact) else read_artifact(path)
        if spec is not None:
            check_spec(artifact, spec)
        return cls(artifact, make_backend(backend, artifact, threads=threads), backend)

    # ------------------------------------------------------------------------------------ description
    @property
    def obs_size(self) -> int:
        return self._I

    @property
    def action_size(self) -> int:
        return self.artifact.action_size

    @property
    def state_size(self) -> int:
        return self._N

    @property
    def nominal_period(self) -> float | None:
        return self.artifact.nominal_period

    @property
    def dt_scale(self) -> float:
        """Model time units per second; `step` takes seconds and the backend applies this (1.0: seconds)."""
        return self.artifact.dt_scale

    @property
    def meta(self) -> dict[str, Any]:
        return self.artifact.meta

    @property
    def cfg(self) -> dict[str, Any]:
        return self.artifact.cfg

    # ------------------------------------------------------------------------------------ state
    def reset(self) -> None:
        """Zero the hidden state (the state every training episode starts from)."""
        self._h.fill(0.0)

    @property
    def state(self) -> np.ndarray:
        """A copy of the hidden state (state_size,), float32."""
        return self._h.copy()

    def set_state(self, h: Any) -> None:
        """Restore a hidden state snapshot taken with `state`."""
        arr = np.asarray(h)
        if arr.shape != (self._N,) or arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
            raise StepError(f"state must be {self._N} finite real numbers, got shape {arr.shape} dtype {arr.dtype}")
        self._h[:] = arr

    # ------------------------------------------------------------------------------------ step
    def step(self, obs: Any, dt: float) -> np.ndarray:
        """Advance the hidden state by `dt` seconds with observation `obs`; return the action (A,) float32."""
        if type(obs) is not np.ndarray or obs.dtype is not _F32 or obs.shape != self._shape:
            obs = self._coerce(obs)
        if not all_finite(obs, self._zeros_obs):
            _require_finite(obs, "non-finite values")
        if type(dt) is not float:
            dt = self._as_dt(dt)
        if not (dt > 0.0 and math.isfinite(dt)):
            raise StepError(f"dt must be finite and > 0 seconds, got {dt!r}")
        action, h_new = self._backend.step(obs, dt, self._h)
        if not (all_finite(action, self._zeros_action) and all_finite(h_new, self._zeros_h)):
            raise StepError(f"the {self.backend_name} backend produced a non-finite action or state; "
                            "hidden state left unchanged (reset the policy)")
        self._h[:] = h_new
        return action.copy()

    def _coerce(self, obs: Any) -> np.ndarray:
        """Any observation that is not a float32 vector of the right length: check, convert into a
        preallocated float32 buffer, or raise StepError."""
        if not isinstance(obs, np.ndarray):
            obs = self._as_array(obs)
        if obs.shape != self._shape:
            raise StepError(f"observation has shape {obs.shape}, expected ({self._I},)")
        if obs.dtype.kind not in "fiu":
            raise StepError(f"observation dtype {obs.dtype} is not a real number type")
        _require_finite(obs, "non-finite values")
        out = self._obs32
        # float64 beyond +-3.4e38 becomes inf here (numpy warns once); refused just below
        np.copyto(out, obs, casting="unsafe")
        _require_finite(out, "values beyond the float32 range")
        return out

    @staticmethod
    def _as_array(obs: Any) -> np.ndarray:
        try:
            arr = np.asarray(obs)
        except (TypeError, ValueError) as exc:
            raise StepError(f"observation is not an array of numbers ({exc})") from None
        if arr.dtype.kind not in "fiu":
            raise StepError(f"observation dtype {arr.dtype} is not a real number type")
        return arr

    @staticmethod
    def _as_dt(dt: Any) -> float:
        if isinstance(dt, (bool, np.bool_)) or not isinstance(dt, (int, float, np.integer, np.floating)):
            if not (isinstance(dt, np.ndarray) and dt.size == 1 and dt.dtype.kind in "fiu"):
                raise StepError(f"dt must be a real number of seconds, got {type(dt).__name__}")
        return float(dt)
