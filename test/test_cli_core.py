"""`liquid-control info`, `export` and `bench step`, run as real subprocesses."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from liquid_control.core import cellmath
from liquid_control.core.artifact import read_artifact, write_artifact
from liquid_control.core.policy import Policy
from liquid_control.core.random_params import cfc_cfg, ltc_cfg, random_params
from liquid_control.core.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liquid_control.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_info_describes_cfc_with_spec(tmp_path):
    spec = load_spec("cartpole")
    cfg = cfc_cfg(4, 16, 1)
    params = random_params(cfg, seed=1, backbone_units=24)
    path = write_artifact(tmp_path / "m.onnx", cfg, params, spec=spec,
                          provenance={"seed": 42, "command": "liquid-control train --seed 42"})
    out = cli("info", path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for expected in ("CfC, mode default, activation lecun_tanh", "1 fully connected layer of 16 units, backbone 1 x 24",
                     "4 observations -> 16 state units -> 1 actions, projection 16 -> 1",
                     f"{sum(v.size for v in params.values()):,} stored values", "0.04 s (25 Hz)",
                     f"cartpole, layout hash {spec.hash}", "JointState.position[slider]", "JointState.velocity[hinge]",
                     "slide  scale 3", "seed: 42", "command: liquid-control train --seed 42", "version: 0.1.0"):
        assert expected in text, (expected, text)


def test_info_describes_wired_ltc_without_spec(tmp_path):
    cfg = ltc_cfg(5, 12, 3, motor_size=3, ode_unfolds=4)
    params = random_params(cfg, seed=2, sparsity=0.5)
    path = write_artifact(tmp_path / "ltc.onnx", cfg, params)
    out = cli("info", path)
    assert out.returncode == 0, out.stderr
    nz = int(np.count_nonzero(params["ltc.W"]))
    assert "LTC, 4 ODE unfolds" in out.stdout
    assert f"recurrent {nz}/144" in out.stdout and "motor neurons 3 of 12" in out.stdout
    assert "not recorded" in out.stdout and "obs[4]" in out.stdout and "action[2]" in out.stdout
    meta = json.loads(cli("info", path, "--json").stdout)
    assert meta["cfg"] == cfg and meta["format_version"] == 1


@pytest.mark.parametrize("content, message", [(None, "does not exist"), (b"\x00garbage", "is not an ONNX model")])
def test_info_bad_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    line = one_error_line(cli("info", path))
    assert line.startswith("liquid-control info: error:") and message in line and "bad.onnx" in line


def _reference_actions(cfg, params, steps=50, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(steps, cfg["input_size"])).astype(np.float32)
    dts = rng.uniform(0.01, 0.1, steps)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    h, ref = np.zeros((1, cfg["state_size"])), []
    for o, dt in zip(obs, dts):
        a, h = cellmath.step(cfg, p64, o[None].astype(np.float64), h, np.array([[dt]]))
        ref.append(a[0])
    return obs, dts, np.array(ref)


def _rollout(path, obs, dts):
    policy = Policy.load(path)
    return np.array([policy.step(o, float(dt)) for o, dt in zip(obs, dts)])


def test_export_npz(tmp_path):
    cfg = cfc_cfg(4, 8, 1, mode="no_gate")
    params = random_params(cfg, seed=4, backbone_units=8)
    ckpt = tmp_path / "weights.npz"
    np.savez(ckpt, cfg=json.dumps(cfg), meta=json.dumps({"robot": "cartpole", "provenance": {"seed": 4}}), **params)
    out = cli("export", ckpt, "--out", tmp_path / "out" / "m.onnx")
    assert out.returncode == 0, out.stderr
    assert "robot cartpole" in out.stdout
    art = read_artifact(tmp_path / "out" / "m.onnx")
    assert art.meta["robot"] == "cartpole" and art.meta["provenance"]["seed"] == 4
    assert art.meta["nominal_period"] == pytest.approx(0.04)  # from the spec
    obs, dts, ref = _reference_actions(cfg, params)
    np.testing.assert_allclose(_rollout(art.path, obs, dts), ref, atol=1e-5, rtol=0)


def test_export_pt_cfg_params(tmp_path):
    import torch
    cfg = ltc_cfg(4, 6, 1, motor_size=1, ode_unfolds=2)
    params = random_params(cfg, seed=5)
    ckpt = tmp_path / "w.pt"
    torch.save({"cfg": cfg, "params": {k: torch.from_numpy(v) for k, v in params.items()},
                "nominal_period": 0.02}, ckpt)
    out = cli("export", ckpt, "--out", tmp_path / "m.onnx")
    assert out.returncode == 0, out.stderr
    art = read_artifact(tmp_path / "m.onnx")
    assert art.meta["nominal_period"] == pytest.approx(0.02) and art.meta["robot"] is None
    obs, dts, ref = _reference_actions(cfg, params)
    np.testing.assert_allclose(_rollout(art.path, obs, dts), ref, atol=1e-5, rtol=0)


def test_export_training_checkpoint(tmp_path):
    """A checkpoint in the exact format `liquid-control train` writes, made by the training classes."""
    import torch
    from dataclasses import asdict

    from liquid_control.learning.cell_params import to_params
    from liquid_control.learning.ppo import Agent, PPOConfig
    from liquid_control.learning.checkpoints import save_checkpoint
    from liquid_control.learning.normalise import RunningMeanStd

    config = PPOConfig(robot="cartpole", cell="cfc", units=8, backbone_units=8, seed=7)
    torch.manual_seed(0)
    agent = Agent(config, 4, 1)
    rms = RunningMeanStd(4)
    rms.update(np.random.default_rng(0).normal(2.0, 3.0, (100, 4)))
    save_checkpoint(tmp_path / "best.pt", {"config": asdict(config), "agent": agent.state_dict(),
                                           "obs_rms": rms.state_dict(), "obs_size": 4, "action_size": 1,
                                           "dt0": 0.04, "global_step": 1234})
    out = cli("export", tmp_path / "best.pt", "--out", tmp_path / "m.onnx")
    assert out.returncode == 0, out.stderr
    art = read_artifact(tmp_path / "m.onnx")
    assert art.meta["robot"] == "cartpole" and art.meta["provenance"]["env_steps"] == 1234
    assert art.meta["provenance"]["seed"] == 7
    cfg, params = to_params(agent.actor, rms.mean.astype(np.float32), rms.std.astype(np.float32))
    obs, dts, ref = _reference_actions(cfg, params)
    np.testing.assert_allclose(_rollout(art.path, obs, dts), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, content, message", [
    ("missing.npz", None, "does not exist"),
    ("w.txt", b"x", "unknown checkpoint type '.txt'"),
    ("nocfg.npz", "nocfg", "has no 'cfg' entry"),
    ("bad.pt", b"not a pickle", "cannot read"),
    ("inconsistent.npz", "inconsistent", "parameter 'cfc0.heads.W' is missing"),
])
def test_export_errors_are_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "nocfg":
        np.savez(path, obs_mean=np.zeros(3))
    elif content == "inconsistent":
        cfg = cfc_cfg(3, 4, 4, backbone_layers=0, proj=False)
        params = random_params(cfg)
        del params["cfc0.heads.W"]
        np.savez(path, cfg=json.dumps(cfg), **params)
    elif content is not None:
        path.write_bytes(content)
    line = one_error_line(cli("export", path, "--out", tmp_path / "m.onnx"))
    assert message in line, line
    assert not (tmp_path / "m.onnx").exists()


def test_bench_step_writes_rows_and_matches_ncps(tmp_path):
    out = cli("bench", "step", "--steps", "40", "--rounds", "2", "--models", "cfc-autoncp,ltc-autoncp",
              "--json", tmp_path / "step.json")
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "step.json").read_text())
    rows = data["rows"]
    assert {(r["name"], r["backend"]) for r in rows} == {
        (m, b) for m in ("cfc-autoncp", "ltc-autoncp") for b in ("numpy", "onnxruntime", "torch", "ncps (torch)")}
    for r in rows:
        assert r["p50_us"] > 0 and r["p99_us"] >= r["p50_us"]
        if r["backend"] != "ncps (torch)":
            assert r["max_abs_diff_vs_ncps"] <= 1e-5  # the timed models compute what ncps computes
    assert "ncps (torch)" in out.stdout and "vs ncps p50" in out.stdout


def test_bench_unknown_name_is_an_error():
    out = cli("bench", "nonsense")
    assert out.returncode == 2 and "invalid choice" in out.stderr
