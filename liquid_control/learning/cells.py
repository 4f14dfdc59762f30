"""CfC and LTC liquid cells in torch, numerically equal to ncps 1.0.1 and to core.cellmath.

Both modules take a time span per batch element (`dt` of shape (B, 1) per step), which ncps cannot do
(its `timespans[:, t].squeeze()` broadcasts a (B,) vector against the unit axis: ncps issues #81-#83).

cell_params.py exports a module into the canonical effective parameters of `core.cellmath` and builds one
back from them. Wired cells take `ncps.wirings` objects (the `ncps` extra); this module never re-implements
them. An LTC given a neuron count uses `dense_wiring.DenseWiring`, ncps's FullyConnected without ncps.

`dt_scale` (model time units per second, cellmath's cfg "dt_scale") is a plain attribute of both modules,
1.0 unless set: `step` and `forward` multiply the given dt by it, so a module built by `from_params` takes
dt in seconds like every other runtime. It is not a parameter or buffer (checkpoints' state dicts stay as
they were); the canonical params carry it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liquid_control.core import cellmath
from liquid_control.learning.dense_wiring import DenseWiring, is_wiring

if TYPE_CHECKING:
    from ncps.wirings import Wiring

CFC_MODES = ("default", "pure", "no_gate")


class LeCunTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(0.666 * x)


_ACTIVATIONS = {"lecun_tanh": LeCunTanh, "tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}
assert set(_ACTIVATIONS) == set(cellmath.ACTIVATIONS)


def _build_wiring(wiring: "Wiring", input_size: int) -> "Wiring":
    # ncps wirings add synapses again on every build() call (NCP, Random, FullyConnected), so a wiring
    # that is already built (e.g. shared with an ncps module) must not be built a second time.
    if wiring.is_built():
        if wiring.input_dim != input_size:
            raise ValueError(f"wiring was built for {wiring.input_dim} inputs, not {input_size}")
    else:
        wiring.build(input_size)
    return wiring


def _dt_column(dt: Union[torch.Tensor, float, None], batch: int, like: torch.Tensor) -> torch.Tensor:
    """dt for one step as (B, 1)."""
    if dt is None:
        return torch.ones(batch, 1, dtype=like.dtype, device=like.device)
    if not torch.is_tensor(dt):
        return torch.full((batch, 1), float(dt), dtype=like.dtype, device=like.device)
    if dt.dim() == 2:
        return dt
    return dt.reshape(-1, 1).expand(batch, 1) if dt.numel() == 1 else dt.reshape(batch, 1)


def _dt_sequence(dt: Optional[torch.Tensor], batch: int, steps: int, like: torch.Tensor) -> torch.Tensor:
    """dt for a sequence as (B, T, 1); accepts None (all ones), (B, T) or (B, T, 1)."""
    if dt is None:
        return torch.ones(batch, steps, 1, dtype=like.dtype, device=like.device)
    dt = torch.as_tensor(dt, dtype=like.dtype, device=like.device)
    if dt.dim() == 2:
        dt = dt.unsqueeze(-1)
    if tuple(dt.shape) != (batch, steps, 1):
        raise ValueError(f"dt must have shape (B, T) or (B, T, 1) = ({batch}, {steps}[, 1]), got {tuple(dt.shape)}")
    return dt


class _Recurrent(nn.Module):
    """Sequence loop shared by CfC and LTC: both only define `step`."""

    state_size: int
    output_size: int
    dt_scale: float = 1.0  # model time units per second (see the module docstring)

    def _model_dt(self, dt: Union[torch.Tensor, float, None], batch: int, like: torch.Tensor) -> torch.Tensor:
        """dt for one step as (B, 1), in the model's time unit."""
        dt = _dt_column(dt, batch, like)
        return dt if self.dt_scale == 1.0 else dt * self.dt_scale

    def forward(self, x: torch.Tensor, h0: Optional[torch.Tensor] = None,
                dt: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, I), h0 (B, N) or None, dt (B, T) / (B, T, 1) or None (= 1) -> y (B, T, out), h_T (B, N)."""
        if x.dim() != 3:
            raise ValueError(f"x must have shape (B, T, I), got {tuple(x.shape)}")
        batch, steps, _ = x.shape
        h = x.new_zeros(batch, self.state_size) if h0 is None else h0
        dts = _dt_sequence(dt, batch, steps, x)
        ys = []
        for t in range(steps):
            y, h = self.step(x[:, t], h, dts[:, t])
            ys.append(y)
        return torch.stack(ys, dim=1), h

    def step(self, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def unroll(self, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor,
               start: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Time-major steps with episode resets, as PPO's TBPTT re-runs them: x (T, B, I), h (B, N), dt (T, B, 1),
        start (T, B) float, 1.0 where a sample begins an episode (its state is zeroed before the step: the state
        is multiplied by 1 - start) -> y (T, B, out), h_T (B, N).

        This is the plain reference; CfC overrides it with a faster loop that computes the same numbers.
        """
        ys = []
        for t in range(x.shape[0]):
            if start is not None:
                h = h * (1.0 - start[t])[:, None]
            y, h = self.step(x[t], h, dt[t])
            ys.append(y)
        return torch.stack(ys), h


# ----------------------------------------------------------------------------------------------- CfC


class CfCLayer(nn.Module):
    """One CfC cell (ncps CfCCell) with the four heads fused into one matmul.

    `heads` rows are [ff1; ff2; time_a; time_b] (pure mode: ff1 only). `mask`, when wired, masks the
    ff1/ff2 rows like ncps WiredCfCCell does (its time_a/time_b are not masked, and neither are ours).
    """

    def __init__(self, in_features: int, size: int, mode: str, activation: str, backbone_units: int,
                 backbone_layers: int, backbone_dropout: float, sparsity_mask: Optional[np.ndarray] = None):
        super().__init__()
        self.size, self.mode, self.activation = size, mode, activation
        self.backbone_layers = backbone_layers
        self.backbone: Optional[nn.Sequential] = None
        if backbone_layers > 0:
            act = _ACTIVATIONS[activation]
            # Same layout as ncps (so state dicts line up): dropout only after the 2nd.. backbone layers.
            mods: list[nn.Module] = [nn.Linear(in_features + size, backbone_units), act()]
            for _ in range(1, backbone_layers):
                mods += [nn.Linear(backbone_units, backbone_units), act()]
                if backbone_dropout > 0.0:
                    mods.append(nn.Dropout(backbone_dropout))
            self.backbone = nn.Sequential(*mods)
        cat = backbone_units if backbone_layers > 0 else in_features + size
        n_heads = 1 if mode == "pure" else 4
        self.heads = nn.Linear(cat, n_heads * size)
        if mode == "pure":
            self.w_tau = nn.Parameter(torch.zeros(size))
            self.A = nn.Parameter(torch.ones(size))
        mask = None
        if sparsity_mask is not None:
            m = torch.as_tensor(np.abs(sparsity_mask), dtype=torch.float32)  # (size, cat)
            mask = m if mode == "pure" else torch.cat([m, m, torch.ones(2 * size, cat)], dim=0)
        self.register_buffer("mask", mask)
        self._init_like_ncps(cat)

    def _init_like_ncps(self, cat: int) -> None:
        # ncps applies xavier_uniform to every 2-D trainable parameter: per head (fan_out = size), and to the
        # (1, size) w_tau / A of pure mode.
        with torch.no_grad():
            for block in self.heads.weight.split(self.size, dim=0):
                nn.init.xavier_uniform_(block)
            if self.backbone is not None:
                for m in self.backbone:
                    if isinstance(m, nn.Linear):
                        nn.init.xavier_uniform_(m.weight)
            if self.mode == "pure":
                for p in (self.w_tau, self.A):
                    nn.init.xavier_uniform_(p.view(1, -1))

    def head_weight(self) -> torch.Tensor:
        return self.heads.weight if self.mask is None else self.heads.weight * self.mask

    def forward(self, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x, h], dim=1)
        if self.backbone is not None:
            z = self.backbone(z)
        return _cfc_state(self, F.linear(z, self.head_weight(), self.heads.bias), dt)


def _cfc_state(layer: Any, heads: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """A CfC layer's new state from its fused heads (B, 4N; pure mode: ff1, B x N); `layer` has mode, A, w_tau."""
    if layer.mode == "pure":
        return -layer.A * torch.exp(-dt * (torch.abs(layer.w_tau) + torch.abs(heads))) * heads + layer.A
    ff1, ff2, t_a, t_b = heads.chunk(4, dim=1)
    ff1, ff2 = torch.tanh(ff1), torch.tanh(ff2)
    t_interp = torch.sigmoid(t_a * dt + t_b)
    if layer.mode == "no_gate":
        return ff1 + t_interp * ff2
    return ff1 * (1.0 - t_interp) + t_interp * ff2


class CfC(_Recurrent):
    """Closed-form continuous-time RNN, fully connected (with backbone) or wired (one CfC layer per wiring layer).

    Wired, the state is the concatenation of the layers' states in wiring layer order (as ncps) and the
    output is the new state of the last layer; backbone options do not apply (ncps uses none when wired).
    """

    def __init__(self, input_size: int, units: Union[int, "Wiring"], proj_size: Optional[int] = None,
                 mode: str = "default", activation: str = "lecun_tanh", backbone_units: int = 128,
                 backbone_layers: int = 1, backbone_dropout: float = 0.0):
        super().__init__()
        if mode not in CFC_MODES:
            raise ValueError(f"unknown CfC mode {mode!r}; expected one of {CFC_MODES}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}")
        self.input_size, self.mode, self.activation = int(input_size), mode, activation
        self.wiring: Optional["Wiring"] = None
        layers = []
        if is_wiring(units):
            if (backbone_units, backbone_layers, backbone_dropout) != (128, 1, 0.0):
                raise ValueError("backbone options do not apply to a wired CfC (ncps uses no backbone when wired)")
            wiring = self.wiring = _build_wiring(units, self.input_size)
            in_features, prev = self.input_size, None
            for layer in range(wiring.num_layers):
                neurons = wiring.get_neurons_of_layer(layer)
                if prev is None:
                    sparsity = wiring.sensory_adjacency_matrix[:, neurons]
                else:
                    sparsity = wiring.adjacency_matrix[prev, :][:, neurons]
                # The layer's own recurrent inputs are always fully connected (as ncps WiredCfCCell).
                sparsity = np.concatenate([sparsity, np.ones((len(neurons), len(neurons)))], axis=0)
                layers.append(CfCLayer(in_features, len(neurons), mode, "lecun_tanh", 0, 0, 0.0, sparsity.T))
                in_features, prev = len(neurons), neurons
        else:
            if int(units) <= 0:
                raise ValueError(f"units must be positive, got {units}")
            layers.append(CfCLayer(self.input_size, int(units), mode, activation, backbone_units,
                                   backbone_layers, backbone_dropout))
        self._finish(layers, proj_size)

    def _finish(self, layers: Sequence[CfCLayer], proj_size: Optional[int]) -> None:
        self.layers = nn.ModuleList(layers)
        self.layer_sizes = [layer.size for layer in layers]
        self.state_size = sum(self.layer_sizes)
        self.proj = None if proj_size is None else nn.Linear(self.layer_sizes[-1], int(proj_size))
        self.output_size = self.layer_sizes[-1] if proj_size is None else int(proj_size)

    @classmethod
    def _from_layers(cls, input_size: int, layers: Sequence[CfCLayer], mode: str, activation: str,
                     proj_size: Optional[int]) -> "CfC":
        """A CfC around given (unmasked) layers: what `from_params` needs when there is no wiring object."""
        self = cls.__new__(cls)
        _Recurrent.__init__(self)
        self.input_size, self.mode, self.activation, self.wiring = input_size, mode, activation, None
        self._finish(layers, proj_size)
        return self

    def step(self, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, I), h (B, N), dt (B, 1) -> y (B, out), h_new (B, N)."""
        dt = self._model_dt(dt, x.shape[0], x)
        if len(self.layers) == 1:
            y = h_new = self.layers[0](x, h, dt)
        else:
            states, y = [], x
            for layer, h_l in zip(self.layers, h.split(self.layer_sizes, dim=1)):
                y = layer(y, h_l, dt)
                states.append(y)
            h_new = torch.cat(states, dim=1)
        if self.proj is not None:
            y = self.proj(y)
        return y, h_new

    def unroll(self, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor,
               start: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`_Recurrent.unroll`, bit for bit (forward and gradients), with less work per step: the weights are
        transposed (and masked) once per sequence instead of once per step, as F.linear would, and the modules'
        call machinery is bypassed. A reset (h * (1 - start)) is skipped at steps where no sample starts an
        episode, where it would multiply by exactly 1. Dropout in the backbone takes the plain loop; the
        trainer's cell shape takes learning/cfc_sequence.py (equal to float32 rounding, not bit for bit)."""
        if any(isinstance(m, nn.Dropout) for layer in self.layers if layer.backbone is not None
               for m in layer.backbone):
            return super().unroll(x, h, dt, start)
        if self.dt_scale != 1.0:
            dt = dt * self.dt_scale
        from liquid_control.learning import cfc_sequence

        if cfc_sequence.supports(self):
            return cfc_sequence.unroll(self, x, h, dt, start)
        layers = [_UnrolledCfCLayer(layer) for layer in self.layers]
        proj = None if self.proj is None else (self.proj.weight.t(), self.proj.bias)
        keep = None if start is None else 1.0 - start
        resets = [False] * x.shape[0] if start is None else start.any(dim=1).tolist()
        ys = []
        for t in range(x.shape[0]):
            if resets[t]:
                h = h * keep[t][:, None]
            if len(layers) == 1:
                y = h = layers[0](x[t], h, dt[t])
            else:
                states, y = [], x[t]
                for layer, h_l in zip(layers, h.split(self.layer_sizes, dim=1)):
                    y = layer(y, h_l, dt[t])
                    states.append(y)
                h = torch.cat(states, dim=1)
            if proj is not None:
                y = torch.addmm(proj[1], y, proj[0])
            ys.append(y)
        return torch.stack(ys), h


class _UnrolledCfCLayer:
    """CfCLayer.forward with its weights transposed once (torch.addmm(b, z, W.t()) is what F.linear runs)."""

    def __init__(self, layer: CfCLayer):
        self.mode = layer.mode
        self.backbone = []  # (W.t(), b, activation) per backbone layer
        if layer.backbone is not None:
            mods = list(layer.backbone)
            for lin, act in zip(mods[0::2], mods[1::2]):
                self.backbone.append((lin.weight.t(), lin.bias, act.forward))
        self.heads = (layer.head_weight().t(), layer.heads.bias)
        if self.mode == "pure":
            self.A, self.w_tau = layer.A, layer.w_tau

    def __call__(self, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x, h], dim=1)
        for w_t, b, act in self.backbone:
            z = act(torch.addmm(b, z, w_t))
        return _cfc_state(self, torch.addmm(self.heads[1], z, self.heads[0]), dt)


# ----------------------------------------------------------------------------------------------- LTC

_LTC_INIT = {  # ncps LTCCell init ranges
    "gleak": (0.001, 1.0), "vleak": (-0.2, 0.2), "cm": (0.4, 0.6), "w": (0.001, 1.0), "sigma": (3, 8),
    "mu": (0.3, 0.8), "sensory_w": (0.001, 1.0), "sensory_sigma": (3, 8), "sensory_mu": (0.3, 0.8),
}
_MAPPINGS = ("affine", "linear", None)


class LTC(_Recurrent):
    """Liquid time-constant RNN (ncps LTCCell: fused semi-implicit solver, `ode_unfolds` steps per dt).

    Parameter names match ncps LTCCell. `implicit_constraints` puts softplus on w, sensory_w, cm, gleak
    (ncps `implicit_param_constraints`); without it they are used as they are, as ncps does in forward.
    The output is the first `motor_size` units through the output mapping, then the optional projection.
    """

    def __init__(self, input_size: int, units: Union[int, "Wiring"], proj_size: Optional[int] = None,
                 ode_unfolds: int = 6, epsilon: float = 1e-8, implicit_constraints: bool = True,
                 input_mapping: Optional[str] = "affine", output_mapping: Optional[str] = "affine"):
        super().__init__()
        if input_mapping not in _MAPPINGS or output_mapping not in _MAPPINGS:
            raise ValueError(f"input/output mapping must be one of {_MAPPINGS}, "
                             f"got {input_mapping!r}/{output_mapping!r}")
        if int(ode_unfolds) < 1:
            raise ValueError(f"ode_unfolds must be >= 1, got {ode_unfolds}")
        wiring = units if is_wiring(units) else DenseWiring(int(units))
        self.wiring = _build_wiring(wiring, int(input_size))
        self.input_size, self.state_size = int(input_size), wiring.units
        self.motor_size = wiring.output_dim
        self.ode_unfolds, self.epsilon = int(ode_unfolds), float(epsilon)
        self.implicit_constraints = bool(implicit_constraints)
        self.input_mapping, self.output_mapping = input_mapping, output_mapping
        n, i = self.state_size, self.input_size

        def init(shape: tuple[int, ...], name: str) -> nn.Parameter:
            lo, hi = _LTC_INIT[name]
            return nn.Parameter(torch.rand(*shape) * (hi - lo) + lo)

        self.gleak, self.vleak, self.cm = init((n,), "gleak"), init((n,), "vleak"), init((n,), "cm")
        self.sigma, self.mu, self.w = init((n, n), "sigma"), init((n, n), "mu"), init((n, n), "w")
        self.erev = nn.Parameter(torch.as_tensor(wiring.erev_initializer(), dtype=torch.float32))
        self.sensory_sigma, self.sensory_mu = init((i, n), "sensory_sigma"), init((i, n), "sensory_mu")
        self.sensory_w = init((i, n), "sensory_w")
        self.sensory_erev = nn.Parameter(torch.as_tensor(wiring.sensory_erev_initializer(), dtype=torch.float32))
        self.register_buffer("sparsity_mask", torch.as_tensor(np.abs(wiring.adjacency_matrix), dtype=torch.float32))
        self.register_buffer("sensory_sparsity_mask",
                             torch.as_tensor(np.abs(wiring.sensory_adjacency_matrix), dtype=torch.float32))
        m = self.motor_size
        self.input_w = nn.Parameter(torch.ones(i)) if input_mapping in ("affine", "linear") else None
        self.input_b = nn.Parameter(torch.zeros(i)) if input_mapping == "affine" else None
        self.output_w = nn.Parameter(torch.ones(m)) if output_mapping in ("affine", "linear") else None
        self.output_b = nn.Parameter(torch.zeros(m)) if output_mapping == "affine" else None
        self.proj = None if proj_size is None else nn.Linear(m, int(proj_size))
        self.output_size = m if proj_size is None else int(proj_size)

    def _positive(self, p: torch.Tensor) -> torch.Tensor:
        return F.softplus(p) if self.implicit_constraints else p

    def effective(self) -> dict[str, torch.Tensor]:
        """The canonical effective LTC parameters (cellmath names, without the "ltc." prefix)."""
        sensory_w = self._positive(self.sensory_w) * self.sensory_sparsity_mask
        w = self._positive(self.w) * self.sparsity_mask
        ones_i, ones_m = torch.ones_like(self.sensory_mu[:, 0]), torch.ones_like(self.cm[: self.motor_size])
        return {
            "input_w": self.input_w if self.input_w is not None else ones_i,
            "input_b": self.input_b if self.input_b is not None else ones_i * 0,
            "sensory_mu": self.sensory_mu, "sensory_sigma": self.sensory_sigma,
            "sensory_W": sensory_w, "sensory_Werev": sensory_w * self.sensory_erev,
            "mu": self.mu, "sigma": self.sigma, "W": w, "Werev": w * self.erev,
            "cm": self._positive(self.cm), "gleak": self._positive(self.gleak), "vleak": self.vleak,
            "output_w": self.output_w if self.output_w is not None else ones_m,
            "output_b": self.output_b if self.output_b is not None else ones_m * 0,
        }

    def step(self, x: torch.Tensor, h: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, I), h (B, N), dt (B, 1) -> y (B, out), h_new (B, N)."""
        dt = self._model_dt(dt, x.shape[0], x)
        p = self.effective()
        x = x * p["input_w"] + p["input_b"]
        # sigmoid((v - mu) * sigma) as sigmoid(v * sigma - mu * sigma): one fused op on the (B, N, N) tensor,
        # which dominates the LTC step (equal to ncps within float32 rounding: test_cells_ncps_parity).
        s_sig = torch.sigmoid(torch.addcmul(-p["sensory_mu"] * p["sensory_sigma"], x.unsqueeze(-1),
                                            p["sensory_sigma"]))  # (B, I, N)
        num_s = (s_sig * p["sensory_Werev"]).sum(dim=1)
        den_s = (s_sig * p["sensory_W"]).sum(dim=1)
        cm_t = p["cm"] / (dt / self.ode_unfolds)  # (B, N): the time span is per batch element
        leak_num = p["gleak"] * p["vleak"] + num_s
        leak_den = cm_t + p["gleak"] + den_s
        neg_mu_sigma, sigma, w, w_rev = -p["mu"] * p["sigma"], p["sigma"], p["W"], p["Werev"]
        v = h
        for _ in range(self.ode_unfolds):
            sig = torch.sigmoid(torch.addcmul(neg_mu_sigma, v.unsqueeze(-1), sigma))  # (B, N, N)
            num = cm_t * v + leak_num + (sig * w_rev).sum(dim=1)
            den = leak_den + (sig * w).sum(dim=1)
            v = num / (den + self.epsilon)
        y = v[:, : self.motor_size] * p["output_w"] + p["output_b"]
        if self.proj is not None:
            y = self.proj(y)
        return y, v
