"""Import trained `ncps.torch.CfC` / `ncps.torch.LTC` modules: into our torch cells, and into a policy artifact.

One mapping path: ncps module -> our module (`from_ncps`, weights copied, masks taken from the ncps
module itself) -> canonical params (`cell_params.to_params`) -> artifact (`core.artifact.write_artifact`).

Time: an ncps cell counts time in whatever unit its `timespans` had in training, and ncps's default
(no timespans) is 1.0 per step, i.e. the model counts control ticks. Our runtimes feed dt in seconds, so
`export_ncps` records the model's time unit as cfg "dt_scale" (model time units per second), which every
runtime applies (see core.cellmath).
"""
from __future__ import annotations

import math
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from liquid_control.core.errors import LiquidControlError
from liquid_control.learning.cell_params import to_params
from liquid_control.learning.cells import CfC, LTC


class NcpsImportError(LiquidControlError, ValueError):
    """An ncps module that cannot be represented by our cells (e.g. mixed memory), or an export whose time
    unit is not stated."""


def _ncps_version() -> str:
    # ncps.__version__ says "0.0.2" in the 1.0.1 wheel; the distribution metadata is right.
    try:
        return _metadata.version("ncps")
    except _metadata.PackageNotFoundError:  # pragma: no cover - ncps imported from a source tree
        return "unknown"


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    with torch.no_grad():
        dst.copy_(src.detach().reshape(dst.shape))


def _activation_name(backbone: Optional[nn.Module]) -> str:
    from ncps.torch.cfc_cell import LeCun

    kinds = {LeCun: "lecun_tanh", nn.Tanh: "tanh", nn.ReLU: "relu", nn.SiLU: "silu", nn.GELU: "gelu"}
    for m in (backbone or []):
        for kind, name in kinds.items():
            if type(m) is kind:
                if isinstance(m, nn.GELU) and m.approximate != "none":
                    raise NcpsImportError("ncps CfC backbone uses tanh-approximated GELU, which is not supported")
                return name
    return "lecun_tanh"  # no backbone: the activation is never used


def _copy_cfc_cell(ours, cell) -> None:
    """ncps CfCCell (ff1, ff2, time_a, time_b, backbone, sparsity_mask) -> our fused CfCLayer."""
    if cell.backbone is not None:
        ours.backbone.load_state_dict(cell.backbone.state_dict())
    heads = [cell.ff1] if cell.mode == "pure" else [cell.ff1, cell.ff2, cell.time_a, cell.time_b]
    _copy(ours.heads.weight, torch.cat([h.weight for h in heads], dim=0))
    _copy(ours.heads.bias, torch.cat([h.bias for h in heads], dim=0))
    if cell.mode == "pure":
        _copy(ours.w_tau, cell.w_tau)
        _copy(ours.A, cell.A)
    if cell.sparsity_mask is not None:
        m = cell.sparsity_mask.detach()
        _copy(ours.mask, m if cell.mode == "pure" else torch.cat([m, m, torch.ones_like(ours.mask[2 * len(m):])]))


def _cfc_from_ncps(model) -> CfC:
    from ncps.torch import WiredCfCCell

    cell = model.rnn_cell
    proj_size = None if isinstance(model.fc, nn.Identity) else model.fc.out_features
    if isinstance(cell, WiredCfCCell):
        # The wiring is already built: CfC() does not build it again, and the masks are copied below anyway.
        ours = CfC(cell.sensory_size, cell._wiring, proj_size, mode=cell._layers[0].mode)
        for our_layer, ncps_layer in zip(ours.layers, cell._layers):
            _copy_cfc_cell(our_layer, ncps_layer)
    else:
        backbone = cell.backbone
        linears = [m for m in backbone if isinstance(m, nn.Linear)] if backbone is not None else []
        dropouts = [m.p for m in backbone if isinstance(m, nn.Dropout)] if backbone is not None else []
        ours = CfC(cell.input_size, cell.hidden_size, proj_size, mode=cell.mode,
                   activation=_activation_name(backbone),
                   backbone_units=linears[0].out_features if linears else 128,
                   backbone_layers=len(linears), backbone_dropout=dropouts[0] if dropouts else 0.0)
        _copy_cfc_cell(ours.layers[0], cell)
    if ours.proj is not None:
        ours.proj.load_state_dict(model.fc.state_dict())
    return ours


def _ltc_from_ncps(model) -> LTC:
    cell = model.rnn_cell
    mapping = lambda m: m if m in ("affine", "linear") else None  # noqa: E731 - ncps: anything else = no map
    ours = LTC(cell.sensory_size, cell._wiring, None, ode_unfolds=cell._ode_unfolds, epsilon=cell._epsilon,
               implicit_constraints=cell._implicit_param_constraints,
               input_mapping=mapping(cell._input_mapping), output_mapping=mapping(cell._output_mapping))
    for name, value in cell._params.items():
        _copy(getattr(ours, name), value)
    return ours


def from_ncps(model: nn.Module) -> Union[CfC, LTC]:
    """Our CfC / LTC module with the weights of an `ncps.torch.CfC` or `ncps.torch.LTC` module."""
    from ncps.torch import CfC as NcpsCfC, LTC as NcpsLTC

    if not isinstance(model, (NcpsCfC, NcpsLTC)):
        raise NcpsImportError(f"expected an ncps.torch.CfC or ncps.torch.LTC module, got {type(model).__name__}")
    if model.use_mixed:
        raise NcpsImportError(f"ncps {type(model).__name__} with mixed_memory=True (an LSTM memory cell beside the "
                              "liquid cell) is not supported; only plain CfC / LTC models can be imported")
    ours = _cfc_from_ncps(model) if isinstance(model, NcpsCfC) else _ltc_from_ncps(model)
    return ours.train(model.training)


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise NcpsImportError(f"export_ncps: {name} must be a finite number of seconds > 0, got {value!r}"
                              if name == "nominal_period" else
                              f"export_ncps: {name} must be a finite number > 0 (or None), got {value!r}")
    return float(value)


def ncps_dt_scale(trained_timespan: Optional[float], nominal_period: Optional[float]) -> float:
    """Model time units per second for an ncps model that saw `trained_timespan` per control step of
    `nominal_period` seconds; 1.0 when trained_timespan is None (the timespans were seconds)."""
    if trained_timespan is None:
        if nominal_period is not None:
            _positive("nominal_period", nominal_period)
        return 1.0
    trained_timespan = _positive("trained_timespan", trained_timespan)
    if nominal_period is None:
        raise NcpsImportError(
            f"export_ncps: the model's time unit is unknown: with trained_timespan={trained_timespan:g} "
            "(ncps's default is 1.0 per step) the control period in seconds is needed; pass "
            "nominal_period=SECONDS or spec=..., or trained_timespan=None if the model was trained with timespans "
            "in seconds")
    return trained_timespan / _positive("nominal_period", nominal_period)


def export_ncps(model: nn.Module, path: Union[str, Path], *, trained_timespan: Optional[float] = 1.0,
                nominal_period: Optional[float] = None, spec: Any = None, obs_mean: Any = None,
                obs_std: Any = None, **metadata: Any) -> Path:
    """Write a trained ncps CfC / LTC module as a policy artifact that reproduces its outputs step by step.

    TIME, READ THIS: an ncps model has no notion of seconds. It counts time in the `timespans` it was
    trained with, and when you called it without `timespans` (the usual case) ncps used **1.0 per step**.
    The robot runtime feeds the measured dt in **seconds**. So say what one step meant in training:

    trained_timespan: the timespan ncps saw per control step in training. Default 1.0, ncps's own
        default: the model counts ticks. If you trained with real seconds as timespans, pass None (or the
        same number as nominal_period): the model then counts seconds.
    nominal_period: seconds per control step on the robot, i.e. how long one trained_timespan lasts in
        real time. Default: `spec.period`. Needed unless trained_timespan is None.

    The artifact records dt_scale = trained_timespan / nominal_period (model time units per second), and
    every runtime feeds the cell dt * dt_scale: a step of exactly nominal_period seconds is the step the
    model saw in training, a late tick of 1.5 periods is a timespan of 1.5 * trained_timespan.
    Example: trained with ncps defaults for a 25 Hz robot -> export_ncps(m, "p.onnx", nominal_period=0.04)
    (dt_scale 25). Without the right unit the policy runs e.g. 25x too slow and is wrong on the robot.

    spec: the robot spec the model is for (layout, hash, labels and, by default, the period).
    obs_mean / obs_std: the normalisation the model was trained with (default: none).
    metadata: free provenance entries (e.g. command=..., seed=...), stored with the ncps class and version
    and the trained timespan.
    """
    from liquid_control.core.artifact import write_artifact

    cfg, params = to_params(from_ncps(model), obs_mean, obs_std)
    period = nominal_period if nominal_period is not None else (spec.period if spec is not None else None)
    # Set in the config (not on our module) after to_params so that an unusable model or normalisation is
    # reported first; cfg "dt_scale" is what every runtime reads.
    cfg["dt_scale"] = ncps_dt_scale(trained_timespan, period)
    provenance = {"source": "ncps", "ncps_version": _ncps_version(), "ncps_class": type(model).__name__,
                  "ncps_trained_timespan": trained_timespan, **metadata}
    return write_artifact(path, cfg, params, spec=spec, nominal_period=nominal_period, provenance=provenance)
