"""Random but well-formed cellmath configs and parameters, for tests and benchmarks.

Values follow the initialisations ncps uses (LTC: sigma 3..8, mu 0.3..0.8, cm ~0.5, reversal potentials
+-1, optional sparse wiring masks; CfC: Xavier-like weights), so rollouts stay in the ranges trained
models live in. Everything is seeded.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from liquid_control.core.cellmath import Params


def cfc_cfg(input_size: int = 17, state_size: int = 64, output_size: int = 6, *, mode: str = "default",
            activation: str = "lecun_tanh", backbone_layers: int = 1, layers: list[int] | None = None,
            proj: bool | None = None) -> dict[str, Any]:
    """A CfC config. `layers` (sizes summing to state_size) makes a wired stack without backbones,
    as ncps's WiredCfCCell; otherwise one fully connected layer with `backbone_layers` backbones."""
    if layers is None:
        specs = [{"size": state_size, "backbone": backbone_layers}]
    else:
        specs = [{"size": n, "backbone": 0} for n in layers]
    out = specs[-1]["size"]
    if proj is None:
        proj = out != output_size
    return {"cell": "cfc", "input_size": input_size, "state_size": state_size, "output_size": output_size,
            "cfc": {"mode": mode, "activation": activation, "layers": specs}, "proj": bool(proj)}


def ltc_cfg(input_size: int = 17, state_size: int = 64, output_size: int = 6, *, motor_size: int | None = None,
            ode_unfolds: int = 6, epsilon: float = 1e-8, proj: bool | None = None) -> dict[str, Any]:
    motor = state_size if motor_size is None else motor_size
    if proj is None:
        proj = motor != output_size
    return {"cell": "ltc", "input_size": input_size, "state_size": state_size, "output_size": output_size,
            "ltc": {"motor_size": motor, "ode_unfolds": ode_unfolds, "epsilon": epsilon}, "proj": bool(proj)}


def _linear(rng: np.random.Generator, out: int, inp: int) -> tuple[np.ndarray, np.ndarray]:
    bound = np.sqrt(6.0 / (inp + out))
    return rng.uniform(-bound, bound, (out, inp)), rng.uniform(-0.1, 0.1, out)


def random_params(cfg: dict[str, Any], seed: int = 0, *, backbone_units: int = 128,
                  sparsity: float = 0.0) -> Params:
    """Random parameters for `cfg`. `sparsity` (0..1) zeroes that share of LTC synapses (and of CfC head
    weights of wired stacks), like an NCP mask; masked weights are stored as zeros, as exports do."""
    rng = np.random.default_rng(seed)
    I, N, A = cfg["input_size"], cfg["state_size"], cfg["output_size"]
    p: dict[str, np.ndarray] = {"obs_mean": rng.normal(0.0, 0.5, I), "obs_std": rng.uniform(0.5, 2.0, I)}

    def mask(shape: tuple[int, ...]) -> np.ndarray:
        return (rng.random(shape) >= sparsity).astype(float)

    if cfg["cell"] == "cfc":
        c, inp = cfg["cfc"], I
        for layer, spec in enumerate(c["layers"]):
            pre, n, width = f"cfc{layer}.", spec["size"], inp + spec["size"]
            for j in range(spec["backbone"]):
                p[f"{pre}bb{j}.W"], p[f"{pre}bb{j}.b"] = _linear(rng, backbone_units, width)
                width = backbone_units
            if c["mode"] == "pure":
                p[f"{pre}ff1.W"], p[f"{pre}ff1.b"] = _linear(rng, n, width)
                p[f"{pre}w_tau"] = np.abs(rng.normal(0.0, 1.0, n))
                p[f"{pre}A"] = rng.normal(0.0, 1.0, n)
            else:
                w, b = _linear(rng, 4 * n, width)
                if spec["backbone"] == 0 and sparsity > 0:
                    w[: 2 * n] *= mask((2 * n, width))  # ncps masks ff1/ff2 only
                p[f"{pre}heads.W"], p[f"{pre}heads.b"] = w, b
            inp = n
        out = inp
    else:
        M = cfg["ltc"]["motor_size"]
        p["ltc.input_w"], p["ltc.input_b"] = rng.uniform(0.5, 1.5, I), rng.uniform(-0.2, 0.2, I)
        for pre, rows in (("ltc.sensory_", I), ("ltc.", N)):
            w = rng.uniform(0.001, 1.0, (rows, N)) * mask((rows, N))
            erev = rng.choice([-1.0, 1.0], (rows, N))
            p[pre + "mu"], p[pre + "sigma"] = rng.uniform(0.3, 0.8, (rows, N)), rng.uniform(3.0, 8.0, (rows, N))
            p[pre + "W"], p[pre + "Werev"] = w, w * erev
        p["ltc.cm"], p["ltc.gleak"] = rng.uniform(0.4, 0.6, N), rng.uniform(0.001, 1.0, N)
        p["ltc.vleak"] = rng.uniform(-0.2, 0.2, N)
        p["ltc.output_w"], p["ltc.output_b"] = rng.uniform(0.5, 1.5, M), rng.uniform(-0.1, 0.1, M)
        out = M
    if cfg.get("proj"):
        p["proj.W"], p["proj.b"] = _linear(rng, A, out)
    return {k: np.asarray(v, dtype=np.float32) for k, v in p.items()}


def random_rollout_inputs(cfg: dict[str, Any], steps: int, seed: int = 0, *, dt_range: tuple[float, float] = (0.01, 0.5)
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Observations (steps, I) float32 and irregular dts (steps,) for rollout comparisons."""
    rng = np.random.default_rng(seed + 1000)
    obs = rng.normal(0.0, 1.5, (steps, cfg["input_size"])).astype(np.float32)
    dt = rng.uniform(*dt_range, steps).astype(np.float32)
    return obs, dt
