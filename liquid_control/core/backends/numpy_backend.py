"""The numpy backend: cellmath.step for batch 1, rewritten for latency.

A control step is a few dozen tiny array operations, so the cost is per-call overhead, not arithmetic.
Everything here serves fewer and cheaper numpy calls:

  * all buffers are preallocated at load; each step calls ufuncs/matmul with positional `out` arguments
    on views created once, so a step allocates (almost) nothing;
  * float32 throughout (AVX-512 tanh/exp on float32 is ~4x float64; agreement with the float64
    reference stays well inside 1e-5);
  * biases ride inside the matmuls: every matmul input vector carries a trailing constant 1;
  * constant factors are folded into the weights at load: lecun_tanh's 0.666 goes into its Linear and
    its 1.7159 into the columns of the next Linear; sigmoid(u) is written 0.5 + 0.5 tanh(u/2) with the
    1/2 folded into the time heads, so one tanh call covers ff1, ff2 and the gate;
  * the CfC gate mix ff1 (1 - s) + s ff2 = 0.5 (ff1 + ff2 + T (ff2 - ff1)) ends in one (3,) @ (3, n) matmul;
  * LTC sums over synapses as one einsum for numerator and denominator together, and for sparse (wired)
    synapse matrices it works on the nonzero synapses only (gather, tanh, bincount).

`NumpyBackend(artifact).step(obs, dt, h)` returns views of internal buffers, valid until the next step;
Policy copies what it keeps.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from liquid_control.core.cellmath import OBS_CLIP, Params

F = np.float32
_mul, _add, _sub, _div = np.multiply, np.add, np.subtract, np.divide
_tanh, _exp, _abs, _matmul, _copyto = np.tanh, np.exp, np.abs, np.matmul, np.copyto
_maximum = np.maximum
# The clip ufunc itself: np.clip() wraps it in ~1 us of Python argument handling.
_clip = (np._core if hasattr(np, "_core") else np.core).umath.clip
LECUN_IN, LECUN_OUT = 0.666, 1.7159

# LTC synapse matrices denser than this run dense; sparser ones run on their nonzero synapses only.
SPARSE_DENSITY = 0.35


def _with_one(n: int) -> np.ndarray:
    """A float32 buffer of n + 1 whose last element is the constant 1 that carries the bias."""
    buf = np.zeros(n + 1, F)
    buf[-1] = 1.0
    return buf


def _affine(W: np.ndarray, b: np.ndarray, in_scale: np.ndarray | float = 1.0, out_scale: float = 1.0) -> np.ndarray:
    """[W * in_scale (per column) | b] * out_scale, float32 C-contiguous: one matmul with a trailing 1."""
    W = np.asarray(W, np.float64) * in_scale
    return np.ascontiguousarray(np.concatenate([W, np.asarray(b, np.float64)[:, None]], axis=1) * out_scale, F)


class _Activation:
    """An activation applied in place to a backbone output, with constants folded into the weights.

    `pre` scales the Linear feeding it; `post` scales the columns of the Linear that consumes it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pre = LECUN_IN if name == "lecun_tanh" else 1.0
        self.post = LECUN_OUT if name == "lecun_tanh" else 1.0

    def make(self, buf: np.ndarray):
        name = self.name
        if name in ("lecun_tanh", "tanh"):
            return lambda: _tanh(buf, buf)
        if name == "relu":
            return lambda: _maximum(buf, 0.0, out=buf)
        if name == "silu":
            tmp = np.empty_like(buf)

            def silu() -> None:  # x * sigmoid(x) = x * 0.5 (1 + tanh(x / 2))
                _mul(buf, 0.5, tmp)
                _tanh(tmp, tmp)
                _add(tmp, 1.0, tmp)
                _mul(tmp, 0.5, tmp)
                _mul(buf, tmp, buf)
            return silu
        if name == "gelu":
            from math import erf, sqrt

            erf_v = np.frompyfunc(erf, 1, 1)

            def gelu() -> None:  # exact erf GELU; rare in control, so clarity over speed
                buf[:] = 0.5 * buf * (1.0 + erf_v(buf / sqrt(2.0)).astype(F))
            return gelu
        raise ValueError(f"unknown activation {name!r}")


class _CfcLayer:
    """One CfC layer. z = [input (in_size), own state (n), 1]."""

    def __init__(self, p: Params, prefix: str, mode: str, activation: str, n_backbone: int,
                 in_size: int, n: int, in_scale: float) -> None:
        self.n, self.mode, self.in_size = n, mode, in_size
        self.z = _with_one(in_size + n)
        self.z_in, self.z_h = self.z[:in_size], self.z[in_size:in_size + n]
        act = _Activation(activation)
        # Columns scaled by the previous layer's folded output factor (input part only).
        col_scale = np.concatenate([np.full(in_size, in_scale), np.ones(n)])
        self.backbone: list[tuple[np.ndarray, np.ndarray, np.ndarray, Any]] = []
        src = self.z
        for j in range(n_backbone):
            W = _affine(p[f"{prefix}bb{j}.W"], p[f"{prefix}bb{j}.b"], col_scale, act.pre)
            out = _with_one(W.shape[0])
            self.backbone.append((W, src, out[:-1], act.make(out[:-1])))
            src, col_scale = out, act.post
        self.src = src
        self.out = np.empty(n, F)  # new state of this layer
        if mode == "pure":
            self.W = _affine(p[f"{prefix}ff1.W"], p[f"{prefix}ff1.b"], col_scale)
            self.ff1 = np.empty(n, F)
            self.tmp = np.empty(n, F)
            self.w_tau = np.asarray(p[f"{prefix}w_tau"], F)
            self.A = np.asarray(p[f"{prefix}A"], F)
            self.neg_A = -self.A
        else:
            W = np.asarray(p[f"{prefix}heads.W"], np.float64)
            b = np.asarray(p[f"{prefix}heads.b"], np.float64)
            # rows [ff1; ff2; t_a/2; t_b/2]: sigmoid(u) = 0.5 + 0.5 tanh(u / 2)
            scale = np.concatenate([np.ones(2 * n), np.full(2 * n, 0.5)])
            self.W = _affine(W * scale[:, None], b * scale, col_scale)
            self.H = np.empty(4 * n, F)
            self.tanh_part = self.H[: 3 * n]          # ff1, ff2, gate argument
            self.ff1, self.ff2 = self.H[:n], self.H[n:2 * n]
            self.t_a, self.t_b = self.H[2 * n:3 * n], self.H[3 * n:]
            self.H3 = self.H[: 3 * n].reshape(3, n)
            self.d = self.t_b  # t_b is dead once the gate argument is formed; reuse it
            self.half3 = np.full(3, 0.5, F)
            self.gate_half = np.full(2, 0.5, F)

    def load_state(self, h: np.ndarray) -> None:
        _copyto(self.z_h, h)

    def run(self, dt: float) -> np.ndarray:
        for W, src, out, act in self.backbone:
            _matmul(W, src, out)
            act()
        n, out = self.n, self.out
        if self.mode == "pure":
            # -A exp(-dt (w_tau + |ff1|)) ff1 + A
            ff1, tmp = self.ff1, self.tmp
            _matmul(self.W, self.src, ff1)
            _abs(ff1, tmp)
            _add(tmp, self.w_tau, tmp)
            _mul(tmp, -dt, tmp)
            _exp(tmp, tmp)
            _mul(tmp, ff1, tmp)
            _mul(tmp, self.neg_A, tmp)
            _add(tmp, self.A, out)
            return out
        H = self.H
        _matmul(self.W, self.src, H)
        _mul(self.t_a, dt, self.t_a)
        _add(self.t_a, self.t_b, self.t_a)        # u / 2
        _tanh(self.tanh_part, self.tanh_part)     # ff1, ff2, T = tanh(u / 2); sigmoid = 0.5 + 0.5 T
        if self.mode == "no_gate":
            # ff1 + s ff2 = ff1 + 0.5 ff2 + 0.5 T ff2
            _mul(self.t_a, self.ff2, self.t_a)
            _add(self.t_a, self.ff2, self.t_a)
            _mul(self.t_a, 0.5, self.t_a)
            _add(self.t_a, self.ff1, out)
            return out
        # ff1 (1 - s) + s ff2 = 0.5 (ff1 + ff2 + T (ff2 - ff1))
        d = self.d
        _sub(self.ff2, self.ff1, d)
        _mul(self.t_a, d, self.t_a)
        _matmul(self.half3, self.H3, out)
        return out


class _Ltc:
    """The LTC fused semi-implicit solver, unrolled ode_unfolds times per step."""

    def __init__(self, p: Params, cfg: dict[str, Any]) -> None:
        c = cfg["ltc"]
        I, N = cfg["input_size"], cfg["state_size"]
        self.unfolds, self.N = int(c["ode_unfolds"]), N
        f64 = lambda k: np.asarray(p[k], np.float64)  # noqa: E731 - constants are folded in float64
        self.input_w, self.input_b = np.asarray(p["ltc.input_w"], F), np.asarray(p["ltc.input_b"], F)
        # sigmoid(sigma (v - mu)) = 0.5 + 0.5 tanh(sigma/2 v - sigma mu/2): the 0.5 offsets sum into constants,
        # the 0.5 factors into the weights.
        const_num = f64("ltc.gleak") * f64("ltc.vleak") + 0.5 * (f64("ltc.sensory_Werev").sum(0) + f64("ltc.Werev").sum(0))
        const_den = f64("ltc.gleak") + 0.5 * (f64("ltc.sensory_W").sum(0) + f64("ltc.W").sum(0)) + float(c["epsilon"])
        self.const = np.stack([const_num, const_den]).astype(F)  # (2, N)
        self.cm_u = (f64("ltc.cm") * self.unfolds).astype(F)     # cm / (dt / unfolds) = cm * unfolds / dt
        self.sensory = _Synapses(f64("ltc.sensory_mu"), f64("ltc.sensory_sigma"), f64("ltc.sensory_W"),
                                 f64("ltc.sensory_Werev"))
        self.recurrent = _Synapses(f64("ltc.mu"), f64("ltc.sigma"), f64("ltc.W"), f64("ltc.Werev"))
        self.x = np.empty(I, F)
        self.base = np.empty((2, N), F)   # [num, den] terms that do not change during the unfolds
        self.cm_t = np.empty(N, F)
        self.num = np.empty(N, F)
        self.den = np.empty(N, F)
        self.v = np.empty(N, F)

    def run(self, x: np.ndarray, h: np.ndarray, dt: float) -> np.ndarray:
        xs, base, cm_t, num, den, v = self.x, self.base, self.cm_t, self.num, self.den, self.v
        _mul(x, self.input_w, xs)
        _add(xs, self.input_b, xs)
        _add(self.sensory.sums(xs), self.const, base)
        _mul(self.cm_u, 1.0 / dt, cm_t)
        _add(cm_t, base[1], den)  # den without the recurrent sum: cm_t + gleak + sensory + eps (+ offsets)
        base_den = den.copy()
        _copyto(v, h)
        rec = self.recurrent
        for _ in range(self.unfolds):
            s = rec.sums(v)
            _mul(cm_t, v, num)
            _add(num, base[0], num)
            _add(num, s[0], num)
            _add(base_den, s[1], den)
            _div(num, den, v)
        return v


class _Synapses:
    """sum_i W[i, n] sigmoid(sigma[i, n] (pre[i] - mu[i, n])) for W and Werev at once, minus the constant
    0.5 sum_i W[i, n] (folded into the caller's constants): returns a (2, N) view [Werev part; W part]."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, W: np.ndarray, Werev: np.ndarray) -> None:
        rows, N = W.shape
        half_sigma = 0.5 * sigma
        nz = np.flatnonzero((W != 0).ravel() | (Werev != 0).ravel())
        self.out = np.zeros((2, N), F)
        self.sparse = nz.size < SPARSE_DENSITY * W.size
        if self.sparse:
            pre, post = np.divmod(nz, N)
            self.pre = pre.astype(np.intp)
            self.a = half_sigma.ravel()[nz].astype(F)
            self.b = (half_sigma * mu).ravel()[nz].astype(F)
            self.w = np.stack([0.5 * Werev.ravel()[nz], 0.5 * W.ravel()[nz]]).astype(F)  # (2, nnz)
            self.target = np.concatenate([post, post + N]).astype(np.intp)
            self.gather = np.empty(nz.size, F)
            self.prod = np.empty((2, nz.size), F)
            self.flat = self.prod.reshape(-1)
            self.twoN = 2 * N
        else:
            self.a = np.ascontiguousarray(half_sigma, F)           # (rows, N)
            self.b = np.ascontiguousarray(half_sigma * mu, F)
            self.w = np.ascontiguousarray(np.stack([0.5 * Werev, 0.5 * W]), F)  # (2, rows, N)
            self.t = np.empty((rows, N), F)

    def sums(self, pre: np.ndarray) -> np.ndarray:
        if self.sparse:
            g = self.gather
            np.take(pre, self.pre, out=g)
            _mul(g, self.a, g)
            _sub(g, self.b, g)
            _tanh(g, g)
            _mul(self.w, g, self.prod)
            # bincount sums per target neuron (in float64; exact enough and allocation is small)
            _copyto(self.out.reshape(-1), np.bincount(self.target, self.flat, self.twoN))
            return self.out
        t = self.t
        _mul(pre[:, None], self.a, t)
        _sub(t, self.b, t)
        _tanh(t, t)
        np.einsum("kin,in->kn", self.w, t, out=self.out)
        return self.out


class NumpyBackend:
    """Batch-1 numpy step of an artifact's cellmath model. See the module docstring for the tricks."""

    name = "numpy"

    def __init__(self, artifact: Any) -> None:
        cfg, p = artifact.cfg, artifact.params
        self.cfg = cfg
        I, N, A = cfg["input_size"], cfg["state_size"], cfg["output_size"]
        self.mean = np.asarray(p["obs_mean"], F)
        self.inv_std = (1.0 / np.asarray(p["obs_std"], np.float64)).astype(F)
        self.lo, self.hi = np.full(I, -OBS_CLIP, F), np.full(I, OBS_CLIP, F)
        self.h_new = np.empty(N, F)
        self.cell = cfg["cell"]
        if self.cell == "cfc":
            c = cfg["cfc"]
            self.layers: list[_CfcLayer] = []
            self.slices: list[slice] = []
            in_size, start = I, 0
            for layer, spec in enumerate(c["layers"]):
                n = spec["size"]
                self.layers.append(_CfcLayer(p, f"cfc{layer}.", c["mode"], c["activation"], spec["backbone"],
                                             in_size, n, 1.0))
                self.slices.append(slice(start, start + n))
                in_size, start = n, start + n
            self.x = self.layers[0].z_in  # normalised obs go straight into layer 0's matmul input
            self.h_views = [self.h_new[s] for s in self.slices]
            out_size = in_size
            # the last layer writes its state into a buffer with a trailing 1, the projection's input
            self.y = _with_one(out_size)
            self.layers[-1].out = self.y[:-1]
        else:
            self.ltc = _Ltc(p, cfg)
            self.x = np.empty(I, F)
            self.motor = cfg["ltc"]["motor_size"]
            self.output_w, self.output_b = np.asarray(p["ltc.output_w"], F), np.asarray(p["ltc.output_b"], F)
            self.y = _with_one(self.motor)
        self.proj = bool(cfg.get("proj"))
        if self.proj:
            self.Wp = _affine(p["proj.W"], p["proj.b"])
            self.action = np.empty(A, F)
        else:
            self.action = self.y[:-1]

    def step(self, obs: np.ndarray, dt: float, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.x
        _sub(obs, self.mean, x)
        _mul(x, self.inv_std, x)
        _clip(x, self.lo, self.hi, x)
        if self.cell == "cfc":
            layers = self.layers
            if len(layers) == 1:
                layer = layers[0]
                _copyto(layer.z_h, h)
                _copyto(self.h_new, layer.run(dt))
            else:
                for layer, sl in zip(layers, self.slices):
                    _copyto(layer.z_h, h[sl])
                prev = None
                for layer, hv in zip(layers, self.h_views):
                    if prev is not None:
                        _copyto(layer.z_in, prev)
                    prev = layer.run(dt)
                    _copyto(hv, prev)
        else:
            v = self.ltc.run(x, h, dt)
            _copyto(self.h_new, v)
            y = self.y[:-1]
            _mul(v[: self.motor], self.output_w, y)
            _add(y, self.output_b, y)
        if self.proj:
            _matmul(self.Wp, self.y, self.action)
        return self.action, self.h_new
