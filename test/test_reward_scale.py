"""RewardScaler (learning/normalise.py): rewards over the running std of the discounted return, checked
against values worked by hand, and carried across a resumed run."""
import numpy as np
import pytest

from liquid_control.learning.checkpoints import load_checkpoint
from liquid_control.learning.normalise import RewardScaler
from liquid_control.learning.ppo import PPOConfig, train


def test_scales_by_the_std_of_the_discounted_return():
    s = RewardScaler(n_envs=1, gamma=0.5)
    s.rms.count = 0.0  # no prior: the statistics are exactly those of the returns seen
    out = [s(np.array([1.0]), np.array([False]))[0] for _ in range(3)]
    # discounted returns 1, 1.5, 1.75: the std after each step is 0 (1 / 1e-4, clipped to 10), 0.25, 0.312
    assert out[0] == 10.0
    assert out[1:] == pytest.approx([1.0 / np.std([1.0, 1.5]), 1.0 / np.std([1.0, 1.5, 1.75])], rel=1e-6)


def test_an_episode_end_restarts_the_return_and_the_sign_is_kept():
    s = RewardScaler(n_envs=2, gamma=0.9)
    s(np.array([2.0, -2.0]), np.array([True, False]))
    assert s.ret.tolist() == [0.0, -2.0]  # env 0 ended: its return starts again
    out = s(np.array([-3.0, 3.0]), np.array([False, False]))
    assert out[0] < 0 < out[1]


def test_clipped_to_ten():
    s = RewardScaler(n_envs=1, gamma=0.0)
    for _ in range(1000):
        s(np.array([0.01]), np.array([False]))
    assert s(np.array([1.0]), np.array([False]))[0] == 10.0  # 1 / std 0.031


def test_the_scale_resumes_with_the_run(tmp_path):
    tiny = dict(robot="cartpole", cell="cfc", units=8, backbone_units=16, n_envs=2, n_steps=64, tbptt=16,
                epochs=1, minibatches=2, eval_every=4096, eval_episodes=1, norm_reward=True)
    train(PPOConfig(steps=256, seed=1, **tiny), tmp_path, command="test", progress=False)
    first = load_checkpoint(tmp_path / "checkpoint.pt")["reward_scale"]
    assert first["rms"]["count"] == pytest.approx(256 + 1e-4)
    train(PPOConfig(steps=512, seed=1, **tiny), tmp_path, resume=True, command="test", progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["reward_scale"]["rms"]["count"] == pytest.approx(512 + 1e-4)
