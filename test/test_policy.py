"""Policy runtime: every backend equals cellmath.step over long irregular-dt rollouts; bad input is refused
with the hidden state untouched."""
from __future__ import annotations

import numpy as np
import pytest

from liquid_control.core import cellmath
from liquid_control.core.artifact import write_artifact
from liquid_control.core.errors import ArtifactError, LiquidControlError, StepError
from liquid_control.core.policy import Policy
from liquid_control.core.random_params import cfc_cfg, ltc_cfg, random_params, random_rollout_inputs

BACKENDS = ("numpy", "onnxruntime", "torch")
STEPS = 1000
TOL = 1e-5

def _stack_with_backbones(mode: str) -> dict:
    """A wired stack whose layers also have backbones (cellmath allows it; ncps never builds it)."""
    cfg = cfc_cfg(7, 16, 3, layers=[10, 6], mode=mode)
    for spec in cfg["cfc"]["layers"]:
        spec["backbone"] = 1
    return cfg


# name -> (cfg, random_params keyword arguments)
CASES = {
    "cfc-default": (cfc_cfg(17, 64, 6), {}),
    "cfc-pure": (cfc_cfg(17, 64, 6, mode="pure"), {}),
    "cfc-no_gate": (cfc_cfg(17, 64, 6, mode="no_gate"), {}),
    "cfc-tanh-2bb-proj": (cfc_cfg(9, 32, 3, activation="tanh", backbone_layers=2), {"backbone_units": 48}),
    "cfc-relu-nobb": (cfc_cfg(5, 16, 16, activation="relu", backbone_layers=0, proj=False), {}),
    "cfc-silu": (cfc_cfg(7, 20, 2, activation="silu"), {"backbone_units": 24}),
    "cfc-gelu": (cfc_cfg(7, 20, 2, activation="gelu"), {"backbone_units": 24}),
    "cfc-wired-default": (cfc_cfg(17, 64, 6, layers=[35, 23, 6]), {"sparsity": 0.7}),
    "cfc-wired-pure": (cfc_cfg(17, 64, 6, layers=[35, 23, 6], mode="pure"), {"sparsity": 0.7}),
    "cfc-wired-no_gate-proj": (cfc_cfg(17, 32, 4, layers=[20, 8, 4], mode="no_gate", proj=True), {"sparsity": 0.5}),
    "cfc-stack-backbones": (_stack_with_backbones("default"), {"backbone_units": 12}),
    "cfc-stack-backbones-pure": (_stack_with_backbones("pure"), {"backbone_units": 12}),
    "ltc-fc": (ltc_cfg(17, 32, 32, ode_unfolds=6), {}),
    "ltc-fc-proj": (ltc_cfg(17, 32, 6, ode_unfolds=3), {}),
    "ltc-wired-motor": (ltc_cfg(17, 64, 6, motor_size=6, ode_unfolds=6), {"sparsity": 0.88}),
}


def reference_rollout(cfg, params, obs, dts):
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    h = np.zeros((1, cfg["state_size"]))
    actions, states = [], []
    for o, dt in zip(obs, dts):
        a, h = cellmath.step(cfg, p64, o[None].astype(np.float64), h, np.array([[dt]], np.float64))
        actions.append(a[0])
        states.append(h[0])
    return np.array(actions), np.array(states)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """name -> (path, cfg, params, obs, dts, reference actions, reference states); built once."""
    d = tmp_path_factory.mktemp("policies")
    out = {}
    for i, (name, (cfg, kw)) in enumerate(CASES.items()):
        params = random_params(cfg, seed=i, **kw)
        path = write_artifact(d / f"{name}.onnx", cfg, params, nominal_period=0.05, provenance={"seed": i})
        # irregular dt: mostly around the period, some late ticks, a few very long gaps
        obs, dts = random_rollout_inputs(cfg, STEPS, seed=i, dt_range=(0.005, 0.12))
        dts[::97] = 0.8
        out[name] = (path, cfg, params, obs, dts, *reference_rollout(cfg, params, obs, dts))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_backend_matches_reference_over_irregular_rollout(artifacts, case, backend):
    path, cfg, _params, obs, dts, ref_a, ref_h = artifacts[case]
    policy = Policy.load(path, backend=backend)
    actions, states = np.empty_like(ref_a), np.empty_like(ref_h)
    for t, (o, dt) in enumerate(zip(obs, dts)):
        actions[t] = policy.step(o, float(dt))
        states[t] = policy.state
    assert np.abs(ref_a).max() > 1e-2, "degenerate case: the action never moves"
    np.testing.assert_allclose(actions, ref_a, rtol=0, atol=TOL)
    np.testing.assert_allclose(states, ref_h, rtol=0, atol=TOL)


def test_backends_agree_with_each_other(artifacts):
    path, _cfg, _p, obs, dts, _ra, _rh = artifacts["ltc-wired-motor"]
    runs = []
    for backend in BACKENDS:
        policy = Policy.load(path, backend=backend)
        runs.append(np.array([policy.step(o, float(dt)) for o, dt in zip(obs, dts)]))
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=0, atol=TOL)


def test_state_snapshot_restore_and_reset(artifacts):
    path, _cfg, _p, obs, dts, ref_a, _rh = artifacts["cfc-default"]
    policy = Policy.load(path)
    assert (policy.obs_size, policy.action_size, policy.state_size) == (17, 6, 64)
    assert policy.nominal_period == pytest.approx(0.05)
    assert policy.meta["provenance"]["seed"] == 0
    for o, dt in zip(obs[:10], dts[:10]):
        policy.step(o, float(dt))
    snap = policy.state
    snap_copy = snap.copy()
    a1 = policy.step(obs[10], float(dts[10]))
    assert not np.array_equal(policy.state, snap)
    np.testing.assert_array_equal(snap, snap_copy)  # `state` is a copy, not a view
    policy.set_state(snap)
    np.testing.assert_array_equal(policy.step(obs[10], float(dts[10])), a1)
    policy.reset()
    np.testing.assert_array_equal(policy.state, np.zeros(64, np.float32))
    np.testing.assert_allclose(policy.step(obs[0], float(dts[0])), ref_a[0], atol=TOL)


def test_action_is_a_fresh_array(artifacts):
    path, _cfg, _p, obs, dts, _ra, _rh = artifacts["cfc-default"]
    for backend in ("numpy", "onnxruntime"):
        policy = Policy.load(path, backend=backend)
        a1 = policy.step(obs[0], 0.05)
        kept = a1.copy()
        policy.step(obs[1], 0.05)
        np.testing.assert_array_equal(a1, kept)


def test_accepts_float64_int_and_list_observations(artifacts):
    path, _cfg, _p, obs, _d, _ra, _rh = artifacts["cfc-default"]
    policy = Policy.load(path)
    a32 = policy.step(obs[0], 0.05)
    policy.reset()
    np.testing.assert_allclose(policy.step(obs[0].astype(np.float64), np.float64(0.05)), a32, atol=1e-7)
    policy.reset()
    np.testing.assert_allclose(policy.step(obs[0].tolist(), 0.05), a32, atol=1e-7)
    policy.reset()
    ints = np.arange(17, dtype=np.int64)
    b = policy.step(ints, 1)  # int observation and int dt
    policy.reset()
    np.testing.assert_array_equal(b, policy.step(ints.astype(np.float32), 1.0))


BAD_OBS = {
    "too short": (np.zeros(16, np.float32), "shape (16,)"),
    "too long": (np.zeros(18, np.float32), "shape (18,)"),
    "2-d": (np.zeros((1, 17), np.float32), "shape (1, 17)"),
    "scalar": (np.float32(1.0), "shape ()"),
    "bool": (np.zeros(17, bool), "dtype bool"),
    "complex": (np.zeros(17, complex), "dtype complex128"),
    "object": (np.array([None] * 17, dtype=object), "dtype object"),
    "strings": (["a"] * 17, "dtype <U1"),
    "nan": (np.where(np.arange(17) == 3, np.nan, 0.0), "non-finite values at index [3]"),
    "inf": (np.where(np.arange(17) == 16, -np.inf, 0.0).astype(np.float32), "non-finite values at index [16]"),
    "float64 overflowing float32": (np.full(17, 1e300), "beyond the float32 range at index [0, 1,"),
}


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
@pytest.mark.parametrize("bad", list(BAD_OBS))
def test_bad_observation_raises_and_keeps_state(artifacts, bad, backend):
    path, _cfg, _p, obs, _d, _ra, _rh = artifacts["ltc-wired-motor"]
    policy = Policy.load(path, backend=backend)
    policy.step(obs[0], 0.05)
    before = policy.state
    value, message = BAD_OBS[bad]
    with pytest.raises(StepError, match="observation") as info:
        policy.step(value, 0.05)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    np.testing.assert_array_equal(policy.state, before)


@pytest.mark.parametrize("dt", [0.0, -0.01, float("nan"), float("inf"), -float("inf"), "0.05", None, True,
                                np.array([0.1, 0.2])])
def test_bad_dt_raises_and_keeps_state(artifacts, dt):
    path, _cfg, _p, obs, _d, _ra, _rh = artifacts["cfc-pure"]
    policy = Policy.load(path)
    policy.step(obs[0], 0.05)
    before = policy.state
    with pytest.raises(StepError, match="dt"):
        policy.step(obs[1], dt)
    np.testing.assert_array_equal(policy.state, before)
    policy.step(obs[1], 0.05)  # and it still runs afterwards
    assert not np.array_equal(policy.state, before)


def test_non_finite_backend_output_raises_and_keeps_state(artifacts):
    """Huge weights that overflow float32 inside the cell: the step fails, the state is kept."""
    path, cfg, params, obs, _d, _ra, _rh = artifacts["ltc-fc"]
    bad = dict(params)
    bad["ltc.output_w"] = np.full_like(params["ltc.output_w"], 3e38)
    bad["ltc.output_b"] = np.full_like(params["ltc.output_b"], 3e38)
    p = write_artifact(path.with_name("overflow.onnx"), cfg, bad)
    for backend in ("numpy", "onnxruntime"):
        policy = Policy.load(p, backend=backend)
        policy.set_state(np.full(32, 0.5, np.float32))
        with pytest.raises(StepError, match="non-finite"):
            policy.step(obs[0], 0.05)
        np.testing.assert_array_equal(policy.state, np.full(32, 0.5, np.float32))


def test_set_state_validates(artifacts):
    policy = Policy.load(artifacts["cfc-default"][0])
    with pytest.raises(StepError, match="64 finite"):
        policy.set_state(np.zeros(63))
    with pytest.raises(StepError, match="64 finite"):
        policy.set_state(np.full(64, np.nan))


def test_unknown_backend_is_a_one_line_error(artifacts):
    with pytest.raises(LiquidControlError, match="unknown backend 'tensorflow'"):
        Policy.load(artifacts["cfc-default"][0], backend="tensorflow")


def test_load_refuses_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        Policy.load(tmp_path / "nope.onnx")


def test_core_policy_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from liquid_control.core.policy import Policy\n"
            "from liquid_control.core.random_params import cfc_cfg, random_params\n"
            "from liquid_control.core.artifact import write_artifact\n"
            "import tempfile, os\n"
            "cfg = cfc_cfg(3, 8, 2)\n"
            "p = write_artifact(os.path.join(tempfile.mkdtemp(), 'm.onnx'), cfg, random_params(cfg))\n"
            "for b in ('numpy', 'onnxruntime'):\n"
            "    Policy.load(p, backend=b).step(np.zeros(3), 0.1)\n"
            "print('torch' in sys.modules, 'liquid_control.learning' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_all_finite_equals_the_plain_isfinite_check():
    """Policy.step's finiteness test (x . 0 == 0) against its reference, np.isfinite(x).all(): every
    mix of NaN, +-inf, the float32 extremes, subnormals and ordinary values, one or many of each."""
    from liquid_control.core.policy import all_finite

    rng = np.random.default_rng(0)
    f32 = np.finfo(np.float32)
    specials = np.array([np.nan, np.inf, -np.inf, f32.max, -f32.max, f32.tiny, f32.smallest_subnormal, 0.0, -0.0],
                        np.float32)
    with np.errstate(all="ignore"):  # (inf * 0 and float32 overflow warn; the values are the point here)
        for n in (1, 4, 17, 64):
            zeros = np.zeros(n, np.float32)
            for _ in range(300):
                x = rng.normal(0, 10.0 ** rng.integers(-3, 30), n).astype(np.float32)
                k = rng.integers(0, n + 1)
                x[rng.choice(n, k, replace=False)] = rng.choice(specials, k)
                assert all_finite(x, zeros) == bool(np.isfinite(x).all()), x
