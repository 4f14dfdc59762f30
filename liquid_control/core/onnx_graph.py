"""Build the single-step ONNX graph of a liquid policy from its canonical config and parameters.

    obs [batch, I] float32, dt [batch, 1] float32 (seconds), h_in [batch, N] float32
        -> action [batch, A], h_out [batch, N]

The graph is `cellmath.step` op for op (normalisation, CfC in every mode with wired multi-layer stacks,
LTC with its ode_unfolds unrolled, the optional projection), so any ONNX runtime, C++ included, runs a
policy with no project code. Weights are initializers named exactly as in cellmath (e.g. "cfc0.heads.W"),
which is how `artifact.read_artifact` gets the parameters back. A model whose time unit is not the second
(cfg "dt_scale" != 1) starts with one Mul of dt by the initializer "dt_scale", so the graph's dt input is
seconds for every caller.

Opset 17 / IR 8: old enough for the ONNX Runtime builds that ship on robots, new enough for ReduceSum with
an `axes` input.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from liquid_control.core.cellmath import OBS_CLIP, Params, dt_scale

OPSET = 17
IR_VERSION = 8
INPUTS = ("obs", "dt", "h_in")
OUTPUTS = ("action", "h_out")
DT_SCALE_INIT = "dt_scale"  # the initializer holding cfg["dt_scale"]; absent when it is 1


class _Graph:
    """A tiny node/initializer accumulator with unique intermediate names."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self._count = 0

    def param(self, name: str) -> str:
        if name not in self.inits:
            self.inits[name] = numpy_helper.from_array(np.asarray(self.params[name], dtype=np.float32), name)
        return name

    def const(self, value: Any, dtype: type = np.float32) -> str:
        self._count += 1
        name = f"const_{self._count}"
        self.inits[name] = numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        self._count += 1
        name = out or f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=f"n{self._count}_{op_type}", **attrs))
        return name

    def split(self, x: str, sizes: list[int]) -> list[str]:
        """Split along axis 1 into pieces of the given sizes."""
        sizes_name = self.const(sizes, np.int64)
        self._count += 1
        outs = [f"split_{self._count}_{i}" for i in range(len(sizes))]
        self.nodes.append(helper.make_node("Split", [x, sizes_name], outs, name=f"n{self._count}_Split", axis=1))
        return outs

    def linear(self, x: str, prefix: str) -> str:
        # Gemm with transB=1 takes W as stored, (out, in), so initializers keep cellmath's names and shapes.
        return self.op("Gemm", x, self.param(prefix + ".W"), self.param(prefix + ".b"), transB=1)

    def sigmoid(self, x: str) -> str:
        return self.op("Sigmoid", x)

    def activation(self, name: str, x: str) -> str:
        if name == "lecun_tanh":
            return self.op("Mul", self.op("Tanh", self.op("Mul", x, self.const(0.666))), self.const(1.7159))
        if name == "tanh":
            return self.op("Tanh", x)
        if name == "relu":
            return self.op("Relu", x)
        if name == "silu":
            return self.op("Mul", x, self.sigmoid(x))
        if name == "gelu":  # exact erf form, as torch.nn.GELU's default
            erf = self.op("Erf", self.op("Mul", x, self.const(1.0 / math.sqrt(2.0))))
            return self.op("Mul", self.op("Mul", x, self.const(0.5)), self.op("Add", erf, self.const(1.0)))
        raise ValueError(f"unknown activation {name!r}")


def _cfc_layer(g: _Graph, prefix: str, mode: str, act: str, n_backbone: int, n: int, x: str, h: str, dt: str) -> str:
    z = g.op("Concat", x, h, axis=1)
    for j in range(n_backbone):
        z = g.activation(act, g.linear(z, f"{prefix}bb{j}"))
    if mode == "pure":
        ff1 = g.linear(z, f"{prefix}ff1")
        rate = g.op("Add", g.param(f"{prefix}w_tau"), g.op("Abs", ff1))
        decay = g.op("Exp", g.op("Neg", g.op("Mul", dt, rate)))
        a = g.param(f"{prefix}A")
        return g.op("Add", g.op("Mul", g.op("Neg", g.op("Mul", a, decay)), ff1), a)
    heads = g.linear(z, f"{prefix}heads")
    ff1, ff2, t_a, t_b = g.split(heads, [n] * 4)
    ff1, ff2 = g.op("Tanh", ff1), g.op("Tanh", ff2)
    t_interp = g.sigmoid(g.op("Add", g.op("Mul", t_a, dt), t_b))
    if mode == "no_gate":
        return g.op("Add", ff1, g.op("Mul", t_interp, ff2))
    one_minus = g.op("Sub", g.const(1.0), t_interp)
    return g.op("Add", g.op("Mul", ff1, one_minus), g.op("Mul", t_interp, ff2))


def _ltc_state(g: _Graph, unfolds: int, epsilon: float, x: str, v: str, dt: str) -> str:
    x = g.op("Add", g.op("Mul", x, g.param("ltc.input_w")), g.param("ltc.input_b"))
    axis1 = g.const([1], np.int64)
    axis2 = g.const([2], np.int64)

    def synapses(pre: str, kind: str) -> tuple[str, str]:
        # sigmoid((pre[:, :, None] - mu) * sigma), then the weighted sums over the presynaptic axis.
        sig = g.sigmoid(g.op("Mul", g.op("Sub", g.op("Unsqueeze", pre, axis2), g.param(f"ltc.{kind}mu")),
                             g.param(f"ltc.{kind}sigma")))
        num = g.op("ReduceSum", g.op("Mul", g.param(f"ltc.{kind}Werev"), sig), axis1, keepdims=0)
        den = g.op("ReduceSum", g.op("Mul", g.param(f"ltc.{kind}W"), sig), axis1, keepdims=0)
        return num, den

    num_s, den_s = synapses(x, "sensory_")
    cm_t = g.op("Div", g.param("ltc.cm"), g.op("Div", dt, g.const(float(unfolds))))
    gleak = g.param("ltc.gleak")
    leak = g.op("Mul", gleak, g.param("ltc.vleak"))
    eps = g.const(float(epsilon))
    for _ in range(unfolds):
        num_r, den_r = synapses(v, "")
        num = g.op("Add", g.op("Add", g.op("Add", g.op("Mul", cm_t, v), leak), num_r), num_s)
        den = g.op("Add", g.op("Add", g.op("Add", cm_t, gleak), den_r), den_s)
        v = g.op("Div", num, g.op("Add", den, eps))
    return v


def build_model(cfg: dict[str, Any], params: Params, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The single-step graph for `cfg`/`params` (already validated), with `metadata` as metadata_props."""
    g = _Graph(params)
    dt = "dt"
    scale = dt_scale(cfg)
    if scale != 1.0:  # seconds -> the model's time unit; the name is what read_artifact checks against cfg
        g.inits[DT_SCALE_INIT] = numpy_helper.from_array(np.asarray(scale, dtype=np.float32), DT_SCALE_INIT)
        dt = g.op("Mul", "dt", DT_SCALE_INIT)
    x = g.op("Div", g.op("Sub", "obs", g.param("obs_mean")), g.param("obs_std"))
    x = g.op("Clip", x, g.const(-OBS_CLIP), g.const(OBS_CLIP))
    if cfg["cell"] == "cfc":
        c = cfg["cfc"]
        layers = c["layers"]
        hs = ["h_in"] if len(layers) == 1 else g.split("h_in", [spec["size"] for spec in layers])
        new_h, inp = [], x
        for layer, spec in enumerate(layers):
            inp = _cfc_layer(g, f"cfc{layer}.", c["mode"], c["activation"], spec["backbone"], spec["size"],
                             inp, hs[layer], dt)
            new_h.append(inp)
        h_out = g.op("Identity", new_h[0], out="h_out") if len(new_h) == 1 else g.op("Concat", *new_h, axis=1, out="h_out")
        y = inp
    elif cfg["cell"] == "ltc":
        c = cfg["ltc"]
        v = _ltc_state(g, c["ode_unfolds"], c["epsilon"], x, "h_in", dt)
        h_out = g.op("Identity", v, out="h_out")
        motor = g.op("Slice", h_out, g.const([0], np.int64), g.const([c["motor_size"]], np.int64),
                     g.const([1], np.int64))
        y = g.op("Add", g.op("Mul", motor, g.param("ltc.output_w")), g.param("ltc.output_b"))
    else:
        raise ValueError(f"unknown cell {cfg['cell']!r}")
    if cfg.get("proj"):
        y = g.linear(y, "proj")
    g.op("Identity", y, out="action")

    I, N, A = cfg["input_size"], cfg["state_size"], cfg["output_size"]
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes, "liquid_policy_step",
        inputs=[helper.make_tensor_value_info("obs", f32, ["batch", I]),
                helper.make_tensor_value_info("dt", f32, ["batch", 1]),
                helper.make_tensor_value_info("h_in", f32, ["batch", N])],
        outputs=[helper.make_tensor_value_info("action", f32, ["batch", A]),
                 helper.make_tensor_value_info("h_out", f32, ["batch", N])],
        initializer=list(g.inits.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="liquid_control", ir_version=IR_VERSION)
    model.doc_string = "Liquid policy, one control step: obs, dt (seconds), h_in -> action, h_out"
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    return model
