"""A policy file is verified before any backend runs it: an edited graph, altered weights, external data,
a path for a robot name and oversized or over-deep metadata are each refused with one ArtifactError line."""
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from liquid_control import Policy
from liquid_control.core.artifact import META_KEY, graph_digest, read_artifact
from liquid_control.core.errors import ArtifactError

SHIPPED = Path(__file__).resolve().parents[1] / "policies" / "cartpole.onnx"


def _edit(tmp_path: Path, change, name="edited.onnx") -> Path:
    model = onnx.load(str(SHIPPED))
    change(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _meta(model: onnx.ModelProto) -> tuple[onnx.StringStringEntryProto, dict]:
    prop = next(p for p in model.metadata_props if p.key == META_KEY)
    return prop, json.loads(prop.value)


def _set_meta(model, **fields):
    prop, meta = _meta(model)
    meta.update(fields)
    prop.value = json.dumps(meta)


def test_shipped_policy_records_its_graph_digest():
    model = onnx.load(str(SHIPPED))
    assert _meta(model)[1]["graph_sha256"] == graph_digest(model.graph)
    assert read_artifact(SHIPPED).meta["graph_sha256"] == graph_digest(model.graph)


def _scale_action(model):
    # what onnxruntime would compute changes (action * -100); the weights numpy reads do not
    producer = next(n for n in model.graph.node if "action" in n.output)
    producer.output[list(producer.output).index("action")] = "action_unscaled"
    model.graph.initializer.append(numpy_helper.from_array(np.array(-100.0, dtype=np.float32), "evil_gain"))
    model.graph.node.append(helper.make_node("Mul", ["action_unscaled", "evil_gain"], ["action"], name="evil"))


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_an_edited_graph_is_refused_by_every_backend(tmp_path, backend):
    path = _edit(tmp_path, _scale_action)
    with pytest.raises(ArtifactError, match="the graph is not the one its config and weights imply"):
        Policy.load(path, backend=backend)
    # recording a fresh digest does not help: the graph is still not the one the config implies
    path = _edit(tmp_path, lambda m: (_scale_action(m), _set_meta(m, graph_sha256=graph_digest(m.graph))), "re.onnx")
    with pytest.raises(ArtifactError, match="the graph is not the one its config and weights imply"):
        Policy.load(path, backend=backend)


def test_a_flipped_weight_byte_is_refused(tmp_path):
    def flip(model):
        t = next(t for t in model.graph.initializer if t.name == "cfc0.heads.W")
        w = numpy_helper.to_array(t).copy()
        w.view(np.uint8)[5] ^= 0x01  # one low mantissa bit: finite, plausible, wrong
        t.CopyFrom(numpy_helper.from_array(w, t.name))

    with pytest.raises(ArtifactError, match="SHA-256 is not the one recorded at export"):
        read_artifact(_edit(tmp_path, flip))


def test_external_data_is_refused(tmp_path):
    def external(model):
        t = next(t for t in model.graph.initializer if t.name == "cfc0.heads.W")
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        t.external_data.add(key="location", value="../../etc/passwd")

    with pytest.raises(ArtifactError, match="weights stored outside the file .*'cfc0.heads.W'"):
        read_artifact(_edit(tmp_path, external))


@pytest.mark.parametrize("fields, message", [
    ({"robot": "../../x/evil_spec"}, "field robot: expected a name"),
    ({"nominal_period": float("nan")}, "field nominal_period: must be a finite number"),
    ({"nominal_period": "fast"}, "field nominal_period: expected a number"),
    ({"layout": [1, 2]}, "field 'layout' must be a dict"),
    ({"provenance": "x"}, "field 'provenance' must be a dict"),
    ({"obs_labels": {"a": 1}}, "field 'obs_labels' must be a list"),
])
def test_metadata_fields_are_typed(tmp_path, fields, message):
    with pytest.raises(ArtifactError, match=message):
        read_artifact(_edit(tmp_path, lambda m: _set_meta(m, **fields)))


def test_deep_or_huge_metadata_is_refused(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    def nest(model):
        prop, meta = _meta(model)
        prop.value = json.dumps(meta)[:-1] + ', "provenance": {"x": ' + deep + "}}"

    with pytest.raises(ArtifactError, match="nested deeper than 32 levels"):
        read_artifact(_edit(tmp_path, nest))

    def huge(model):
        prop, meta = _meta(model)
        prop.value = json.dumps({**meta, "provenance": {"x": "y" * (2 << 20)}})

    with pytest.raises(ArtifactError, match="larger than 1048576 bytes"):
        read_artifact(_edit(tmp_path, huge, "huge.onnx"))


def test_unchanged_copy_still_loads(tmp_path):
    shutil.copy(SHIPPED, tmp_path / "copy.onnx")
    a, b = Policy.load(tmp_path / "copy.onnx", backend="numpy"), Policy.load(tmp_path / "copy.onnx", backend="onnxruntime")
    obs = np.array([0.01, 0.02, -0.1, 0.05], dtype=np.float32)
    np.testing.assert_allclose(a.step(obs, 0.04), b.step(obs, 0.04), atol=1e-5)


def test_non_regular_model_files_are_refused_before_reading(tmp_path):
    import os

    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ArtifactError, match="is not a regular file"):
            read_artifact(path)
