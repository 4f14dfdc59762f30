"""`liquid-control eval`: the shipped artifact through the core runtime in the real MuJoCo env."""
from __future__ import annotations

import json

import pytest

from liquid_control.cli.main import main
from liquid_control.core.resources import default_policy_path


def test_shipped_cartpole_policy_balances(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--robot", "cartpole", "--episodes", "3", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["model"] == str(default_policy_path("cartpole")) and res["backend"] == "numpy"
    assert res["episodes"] == 3 and len(res["returns"]) == 3
    assert res["mean"] >= 950 and res["success_rate"] == 1.0  # the shipped policy's promise
    assert res["dt_min"] == res["dt_max"] == pytest.approx(0.04)
    assert "cartpole: return" in capsys.readouterr().out


def test_timing_perturbations_reach_the_policy(tmp_path):
    """--dt-jitter and --rate-scale change the simulated step times that are fed to the policy."""
    model = str(default_policy_path("cartpole"))
    jit = tmp_path / "jitter.json"
    assert main(["eval", model, "--robot", "cartpole", "--episodes", "1", "--dt-jitter", "0.3",
                 "--timestep", "0.004", "--json", str(jit)]) == 0
    res = json.loads(jit.read_text())
    assert 0.028 - 1e-9 <= res["dt_min"] < 0.036 and 0.044 < res["dt_max"] <= 0.052 + 1e-9

    fast = tmp_path / "fast.json"
    assert main(["eval", model, "--robot", "cartpole", "--episodes", "1", "--rate-scale", "2", "--backend",
                 "onnxruntime", "--json", str(fast)]) == 0
    res = json.loads(fast.read_text())
    assert res["dt_min"] == res["dt_max"] == pytest.approx(0.02)
    # twice the rate, the same 40 s horizon: 2000 steps, each reward weighted by dt / nominal period; the
    # shipped policy holds the pole at twice its rate (seeded episode), so the whole horizon is run
    assert res["mean_length"] == 2000 and res["mean"] == pytest.approx(1000.0)


def test_video_is_written(tmp_path, offscreen_gl):
    video = tmp_path / "reacher.gif"  # the reacher's episodes are 50 steps: a short video
    assert main(["eval", "--robot", "reacher", "--episodes", "1", "--video", str(video)]) == 0
    assert video.stat().st_size > 1000 and video.read_bytes()[:3] == b"GIF"


@pytest.mark.parametrize("argv, message", [
    (["eval", "/nonexistent/policy.onnx", "--robot", "cartpole"], "/nonexistent/policy.onnx"),
    (["eval", "--robot", "reacher", "CARTPOLE"], "reacher"),  # a cart-pole model on the reacher: spec mismatch
    (["eval", "--robot", "cartpole", "--episodes", "0"], "--episodes must be positive"),
    (["eval", "--robot", "cartpole", "--rate-scale", "0"], "rate-scale must be a positive number"),
    (["eval", "--robot", "nosuchbot"], "unknown robot 'nosuchbot'"),
])
def test_bad_input_is_a_one_line_error(capsys, argv, message):
    argv = [str(default_policy_path("cartpole")) if a == "CARTPOLE" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("liquid-control eval: error:") and message in err and "\n" not in err


def test_shipped_cartpole_imu_policy_meets_its_documented_return(tmp_path):
    """policies/README.md: 1000 over 20 episodes; the promise is a mean >= 950 (params file config/cartpole_imu.yaml)."""
    out = tmp_path / "imu.json"
    assert main(["eval", "--robot", "cartpole_imu", "--episodes", "20", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["model"] == str(default_policy_path("cartpole_imu"))
    assert res["mean"] >= 950 and res["success_rate"] >= 0.9


def test_node_safety_wraps_the_policy_in_the_control_law():
    """NodeSafety: the node's soft start (0.5 s for cartpole) fades the first commands in, hand-computed; then
    the policy's own action passes unchanged (within the limits)."""
    import numpy as np

    from liquid_control.core.spec import load_spec
    from liquid_control.learning.evaluate import NodeSafety

    class Full:
        def reset(self):
            pass

        def step(self, obs, dt):
            return np.array([0.5], np.float32)

    safe = NodeSafety(Full(), load_spec("cartpole"), 0.04)
    safe.reset()
    obs = np.zeros(4)
    got = [float(safe.step(obs, 0.04)[0]) for _ in range(15)]
    # command = 0.5 * 3 * min(1, k * 0.04 / 0.5), as an action: / 3
    assert got == pytest.approx([0.5 * min(1.0, k * 0.04 / 0.5) for k in range(1, 16)], abs=1e-12)


def test_shipped_cartpole_policy_balances_under_the_node_safety(tmp_path):
    out = tmp_path / "e.json"
    assert main(["eval", "--robot", "cartpole", "--episodes", "3", "--node-safety", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["node_safety"] is True and res["mean"] >= 950, res
