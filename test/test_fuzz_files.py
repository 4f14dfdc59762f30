"""Fuzzing the files a user hands us: robot specs (as data and as YAML text) and policy artifacts.

Each generated input has one of two outcomes, and nothing else is allowed (no other exception, no hang):
  - a clean, one-line error of the project's own type (SpecError / ArtifactError), or
  - acceptance of something that keeps the invariants (a spec: finite, ordered, positive where it must be;
    an artifact: the same policy as the original, on both backends).
"""
import copy
import math
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from fuzz_settings import fuzz
from liquid_control.core.artifact import read_artifact
from liquid_control.core.errors import ArtifactError, SpecError
from liquid_control.core.policy import Policy
from liquid_control.core.resources import robot_spec_path
from liquid_control.core.spec import parse_spec
from liquid_control.core.yamlfile import parse_yaml

REPO = Path(__file__).resolve().parents[1]
ROBOTS = ("cartpole", "cartpole_imu", "reacher")
SPECS = {r: yaml.safe_load(robot_spec_path(r).read_text()) for r in ROBOTS}

nasty = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -0.0, 1e308]),
    st.text(max_size=12), st.sampled_from(["", "fast", "../../etc/x", "bad topic!", "/dev/zero"]),
    st.lists(st.floats(allow_nan=True), max_size=4), st.lists(st.text(max_size=5), max_size=4),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=3),
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _check_invariants(spec) -> None:
    """What an accepted spec must hold: the values the node's safety rules rely on are sane."""
    assert 1.0 <= spec.rate_hz <= 10000.0
    assert math.isfinite(spec.safety.sensor_timeout) and spec.safety.sensor_timeout > 0
    assert math.isfinite(spec.safety.soft_start) and spec.safety.soft_start >= 0
    assert spec.safety.safe_behaviour in ("zero", "hold")
    a = spec.action
    assert a.size >= 1 and len(a.scale) == len(a.lower) == len(a.upper) == len(a.safe) == a.size
    assert all(math.isfinite(x) for x in a.scale + a.safe)
    assert all(lo <= s <= hi and not math.isnan(lo) and not math.isnan(hi) for lo, s, hi in zip(a.lower, a.safe, a.upper))
    assert a.rate_limit is None or all(math.isfinite(r) and r > 0 for r in a.rate_limit)
    for e in spec.observation:
        assert e.names and all(math.isfinite(x) for x in e.scale + e.offset)
    assert spec.obs_size >= 1


@st.composite
def edited_spec(draw):
    robot = draw(st.sampled_from(ROBOTS))
    data = copy.deepcopy(SPECS[robot])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["set", "delete", "typo", "add"]))
        key = path[-1]
        if action == "set":
            parent[key] = draw(nasty)
        elif action == "delete":
            del parent[key]
        elif action == "typo" and isinstance(parent, dict):
            parent[key + draw(st.sampled_from(["s", "_", "x"]))] = parent.pop(key)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(nasty)
    return data


@fuzz(300)
@given(edited_spec())
def test_edited_specs_are_refused_in_one_line_or_sane(data):
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        assert "\n" not in str(exc) and str(exc)
        event("refused: one line")
        return
    _check_invariants(spec)
    event("accepted: invariants hold")


@fuzz(200)
@given(st.sampled_from(ROBOTS), st.data())
def test_mangled_spec_yaml_text_is_refused_in_one_line_or_sane(robot, data):
    text = bytearray(robot_spec_path(robot).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        if not text:
            break
        i = data.draw(st.integers(0, len(text) - 1))
        op = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if op == "flip":
            text[i] = data.draw(st.sampled_from(list(b":-[]{}&*!|>'\"#\n .0123456789naif")))
        elif op == "delete":
            del text[i:i + data.draw(st.integers(1, 20))]
        elif op == "insert":
            text[i:i] = data.draw(st.sampled_from([b"&a ", b"*a", b".nan", b".inf", b"\t", b"\x00", b"!!python/object "]))
        else:
            del text[i:]
    try:
        value = parse_yaml(bytes(text).decode("utf-8", errors="replace"), "fuzz.yaml")
        spec = parse_spec(value)
    except SpecError as exc:
        assert "\n" not in str(exc)
        event("refused: one line")
        return
    _check_invariants(spec)
    event("accepted: invariants hold")


# ------------------------------------------------------------------------------------------- artifacts
SHIPPED = REPO / "policies" / "cartpole.onnx"
OBS = np.random.default_rng(0).normal(0, 0.3, (8, 4)).astype(np.float32)


def _actions(policy):
    policy.reset()
    return np.array([policy.step(o, 0.04) for o in OBS])


REFERENCE = _actions(Policy.load(SHIPPED))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_artifacts")


@fuzz(150)
@given(flips=st.lists(st.tuples(st.integers(0, SHIPPED.stat().st_size - 1), st.integers(1, 255)), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(0, SHIPPED.stat().st_size - 1)))
def test_corrupted_artifacts_are_refused_in_one_line_or_unchanged(scratch, flips, cut):
    data = bytearray(SHIPPED.read_bytes())
    for at, xor in flips:
        data[at] ^= xor
    if cut is not None:
        del data[cut:]
    path = scratch / f"f{random.getrandbits(32)}.onnx"
    path.write_bytes(bytes(data))
    try:
        artifact = read_artifact(path)
    except ArtifactError as exc:
        assert "\n" not in str(exc)
        event("refused: one line")
        return
    finally:
        path.unlink()
    # accepted: the flips hit nothing the policy computes with (e.g. a provenance string); both backends
    # load it and compute exactly what the original file does
    for backend in ("numpy", "onnxruntime"):
        np.testing.assert_allclose(_actions(Policy.load(artifact, backend=backend)), REFERENCE, atol=1e-5)
    event("accepted: same actions on both backends")
