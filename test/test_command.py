"""The action -> command pipeline: scale, soft start, rate limit, clamp, safe command, no allocation."""
import tracemalloc

import numpy as np
import pytest

from liquid_control.core.command import CommandPipeline
from liquid_control.core.errors import SpecError
from liquid_control.core.spec import ActionSpec


def action_spec(**kw) -> ActionSpec:
    base = dict(topic="cmd", msg_type="std_msgs/msg/Float64MultiArray", names=("a", "b"), scale=(2.0, 10.0),
                lower=(-1.0, -5.0), upper=(1.0, 5.0), rate_limit=None, safe=(0.5, 0.0))
    base.update(kw)
    return ActionSpec(**base)


def test_scale_then_clamp():
    p = CommandPipeline(action_spec())
    cmd, ok = p.apply(np.array([0.25, 0.3]), 0.01)
    assert ok and cmd.tolist() == [0.5, 3.0]
    cmd, ok = p.apply(np.array([4.0, -4.0]), 0.01)
    assert ok and cmd.tolist() == [1.0, -5.0]


def test_soft_start_ramps_from_safe_to_policy_command():
    p = CommandPipeline(action_spec(safe=(0.0, 0.0)), soft_start=0.1)
    cmds = [p.apply(np.array([0.5, 0.4]), 0.02)[0].copy() for _ in range(7)]
    # f = 0.2, 0.4, ... 1.0, 1.0: linear in elapsed time, then the full command.
    np.testing.assert_allclose([c[1] for c in cmds], [0.8, 1.6, 2.4, 3.2, 4.0, 4.0, 4.0])
    assert p.ramp == 1.0
    p.restart()
    assert p.ramp == 0.0
    # Restarting ramps from the last published command, so there is no jump.
    cmd, _ = p.apply(np.array([0.0, 0.0]), 0.05)
    np.testing.assert_allclose(cmd, [0.5, 2.0])


def test_rate_limit_per_actuator_per_dt():
    p = CommandPipeline(action_spec(rate_limit=(1.0, 100.0), safe=(0.0, 0.0)))
    cmd, _ = p.apply(np.array([0.5, 0.5]), 0.1)  # wants [1.0, 5.0], may move 0.1 and 10.0
    np.testing.assert_allclose(cmd, [0.1, 5.0])
    cmd, _ = p.apply(np.array([0.5, 0.5]), 0.2)
    np.testing.assert_allclose(cmd, [0.3, 5.0])
    cmd, _ = p.apply(np.array([0.5, 0.5]), 0.0)  # no time passed: no change allowed
    np.testing.assert_allclose(cmd, [0.3, 5.0])
    cmd, _ = p.apply(np.array([0.5, 0.5]), float("nan"))  # a bad dt counts as no time
    np.testing.assert_allclose(cmd, [0.3, 5.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_gives_safe_command(bad):
    p = CommandPipeline(action_spec())
    p.apply(np.array([0.1, 0.1]), 0.01)
    cmd, ok = p.apply(np.array([bad, 0.1]), 0.01)
    assert not ok and cmd.tolist() == [0.5, 0.0]


def test_wrong_action_length_gives_safe_command():
    p = CommandPipeline(action_spec())
    cmd, ok = p.apply(np.array([0.1, 0.1, 0.1]), 0.01)
    assert not ok and cmd.tolist() == [0.5, 0.0]


def test_hold_repeats_last_good_command_and_zero_gives_spec_value():
    hold = CommandPipeline(action_spec(), safe_behaviour="hold")
    assert hold.safe().tolist() == [0.5, 0.0]  # nothing good yet: the spec's safe value
    hold.apply(np.array([0.3, -0.2]), 0.01)
    assert hold.safe().tolist() == pytest.approx([0.6, -2.0])
    zero = CommandPipeline(action_spec(), safe_behaviour="zero")
    zero.apply(np.array([0.3, -0.2]), 0.01)
    assert zero.safe().tolist() == [0.5, 0.0]


def test_safe_command_bypasses_rate_limit_and_next_command_is_limited_from_it():
    p = CommandPipeline(action_spec(rate_limit=(1.0, 1.0), safe=(0.0, 0.0)))
    for _ in range(20):
        p.apply(np.array([0.5, 0.5]), 0.1)
    assert p.last.tolist() == pytest.approx([1.0, 2.0])
    assert p.safe().tolist() == [0.0, 0.0]
    cmd, _ = p.apply(np.array([0.5, 0.5]), 0.1)
    np.testing.assert_allclose(cmd, [0.1, 0.1])


def test_infinite_limits_never_produce_non_finite_output():
    p = CommandPipeline(action_spec(lower=(-np.inf, -np.inf), upper=(np.inf, np.inf), scale=(1e308, 1e308),
                                    safe=(0.0, 0.0)))
    cmd, ok = p.apply(np.array([10.0, -10.0]), 0.01)  # scale overflows to +-inf
    assert not ok and np.isfinite(cmd).all()


def test_param_limits_override_and_validation():
    p = CommandPipeline(action_spec(), lower=(-0.2, -1.0), upper=(0.6, 1.0))
    cmd, _ = p.apply(np.array([1.0, -1.0]), 0.01)
    assert cmd.tolist() == [0.6, -1.0]
    with pytest.raises(SpecError, match="safe command"):
        CommandPipeline(action_spec(), lower=(0.6, -1.0), upper=(0.9, 1.0))
    with pytest.raises(SpecError, match="need 2 values"):
        CommandPipeline(action_spec(), lower=(0.0,), upper=(1.0,))
    with pytest.raises(SpecError, match="safe_behaviour"):
        CommandPipeline(action_spec(), safe_behaviour="brake")
    with pytest.raises(SpecError, match="soft_start"):
        CommandPipeline(action_spec(), soft_start=-1.0)


def test_steady_state_allocates_nothing_per_tick():
    p = CommandPipeline(action_spec(rate_limit=(5.0, 5.0)), soft_start=0.05)
    a = np.array([0.2, -0.3])
    for _ in range(10):  # warm up (ramp done, caches filled)
        p.apply(a, 0.01)
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    for _ in range(1000):
        p.apply(a, 0.01)
        p.safe()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in snap1.compare_to(snap0, "filename")
                if s.traceback[0].filename.endswith("command.py"))
    assert grown < 1024  # no buffer kept per tick (1000 ticks would leave >= 16 kB)


def test_same_inputs_same_outputs_bit_for_bit():
    rng = np.random.default_rng(0)
    actions, dts = rng.normal(size=(200, 2)), rng.uniform(0.005, 0.02, 200)
    runs = []
    for _ in range(2):
        p = CommandPipeline(action_spec(rate_limit=(3.0, 30.0)), soft_start=0.3)
        runs.append(np.array([p.apply(a, dt)[0].copy() for a, dt in zip(actions, dts)]))
    assert np.array_equal(runs[0], runs[1])


def test_action_is_clipped_to_unit_range_before_scaling_even_with_wide_limits():
    from liquid_control.core.spec import parse_spec

    spec = parse_spec({"robot": "t", "rate_hz": 50,
                       "observation": [{"topic": "js", "type": "sensor_msgs/msg/JointState", "field": "position", "joints": ["a"]}],
                       "action": {"topic": "c", "type": "std_msgs/msg/Float64MultiArray", "names": ["a", "b"],
                                  "scale": [2.0, 5.0], "limits": {"lower": [-100, -1], "upper": [100, 100]}}})
    p = CommandPipeline(spec.action)
    cmd, ok = p.apply(np.array([7.0, -3.0]), 0.02)
    assert ok and cmd.tolist() == [2.0, -1.0]  # +1 * 2 (not 14); -1 * 5 = -5, then the lower limit -1


def test_stop_is_the_safe_value_even_when_holding():
    p = CommandPipeline(action_spec(), safe_behaviour="hold")
    p.apply(np.array([0.25, 0.3]), 0.01)
    assert p.safe().tolist() == [0.5, 3.0]  # hold: a sensor fault keeps the last command
    assert p.stop().tolist() == [0.5, 0.0]  # e-stop / disable / deactivate: the spec's safe value


@pytest.mark.parametrize("action, expected", [(-7.0, -2.0), (7.0, 2.0), (-0.5, -1.0), (0.25, 0.5)])
def test_actions_beyond_unit_range_are_clipped_on_both_sides(action, expected):
    # scale 2 with limits far wider than the scale: only the action's [-1, 1] range bounds the command
    # (hand-computed: clip(action, -1, 1) * 2)
    p = CommandPipeline(action_spec(names=("a",), scale=(2.0,), lower=(-100.0,), upper=(100.0,), safe=(0.0,)))
    cmd, ok = p.apply(np.array([action]), 0.01)
    assert ok and cmd.tolist() == [expected]


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_rate_limit_never_steps_past_the_limits(sign):
    # a rate limit wide enough to cross the bound in one tick: the limits still win, on each side
    p = CommandPipeline(action_spec(names=("a",), scale=(10.0,), lower=(-1.0,), upper=(1.0,), rate_limit=(100.0,),
                                    safe=(0.0,)))
    p.apply(np.array([sign * 0.09]), 0.01)  # 0.9 towards the bound (rate allows 1.0 per 0.01 s)
    cmd, ok = p.apply(np.array([sign * 1.0]), 0.01)  # prev +- step = +-1.9: must stop at +-1.0
    assert ok and cmd.tolist() == [sign * 1.0]
    cmd, ok = p.apply(np.array([-sign * 1.0]), 0.01)  # and back by at most rate * dt = 1.0
    assert ok and cmd.tolist() == [0.0]


def test_limits_and_safe_value_are_checked_at_construction():
    with pytest.raises(SpecError, match=r"need 2 values each \(a, b\)"):
        CommandPipeline(action_spec(), lower=(0.0,), upper=(1.0, 1.0))
    with pytest.raises(SpecError, match=r"lower \[1.0, -5.0\] exceeds upper \[0.9, 5.0\]"):
        CommandPipeline(action_spec(), lower=(1.0, -5.0), upper=(0.9, 5.0))
    with pytest.raises(SpecError, match="safe command .* lies outside"):
        CommandPipeline(action_spec(safe=(0.0, 6.0)))  # above the upper limit
    # a safe value on a limit, and a fixed actuator (lower == upper), are allowed
    p = CommandPipeline(action_spec(safe=(-1.0, 5.0)), lower=(-1.0, 5.0), upper=(1.0, 5.0))
    assert p.stop().tolist() == [-1.0, 5.0]
    assert CommandPipeline(action_spec(safe=(1.0, -5.0))).stop().tolist() == [1.0, -5.0]


@pytest.mark.parametrize("rate", [(1.0,), (1.0, 0.0), (1.0, -2.0), (1.0, float("inf")), (float("nan"), 1.0)])
def test_rate_limit_must_be_finite_and_positive_per_actuator(rate):
    with pytest.raises(SpecError, match=r"rate_limit needs 2 finite values > 0, got \["):
        CommandPipeline(action_spec(rate_limit=rate))


def test_spec_numbers_become_float_arrays():
    p = CommandPipeline(action_spec(scale=(2, 10), lower=(-1, -5), upper=(1, 5), rate_limit=(1, 3), safe=(0, 0)))
    assert p.names == ("a", "b") and p.size == 2
    for arr in (p.scale, p.lower, p.upper, p.rate_limit, p.safe_value):
        assert arr.dtype == np.float64


def test_lists_are_actions_too_and_non_numbers_give_the_safe_command():
    p = CommandPipeline(action_spec())
    cmd, ok = p.apply([0.25, 0.3], 0.01)
    assert ok and cmd.tolist() == [0.5, 3.0]
    for bad in (["x", 0.1], [None, 0.1], np.array(["x", "y"]), np.zeros((2, 2)), np.float64(0.1)):
        cmd, ok = p.apply(bad, 0.01)
        assert not ok and cmd.tolist() == [0.5, 0.0]


def test_an_infinite_dt_counts_as_no_time():
    p = CommandPipeline(action_spec(rate_limit=(1.0, 1.0), safe=(0.0, 0.0)))
    cmd, ok = p.apply(np.array([0.5, 0.5]), float("inf"))
    assert ok and cmd.tolist() == [0.0, 0.0]


def test_soft_start_ends_at_the_full_command_even_when_one_dt_overshoots_it():
    p = CommandPipeline(action_spec(safe=(0.0, 0.0)), soft_start=0.1)
    cmd, ok = p.apply(np.array([0.25, 0.3]), 0.15)  # f = min(1, 0.15 / 0.1) = 1, not 1.5
    assert ok and cmd.tolist() == [0.5, 3.0]


def test_a_ramp_that_turns_non_finite_is_refused():
    # command 1e308 ramped from a safe value of -1e308: 1e308 - (-1e308) overflows to inf, and f = 0 at
    # dt = 0 makes inf * 0 = NaN
    p = CommandPipeline(action_spec(names=("a",), scale=(1e308,), lower=(-np.inf,), upper=(np.inf,),
                                    safe=(-1e308,)), soft_start=1.0)
    cmd, ok = p.apply(np.array([1.0]), 0.0)
    assert not ok and cmd.tolist() == [-1e308]
