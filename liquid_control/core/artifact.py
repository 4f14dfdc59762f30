"""The policy artifact: one ONNX file that runs on its own and describes itself.

The file is a single-step ONNX model (see onnx_graph.py) whose initializers are the canonical cellmath
parameters, plus one metadata_props entry, key "liquid_control", holding a JSON object:

    {"format_version": 1 | 2,
     "cfg": {...cellmath config, including "dt_scale" when the model's time unit is not the second...},
     "layout": {"observation": [...], "action": {...}} | null,   # RobotSpec.layout() it was trained for
     "spec_hash": "16 hex" | null, "robot": "cartpole" | null,
     "nominal_period": 0.04 | null,                              # seconds per control tick in training
     "obs_labels": [...], "action_labels": [...],
     "provenance": {"command", "seed", "version", "created", "git_commit", ...},
     "graph_sha256": "64 hex"}                                   # over the graph: nodes and initializers

Reading verifies the file before any backend runs it, so no two backends can disagree on one file: the
graph must be exactly the one onnx_graph builds from the stored config and weights (a node edited to scale
the action would change what onnxruntime computes but not what numpy computes), its SHA-256 must match
(byte flips in the weights), and nothing may live outside the file (ONNX external data is refused).

Every backend loads this one file: numpy and torch take the parameters from the initializers, onnxruntime
runs the graph itself.

Format 2 is format 1 plus a time scale: cfg "dt_scale" != 1, applied in the graph by one Mul on dt whose
constant is the initializer onnx_graph.DT_SCALE_INIT. A file is written with the lowest version that can
hold it, so models in seconds stay readable by format-1 readers, and a reader that does not know the time
scale refuses a scaled model instead of running it dt_scale times too slow or too fast.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liquid_control.core import cellmath
from liquid_control.core.cellmath import ACTIVATIONS, Params
from liquid_control.core.errors import ArtifactError
from liquid_control.core.spec import RobotSpec, layout_difference, layout_hash

META_KEY = "liquid_control"
MAX_MODEL_BYTES = 256 << 20        # a CfC of 1,000 units is a few MiB
MAX_META_BYTES = 1 << 20            # the metadata JSON: a few KiB in practice
MAX_META_DEPTH = 32
FORMAT_VERSION = 2                  # the newest format this code writes
READABLE_VERSIONS = (1, 2)
CFC_MODES = ("default", "pure", "no_gate")


# ---------------------------------------------------------------------------------------------- checks

def check_cfg(cfg: Any) -> None:
    """Raise ValueError naming the first thing wrong with a cellmath config."""
    if not isinstance(cfg, dict):
        raise ValueError("cfg is not a mapping")
    for key in ("cell", "input_size", "state_size", "output_size"):
        if key not in cfg:
            raise ValueError(f"cfg has no {key!r}")
    for key in ("input_size", "state_size", "output_size"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise ValueError(f"cfg {key} must be a positive integer, got {cfg[key]!r}")
    cell = cfg["cell"]
    if cell == "cfc":
        c = cfg.get("cfc")
        if not isinstance(c, dict):
            raise ValueError("cfg has no 'cfc' section")
        if c.get("mode") not in CFC_MODES:
            raise ValueError(f"cfg cfc.mode must be one of {list(CFC_MODES)}, got {c.get('mode')!r}")
        if c.get("activation") not in ACTIVATIONS:
            raise ValueError(f"cfg cfc.activation must be one of {sorted(ACTIVATIONS)}, got {c.get('activation')!r}")
        layers = c.get("layers")
        if not isinstance(layers, list) or not layers:
            raise ValueError("cfg cfc.layers must be a non-empty list")
        for i, spec in enumerate(layers):
            if not isinstance(spec, dict) or not isinstance(spec.get("size"), int) or spec["size"] < 1 \
                    or not isinstance(spec.get("backbone"), int) or spec["backbone"] < 0:
                raise ValueError(f"cfg cfc.layers[{i}] must be {{'size': int >= 1, 'backbone': int >= 0}}, got {spec!r}")
        total = sum(s["size"] for s in layers)
        if total != cfg["state_size"]:
            raise ValueError(f"cfg cfc layer sizes sum to {total}, but state_size is {cfg['state_size']}")
        out = layers[-1]["size"]
    elif cell == "ltc":
        c = cfg.get("ltc")
        if not isinstance(c, dict):
            raise ValueError("cfg has no 'ltc' section")
        m, u, eps = c.get("motor_size"), c.get("ode_unfolds"), c.get("epsilon")
        if not isinstance(m, int) or not 1 <= m <= cfg["state_size"]:
            raise ValueError(f"cfg ltc.motor_size must be in 1..{cfg['state_size']}, got {m!r}")
        if not isinstance(u, int) or u < 1:
            raise ValueError(f"cfg ltc.ode_unfolds must be a positive integer, got {u!r}")
        if not isinstance(eps, (int, float)) or not np.isfinite(eps) or eps < 0:
            raise ValueError(f"cfg ltc.epsilon must be a finite number >= 0, got {eps!r}")
        out = m
    else:
        raise ValueError(f"cfg cell must be 'cfc' or 'ltc', got {cell!r}")
    if not cfg.get("proj") and out != cfg["output_size"]:
        raise ValueError(f"cfg output_size is {cfg['output_size']} but the cell gives {out} outputs and proj is off")
    if "dt_scale" in cfg:
        s = cfg["dt_scale"]
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not np.isfinite(s) or s <= 0:
            raise ValueError(f"cfg dt_scale (model time units per second) must be a finite number > 0, got {s!r}")


def param_shapes(cfg: dict[str, Any], params: Params | None = None) -> dict[str, tuple[int, ...]]:
    """The name -> shape every parameter of `cfg` must have. Backbone widths are not in the config, so
    they are read from `params` when given (and checked for chaining)."""
    I, N, A = cfg["input_size"], cfg["state_size"], cfg["output_size"]
    shapes: dict[str, tuple[int, ...]] = {"obs_mean": (I,), "obs_std": (I,)}
    if cfg["cell"] == "cfc":
        c, inp = cfg["cfc"], I
        for layer, spec in enumerate(c["layers"]):
            pre, n, width = f"cfc{layer}.", spec["size"], inp + spec["size"]
            for j in range(spec["backbone"]):
                w = params.get(f"{pre}bb{j}.W") if params is not None else None
                units = int(w.shape[0]) if w is not None and np.ndim(w) == 2 else -1
                shapes[f"{pre}bb{j}.W"], shapes[f"{pre}bb{j}.b"] = (units, width), (units,)
                width = units
            if c["mode"] == "pure":
                shapes.update({f"{pre}ff1.W": (n, width), f"{pre}ff1.b": (n,), f"{pre}w_tau": (n,), f"{pre}A": (n,)})
            else:
                shapes.update({f"{pre}heads.W": (4 * n, width), f"{pre}heads.b": (4 * n,)})
            inp = n
        out = inp
    else:
        M = cfg["ltc"]["motor_size"]
        shapes.update({"ltc.input_w": (I,), "ltc.input_b": (I,), "ltc.cm": (N,), "ltc.gleak": (N,),
                       "ltc.vleak": (N,), "ltc.output_w": (M,), "ltc.output_b": (M,)})
        for k in ("mu", "sigma", "W", "Werev"):
            shapes[f"ltc.sensory_{k}"], shapes[f"ltc.{k}"] = (I, N), (N, N)
        out = M
    if cfg.get("proj"):
        shapes["proj.W"], shapes["proj.b"] = (A, out), (A,)
    return shapes


def check_params(cfg: dict[str, Any], params: Params) -> None:
    """Raise ValueError naming the first parameter that is missing, misshapen or non-finite."""
    for name, shape in param_shapes(cfg, params).items():
        if name not in params:
            raise ValueError(f"parameter {name!r} is missing")
        arr = np.asarray(params[name])
        if arr.shape != shape:
            raise ValueError(f"parameter {name!r} has shape {arr.shape}, expected {shape}")
        if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
            raise ValueError(f"parameter {name!r} holds non-finite or non-numeric values")
    if np.any(np.asarray(params["obs_std"]) <= 0):
        raise ValueError("parameter 'obs_std' must be > 0")


# ---------------------------------------------------------------------------------------------- write

def _git_commit() -> str | None:
    """The source checkout's commit, when this package runs from a git checkout (best effort)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def default_provenance(**extra: Any) -> dict[str, Any]:
    from liquid_control import __version__

    prov: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else None,
        "seed": None,
        "version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }
    prov.update(extra)
    return prov


def write_artifact(path: str | Path, cfg: dict[str, Any], params: Params, *, spec: RobotSpec | None = None,
                   nominal_period: float | None = None, provenance: dict[str, Any] | None = None,
                   layout: dict[str, Any] | None = None) -> Path:
    """Write a policy artifact atomically (temporary file + os.replace) and return its path.

    `spec` fills the layout, hash, robot name, labels and (unless given) the nominal period; `layout`
    alone can stand in for a spec. `provenance` entries override the defaults (command line, version,
    time, git commit); pass at least {"seed": ...} from training.
    """
    from liquid_control.core.onnx_graph import build_model

    path = Path(path)
    try:
        check_cfg(cfg)
        check_params(cfg, params)
    except ValueError as exc:
        raise ArtifactError(f"cannot write {path}: {exc}") from None
    if spec is not None:
        if spec.obs_size != cfg["input_size"] or spec.action_size != cfg["output_size"]:
            raise ArtifactError(f"cannot write {path}: robot spec {spec.name!r} has {spec.obs_size} observations and "
                                f"{spec.action_size} actions, the model {cfg['input_size']} and {cfg['output_size']}")
        layout = spec.layout()
        if nominal_period is None:
            nominal_period = spec.period
    meta = {
        "format_version": 1 if cellmath.dt_scale(cfg) == 1.0 else FORMAT_VERSION,
        "cfg": cfg,
        "layout": layout,
        "spec_hash": layout_hash(layout) if layout is not None else None,
        "robot": spec.name if spec is not None else None,
        "nominal_period": None if nominal_period is None else float(nominal_period),
        "obs_labels": spec.obs_labels() if spec is not None else None,
        "action_labels": list(spec.action.names) if spec is not None else None,
        "provenance": default_provenance(**(provenance or {})),
    }
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
    meta["graph_sha256"] = graph_digest(build_model(cfg, arrays, {}).graph)
    model = build_model(cfg, arrays, {META_KEY: json.dumps(meta, sort_keys=True)})
    data = model.SerializeToString()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------------------------------------- read

@dataclass
class Artifact:
    path: Path
    cfg: dict[str, Any]
    params: dict[str, np.ndarray]
    meta: dict[str, Any]
    model_bytes: bytes = field(repr=False)

    @property
    def obs_size(self) -> int:
        return int(self.cfg["input_size"])

    @property
    def action_size(self) -> int:
        return int(self.cfg["output_size"])

    @property
    def state_size(self) -> int:
        return int(self.cfg["state_size"])

    @property
    def nominal_period(self) -> float | None:
        return self.meta.get("nominal_period")

    @property
    def dt_scale(self) -> float:
        """Model time units per second: the cells see dt * dt_scale (1.0: the model counts in seconds)."""
        return cellmath.dt_scale(self.cfg)

    @property
    def parameter_count(self) -> int:
        """Stored parameter values (effective weights; masked-out synapses are stored as zeros)."""
        return int(sum(v.size for v in self.params.values()))


def _tensor(t: Any) -> np.ndarray:
    """An initializer as float32; ValueError (one line) for one whose element type is damaged or unknown."""
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(t).astype(np.float32, copy=False)
    except (KeyError, TypeError, ValueError) as exc:  # onnx: an unknown data_type code, UNDEFINED, bad sizes
        raise ValueError(f"initializer {t.name!r} does not read as a tensor (data_type {t.data_type}: "
                         f"{type(exc).__name__} {exc})") from None


def read_artifact(path: str | Path) -> Artifact:
    """Load and validate an artifact. Every failure is one ArtifactError naming what and where."""
    import onnx

    from liquid_control.core.errors import LiquidControlError
    from liquid_control.core.outputs import regular_file

    path = Path(path)
    try:
        regular_file(path, "policy file")  # a FIFO or /dev/zero would be read forever
        with path.open("rb") as f:
            data = f.read(MAX_MODEL_BYTES + 1)
    except LiquidControlError as exc:
        raise ArtifactError(str(exc)) from None
    except OSError as exc:
        raise ArtifactError(f"cannot read policy file {path}: {exc.strerror}") from None
    if len(data) > MAX_MODEL_BYTES:
        raise ArtifactError(f"policy file {path} is larger than {MAX_MODEL_BYTES >> 20} MiB; not a liquid policy")
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning-ish errors vary by version
        raise ArtifactError(f"{path} is not an ONNX model (corrupt or another format: {type(exc).__name__})") from None
    if not data or not model.HasField("graph") or not model.graph.node:
        raise ArtifactError(f"{path} is not an ONNX model (no graph; corrupt or another format)")
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ArtifactError(f"{path}: weights stored outside the file (ONNX external data: {external[0]!r}); "
                            "a policy artifact is one self-contained file")
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise ArtifactError(f"{path} is an ONNX model but not a liquid_control policy (no '{META_KEY}' metadata)")
    try:
        meta = _parse_meta(props[META_KEY])
    except ValueError as exc:
        raise ArtifactError(f"{path}: the '{META_KEY}' metadata {exc}") from None
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ArtifactError(f"{path}: unknown artifact format_version {version!r} (this liquid_control reads "
                            f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade liquid_control or re-export the model")
    cfg = meta.get("cfg")
    try:
        check_cfg(cfg)
        wanted = set(param_shapes(cfg))
        params = {t.name: _tensor(t) for t in model.graph.initializer if t.name in wanted}
        check_params(cfg, params)
        _check_graph_dt_scale(cfg, model)
        _check_graph_is_built_from(cfg, params, model)
    except ValueError as exc:
        raise ArtifactError(f"{path}: model inconsistent with its config: {exc}") from None
    stored = meta.get("graph_sha256")
    if stored is not None and stored != graph_digest(model.graph):
        raise ArtifactError(f"{path}: the graph's SHA-256 is not the one recorded at export "
                            "(the file was altered or corrupted); re-export the policy")
    from liquid_control.core.onnx_graph import IR_VERSION, OPSET

    opsets = [(o.domain, o.version) for o in model.opset_import]
    if model.ir_version != IR_VERSION or opsets != [("", OPSET)]:
        raise ArtifactError(f"{path}: ONNX IR version {model.ir_version} and opsets {opsets}, expected IR "
                            f"{IR_VERSION} and opset {OPSET} as exported (edited or corrupted)")
    names = {i.name for i in model.graph.input}, {o.name for o in model.graph.output}
    if names != ({"obs", "dt", "h_in"}, {"action", "h_out"}):
        raise ArtifactError(f"{path}: graph has inputs {sorted(names[0])} and outputs {sorted(names[1])}, "
                            "expected obs, dt, h_in -> action, h_out")
    return Artifact(path=path, cfg=cfg, params=params, meta=meta, model_bytes=data)


def graph_digest(graph: Any) -> str:
    """SHA-256 of an ONNX graph (nodes, initializers, inputs, outputs; not the model's metadata)."""
    import hashlib

    return hashlib.sha256(graph.SerializeToString(deterministic=True)).hexdigest()


def _meta_depth(value: Any, limit: int) -> int:
    stack, deepest = [(value, 1)], 0
    while stack:
        v, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
    return deepest


def _parse_meta(text: str) -> dict[str, Any]:
    """The metadata object, bounded in size and depth and typed field by field; ValueError says what is wrong."""
    from liquid_control.core import checks
    from liquid_control.core.errors import SpecError

    if len(text) > MAX_META_BYTES:
        raise ValueError(f"is larger than {MAX_META_BYTES} bytes")
    try:
        meta = json.loads(text)
    except RecursionError:
        raise ValueError(f"is nested deeper than {MAX_META_DEPTH} levels") from None
    except ValueError as exc:
        raise ValueError(f"is not valid JSON ({exc})") from None
    if _meta_depth(meta, MAX_META_DEPTH) > MAX_META_DEPTH:
        raise ValueError(f"is nested deeper than {MAX_META_DEPTH} levels")
    if not isinstance(meta, dict):
        raise ValueError("is not a JSON object")
    optional = {"layout": dict, "spec_hash": str, "obs_labels": list, "action_labels": list, "provenance": dict,
                "graph_sha256": str}
    for key, kind in optional.items():
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise ValueError(f"field {key!r} must be a {kind.__name__}, got {type(meta[key]).__name__}")
    try:
        if meta.get("robot") is not None:
            checks.name(meta["robot"], "robot")  # a name, never a path: replay looks the spec up by it
        if meta.get("nominal_period") is not None:
            checks.number(meta["nominal_period"], "nominal_period", low=0.0, low_open=True, high=3600.0)
    except SpecError as exc:
        raise ValueError(f"field {exc}") from None
    return meta


def _check_graph_is_built_from(cfg: dict[str, Any], params: Params, model: Any) -> None:
    """The graph must be the one onnx_graph builds from this config and these weights, node for node."""
    from liquid_control.core.onnx_graph import build_model

    expected = build_model(cfg, params, {}).graph
    if graph_digest(_without_name(model.graph)) != graph_digest(_without_name(expected)):
        raise ValueError("the graph is not the one its config and weights imply (edited after export?)")


def _without_name(graph: Any) -> Any:
    import onnx

    copy = onnx.GraphProto()
    copy.CopyFrom(graph)
    copy.name = ""
    copy.doc_string = ""
    return copy


def _check_graph_dt_scale(cfg: dict[str, Any], model: Any) -> None:
    """The graph's time scale (what plain onnxruntime applies) must be the config's (what numpy and torch
    apply), or backends would silently disagree by that factor."""
    from liquid_control.core.onnx_graph import DT_SCALE_INIT

    want = cellmath.dt_scale(cfg)
    found = [_tensor(t) for t in model.graph.initializer if t.name == DT_SCALE_INIT]
    have = float(found[0]) if len(found) == 1 and found[0].size == 1 else (1.0 if not found else None)
    if have is None or not np.isclose(have, want, rtol=1e-6, atol=0.0):
        raise ValueError(f"the graph scales dt by {have if have is not None else 'a malformed constant'}, "
                         f"the config says dt_scale {want:g}")


def check_spec(artifact: Artifact, spec: RobotSpec) -> None:
    """Refuse a model trained for another robot interface, naming the first difference.

    A model without a recorded layout (e.g. imported from ncps without a spec) can only be checked for
    its sizes; that check still runs.
    """
    where = f"{artifact.path} does not fit robot spec {spec.name!r}"
    layout = artifact.meta.get("layout")
    if layout is not None:
        diff = layout_difference(spec.layout(), layout)
        if diff is not None:
            raise ArtifactError(f"{where} (model vs spec): {diff}")
        stored = artifact.meta.get("spec_hash")
        if stored is not None and stored != spec.hash:
            raise ArtifactError(f"{where}: spec hash {stored} differs from the spec's {spec.hash}")
    if artifact.obs_size != spec.obs_size:
        raise ArtifactError(f"{where}: model takes {artifact.obs_size} observations, spec gives {spec.obs_size}")
    if artifact.action_size != spec.action_size:
        raise ArtifactError(f"{where}: model gives {artifact.action_size} actions, spec takes {spec.action_size}")
