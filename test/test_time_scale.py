"""The model's time unit (cfg "dt_scale", model time units per second) is carried by the artifact and applied
by every runtime: the reference, the ONNX graph (so plain onnxruntime too), numpy and torch. An ncps model
trained with ncps's default timespan of 1.0 per step, exported with its control period, runs on the robot's
dt in seconds exactly as ncps ran it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from ncps import torch as ncps_torch
from ncps.wirings import AutoNCP
from test_artifact import PLAIN_ORT, _rewrite_meta

from liquid_control import Policy
from liquid_control.core import cellmath
from liquid_control.core.artifact import check_cfg, read_artifact, write_artifact
from liquid_control.core.errors import ArtifactError
from liquid_control.core.random_params import cfc_cfg, ltc_cfg, random_params, random_rollout_inputs
from liquid_control.core.spec import load_spec
from liquid_control.learning.cell_params import from_params, to_params
from liquid_control.learning.ncps_import import NcpsImportError, export_ncps

BACKENDS = ("numpy", "onnxruntime", "torch")
TOL = 1e-5
I, STEPS, PERIOD = 4, 80, 0.04  # 25 Hz: ncps's timespan 1.0 per step is 0.04 s on the robot
ROOT = Path(__file__).resolve().parents[1]


def ncps_model(name: str) -> torch.nn.Module:
    torch.manual_seed(7)
    return {
        "cfc_default": lambda: ncps_torch.CfC(I, 12, proj_size=2, backbone_units=16),
        "cfc_pure_autoncp": lambda: ncps_torch.CfC(I, AutoNCP(10, 2, seed=3), mode="pure"),
        "cfc_no_gate": lambda: ncps_torch.CfC(I, 8, mode="no_gate", backbone_units=16),
        "ltc_autoncp": lambda: ncps_torch.LTC(I, AutoNCP(10, 2, seed=1), ode_unfolds=6),
    }[name]().eval()


def ncps_run(model, obs: np.ndarray, timespans: np.ndarray | None) -> np.ndarray:
    """ncps's own outputs; timespans None is what training without timespans did (1.0 per step)."""
    ts = None if timespans is None else torch.tensor(timespans, dtype=torch.float32)[None]
    with torch.no_grad():
        y, _ = model(torch.tensor(obs)[None], None, ts)
    return y[0].numpy()


def policy_run(path, backend: str, obs: np.ndarray, dts) -> np.ndarray:
    policy = Policy.load(path, backend=backend)
    policy.reset()
    return np.stack([policy.step(o, float(dt)) for o, dt in zip(obs, dts)])


def observations(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(STEPS, I)).astype(np.float32)


@pytest.mark.parametrize("name", ["cfc_default", "cfc_pure_autoncp", "cfc_no_gate", "ltc_autoncp"])
def test_ncps_model_trained_on_default_timespans_runs_on_seconds(name, tmp_path):
    model, obs = ncps_model(name), observations()
    path = export_ncps(model, tmp_path / "m.onnx", nominal_period=PERIOD)  # trained_timespan=1.0, the default
    assert Policy.load(path).dt_scale == pytest.approx(1.0 / PERIOD)
    y_ncps = ncps_run(model, obs, None)
    # The unit matters: read as seconds, the same model gives other actions (so the check below can fail).
    assert np.max(np.abs(ncps_run(model, obs, np.full(STEPS, PERIOD)) - y_ncps)) > 1e-3
    # Irregular ticks: a tick of dt seconds is a timespan of dt / PERIOD for the model.
    rng = np.random.default_rng(1)
    dts = (PERIOD * rng.uniform(0.5, 1.5, STEPS)).astype(np.float32)
    dts[rng.random(STEPS) < 0.1] *= 3.0  # late ticks
    y_ncps_irregular = ncps_run(model, obs, dts / np.float32(PERIOD))
    for backend in BACKENDS:
        on_time = policy_run(path, backend, obs, np.full(STEPS, PERIOD))
        assert np.max(np.abs(on_time - y_ncps)) <= TOL, backend
        irregular = policy_run(path, backend, obs, dts)
        assert np.max(np.abs(irregular - y_ncps_irregular)) <= TOL, backend


def test_trained_timespan_states_the_unit(tmp_path):
    model = ncps_model("cfc_default")
    # Trained with 0.5 per step at 25 Hz: 12.5 model time units per second.
    art = read_artifact(export_ncps(model, tmp_path / "half.onnx", trained_timespan=0.5, nominal_period=PERIOD))
    assert art.dt_scale == pytest.approx(12.5) and art.meta["provenance"]["ncps_trained_timespan"] == 0.5
    # Trained with seconds as timespans: either spelling gives the unit 1 s, a format-1 file.
    for kwargs in ({"trained_timespan": None}, {"trained_timespan": PERIOD, "nominal_period": PERIOD}):
        art = read_artifact(export_ncps(model, tmp_path / "s.onnx", **kwargs))
        assert art.dt_scale == 1.0 and art.meta["format_version"] == 1, kwargs
        assert not any(t.name == "dt_scale" for t in onnx.load(str(art.path)).graph.initializer)
    # The period may come from the spec.
    spec = load_spec("cartpole")
    cartpole = ncps_torch.CfC(spec.obs_size, 8, proj_size=spec.action_size).eval()
    art = read_artifact(export_ncps(cartpole, tmp_path / "c.onnx", spec=spec))
    assert art.dt_scale == pytest.approx(1.0 / spec.period) and art.nominal_period == pytest.approx(spec.period)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "time unit is unknown.*nominal_period=SECONDS or spec=.*trained_timespan=None"),
    ({"trained_timespan": 2.0}, "time unit is unknown: with trained_timespan=2"),
    ({"nominal_period": 0.0}, "nominal_period must be a finite number of seconds > 0, got 0.0"),
    ({"nominal_period": -0.04, "trained_timespan": None}, "nominal_period must be a finite number of seconds > 0"),
    ({"nominal_period": PERIOD, "trained_timespan": float("nan")}, "trained_timespan must be a finite number > 0"),
    ({"nominal_period": PERIOD, "trained_timespan": -1.0}, "trained_timespan must be a finite number > 0"),
])
def test_export_without_a_usable_time_unit_is_refused(tmp_path, kwargs, message):
    target = tmp_path / "m.onnx"
    with pytest.raises(NcpsImportError, match=message):
        export_ncps(ncps_model("cfc_no_gate"), target, **kwargs)
    assert not target.exists()


# ------------------------------------------------------------------------------ every runtime, one scale

SCALED = {
    "cfc-default": cfc_cfg(6, 16, 2),
    "cfc-pure-wired": cfc_cfg(6, 16, 2, layers=[10, 4, 2], mode="pure"),
    "cfc-no_gate-nobb": cfc_cfg(6, 16, 16, mode="no_gate", backbone_layers=0, proj=False),
    "ltc-wired-proj": ltc_cfg(6, 16, 2, motor_size=3, ode_unfolds=4),
}


@pytest.mark.parametrize("name", list(SCALED))
def test_every_backend_applies_dt_scale_like_the_reference(name, tmp_path):
    scale = 25.0
    cfg = dict(SCALED[name], dt_scale=scale)
    params = random_params(cfg, seed=4, backbone_units=12, sparsity=0.5)
    path = write_artifact(tmp_path / "m.onnx", cfg, params, nominal_period=PERIOD)
    art = read_artifact(path)
    assert art.cfg["dt_scale"] == scale and art.dt_scale == scale and art.meta["format_version"] == 2
    obs, dts = random_rollout_inputs(cfg, 300, seed=2, dt_range=(0.2 * PERIOD, 3 * PERIOD))
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    unscaled = {k: v for k, v in cfg.items() if k != "dt_scale"}
    h, h_ref, ref = np.zeros((1, cfg["state_size"])), np.zeros((1, cfg["state_size"])), []
    for o, dt in zip(obs, dts):
        a, h = cellmath.step(cfg, p64, o[None].astype(np.float64), h, np.array([[dt]], np.float64))
        # The definition: the reference with dt_scale s on dt seconds is the unscaled model on dt * s.
        a_ref, h_ref = cellmath.step(unscaled, p64, o[None].astype(np.float64), h_ref, np.array([[float(dt) * scale]]))
        np.testing.assert_allclose(a, a_ref, rtol=0, atol=1e-12)
        ref.append(a[0])
    ref = np.array(ref)
    # ... and the scale changes the answer, so agreeing with it means applying it.
    no_scale = write_artifact(tmp_path / "plain.onnx", unscaled, params)
    assert np.max(np.abs(policy_run(no_scale, "numpy", obs, dts) - ref)) > 1e-3
    for backend in BACKENDS:
        err = np.max(np.abs(policy_run(path, backend, obs, dts) - ref))
        assert err <= TOL, f"{backend}: max |diff| {err:.2e}"


def test_plain_onnxruntime_applies_dt_scale_with_dt_in_seconds(tmp_path):
    cfg = dict(ltc_cfg(5, 12, 2, motor_size=2, ode_unfolds=3), dt_scale=1.0 / PERIOD)
    params = random_params(cfg, seed=8, sparsity=0.4)
    path = write_artifact(tmp_path / "m.onnx", cfg, params)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["obs", "dt", "h_in"]  # the interface is unchanged
    assert graph.node[0].op_type == "Mul" and list(graph.node[0].input) == ["dt", "dt_scale"]
    obs, dts = random_rollout_inputs(cfg, 100, seed=8, dt_range=(0.5 * PERIOD, 2 * PERIOD))
    np.savez(tmp_path / "in.npz", obs=obs, dt=dts, n=cfg["state_size"])
    (tmp_path / "plain.py").write_text(PLAIN_ORT)
    out = subprocess.run([sys.executable, "-I", str(tmp_path / "plain.py"), str(path), str(tmp_path / "in.npz"),
                          str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # no project code was imported
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    h, ref = np.zeros((1, cfg["state_size"])), []
    for o, dt in zip(obs, dts):
        a, h = cellmath.step(cfg, p64, o[None].astype(np.float64), h, np.array([[dt]], np.float64))
        ref.append(a[0])
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["actions"], np.array(ref), atol=TOL, rtol=0)


def test_torch_params_round_trip_keeps_dt_scale():
    cfg = dict(cfc_cfg(4, 8, 2), dt_scale=12.5)
    params = random_params(cfg, seed=1, backbone_units=8)
    module = from_params(cfg, params)
    assert module.dt_scale == 12.5
    cfg2, params2 = to_params(module, params["obs_mean"], params["obs_std"])
    assert cfg2["dt_scale"] == 12.5
    x, h = torch.randn(1, 4), torch.zeros(1, 8)
    with torch.no_grad():
        y, _ = module.step(x, h, torch.tensor([[0.04]]))
        module.dt_scale = 1.0
        y_unscaled, _ = module.step(x, h, torch.tensor([[0.04 * 12.5]]))
    torch.testing.assert_close(y, y_unscaled)
    # A module made in training (no scale set) exports the unit "seconds".
    assert to_params(from_params(cfc_cfg(4, 8, 2), params))[0]["dt_scale"] == 1.0


def test_graph_and_config_disagreeing_on_the_scale_is_refused(tmp_path):
    cfg = dict(cfc_cfg(4, 8, 2), dt_scale=25.0)
    path = write_artifact(tmp_path / "m.onnx", cfg, random_params(cfg, seed=2, backbone_units=8))
    _rewrite_meta(path, lambda m: m["cfg"].update(dt_scale=1.0))  # numpy/torch would run 25x off from ORT
    with pytest.raises(ArtifactError, match="inconsistent with its config: the graph scales dt by 25"):
        read_artifact(path)
    _rewrite_meta(path, lambda m: m["cfg"].pop("dt_scale"))
    with pytest.raises(ArtifactError, match="the graph scales dt by 25.*dt_scale 1"):
        read_artifact(path)


@pytest.mark.parametrize("bad", [0, -2.0, float("inf"), float("nan"), True, "25"])
def test_bad_dt_scale_in_config_is_refused(bad):
    with pytest.raises(ValueError, match="dt_scale .* must be a finite number > 0"):
        check_cfg(dict(cfc_cfg(4, 8, 2), dt_scale=bad))


def test_info_prints_the_time_unit(tmp_path):
    path = export_ncps(ncps_model("ltc_autoncp"), tmp_path / "m.onnx", nominal_period=PERIOD)
    seconds = write_artifact(tmp_path / "s.onnx", cfc_cfg(4, 8, 2), random_params(cfc_cfg(4, 8, 2), backbone_units=8))
    run = lambda p: subprocess.run([sys.executable, "-m", "liquid_control.cli", "info", str(p)],  # noqa: E731
                                   capture_output=True, text=True, timeout=120, cwd=ROOT)
    out = run(path)
    assert out.returncode == 0, out.stderr
    assert "time unit    1 model time unit = 0.04 s (dt_scale 25" in out.stdout, out.stdout
    assert "ncps_trained_timespan: 1.0" in out.stdout
    out = run(seconds)
    assert out.returncode == 0, out.stderr
    assert "time unit    seconds (dt_scale 1" in out.stdout, out.stdout
