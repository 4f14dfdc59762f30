"""The torch runtime backend: runs an artifact's canonical params through our torch cells.

Loaded by name by the core Policy for backend="torch" (the core layer itself never imports torch).
Thread count is left to torch's defaults on purpose: a process that set it wants it kept.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from liquid_control.core import cellmath
from liquid_control.learning.cell_params import from_params


class TorchBackend:
    """step(obs (I,), dt seconds, h (N,)) -> (action (A,), h_new (N,)), float32, observation normalisation
    included. The artifact's time scale (cfg "dt_scale") is applied by the module `from_params` builds."""

    name = "torch"

    def __init__(self, artifact: Any):
        self.cfg, self.params = artifact.cfg, artifact.params
        self.module = from_params(self.cfg, self.params).eval()
        assert self.module.dt_scale == cellmath.dt_scale(self.cfg)  # from_params carries the time scale
        for p in self.module.parameters():
            p.requires_grad_(False)

    def step(self, obs: np.ndarray, dt: float, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The same normalisation (and clip) as the reference, in float32.
        x = cellmath.normalise(self.params, np.asarray(obs, dtype=np.float32))
        with torch.no_grad():
            y, h_new = self.module.step(torch.tensor(x, dtype=torch.float32).view(1, -1),
                                        torch.tensor(h, dtype=torch.float32).view(1, -1),
                                        torch.tensor([[dt]], dtype=torch.float32))
        return y[0].numpy(), h_new[0].numpy()
