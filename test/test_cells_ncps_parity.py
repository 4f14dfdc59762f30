"""Our torch CfC / LTC equal ncps 1.0.1 (same weights) and core.cellmath (via to_params), with irregular dt."""
import numpy as np
import pytest
import torch
from ncps import torch as ncps_torch
from ncps.wirings import NCP, AutoNCP, FullyConnected, Random

from liquid_control.core import cellmath
from liquid_control.learning.cell_params import from_params, to_params
from liquid_control.learning.cells import CfC, LTC
from liquid_control.learning.ncps_import import NcpsImportError, from_ncps

TOL = 1e-5
I, T = 5, 25


def irregular_dt(batch: int, steps: int, seed: int = 0) -> torch.Tensor:
    """Jittered control periods plus a few dropped ticks (3x the period)."""
    rng = np.random.default_rng(seed)
    dt = rng.uniform(0.02, 0.3, (batch, steps))
    dt[rng.random((batch, steps)) < 0.15] *= 3.0
    return torch.tensor(dt, dtype=torch.float32)


def inputs(batch: int, steps: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, I, generator=g)


def wirings():
    # A fresh wiring per model: ncps wirings are built (and mutated) by the module that takes them.
    return {
        "fc": lambda: FullyConnected(10),
        "fc_out": lambda: FullyConnected(10, output_dim=3),
        "ncp": lambda: NCP(inter_neurons=6, command_neurons=5, motor_neurons=3, sensory_fanout=3,
                           inter_fanout=3, recurrent_command_synapses=4, motor_fanin=3, seed=7),
        "autoncp": lambda: AutoNCP(16, 4, seed=3),
        "random": lambda: Random(12, 4, sparsity_level=0.5, random_seed=5),
    }


CFC_UNWIRED = {
    "defaults": {},
    "no_backbone": {"backbone_layers": 0},
    "bb2_tanh": {"backbone_layers": 2, "backbone_units": 24, "activation": "tanh"},
    "bb3_relu": {"backbone_layers": 3, "backbone_units": 16, "activation": "relu", "backbone_dropout": 0.2},
    "bb1_silu": {"backbone_units": 20, "activation": "silu"},
    "bb1_gelu": {"backbone_units": 20, "activation": "gelu"},
}


def run_ncps(model, x, h0, dt):
    with torch.no_grad():
        return model(x, h0, dt)


def run_ours(model, x, h0, dt):
    with torch.no_grad():
        return model(x, h0, dt)


def assert_parity(ncps_model, seed=0):
    ncps_model.eval()
    ours = from_ncps(ncps_model).eval()
    assert ours.state_size == ncps_model.state_size
    x, dt = inputs(1, T, seed), irregular_dt(1, T, seed)
    h0 = 0.3 * torch.randn(1, ours.state_size, generator=torch.Generator().manual_seed(seed + 9))
    for h in (None, h0):
        y_n, h_n = run_ncps(ncps_model, x, h, dt)
        y_o, h_o = run_ours(ours, x, h, dt)
        assert y_o.shape == y_n.shape and y_o.shape[-1] == ours.output_size
        assert torch.max(torch.abs(y_o - y_n)).item() <= TOL
        assert torch.max(torch.abs(h_o - h_n)).item() <= TOL
    # The outputs must actually depend on dt, or the comparison would prove little about time handling.
    y_1, _ = run_ours(ours, x, h0, torch.ones_like(dt))
    assert torch.max(torch.abs(y_1 - y_o)).item() > 1e-3
    return ours


# ---------------------------------------------------------------------------------------- ncps parity


@pytest.mark.parametrize("mode", ["default", "pure", "no_gate"])
@pytest.mark.parametrize("variant", sorted(CFC_UNWIRED))
def test_cfc_unwired_matches_ncps(mode, variant):
    torch.manual_seed(0)
    kw = CFC_UNWIRED[variant]
    proj = 3 if variant in ("defaults", "bb2_tanh") else None
    assert_parity(ncps_torch.CfC(I, 12, proj_size=proj, mode=mode, **kw))


@pytest.mark.parametrize("mode", ["default", "pure", "no_gate"])
@pytest.mark.parametrize("wiring", sorted(wirings()))
def test_cfc_wired_matches_ncps(mode, wiring):
    torch.manual_seed(1)
    # ncps sizes its projection by wiring.output_dim but feeds it the whole last layer, so proj only works
    # (in ncps) when the last layer is the motor layer: NCP / AutoNCP, or output_dim == units.
    proj = 2 if wiring in ("ncp", "autoncp", "fc") else None
    ncps_model = ncps_torch.CfC(I, wirings()[wiring](), proj_size=proj, mode=mode)
    ours = assert_parity(ncps_model)
    assert len(ours.layers) == ncps_model.wiring.num_layers


@pytest.mark.parametrize("unfolds", [1, 6])
@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("wiring", ["units", "ncp", "autoncp", "random", "fc_out"])
def test_ltc_matches_ncps(wiring, implicit, unfolds):
    torch.manual_seed(2)
    units = 8 if wiring == "units" else wirings()[wiring]()
    model = ncps_torch.LTC(I, units, ode_unfolds=unfolds, implicit_param_constraints=implicit)
    with torch.no_grad():  # non-trivial mappings, so that their import is checked too
        model.rnn_cell._params["input_w"].uniform_(0.5, 1.5)
        model.rnn_cell._params["input_b"].uniform_(-0.3, 0.3)
        model.rnn_cell._params["output_w"].uniform_(0.5, 1.5)
        model.rnn_cell._params["output_b"].uniform_(-0.3, 0.3)
    assert_parity(model)


@pytest.mark.parametrize("mapping", ["linear", None])
def test_ltc_mappings_match_ncps(mapping):
    torch.manual_seed(3)
    assert_parity(ncps_torch.LTC(I, AutoNCP(10, 2, seed=1), input_mapping=mapping or "none",
                                 output_mapping=mapping or "none"))


def test_wired_import_uses_ncps_masks_and_does_not_rebuild_wiring():
    wiring = AutoNCP(16, 4, seed=3)
    model = ncps_torch.CfC(I, wiring)
    adjacency = wiring.adjacency_matrix.copy()
    ours = from_ncps(model)
    # ncps wirings add synapses on every build(); importing must leave the wiring as it was.
    assert np.array_equal(wiring.adjacency_matrix, adjacency)
    for our_layer, ncps_layer in zip(ours.layers, model.rnn_cell._layers):
        n = our_layer.size
        assert torch.equal(our_layer.mask[:n], ncps_layer.sparsity_mask)
        assert torch.equal(our_layer.mask[n:2 * n], ncps_layer.sparsity_mask)
        assert torch.all(our_layer.mask[2 * n:] == 1)  # ncps does not mask time_a / time_b
    assert any(float(layer.mask.min()) == 0.0 for layer in ours.layers)


def test_mixed_memory_is_refused():
    for model in (ncps_torch.CfC(I, 8, mixed_memory=True), ncps_torch.LTC(I, 8, mixed_memory=True)):
        with pytest.raises(NcpsImportError, match="mixed_memory"):
            from_ncps(model)
    with pytest.raises(NcpsImportError, match="ncps.torch.CfC or ncps.torch.LTC"):
        from_ncps(torch.nn.LSTM(3, 4))


# --------------------------------------------------------------------------- per-element time spans


def per_element(model, x, h0, dt):
    """Run each batch element alone (batch 1): the unambiguous reference for per-element time spans."""
    ys, hs = zip(*(model(x[b:b + 1], h0[b:b + 1], dt[b:b + 1]) for b in range(x.shape[0])))
    return torch.cat(ys), torch.cat(hs)


@pytest.mark.parametrize("kind", ["cfc", "ltc"])
def test_batched_time_spans_are_per_element_and_ncps_gets_them_wrong(kind):
    torch.manual_seed(4)
    batch = units = 6  # equal, so ncps's wrong broadcast runs silently instead of raising
    ncps_model = (ncps_torch.CfC(I, units) if kind == "cfc" else ncps_torch.LTC(I, units)).eval()
    ours = from_ncps(ncps_model).eval()
    x, dt = inputs(batch, T), irregular_dt(batch, T, seed=11)
    h0 = 0.3 * torch.randn(batch, units)
    with torch.no_grad():
        y_ours, h_ours = ours(x, h0, dt)
        y_ours_1, h_ours_1 = per_element(ours, x, h0, dt)
        y_ncps_1, h_ncps_1 = per_element(ncps_model, x, h0, dt)
        y_ncps_b, _ = ncps_model(x, h0, dt)
        # dt as (B, T, 1) and step-by-step give the same as (B, T).
        y_ours_col, _ = ours(x, h0, dt.unsqueeze(-1))
        h, ys = h0, []
        for t in range(T):
            y, h = ours.step(x[:, t], h, dt[:, t:t + 1])
            ys.append(y)
    assert torch.max(torch.abs(y_ours - y_ours_1)).item() <= TOL
    assert torch.max(torch.abs(h_ours - h_ours_1)).item() <= TOL
    assert torch.max(torch.abs(y_ours - y_ncps_1)).item() <= TOL
    assert torch.max(torch.abs(h_ours - h_ncps_1)).item() <= TOL
    assert torch.equal(y_ours_col, y_ours)
    assert torch.max(torch.abs(torch.stack(ys, 1) - y_ours)).item() <= TOL
    # ncps batched: timespans[:, t].squeeze() is (B,) and broadcasts over the *unit* axis.
    assert torch.max(torch.abs(y_ncps_b - y_ncps_1)).item() > 1e-2
    # ... and with batch != units it cannot run at all.
    with pytest.raises(RuntimeError):
        with torch.no_grad():
            ncps_model(x[:4], h0[:4], dt[:4])
    with torch.no_grad():
        ours(x[:4], h0[:4], dt[:4])


# --------------------------------------------------------------------------- cellmath (numpy) parity


def our_models():
    torch.manual_seed(5)
    models = {}
    for mode in ("default", "pure", "no_gate"):
        models[f"cfc_{mode}"] = CfC(I, 12, mode=mode)
        models[f"cfc_{mode}_bb2_proj"] = CfC(I, 12, proj_size=3, mode=mode, backbone_layers=2,
                                             backbone_units=16, activation="gelu")
        models[f"cfc_{mode}_nobb"] = CfC(I, 12, mode=mode, backbone_layers=0, activation="relu")
        for name, make in wirings().items():
            models[f"cfc_{mode}_{name}"] = CfC(I, make(), proj_size=2 if name == "ncp" else None, mode=mode)
    for name, make in wirings().items():
        models[f"ltc_{name}"] = LTC(I, make(), proj_size=3 if name == "autoncp" else None)
    models["ltc_units_explicit_u3"] = LTC(I, 8, ode_unfolds=3, implicit_constraints=False)
    models["ltc_units_nomap"] = LTC(I, 8, input_mapping=None, output_mapping="linear", epsilon=1e-4)
    return models


MODELS = our_models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_step_matches_cellmath_reference(name):
    module = MODELS[name].eval()
    rng = np.random.default_rng(6)
    obs_mean, obs_std = rng.normal(size=I), rng.uniform(0.5, 2.0, size=I)
    cfg, params = to_params(module, obs_mean, obs_std)
    assert all(v.dtype == np.float32 for v in params.values())
    assert cfg["state_size"] == module.state_size and cfg["output_size"] == module.output_size
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    rebuilt = from_params(cfg, params).eval()
    batch = 3
    h = np.zeros((batch, module.state_size))
    h_t = torch.zeros(batch, module.state_size)
    h_r = h_t.clone()
    for t in range(T):
        obs = rng.normal(size=(batch, I)) * 3.0  # large enough to hit the clip sometimes
        dt = rng.uniform(0.01, 0.5, size=(batch, 1))
        y_ref, h = cellmath.step(cfg, p64, obs, h, dt)
        x = torch.tensor(cellmath.normalise(params, obs.astype(np.float32)))
        dt_t = torch.tensor(dt, dtype=torch.float32)
        with torch.no_grad():
            y, h_t = module.step(x, h_t, dt_t)
            y_r, h_r = rebuilt.step(x, h_r, dt_t)
        assert np.max(np.abs(y.numpy() - y_ref)) <= TOL, f"step {t}"
        assert np.max(np.abs(h_t.numpy() - h)) <= TOL, f"step {t}"
        assert torch.max(torch.abs(y_r - y)).item() <= TOL and torch.max(torch.abs(h_r - h_t)).item() <= TOL
        h = h_t.numpy().astype(np.float64)  # follow the float32 trajectory so errors do not compound


def test_to_params_layout_and_bad_normalisation():
    cfg, params = to_params(CfC(I, AutoNCP(16, 4, seed=3), proj_size=2))
    assert [spec["backbone"] for spec in cfg["cfc"]["layers"]] == [0, 0, 0]
    assert sum(spec["size"] for spec in cfg["cfc"]["layers"]) == 16 and cfg["cfc"]["layers"][-1]["size"] == 4
    assert cfg["proj"] and params["proj.W"].shape == (2, 4) and cfg["output_size"] == 2
    assert np.array_equal(params["obs_mean"], np.zeros(I)) and np.array_equal(params["obs_std"], np.ones(I))
    with pytest.raises(ValueError, match="obs_mean must have 5 entries"):
        to_params(CfC(I, 4), obs_mean=np.zeros(3))
    with pytest.raises(ValueError, match="obs_std must be > 0"):
        to_params(CfC(I, 4), obs_std=np.zeros(I))


def test_forward_dt_shapes():
    model = CfC(I, 6).eval()
    x = inputs(2, 4)
    with torch.no_grad():
        y_none, _ = model(x)
        y_ones, _ = model(x, None, torch.ones(2, 4))
    assert torch.equal(y_none, y_ones)
    with pytest.raises(ValueError, match="dt must have shape"):
        model(x, None, torch.ones(4, 2))
