"""The policy artifact: round trip, runs on plain onnxruntime with no project code, refuses bad files."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from liquid_control.core import cellmath
from liquid_control.core.artifact import META_KEY, check_spec, read_artifact, write_artifact
from liquid_control.core.errors import ArtifactError
from liquid_control.core.policy import Policy
from liquid_control.core.random_params import cfc_cfg, ltc_cfg, random_params, random_rollout_inputs
from liquid_control.core.spec import load_spec, parse_spec


@pytest.fixture(scope="module")
def spec():
    return load_spec("cartpole")


@pytest.fixture()
def model(tmp_path, spec):
    cfg = cfc_cfg(spec.obs_size, 16, spec.action_size)
    params = random_params(cfg, seed=3, backbone_units=32)
    path = write_artifact(tmp_path / "m.onnx", cfg, params, spec=spec, provenance={"seed": 3, "command": "test"})
    return path, cfg, params


def test_round_trip_keeps_cfg_params_and_metadata(model, spec):
    path, cfg, params = model
    art = read_artifact(path)
    assert art.cfg == cfg
    assert sorted(art.params) == sorted(params)
    for k, v in params.items():
        np.testing.assert_array_equal(art.params[k], v)
    m = art.meta
    assert m["format_version"] == 1
    assert m["spec_hash"] == spec.hash and m["robot"] == "cartpole"
    assert m["layout"] == spec.layout()
    assert m["nominal_period"] == pytest.approx(spec.period)
    assert m["obs_labels"] == spec.obs_labels() and m["action_labels"] == list(spec.action.names)
    prov = m["provenance"]
    assert prov["seed"] == 3 and prov["command"] == "test"
    assert prov["version"] and prov["created"] and "git_commit" in prov
    assert art.parameter_count == sum(v.size for v in params.values())
    # initializers carry cellmath's names, so any ONNX tool shows the real weights
    names = {t.name for t in onnx.load(str(path)).graph.initializer}
    assert {"cfc0.bb0.W", "cfc0.heads.W", "obs_mean", "proj.W"} <= names


def test_write_is_atomic_and_overwrites(tmp_path, model):
    path, cfg, params = model
    p2 = dict(params)
    p2["obs_mean"] = params["obs_mean"] + 1
    write_artifact(path, cfg, p2)
    assert sorted(f.name for f in path.parent.iterdir()) == ["m.onnx"]  # no temporary left behind
    np.testing.assert_array_equal(read_artifact(path).params["obs_mean"], p2["obs_mean"])


PLAIN_ORT = r"""
import sys, numpy as np, onnxruntime as ort
data = np.load(sys.argv[2])
sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
obs, dts = data["obs"], data["dt"]
h = np.zeros((1, int(data["n"])), np.float32)
actions = []
for o, dt in zip(obs, dts):
    a, h = sess.run(["action", "h_out"], {"obs": o[None], "dt": np.array([[dt]], np.float32), "h_in": h})
    actions.append(a[0])
# a batch of 3 in one call, too: the graph has a dynamic batch axis
b, _ = sess.run(None, {"obs": obs[:3], "dt": dts[:3, None], "h_in": np.zeros((3, int(data["n"])), np.float32)})
np.savez(sys.argv[3], actions=np.array(actions), batch=b)
print(sorted(m for m in sys.modules if m.startswith("liquid_control")))
"""


@pytest.mark.parametrize("cfg", [cfc_cfg(17, 64, 6, layers=[35, 23, 6], mode="default"), ltc_cfg(17, 24, 4, motor_size=4)],
                         ids=["cfc-wired", "ltc"])
def test_plain_onnxruntime_runs_the_file_without_project_code(tmp_path, cfg):
    params = random_params(cfg, seed=5, sparsity=0.5)
    path = write_artifact(tmp_path / "m.onnx", cfg, params)
    obs, dts = random_rollout_inputs(cfg, 200, seed=5)
    np.savez(tmp_path / "in.npz", obs=obs, dt=dts, n=cfg["state_size"])
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_ORT)
    # -I: isolated mode, so neither the project checkout nor an editable install is importable
    out = subprocess.run([sys.executable, "-I", str(script), str(path), str(tmp_path / "in.npz"),
                          str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    got = np.load(tmp_path / "out.npz")
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    h, ref = np.zeros((1, cfg["state_size"])), []
    for o, dt in zip(obs, dts):
        a, h = cellmath.step(cfg, p64, o[None].astype(np.float64), h, np.array([[dt]], np.float64))
        ref.append(a[0])
    np.testing.assert_allclose(got["actions"], np.array(ref), atol=1e-5, rtol=0)
    ref_b, _ = cellmath.step(cfg, p64, obs[:3].astype(np.float64), np.zeros((3, cfg["state_size"])),
                             dts[:3, None].astype(np.float64))
    np.testing.assert_allclose(got["batch"], ref_b, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------- bad files

def _rewrite_meta(path, fn):
    m = onnx.load(str(path))
    props = {p.key: p.value for p in m.metadata_props}
    meta = json.loads(props[META_KEY])
    fn(meta)
    del m.metadata_props[:]
    m.metadata_props.add(key=META_KEY, value=json.dumps(meta))
    onnx.save(m, str(path))


def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match=r"policy file .*nope\.onnx does not exist"):
        read_artifact(tmp_path / "nope.onnx")


def test_directory(tmp_path):
    with pytest.raises(ArtifactError, match="is a directory"):
        read_artifact(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a model at all \x00\xff\xfe" * 10, b"\x08\x07" + bytes(range(256))],
                         ids=["empty", "garbage", "binary"])
def test_corrupt_bytes(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ArtifactError, match=r"bad\.onnx is not an ONNX model") as info:
        read_artifact(p)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("data_type, why", [(29, "data_type 29: KeyError"), (0, "data_type 0: TypeError")])
def test_an_initializer_of_a_damaged_element_type_is_one_line(tmp_path, model, data_type, why):
    """A flipped byte in an initializer's data_type (found by the long fuzz run): onnx raises KeyError or
    TypeError, which must come out as one ArtifactError naming the tensor."""
    import onnx

    m = onnx.load(str(model[0]))
    t = next(t for t in m.graph.initializer if t.name == "obs_std")
    t.data_type = data_type
    path = tmp_path / "damaged.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ArtifactError, match=rf"initializer 'obs_std' does not read as a tensor .*{why}") as info:
        read_artifact(path)
    assert "\n" not in str(info.value)


def test_truncated_file(tmp_path, model):
    path = model[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=str(path.name)):
        read_artifact(path)


def test_foreign_onnx_model(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    p = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(g), str(p))
    with pytest.raises(ArtifactError, match="foreign.onnx is an ONNX model but not a liquid_control policy"):
        read_artifact(p)


def test_unknown_format_version(model):
    path = model[0]
    _rewrite_meta(path, lambda m: m.update(format_version=99))
    with pytest.raises(ArtifactError, match="unknown artifact format_version 99"):
        read_artifact(path)


def test_metadata_not_json(model):
    path = model[0]
    m = onnx.load(str(path))
    m.metadata_props[0].value = "{broken"
    onnx.save(m, str(path))
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_artifact(path)


def test_params_inconsistent_with_cfg(model):
    path = model[0]
    _rewrite_meta(path, lambda m: m["cfg"].update(state_size=17) or m["cfg"]["cfc"]["layers"][0].update(size=17))
    with pytest.raises(ArtifactError, match=r"inconsistent with its config: parameter 'cfc0\.bb0\.W' has shape \(32, 20\), expected \(32, 21\)"):
        read_artifact(path)


def test_missing_initializer(model):
    path = model[0]
    m = onnx.load(str(path))
    keep = [t for t in m.graph.initializer if t.name != "obs_std"]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    onnx.save(m, str(path))
    with pytest.raises(ArtifactError, match="parameter 'obs_std' is missing"):
        read_artifact(path)


def test_bad_cfg(model):
    path = model[0]
    _rewrite_meta(path, lambda m: m["cfg"].update(cell="gru"))
    with pytest.raises(ArtifactError, match="cfg cell must be 'cfc' or 'ltc', got 'gru'"):
        read_artifact(path)


def test_write_refuses_inconsistent_params(tmp_path):
    cfg = ltc_cfg(4, 8, 2, motor_size=2)
    params = random_params(cfg)
    params["ltc.W"] = params["ltc.W"][:, :5]
    with pytest.raises(ArtifactError, match=r"cannot write .*: parameter 'ltc.W' has shape \(8, 5\), expected \(8, 8\)"):
        write_artifact(tmp_path / "x.onnx", cfg, params)
    params = random_params(cfg)
    params["ltc.cm"][0] = np.nan
    with pytest.raises(ArtifactError, match="'ltc.cm' holds non-finite"):
        write_artifact(tmp_path / "x.onnx", cfg, params)
    assert not (tmp_path / "x.onnx").exists()


def test_write_refuses_spec_of_other_size(tmp_path, spec):
    cfg = cfc_cfg(5, 8, 1)
    with pytest.raises(ArtifactError, match="robot spec 'cartpole' has 4 observations"):
        write_artifact(tmp_path / "x.onnx", cfg, random_params(cfg, backbone_units=8), spec=spec)


# --------------------------------------------------------------------------------------- spec check

def _cartpole_variant(spec, **changes):
    import yaml

    data = yaml.safe_load(spec.source.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[last] = value
    return parse_spec(data)


def test_check_spec_accepts_own_spec(model, spec):
    art = read_artifact(model[0])
    assert check_spec(art, spec) is None  # raises ArtifactError on any difference
    policy = Policy.load(model[0], spec=spec)
    assert policy.obs_size == spec.obs_size and policy.action_size == spec.action_size


@pytest.mark.parametrize("changes, message", [
    ({"observation.0.joints": ["hinge", "slider"]}, "observation[0].names is ['slider', 'hinge'], expected ['hinge', 'slider']"),
    ({"observation.1.field": "effort"}, "observation[1].field is 'velocity', expected 'effort'"),
    ({"observation.1.scale": 0.5}, "observation[1].scale"),
    ({"action.scale": 2.0}, "action.scale is [3.0], expected [2.0]"),
])
def test_spec_mismatch_names_the_field(model, spec, changes, message):
    other = _cartpole_variant(spec, **changes)
    with pytest.raises(ArtifactError, match="does not fit robot spec 'cartpole'") as info:
        Policy.load(model[0], spec=other)
    assert message in str(info.value)


def test_spec_mismatch_in_size_for_layoutless_model(tmp_path, spec):
    cfg = cfc_cfg(5, 8, 1)
    path = write_artifact(tmp_path / "x.onnx", cfg, random_params(cfg, backbone_units=8))  # no spec recorded
    with pytest.raises(ArtifactError, match="model takes 5 observations, spec gives 4"):
        Policy.load(path, spec=spec)


def test_spec_hash_mismatch(model, spec):
    path = model[0]
    _rewrite_meta(path, lambda m: m.update(spec_hash="0" * 16))
    with pytest.raises(ArtifactError, match="spec hash 0000000000000000 differs"):
        check_spec(read_artifact(path), spec)


def test_spec_with_same_layout_but_other_topics_is_accepted(model, spec):
    # remapping topics does not change what the model sees
    entry = replace(spec.observation[0], topic="/other/joint_states")
    remapped = replace(spec, observation=(entry, *spec.observation[1:]))
    assert remapped.hash == spec.hash  # the layout (what the model depends on) leaves topics out
    assert check_spec(read_artifact(model[0]), remapped) is None
