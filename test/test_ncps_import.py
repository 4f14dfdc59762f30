"""A trained ncps model, exported with export_ncps, runs through Policy.load on every backend with the
ncps module's outputs (same inputs, irregular time spans)."""
import numpy as np
import pytest
import torch
from ncps import torch as ncps_torch
from ncps.wirings import NCP, AutoNCP, Random

import liquid_control
from liquid_control import Policy
from liquid_control.core.artifact import read_artifact
from liquid_control.learning.ncps_import import NcpsImportError, export_ncps
from liquid_control.learning.torch_backend import TorchBackend

TOL = 1e-5
I, STEPS = 6, 60
BACKENDS = ["numpy", "onnxruntime", "torch"]


def make(name: str) -> torch.nn.Module:
    torch.manual_seed(len(name))
    return {
        "cfc_default_proj": lambda: ncps_torch.CfC(I, 16, proj_size=2, backbone_layers=2, backbone_units=24),
        "cfc_pure_autoncp": lambda: ncps_torch.CfC(I, AutoNCP(14, 3, seed=2), mode="pure"),
        "cfc_nogate_ncp_proj": lambda: ncps_torch.CfC(I, NCP(5, 4, 2, 3, 3, 2, 2, seed=4), proj_size=3,
                                                      mode="no_gate"),
        "cfc_random": lambda: ncps_torch.CfC(I, Random(9, 9, sparsity_level=0.4), activation="silu"),
        "ltc_autoncp": lambda: ncps_torch.LTC(I, AutoNCP(12, 2, seed=1)),
        "ltc_units_explicit": lambda: ncps_torch.LTC(I, 7, ode_unfolds=4, implicit_param_constraints=False),
    }[name]().eval()


MODELS = ["cfc_default_proj", "cfc_pure_autoncp", "cfc_nogate_ncp_proj", "cfc_random", "ltc_autoncp",
          "ltc_units_explicit"]


def rollout_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    obs_mean, obs_std = rng.normal(size=I).astype(np.float32), rng.uniform(0.5, 2.0, I).astype(np.float32)
    obs = (obs_mean + obs_std * rng.normal(size=(STEPS, I)) * 1.5).astype(np.float32)
    dt = rng.uniform(0.01, 0.08, STEPS)
    dt[rng.random(STEPS) < 0.1] *= 4.0  # late ticks
    return obs_mean, obs_std, obs, dt.astype(np.float32)


def ncps_reference(model, obs, dt, obs_mean, obs_std):
    x = np.clip((obs - obs_mean) / obs_std, -10.0, 10.0)
    with torch.no_grad():
        y, h = model(torch.tensor(x).unsqueeze(0), None, torch.tensor(dt).unsqueeze(0))
    return y[0].numpy(), h[0].numpy()


@pytest.mark.parametrize("name", MODELS)
def test_exported_ncps_model_runs_like_ncps_on_every_backend(name, tmp_path):
    model = make(name)
    obs_mean, obs_std, obs, dt = rollout_data()
    # ncps_reference feeds dt (seconds) as the timespans: a model trained in seconds (trained_timespan=None).
    path = export_ncps(model, tmp_path / f"{name}.onnx", obs_mean=obs_mean, obs_std=obs_std,
                       nominal_period=0.04, trained_timespan=None, seed=11, command="test_ncps_import")
    y_ref, h_ref = ncps_reference(model, obs, dt, obs_mean, obs_std)
    # The outputs depend on dt, so matching them means the time spans were honoured.
    y_dt1, _ = ncps_reference(model, obs, np.ones_like(dt), obs_mean, obs_std)
    assert np.max(np.abs(y_dt1 - y_ref)) > 1e-3
    for backend in BACKENDS:
        policy = Policy.load(path, backend=backend)
        policy.reset()
        actions = np.stack([policy.step(obs[t], float(dt[t])) for t in range(STEPS)])
        assert actions.shape == y_ref.shape
        err = np.max(np.abs(actions - y_ref))
        assert err <= TOL, f"{backend}: max |diff| {err:.2e}"
        assert np.max(np.abs(np.asarray(policy.state).reshape(-1) - h_ref)) <= TOL, backend


def test_artifact_records_where_it_came_from(tmp_path):
    model = make("ltc_autoncp")
    path = export_ncps(model, tmp_path / "m.onnx", nominal_period=0.02, seed=5, note="from a notebook")
    art = read_artifact(path)
    prov = art.meta["provenance"]
    assert prov["source"] == "ncps" and prov["ncps_class"] == "LTC" and prov["ncps_version"] == "1.0.1"
    assert prov["seed"] == 5 and prov["note"] == "from a notebook"
    assert art.nominal_period == 0.02
    assert art.cfg["cell"] == "ltc" and art.cfg["state_size"] == 12 and art.cfg["output_size"] == 2
    # Without normalisation given, the artifact normalises nothing.
    assert np.array_equal(art.params["obs_mean"], np.zeros(I)) and np.array_equal(art.params["obs_std"], np.ones(I))


def test_torch_backend_steps_with_normalisation(tmp_path):
    model = make("cfc_default_proj")
    obs_mean, obs_std, obs, dt = rollout_data(3)
    backend = TorchBackend(read_artifact(export_ncps(model, tmp_path / "m.onnx", obs_mean=obs_mean,
                                                     obs_std=obs_std, trained_timespan=None)))
    y_ref, h_ref = ncps_reference(model, obs, dt, obs_mean, obs_std)
    h = np.zeros(16, np.float32)
    for t in range(STEPS):
        y, h = backend.step(obs[t], float(dt[t]), h)
        assert y.shape == (2,) and y.dtype == np.float32 and h.shape == (16,)
        assert np.max(np.abs(y - y_ref[t])) <= TOL
    assert np.max(np.abs(h - h_ref)) <= TOL


def test_export_is_reachable_from_the_top_level_and_refuses_mixed_memory(tmp_path):
    assert liquid_control.export_ncps is export_ncps
    target = tmp_path / "mixed.onnx"
    with pytest.raises(NcpsImportError, match="mixed_memory"):
        export_ncps(ncps_torch.CfC(I, 8, mixed_memory=True), target)
    assert not target.exists()
    with pytest.raises(ValueError, match="obs_std must have 6 entries"):
        export_ncps(make("cfc_random"), target, obs_std=np.ones(4))
