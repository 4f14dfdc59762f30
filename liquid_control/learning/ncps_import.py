"""Import trained `ncps.torch.CfC` / `ncps.torch.LTC` modules: into our torch cells, and into a policy artifact.

One mapping path: ncps module -> our module (`from_ncps`, weights copied, masks taken from the ncps
module itself) -> canonical params (`cells.to_params`) -> artifact (`core.artifact.write_artifact`).
"""
from __future__ import annotations

from importlib import metadata as _metadata
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from liquid_control.core.errors import LiquidControlError
from liquid_control.learning.cells import CfC, LTC, to_params


class NcpsImportError(LiquidControlError, ValueError):
    """An ncps module that cannot be represented by our cells (e.g. mixed memory)."""


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


def export_ncps(model: nn.Module, path: Union[str, Path], *, obs_mean: Any = None, obs_std: Any = None,
                spec: Any = None, nominal_period: Optional[float] = None, **metadata: Any) -> Path:
    """Write a trained ncps CfC / LTC module as a policy artifact that reproduces its outputs step by step.

    obs_mean / obs_std: the normalisation the model was trained with (default: none).
    metadata: free provenance entries (e.g. command=..., seed=...), stored with the ncps class and version.
    """
    from liquid_control.core.artifact import write_artifact

    cfg, params = to_params(from_ncps(model), obs_mean, obs_std)
    provenance = {"source": "ncps", "ncps_version": _ncps_version(), "ncps_class": type(model).__name__,
                  **metadata}
    return write_artifact(path, cfg, params, spec=spec, nominal_period=nominal_period, provenance=provenance)
