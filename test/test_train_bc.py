"""Learning from logs: an expert recorded in sim to a rosbag2 bag, demonstrations read back from it, and
`liquid-control train-bc` cloning it into a liquid policy that balances the cart-pole."""
import numpy as np
import pytest

from liquid_control.bags.demos import extract_demos
from liquid_control.bags.io import BAG_COMMAND_QOS, BAG_SENSOR_QOS, BagError, BagWriter, distro_typestore
from liquid_control.bags.synth import write_cartpole_bag
from liquid_control.cli.main import main
from liquid_control.core.policy import Policy
from liquid_control.core.resources import default_policy_path
from liquid_control.core.spec import load_spec

SPEC = load_spec("cartpole")


def record_expert(path, policy, *, episodes=6, noise=0.3, seed=0):
    """Run `policy` in the MuJoCo cart-pole and record what a robot bag would hold: JointState (slider,
    hinge) at each control tick and the expert's command 1 ms later. The executed action gets noise
    (the recorded command does not), so the demonstrations show how the expert recovers."""
    from liquid_control.learning.envs import make_env

    ts = distro_typestore()
    T = ts.types
    env = make_env("cartpole")
    rng = np.random.default_rng(seed)
    t_ns, steps = 1_000_000_000_000, 0
    with BagWriter(path, typestore=ts) as w:
        w.add_topic("/joint_states", "sensor_msgs/msg/JointState", qos=(BAG_SENSOR_QOS,))
        w.add_topic(SPEC.action.topic, SPEC.action.msg_type, qos=(BAG_COMMAND_QOS,))
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            policy.reset()
            dt, done = SPEC.period, False
            while not done:
                hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9),
                                               frame_id="")
                w.write_msg("/joint_states", t_ns, T["sensor_msgs/msg/JointState"](
                    header=hdr, name=["slider", "hinge"], position=np.array(obs[:2], float),
                    velocity=np.array(obs[2:], float), effort=np.zeros(0)))
                a = np.clip(policy.step(np.asarray(obs, np.float32), dt), -1.0, 1.0)
                w.write_msg(SPEC.action.topic, t_ns + 1_000_000, T[SPEC.action.msg_type](
                    layout=T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0), data=a.astype(float) * 3.0))
                obs, _, term, trunc, info = env.step(np.clip(a + rng.normal(0, noise, a.shape), -1, 1).astype(np.float32))
                done, dt = term or trunc, float(info.get("dt", SPEC.period))
                t_ns += int(round(dt * 1e9))
                steps += 1
            t_ns += 2_000_000_000  # the robot is reset between episodes: a 2 s gap in the bag
    env.close()
    return steps


@pytest.fixture(scope="module")
def expert_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bc") / "expert"
    steps = record_expert(path, Policy.load(default_policy_path("cartpole"), spec=SPEC))
    return path, steps


def test_demonstrations_pair_each_command_with_what_the_expert_saw(expert_bag):
    path, steps = expert_bag
    data = extract_demos([path], SPEC)
    assert data.steps >= steps - 10 and data.breaks >= 4  # the episodes, split at the gaps
    d = data.demos[0]
    assert d.obs.shape == (len(d), 4) and d.action.shape == (len(d), 1)
    for demo in data.demos:  # every step's dt is the control period, the first of each sequence too
        np.testing.assert_allclose(demo.dt, SPEC.period, rtol=1e-6)
    # the expert's own policy, fed the demonstration's observations and dts, gives the recorded actions
    expert = Policy.load(default_policy_path("cartpole"), spec=SPEC)
    expert.reset()
    got = np.array([np.clip(expert.step(o, float(t)), -1, 1) for o, t in zip(d.obs, d.dt)])
    np.testing.assert_allclose(got, d.action, atol=1e-6)


def test_bag_without_recorded_commands_cannot_be_cloned(tmp_path):
    info = write_cartpole_bag(tmp_path / "nocmd", duration=0.5, commands=False)
    with pytest.raises(BagError, match="no topic /effort_controller/commands \\(the recorded commands to imitate\\)"):
        extract_demos([info.path], SPEC)


def test_train_bc_clones_the_expert_and_the_clone_balances(expert_bag, tmp_path, capsys):
    from liquid_control.learning.evaluate import run_episodes

    path, _ = expert_bag
    out = tmp_path / "clone.onnx"
    assert main(["train-bc", str(path), "--robot", "cartpole", "--out", str(out), "--units", "16",
                 "--backbone-units", "16", "--epochs", "20"]) == 0
    assert "wrote" in capsys.readouterr().out
    clone = Policy.load(out, spec=SPEC)  # a complete artifact for the cart-pole's interface
    assert clone.meta["provenance"]["method"] == "behaviour cloning"
    result = run_episodes(clone, "cartpole", episodes=5, seed=100)  # starts never seen in the bag
    assert result["mean"] >= 950.0, result
    # the same loop with an untrained cell of the same shape falls: balancing is learned, not given
    from liquid_control.core.artifact import write_artifact
    from liquid_control.core.random_params import random_params

    cfg = clone.cfg
    untrained = write_artifact(tmp_path / "u.onnx", cfg, random_params(cfg, 0), spec=SPEC)
    assert run_episodes(Policy.load(untrained), "cartpole", episodes=5, seed=100)["mean"] < 200.0
