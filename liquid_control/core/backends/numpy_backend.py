"""The numpy backend: cellmath.step for batch 1, rewritten for latency.

A control step is a few dozen tiny array operations, so the cost is per-call overhead, not arithmetic.
Everything here serves fewer and cheaper numpy calls:

  * all buffers are preallocated at load; a step calls ufuncs and np.dot with positional `out` arguments
    on views created once, so it allocates nothing; the CfC step is a closure over those buffers;
  * float32 throughout (vectorised tanh/exp run several times faster on float32 than on float64;
    agreement with the float64 reference stays well inside 1e-5);
  * a CfC stack lives in one buffer Z = [x | h_0 | ... | h_last | 1]: each layer reads its window and
    overwrites its own state in place, so layers need no copies, and the trailing 1 carries the biases of
    the last layer's matmuls; weights are column-major (OpenBLAS's faster sgemv kernel);
  * constant factors are folded into the weights at load: lecun_tanh's 0.666 goes into its Linear and
    its 1.7159 into the columns of the next Linear; sigmoid(u) is written 0.5 + 0.5 tanh(u/2) with the
    1/2 folded into the time heads, so one tanh call covers ff1, ff2 and the gate;
  * the time scale (cfg "dt_scale", model time units per second) costs nothing per step: it is folded into
    the CfC time_a head (t_a (dt s) = (s t_a) dt) and the LTC capacitance (cm / (dt s) = (cm / s) / dt);
    pure-mode CfC multiplies -dt by a precomputed -s, which replaces the negation it did anyway;
  * the CfC gate mix ff1 (1 - s) + s ff2 = 0.5 (ff1 + ff2 + T (ff2 - ff1)) ends in one (3,) @ (3, n) dot;
  * LTC sums numerator and denominator synapses in one `vecdot` over the bounding box of the nonzero
    synapses only (for an AutoNCP wiring, 29 x 58 of the 64 x 64 recurrent matrix), and that vecdot also
    adds the per-step constants: seven numpy calls per ODE unfold.

What is left is numpy's fixed cost per call (a ufunc call, a small sgemv, a broadcast op over 64 x 64),
so LTC, with 6 x 64 x 64 sigmoids a step, stays several times slower than CfC (bench/bench_step.py).

`NumpyBackend(artifact).step(obs, dt, h)` returns views of internal buffers, valid until the next step;
Policy copies what it keeps.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from liquid_control.core import cellmath
from liquid_control.core.cellmath import OBS_CLIP, Params

F = np.float32
_mul, _add, _sub, _div = np.multiply, np.add, np.subtract, np.divide
_tanh, _exp, _abs, _copyto = np.tanh, np.exp, np.abs, np.copyto
# np.dot: for these small matrix-vector products it has less call overhead than np.matmul (measured).
_dot = np.dot
_maximum, _minimum = np.maximum, np.minimum
LECUN_IN, LECUN_OUT = 0.666, 1.7159


def _with_one(n: int) -> np.ndarray:
    """A float32 buffer of n + 1 whose last element is the constant 1 that carries the bias."""
    buf = np.zeros(n + 1, F)
    buf[-1] = 1.0
    return buf


def _affine(W: np.ndarray, b: np.ndarray, in_scale: np.ndarray | float = 1.0, out_scale: float = 1.0) -> np.ndarray:
    """[W * in_scale (per column) | b] * out_scale as float32: one matrix-vector product with a trailing 1.

    Stored column-major: OpenBLAS's non-transposed sgemv kernel is faster than the transposed one that a
    row-major matrix gets, for heads the size of a 64-unit CfC's (measured)."""
    W = np.asarray(W, np.float64) * in_scale
    return np.asfortranarray(np.concatenate([W, np.asarray(b, np.float64)[:, None]], axis=1) * out_scale, F)


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
    """One CfC layer reading `window` = [input, own old state] (+ a trailing constant 1 when `with_one`)
    and writing its new state into `out`.

    The backend lays all layers over one buffer Z = [x | h_0 | h_1 | ... | 1]: layer l reads
    [h_{l-1} new, h_l old] and overwrites h_l in place, so a wired stack needs no copies between layers and
    Z[I:] ends up holding the whole new state. Only the last layer's window reaches the trailing 1 that
    carries the bias; the others add theirs separately.
    """

    def __init__(self, p: Params, prefix: str, mode: str, activation: str, n_backbone: int,
                 window: np.ndarray, out: np.ndarray, with_one: bool, dt_scale: float = 1.0) -> None:
        n = out.shape[0]
        self.mode, self.out = mode, out
        act = _Activation(activation)
        self.first_bias: np.ndarray | None = None

        def first_affine(W: np.ndarray, b: np.ndarray, out_scale: float = 1.0) -> np.ndarray:
            if with_one:
                return _affine(W, b, 1.0, out_scale)
            self.first_bias = np.asarray(np.asarray(b, np.float64) * out_scale, F)
            return np.asfortranarray(np.asarray(W, np.float64) * out_scale, F)

        self.backbone: list[tuple[np.ndarray, np.ndarray, np.ndarray, Any]] = []
        src, col_scale = window, None
        for j in range(n_backbone):
            W, b = p[f"{prefix}bb{j}.W"], p[f"{prefix}bb{j}.b"]
            if j == 0:
                Wa = first_affine(W, b, act.pre)
            else:
                Wa = _affine(W, b, col_scale, act.pre)
            buf = _with_one(Wa.shape[0])
            self.backbone.append((Wa, src, buf[:-1], act.make(buf[:-1])))
            src, col_scale = buf, act.post
        self.src = src

        def head_affine(W: np.ndarray, b: np.ndarray) -> np.ndarray:
            return first_affine(W, b) if n_backbone == 0 else _affine(W, b, col_scale)

        if mode == "pure":
            self.W = head_affine(p[f"{prefix}ff1.W"], p[f"{prefix}ff1.b"])
            self.H = self.ff1 = np.empty(n, F)
            self.tmp = np.empty(n, F)
            self.w_tau = np.asarray(p[f"{prefix}w_tau"], F)
            self.A = np.asarray(p[f"{prefix}A"], F)
            self.neg_A = -self.A
        else:
            W = np.asarray(p[f"{prefix}heads.W"], np.float64)
            b = np.asarray(p[f"{prefix}heads.b"], np.float64)
            # rows [ff1; ff2; t_a s/2; t_b/2]: sigmoid(u) = 0.5 + 0.5 tanh(u / 2), and t_a (dt s) = (t_a s) dt
            scale = np.concatenate([np.ones(2 * n), np.full(n, 0.5 * dt_scale), np.full(n, 0.5)])
            self.W = head_affine(W * scale[:, None], b * scale)
            self.H = np.empty(4 * n, F)
            self.tanh_part = self.H[: 3 * n]          # ff1, ff2, gate argument
            self.ff1, self.ff2 = self.H[:n], self.H[n:2 * n]
            self.t_a, self.t_b = self.H[2 * n:3 * n], self.H[3 * n:]
            self.H3 = self.H[: 3 * n].reshape(3, n)
            # default: ff1 (1 - s) + s ff2 = 0.5 ff1 + 0.5 ff2 + 0.5 T (ff2 - ff1)
            # no_gate: ff1 + s ff2         = ff1 + 0.5 ff2 + 0.5 T ff2
            self.mix = np.array([0.5, 0.5, 0.5] if mode == "default" else [1.0, 0.5, 0.5], F)
        if self.first_bias is not None and n_backbone == 0:
            self.head_bias, self.bb_bias = self.first_bias, None
        else:
            self.head_bias, self.bb_bias = None, self.first_bias

    def compile(self, dt: np.ndarray, neg_dt: np.ndarray) -> Callable[[], None]:
        """The layer update as a closure over its buffers (local names, no attribute lookups per step).

        dt, neg_dt: the backend's 0-d float32 arrays holding, for the current step, dt in seconds (the time
        scale is in the weights) and -dt in model time units (pure mode)."""
        backbone = tuple(self.backbone)
        bb_bias, head_bias, W, src, H, out = self.bb_bias, self.head_bias, self.W, self.src, self.H, self.out
        dot, add, mul, sub, tanh, exp, absolute = _dot, _add, _mul, _sub, _tanh, _exp, _abs

        def run_backbone() -> None:
            first = True
            for Wb, src_b, out_b, act in backbone:
                dot(Wb, src_b, out_b)
                if first and bb_bias is not None:
                    add(out_b, bb_bias, out_b)
                first = False
                act()

        if self.mode == "pure":
            ff1, tmp, w_tau, neg_A, A = self.ff1, self.tmp, self.w_tau, self.neg_A, self.A

            def run() -> None:  # -A exp(-dt (w_tau + |ff1|)) ff1 + A
                if backbone:
                    run_backbone()
                dot(W, src, H)
                if head_bias is not None:
                    add(H, head_bias, H)
                absolute(ff1, tmp)
                add(tmp, w_tau, tmp)
                mul(tmp, neg_dt, tmp)
                exp(tmp, tmp)
                mul(tmp, ff1, tmp)
                mul(tmp, neg_A, tmp)
                add(tmp, A, out)
            return run

        t_a, t_b, ff1, ff2, tanh_part, mix, H3 = self.t_a, self.t_b, self.ff1, self.ff2, self.tanh_part, self.mix, self.H3
        gated = self.mode == "default"

        def run() -> None:
            if backbone:
                run_backbone()
            dot(W, src, H)
            if head_bias is not None:
                add(H, head_bias, H)
            mul(t_a, dt, t_a)
            add(t_a, t_b, t_a)         # u / 2
            tanh(tanh_part, tanh_part)  # ff1, ff2, T = tanh(u / 2); sigmoid = 0.5 + 0.5 T
            if gated:
                sub(ff2, ff1, t_b)     # t_b is dead once the gate argument is formed; reuse it
                mul(t_a, t_b, t_a)
            else:
                mul(t_a, ff2, t_a)
            dot(mix, H3, out)
        return run


class _Synapses:
    """S[k, n] = sum_i Wk[i, n] tanh(sigma[i, n] / 2 (pre[i] - mu[i, n])) for Wk = [Werev / 2, W / 2].

    With sigmoid(u) = 0.5 + 0.5 tanh(u / 2) this is the synaptic sum minus the constant 0.5 sum_i Wk[i, n],
    which the caller folds into its constants. Work is restricted to the bounding box of the nonzero
    synapses (an NCP wiring's recurrent synapses cover inter/command -> command/motor only), laid out
    post-major so the sum over presynaptic neurons is one `vecdot` along contiguous rows.

    With `const_column`, each row gets one more "synapse" whose tanh is exactly 1 (slope 0, offset -30)
    and whose weights `self.const` (2, post) the caller sets: the vecdot then also adds those constants,
    which saves two vector operations per ODE unfold.
    """

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, W: np.ndarray, Werev: np.ndarray,
                 pre_buffer: np.ndarray, const_column: bool = False) -> None:
        nz = (W != 0) | (Werev != 0)
        rows, cols = np.flatnonzero(nz.any(axis=1)), np.flatnonzero(nz.any(axis=0))
        if rows.size == 0:  # no synapses at all: one zero-weight synapse keeps the code path uniform
            rows = cols = np.array([0])
        self.pre = slice(int(rows[0]), int(rows[-1]) + 1)
        self.post = slice(int(cols[0]), int(cols[-1]) + 1)
        box = (self.pre, self.post)
        extra = 1 if const_column else 0
        half_sigma = 0.5 * sigma[box].T                                           # (post, pre)
        npost, npre = half_sigma.shape
        self.a = np.zeros((npost, npre + extra), F)
        self.b = np.full((npost, npre + extra), -30.0, F)   # tanh(0 * v + 30) == 1.0 exactly in float32
        self.w = np.zeros((2, npost, npre + extra), F)
        self.a[:, :npre] = half_sigma
        self.b[:, :npre] = half_sigma * mu[box].T
        self.w[0, :, :npre], self.w[1, :, :npre] = 0.5 * Werev[box].T, 0.5 * W[box].T
        self.const = self.w[:, :, npre] if const_column else None
        self.t = np.empty(self.a.shape, F)
        # A fixed view of the presynaptic values (the caller refills pre_buffer in place). With the constant
        # column it reaches one element further: any finite value works there, its slope is 0, so the
        # caller gives pre_buffer one spare element after the neurons.
        self.row = pre_buffer[self.pre.start:self.pre.stop + extra][None, :]
        assert self.row.shape[1] == npre + extra, "pre_buffer needs a spare element for the constant column"

    def sums(self, out: np.ndarray) -> np.ndarray:
        t = self.t
        _mul(self.row, self.a, t)
        _sub(t, self.b, t)
        _tanh(t, t)
        _vecdot(self.w, t, out=out)
        return out


def _vecdot_fallback(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.einsum("kni,ni->kn", a, b, out=out)


_vecdot = getattr(np, "vecdot", _vecdot_fallback)  # numpy >= 2.0 has the vecdot gufunc


class _Ltc:
    """The LTC fused semi-implicit solver, unrolled ode_unfolds times per step:

        v <- (cm_t v + gleak vleak + sum Werev sig) / (cm_t + gleak + sum W sig + eps),  cm_t = cm unfolds / dt

    Per unfold: four (post x pre) array operations for the synapses, whose vecdot also adds the per-step
    constants, then num = cm_t v + S0 and v = num / S1: seven numpy calls.
    """

    def __init__(self, p: Params, cfg: dict[str, Any]) -> None:
        c = cfg["ltc"]
        scale = cellmath.dt_scale(cfg)
        I, N = cfg["input_size"], cfg["state_size"]
        self.unfolds = int(c["ode_unfolds"])
        f64 = lambda k: np.asarray(p[k], np.float64)  # noqa: E731 - constants are folded in float64
        self.input_w, self.input_b = np.asarray(p["ltc.input_w"], F), np.asarray(p["ltc.input_b"], F)
        const_num = (f64("ltc.gleak") * f64("ltc.vleak")
                     + 0.5 * (f64("ltc.sensory_Werev").sum(0) + f64("ltc.Werev").sum(0)))
        const_den = f64("ltc.gleak") + 0.5 * (f64("ltc.sensory_W").sum(0) + f64("ltc.W").sum(0)) + float(c["epsilon"])
        self.const_num, self.const_den = const_num.astype(F), const_den.astype(F)
        # cm_t = cm / (dt s / unfolds) = (cm unfolds / s) / dt: the time scale lives in this constant
        self.cm_u = (f64("ltc.cm") * self.unfolds / scale).astype(F)
        self.xs = np.empty(I, F)
        self.v_ext = np.zeros(N + 1, F)  # the state and one spare element (see _Synapses)
        self.v = self.v_ext[:N]
        self.sensory = _Synapses(f64("ltc.sensory_mu"), f64("ltc.sensory_sigma"), f64("ltc.sensory_W"),
                                 f64("ltc.sensory_Werev"), self.xs)
        self.recurrent = _Synapses(f64("ltc.mu"), f64("ltc.sigma"), f64("ltc.W"), f64("ltc.Werev"), self.v_ext,
                                   const_column=True)
        self.cm_t = np.empty(N, F)
        # base[0] = const_num + sensory numerator, base[1] = cm_t + const_den + sensory denominator
        self.base = np.empty((2, N), F)
        self.base[0] = self.const_num
        # nd = [numerator - cm_t v; denominator]: the recurrent vecdot writes its box, the rest stays at base
        self.nd = np.empty((2, N), F)
        self.num = np.empty(N, F)
        sp, rp = self.sensory.post, self.recurrent.post
        self.sens_out = np.empty((2, sp.stop - sp.start), F)
        self.const_num_s = self.const_num[sp]
        self.base0_s, self.base1_s = self.base[0, sp], self.base[1, sp]
        self.base_r, self.nd_r = self.base[:, rp], self.nd[:, rp]
        self.nd0, self.nd1 = self.nd[0], self.nd[1]
        self.inv_dt = np.zeros((), F)

    def run(self, x: np.ndarray, h: np.ndarray, dt: float) -> np.ndarray:
        xs, v, num, cm_t, nd0, nd1, nd_r = self.xs, self.v, self.num, self.cm_t, self.nd0, self.nd1, self.nd_r
        _mul(x, self.input_w, xs)
        _add(xs, self.input_b, xs)
        self.inv_dt[()] = 1.0 / dt
        _mul(self.cm_u, self.inv_dt, cm_t)
        _add(cm_t, self.const_den, self.base[1])
        s = self.sensory.sums(self.sens_out)
        _add(self.const_num_s, s[0], self.base0_s)
        _add(self.base1_s, s[1], self.base1_s)
        _copyto(self.recurrent.const, self.base_r)
        _copyto(self.nd, self.base)
        _copyto(v, h)
        sums = self.recurrent.sums
        for _ in range(self.unfolds):
            sums(nd_r)
            _mul(cm_t, v, num)
            _add(num, nd0, num)
            _div(num, nd1, v)
        return v


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
        self.dt, self.neg_dt = np.zeros((), F), np.zeros((), F)
        self.cell = cfg["cell"]
        self.neg_dt_scale = -cellmath.dt_scale(cfg)
        if self.cell == "cfc":
            c = cfg["cfc"]
            # Z = [x | h_0 | ... | h_last | 1]; see _CfcLayer
            self.Z = _with_one(I + N)
            self.x, self.h_new = self.Z[:I], self.Z[I:I + N]
            self.layers: list[_CfcLayer] = []
            in_size, start = I, I
            specs = c["layers"]
            for layer, spec in enumerate(specs):
                n, last = spec["size"], layer == len(specs) - 1
                window = self.Z[start - in_size:start + n + (1 if last else 0)]
                self.layers.append(_CfcLayer(p, f"cfc{layer}.", c["mode"], c["activation"], spec["backbone"],
                                             window, self.Z[start:start + n], with_one=last,
                                             dt_scale=cellmath.dt_scale(cfg)))
                in_size, start = n, start + n
            self.y = self.Z[I + N - in_size:]  # last layer's state and the trailing 1: the projection's input
        else:
            self.ltc = _Ltc(p, cfg)
            self.x = np.empty(I, F)
            self.motor = cfg["ltc"]["motor_size"]
            self.output_w, self.output_b = np.asarray(p["ltc.output_w"], F), np.asarray(p["ltc.output_b"], F)
            self.y = _with_one(self.motor)
            self.motor_out, self.v_motor = self.y[:-1], self.ltc.v[: self.motor]
        self.proj = bool(cfg.get("proj"))
        if self.proj:
            self.Wp = _affine(p["proj.W"], p["proj.b"])
            self.action = np.empty(A, F)
        else:
            self.action = self.y[:-1]

        self.step = self._step_ltc if self.cell == "ltc" else self._compile_cfc()

    def _normalise(self, obs: np.ndarray) -> None:
        x = self.x
        _sub(obs, self.mean, x)
        _mul(x, self.inv_std, x)
        _minimum(x, self.hi, out=x)  # clip to [lo, hi]: two ufuncs cost less than np.clip
        _maximum(x, self.lo, out=x)

    def _compile_cfc(self) -> Callable[[np.ndarray, float, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The whole CfC step as one closure over preallocated buffers."""
        dt0, ndt = self.dt, self.neg_dt
        runs = tuple(layer.compile(dt0, ndt) for layer in self.layers)
        single = runs[0] if len(runs) == 1 else None
        need_neg, neg_scale = self.cfg["cfc"]["mode"] == "pure", self.neg_dt_scale
        x, mean, inv_std, lo, hi, h_new = self.x, self.mean, self.inv_std, self.lo, self.hi, self.h_new
        proj, Wp, y, action = self.proj, getattr(self, "Wp", None), self.y, self.action
        result = (self.action, self.h_new)
        sub, mul, minimum, maximum, copyto, dot = _sub, _mul, _minimum, _maximum, _copyto, _dot

        def step(obs: np.ndarray, dt: float, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            sub(obs, mean, x)
            mul(x, inv_std, x)
            minimum(x, hi, out=x)
            maximum(x, lo, out=x)
            dt0[()] = dt
            if need_neg:
                ndt[()] = dt * neg_scale  # -dt in model time units
            copyto(h_new, h)  # the layers update Z[I:] in place, in order
            if single is not None:
                single()
            else:
                for run in runs:
                    run()
            if proj:
                dot(Wp, y, action)
            return result

        return step

    def _step_ltc(self, obs: np.ndarray, dt: float, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._normalise(obs)
        v = self.ltc.run(self.x, h, dt)
        y = self.motor_out
        _mul(self.v_motor, self.output_w, y)
        _add(y, self.output_b, y)
        if self.proj:
            _dot(self.Wp, self.y, self.action)
        return self.action, v
