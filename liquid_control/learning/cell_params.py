"""A torch CfC / LTC module as the canonical effective parameters of `core.cellmath`, and back.

`to_params` exports a module into (cfg, params) with masks and positivity constraints baked in (what the
artifact stores); `from_params` builds a module computing exactly `cellmath.step` from them (the torch runtime
backend, checkpoints). Both carry `dt_scale`.
"""
from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch
from torch import nn

from liquid_control.core import cellmath
from liquid_control.learning.cells import LTC, CfC, CfCLayer
from liquid_control.learning.dense_wiring import DenseWiring


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def _normalisation(n_inputs: int, obs_mean: Any, obs_std: Any) -> dict[str, np.ndarray]:
    mean = np.zeros(n_inputs, np.float32) if obs_mean is None else np.asarray(obs_mean, np.float32).reshape(-1)
    std = np.ones(n_inputs, np.float32) if obs_std is None else np.asarray(obs_std, np.float32).reshape(-1)
    for name, a in (("obs_mean", mean), ("obs_std", std)):
        if a.shape != (n_inputs,):
            raise ValueError(f"{name} must have {n_inputs} entries (the cell's input size), got {a.shape[0]}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} has non-finite entries")
    if np.any(std <= 0):
        raise ValueError("obs_std must be > 0 everywhere")
    return {"obs_mean": mean, "obs_std": std}


def to_params(module: Union[CfC, LTC], obs_mean: Any = None,
              obs_std: Any = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Export a CfC / LTC module to (cfg, params) exactly as core.cellmath defines them (float32 numpy)."""
    params = _normalisation(module.input_size, obs_mean, obs_std)
    # Plain ints / floats (wirings hand out numpy integers): the config is stored as JSON and checked by type.
    cfg: dict[str, Any] = {"input_size": int(module.input_size), "state_size": int(module.state_size),
                           "output_size": int(module.output_size), "proj": module.proj is not None,
                           "dt_scale": float(module.dt_scale)}
    with torch.no_grad():
        if isinstance(module, CfC):
            specs = []
            for l, layer in enumerate(module.layers):
                bb = [m for m in layer.backbone if isinstance(m, nn.Linear)] if layer.backbone is not None else []
                for j, lin in enumerate(bb):
                    params[f"cfc{l}.bb{j}.W"], params[f"cfc{l}.bb{j}.b"] = _np(lin.weight), _np(lin.bias)
                if module.mode == "pure":
                    params[f"cfc{l}.ff1.W"], params[f"cfc{l}.ff1.b"] = _np(layer.head_weight()), _np(layer.heads.bias)
                    params[f"cfc{l}.w_tau"], params[f"cfc{l}.A"] = _np(layer.w_tau.abs()), _np(layer.A)
                else:
                    params[f"cfc{l}.heads.W"] = _np(layer.head_weight())
                    params[f"cfc{l}.heads.b"] = _np(layer.heads.bias)
                specs.append({"size": int(layer.size), "backbone": len(bb)})
            cfg["cell"] = "cfc"
            cfg["cfc"] = {"mode": module.mode, "activation": module.layers[0].activation, "layers": specs}
        elif isinstance(module, LTC):
            params.update({f"ltc.{k}": _np(v) for k, v in module.effective().items()})
            cfg["cell"] = "ltc"
            cfg["ltc"] = {"motor_size": int(module.motor_size), "ode_unfolds": int(module.ode_unfolds),
                          "epsilon": float(module.epsilon)}
        else:
            raise TypeError(f"to_params takes a liquid_control CfC or LTC module, got {type(module).__name__}")
        if module.proj is not None:
            params["proj.W"], params["proj.b"] = _np(module.proj.weight), _np(module.proj.bias)
    return cfg, params


def _set(param: torch.Tensor, value: np.ndarray) -> None:
    with torch.no_grad():
        # A copy: artifact arrays may be read-only views, which torch.as_tensor warns about.
        param.copy_(torch.tensor(np.array(value, dtype=np.float32)).reshape(param.shape))


def from_params(cfg: dict[str, Any], params: dict[str, np.ndarray]) -> Union[CfC, LTC]:
    """Build a module computing exactly `cellmath.step(cfg, params, ...)` (without the obs normalisation)."""
    proj_size = cfg["output_size"] if cfg.get("proj") else None
    if cfg["cell"] == "cfc":
        c, layers, in_features = cfg["cfc"], [], cfg["input_size"]
        for l, spec in enumerate(c["layers"]):
            pre, n, k = f"cfc{l}.", spec["size"], spec["backbone"]
            width = params[f"{pre}bb0.W"].shape[0] if k else 0
            layer = CfCLayer(in_features, n, c["mode"], c["activation"], width, k, 0.0)
            bb = [m for m in layer.backbone if isinstance(m, nn.Linear)] if k else []
            for j, lin in enumerate(bb):
                _set(lin.weight, params[f"{pre}bb{j}.W"])
                _set(lin.bias, params[f"{pre}bb{j}.b"])
            head = "ff1" if c["mode"] == "pure" else "heads"
            _set(layer.heads.weight, params[f"{pre}{head}.W"])
            _set(layer.heads.bias, params[f"{pre}{head}.b"])
            if c["mode"] == "pure":
                _set(layer.w_tau, params[f"{pre}w_tau"])
                _set(layer.A, params[f"{pre}A"])
            layers.append(layer)
            in_features = n
        module: Union[CfC, LTC] = CfC._from_layers(cfg["input_size"], layers, c["mode"], c["activation"], proj_size)
    elif cfg["cell"] == "ltc":
        c = cfg["ltc"]
        n, m = cfg["state_size"], c["motor_size"]
        module = LTC(cfg["input_size"], DenseWiring(n, output_dim=m), proj_size, c["ode_unfolds"], c["epsilon"],
                     implicit_constraints=False)
        g = lambda k: np.asarray(params[f"ltc.{k}"], np.float32)  # noqa: E731
        # Effective weights are used as they are; W * erev = Werev (erev is arbitrary where W is 0).
        for sens in ("sensory_", ""):
            w, w_rev = g(f"{sens}W"), g(f"{sens}Werev")
            erev = np.divide(w_rev, w, out=np.zeros_like(w), where=w != 0)
            _set(getattr(module, f"{sens}w"), w)
            _set(getattr(module, f"{sens}erev"), erev)
            _set(getattr(module, f"{sens}sparsity_mask"), np.ones_like(w))
            _set(getattr(module, f"{sens}mu"), g(f"{sens}mu"))
            _set(getattr(module, f"{sens}sigma"), g(f"{sens}sigma"))
        for k in ("cm", "gleak", "vleak", "input_w", "input_b", "output_w", "output_b"):
            _set(getattr(module, k), g(k))
    else:
        raise ValueError(f"unknown cell {cfg['cell']!r}")
    if module.proj is not None:
        _set(module.proj.weight, params["proj.W"])
        _set(module.proj.bias, params["proj.b"])
    module.dt_scale = cellmath.dt_scale(cfg)
    return module
