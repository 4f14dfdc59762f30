"""The canonical parameters of a liquid policy and the reference single-step math, in numpy.

This module is the contract between everything that holds a liquid network:
  * the torch cells (learning layer) export their weights into this form (`to_params`),
  * the ncps importer maps ncps modules into it,
  * the ONNX graph builder emits exactly this math,
  * the numpy runtime backend runs an allocation-free version of it.

Parameters are *effective*: masks, softplus/abs constraints and other reparameterisations are
already applied, so a runtime needs no knowledge of how the model was trained.

Config (`cfg`, JSON-able, stored in the artifact metadata):
    {"cell": "cfc" | "ltc", "input_size": I, "state_size": N, "output_size": A,
     "cfc": {"mode": "default"|"pure"|"no_gate", "activation": "lecun_tanh"|"tanh"|"relu"|"silu"|"gelu",
             "layers": [{"size": n_l, "backbone": k_l}, ...]},      # one layer unless wired
     "ltc": {"motor_size": M, "ode_unfolds": U, "epsilon": e},
     "proj": bool,                                                 # a final Linear readout
     "dt_scale": s}                                                # optional, default 1.0 (see below)

Time: `dt` is always the measured time since the previous step in SECONDS. The cells run in the model's
own time unit, which is the second unless the model was trained otherwise (an ncps model trained with
its default timespan of 1.0 per step counts in control ticks). `dt_scale` = model time units per second:
every runtime computes dt_model = dt * dt_scale before the cell math, and nothing else sees the unit.

Params (name -> float32 array):
    obs_mean (I,), obs_std (I,)             input normalisation x = clip((obs - mean) / std, +-obs_clip)
    CfC layer l, prefix f"cfc{l}.":
        bb{j}.W (out, in), bb{j}.b (out,)   backbone j = 0..k_l-1 on cat([x, h_l])
        default / no_gate: heads.W (4 n_l, in), heads.b (4 n_l,)   rows = [ff1; ff2; time_a; time_b]
        pure:              ff1.W (n_l, in), ff1.b (n_l,), w_tau (n_l,) (=|w_tau|), A (n_l,)
        the input of layer l is the new state of layer l-1 (x for l = 0); the cell output is the
        new state of the last layer (all units when fully connected, the motor layer when wired).
    LTC, prefix "ltc.":
        input_w, input_b (I,)               affine input map (ones / zeros when none)
        sensory_mu, sensory_sigma (I, N), sensory_W (I, N) (= positive(w) * mask), sensory_Werev (I, N)
        mu, sigma (N, N), W (N, N), Werev (N, N)
        cm (N,) (positive), gleak (N,) (positive), vleak (N,)
        output_w, output_b (M,)             output = state[:M] * output_w + output_b
    proj.W (A, out), proj.b (A,)            when cfg["proj"]
"""
from __future__ import annotations

from typing import Any

import numpy as np

Params = dict[str, np.ndarray]

OBS_CLIP = 10.0  # normalised observations are clipped like stable-baselines3's VecNormalize


def lecun_tanh(x: np.ndarray) -> np.ndarray:
    return 1.7159 * np.tanh(0.666 * x)


def _gelu(x: np.ndarray) -> np.ndarray:
    from math import erf, sqrt  # exact (erf) GELU, as torch.nn.GELU's default

    return 0.5 * x * (1.0 + np.vectorize(erf)(x / sqrt(2.0)))


ACTIVATIONS = {
    "lecun_tanh": lecun_tanh,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": _gelu,
}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def cfc_layer(p: Params, prefix: str, mode: str, act: str, n_backbone: int,
              x: np.ndarray, h: np.ndarray, dt: np.ndarray) -> np.ndarray:
    z = np.concatenate([x, h], axis=1)
    for j in range(n_backbone):
        z = ACTIVATIONS[act](z @ p[f"{prefix}bb{j}.W"].T + p[f"{prefix}bb{j}.b"])
    if mode == "pure":
        ff1 = z @ p[f"{prefix}ff1.W"].T + p[f"{prefix}ff1.b"]
        a = p[f"{prefix}A"]
        return -a * np.exp(-dt * (p[f"{prefix}w_tau"] + np.abs(ff1))) * ff1 + a
    heads = z @ p[f"{prefix}heads.W"].T + p[f"{prefix}heads.b"]
    ff1, ff2, t_a, t_b = np.split(heads, 4, axis=1)
    ff1, ff2 = np.tanh(ff1), np.tanh(ff2)
    t_interp = sigmoid(t_a * dt + t_b)
    if mode == "no_gate":
        return ff1 + t_interp * ff2
    return ff1 * (1.0 - t_interp) + t_interp * ff2


def ltc_state(p: Params, unfolds: int, epsilon: float, x: np.ndarray, v: np.ndarray, dt: np.ndarray) -> np.ndarray:
    x = x * p["ltc.input_w"] + p["ltc.input_b"]
    s_sig = sigmoid((x[:, :, None] - p["ltc.sensory_mu"]) * p["ltc.sensory_sigma"])
    num_s, den_s = (p["ltc.sensory_Werev"] * s_sig).sum(axis=1), (p["ltc.sensory_W"] * s_sig).sum(axis=1)
    cm_t = p["ltc.cm"] / (dt / unfolds)
    gleak = p["ltc.gleak"]
    for _ in range(unfolds):
        sig = sigmoid((v[:, :, None] - p["ltc.mu"]) * p["ltc.sigma"])
        num = cm_t * v + gleak * p["ltc.vleak"] + (p["ltc.Werev"] * sig).sum(axis=1) + num_s
        den = cm_t + gleak + (p["ltc.W"] * sig).sum(axis=1) + den_s
        v = num / (den + epsilon)
    return v


def normalise(p: Params, obs: np.ndarray) -> np.ndarray:
    return np.clip((obs - p["obs_mean"]) / p["obs_std"], -OBS_CLIP, OBS_CLIP)


def dt_scale(cfg: dict[str, Any]) -> float:
    """Model time units per second (1.0 when the config does not say)."""
    return float(cfg.get("dt_scale", 1.0))


def step(cfg: dict[str, Any], p: Params, obs: np.ndarray, h: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference step. obs (B, I), h (B, N), dt (B, 1) seconds -> action (B, A), new h (B, N). float64 inside."""
    x = normalise(p, obs)
    dt = dt * dt_scale(cfg)  # seconds -> the model's time unit
    if cfg["cell"] == "cfc":
        c = cfg["cfc"]
        new_h, start, inp = [], 0, x
        for layer, spec in enumerate(c["layers"]):
            n = spec["size"]
            inp = cfc_layer(p, f"cfc{layer}.", c["mode"], c["activation"], spec["backbone"],
                            inp, h[:, start:start + n], dt)
            new_h.append(inp)
            start += n
        h_out = np.concatenate(new_h, axis=1)
        y = inp
    elif cfg["cell"] == "ltc":
        c = cfg["ltc"]
        h_out = ltc_state(p, c["ode_unfolds"], c["epsilon"], x, h, dt)
        y = h_out[:, : c["motor_size"]] * p["ltc.output_w"] + p["ltc.output_b"]
    else:
        raise ValueError(f"unknown cell {cfg['cell']!r}")
    if cfg.get("proj"):
        y = y @ p["proj.W"].T + p["proj.b"]
    return y, h_out
