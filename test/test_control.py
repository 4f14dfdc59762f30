"""core/control.py, tick by tick, no DDS: every rule of the control law, each branch and sign.

Expected commands are computed by hand from the cartpole spec (scale 3, limits +-3, rate limit 300/s,
safe value 0) and the soft-start formula, not with the classes under test. The scripted policy returns
the actions a test gives it and records the dt it was stepped by, so each rule's effect is visible.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from liquid_control.core.command import CommandPipeline
from liquid_control.core.control import (ERROR, OK, SAFE_FAULT, SAFE_POLICY, SAFE_STOP, STALE, STEPPED, WARN,
                                         ControlLaw, EStop, max_dt)
from liquid_control.core.errors import StepError
from liquid_control.core.observation import Fault
from liquid_control.core.spec import load_spec

SPEC = load_spec("cartpole")
PERIOD = 0.04  # 25 Hz
TIMEOUT = 0.2  # max_dt = max(0.2, 5 * 0.04) = 0.2
OBS = np.array([0.1, -0.2, 0.3, -0.4])
STALE_FAULT = Fault("stale", "joint_states", "last message 0.300 s old (timeout 0.2 s)")
NAN_FAULT = Fault("invalid", "joint_states", "non-finite value in JointState.position[0]")


class ScriptedPolicy:
    """Returns the next scripted action (or raises a scripted exception); records dts and resets."""

    def __init__(self):
        self.actions: list = []
        self.dts: list[float] = []
        self.obs: list[np.ndarray] = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def step(self, obs: np.ndarray, dt: float) -> np.ndarray:
        self.obs.append(obs.copy())
        self.dts.append(dt)
        a = self.actions.pop(0) if self.actions else 0.0
        if isinstance(a, Exception):
            raise a
        return np.array([a], np.float32)


def law(soft_start: float = 0.0, safe_behaviour: str = "zero") -> tuple[ControlLaw, ScriptedPolicy]:
    policy = ScriptedPolicy()
    pipeline = CommandPipeline(SPEC.action, soft_start=soft_start, safe_behaviour=safe_behaviour)
    return ControlLaw(policy, pipeline, PERIOD, TIMEOUT, SPEC.obs_size), policy


def step(c: ControlLaw, p: ScriptedPolicy, action, now: float = 1.0, dt: float = PERIOD, fault=None, stop=None):
    p.actions.append(action)
    return c.update(now, dt, OBS, fault, stop)


# --- stepping -------------------------------------------------------------------------------------
def test_first_step_after_activation_is_fresh_and_steps_one_period_whatever_dt_says():
    c, p = law()
    t = step(c, p, 0.5, dt=0.15)  # e.g. the time since the epoch's first /clock
    assert (t.status, t.level, t.reason, t.fresh, t.resumed, t.restarted) == (STEPPED, OK, "", True, False, False)
    assert p.dts == [PERIOD] and t.dt == PERIOD
    assert t.command.tolist() == [1.5]  # 0.5 * scale 3
    t = step(c, p, 0.5, dt=0.05)
    assert not t.fresh and p.dts[-1] == 0.05 and t.dt == 0.05  # then the measured dt: continuous time


def test_the_policy_sees_the_observation_in_float32():
    c, p = law()
    step(c, p, 0.0)
    assert p.obs[0].dtype == np.float32 and p.obs[0].tolist() == OBS.astype(np.float32).tolist()


@pytest.mark.parametrize("action, expected", [(0.5, 0.12), (-0.5, -0.12)])
def test_soft_start_fades_in_from_the_safe_value(action, expected):
    c, _ = law(soft_start=0.5)
    p = c.policy
    t = step(c, p, action)  # f = 0.04 / 0.5 = 0.08: 0 + 0.08 * (+-1.5)
    assert t.command[0] == pytest.approx(expected, abs=1e-12)
    t = step(c, p, action, dt=0.05)  # f = 0.09 / 0.5 = 0.18
    assert t.command[0] == pytest.approx(expected / 0.08 * 0.18, abs=1e-12)


@pytest.mark.parametrize("sign", [1, -1])
def test_rate_limit_applies_with_the_measured_dt(sign):
    c, p = law()
    step(c, p, 0.0)  # 0
    t = step(c, p, sign * 1.0, dt=0.001)  # 300/s * 1 ms = 0.3 away from 0, whatever the policy asks
    assert t.command[0] == pytest.approx(sign * 0.3, abs=1e-12)


# --- stop -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("behaviour", ["zero", "hold"])
def test_stop_publishes_the_spec_safe_value_even_under_hold_and_does_not_step(behaviour):
    c, p = law(safe_behaviour=behaviour)
    step(c, p, 0.5)
    t = c.update(1.0, PERIOD, OBS, None, "e-stop engaged")
    assert (t.status, t.level, t.reason) == (SAFE_STOP, WARN, "e-stop engaged")
    assert t.command.tolist() == [0.0] and t.action is None and math.isnan(t.dt)
    assert len(p.dts) == 1  # not stepped


def test_stop_wins_over_a_sensor_fault():
    c, p = law()
    t = c.update(1.0, PERIOD, OBS, STALE_FAULT, "disabled through ~/enable")
    assert t.status == SAFE_STOP and t.fault is None


# --- sensor faults --------------------------------------------------------------------------------
@pytest.mark.parametrize("fault, level", [(STALE_FAULT, STALE), (NAN_FAULT, ERROR),
                                          (Fault("missing", "joint_states", "no message received yet"), STALE)])
def test_a_sensor_fault_gives_the_safe_command_with_its_level(fault, level):
    c, p = law()
    step(c, p, 0.5)
    t = c.update(1.0, PERIOD, OBS, fault, None)
    assert (t.status, t.level, t.fault, t.reason) == (SAFE_FAULT, level, fault, str(fault))
    assert t.command.tolist() == [0.0] and len(p.dts) == 1


def test_hold_keeps_the_last_good_command_through_a_fault():
    c, p = law(safe_behaviour="hold")
    step(c, p, 0.5)
    t = c.update(1.0, PERIOD, OBS, NAN_FAULT, None)
    assert t.command.tolist() == [1.5]


def test_after_a_fault_the_state_is_zeroed_and_the_next_step_is_fresh_with_a_soft_start():
    c, p = law(soft_start=0.5)
    for _ in range(20):  # past the soft start: full command
        step(c, p, 0.5)
    assert step(c, p, 0.5).command[0] == 1.5
    resets = p.resets
    t = c.update(1.0, PERIOD, OBS, STALE_FAULT, None)
    assert p.resets == resets + 1 and t.command[0] == 0.0
    c.update(1.0, PERIOD, OBS, STALE_FAULT, None)
    assert p.resets == resets + 1  # reset once per fault episode, not per tick
    t = step(c, p, 0.5, dt=0.08)
    assert t.fresh and t.resumed and p.dts[-1] == PERIOD
    assert t.command[0] == pytest.approx(0.08 * 1.5, abs=1e-12)  # faded in again from the safe value
    assert not step(c, p, 0.5).resumed


# --- policy failures ------------------------------------------------------------------------------
def test_a_policy_error_gives_the_safe_command_and_a_fresh_state():
    c, p = law()
    step(c, p, 0.5)
    t = step(c, p, StepError("backend produced a non-finite action"))
    assert (t.status, t.level) == (SAFE_POLICY, ERROR) and "non-finite action" in t.reason
    assert t.command.tolist() == [0.0] and t.action is None
    t = step(c, p, 0.5)
    assert t.fresh and t.resumed


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_action_gives_the_safe_command_and_is_reported(bad):
    c, p = law()
    step(c, p, 0.5)
    t = step(c, p, bad)
    assert (t.status, t.level, t.reason) == (SAFE_POLICY, ERROR, "policy output is not finite")
    assert t.command.tolist() == [0.0] and t.action is not None and not np.isfinite(t.action).all()
    assert step(c, p, 0.5).fresh


# --- dt gaps --------------------------------------------------------------------------------------
def test_max_dt_is_the_sensor_timeout_or_five_periods():
    assert max_dt(0.04, 0.2) == 0.2 and max_dt(0.1, 0.2) == 0.5 and max_dt(0.01, 0.2) == 0.2


def test_a_dt_gap_restarts_the_state_and_the_soft_start_instead_of_stepping_across_it():
    c, p = law(soft_start=0.5)
    for _ in range(20):
        step(c, p, 0.5)
    before = step(c, p, 0.5).command[0]
    resets = p.resets
    t = step(c, p, -0.5, dt=0.2 + 1e-9)
    assert t.restarted and t.fresh and t.status == STEPPED and p.resets == resets + 1
    assert p.dts[-1] == PERIOD  # the zeroed state steps one period, not the gap
    assert t.command[0] == pytest.approx(before + 0.08 * (-1.5 - before), abs=1e-12)
    t = step(c, p, -0.5, dt=0.2)  # at the limit: a late tick, still a step
    assert not t.restarted and not t.fresh and p.dts[-1] == 0.2


def test_a_nan_dt_is_a_restart_not_a_step():
    c, p = law()
    step(c, p, 0.5)
    t = step(c, p, 0.5, dt=math.nan)
    assert t.restarted and t.fresh and p.dts[-1] == PERIOD


def test_a_gap_during_a_fault_is_counted_and_changes_nothing_else():
    c, p = law()
    t = c.update(1.0, 5.0, OBS, STALE_FAULT, None)
    assert t.restarted and t.status == SAFE_FAULT


# --- explicit transitions -------------------------------------------------------------------------
def test_restart_zeroes_the_state_and_fades_in_from_the_last_command():
    c, p = law(soft_start=0.5)
    for _ in range(20):
        step(c, p, 0.5)
    resets = p.resets
    c.restart()
    assert p.resets == resets + 1
    t = step(c, p, -0.5)
    assert t.fresh and not t.resumed and t.command[0] == pytest.approx(1.5 + 0.08 * (-1.5 - 1.5), abs=1e-12)


def test_fail_and_stop_give_the_spec_safe_value_under_hold():
    c, p = law(safe_behaviour="hold")
    step(c, p, 0.5)
    assert c.stop().tolist() == [0.0]
    step(c, p, 0.5)
    assert c.fail().tolist() == [0.0]
    t = step(c, p, 0.5)
    assert t.fresh and t.resumed


def test_reset_forgets_the_command_history():
    c, p = law(soft_start=0.5)
    for _ in range(20):
        step(c, p, 0.5)
    c.reset()
    t = step(c, p, 0.5)
    assert t.fresh and not t.resumed and t.command[0] == pytest.approx(0.12, abs=1e-12)


def test_a_period_that_is_not_a_time_is_refused():
    with pytest.raises(ValueError, match="period"):
        ControlLaw(ScriptedPolicy(), CommandPipeline(SPEC.action), 0.0, TIMEOUT, 4)


# --- with a real policy ---------------------------------------------------------------------------
def test_with_a_real_policy_the_law_steps_it_as_a_hand_driven_policy(tmp_path):
    """A loaded CfC policy inside the law equals the same policy stepped by hand by the rules: one period
    from a zeroed state, the measured dt after, a fresh state after a gap."""
    from controller_fixtures import make_artifact
    from liquid_control.core.policy import Policy

    model = make_artifact(tmp_path / "m.onnx", seed=3)
    inner, ref = Policy.load(model, spec=SPEC), Policy.load(model, spec=SPEC)
    c = ControlLaw(inner, CommandPipeline(SPEC.action), PERIOD, TIMEOUT, SPEC.obs_size)
    rng = np.random.default_rng(0)
    dts = [0.03, 0.05, 0.04, 1.0, 0.045]  # the fourth is a gap
    ref_dts = [PERIOD, 0.05, 0.04, PERIOD, 0.045]
    for k, (dt, ref_dt) in enumerate(zip(dts, ref_dts)):
        obs = rng.normal(0, 0.5, 4)
        if k == 3:
            ref.reset()
        t = c.update(k, dt, obs, None, None)
        expected = ref.step(obs.astype(np.float32), ref_dt)
        assert t.action.tolist() == expected.tolist()
        assert t.command.tolist() == [min(3.0, max(-3.0, float(expected[0]) * 3.0))]


# --- e-stop ---------------------------------------------------------------------------------------
def test_estop_not_required_and_no_heartbeat_never_holds():
    e = EStop()
    assert not e.active and e.check(0.0) == (None, None)


def test_estop_required_holds_until_a_message_says_false():
    e = EStop(required=True)
    assert e.active
    reason, _ = e.check(0.0)
    assert reason == "e-stop engaged (estop_required: no e-stop message received yet)"
    assert e.message(True, 1.0) is None  # no change: nothing to log
    assert e.check(1.0)[0] == "e-stop engaged"
    assert e.message(False, 2.0) == "e-stop released"
    assert e.check(2.0) == (None, None) and not e.active
    assert e.message(True, 3.0) == "e-stop ENGAGED: safe command"


def test_estop_heartbeat_silence_holds_and_hearing_it_again_releases():
    e = EStop(timeout=0.5)
    assert e.heard is False and e.silent is False and e.engaged is False
    reason, note = e.check(0.0)
    assert reason == "e-stop source not heard yet (estop_timeout 0.5 s)"
    assert note == "estop_timeout: safe command until the e-stop source is heard"
    assert e.check(0.1) == (reason, None)  # logged once
    e.message(False, 1.0)
    reason, note = e.check(1.4)
    assert reason is None and note == "e-stop source heard: within estop_timeout again"
    assert e.check(1.5) == (None, None)  # at the timeout: not yet silent
    reason, note = e.check(1.6)
    assert reason == "e-stop source silent for 0.60 s (estop_timeout 0.5 s)"
    assert note == "e-stop source silent for 0.60 s (estop_timeout 0.5 s): safe command until it is heard again"
    e.message(False, 1.7)
    assert e.check(1.8)[0] is None


def test_a_heartbeat_heard_in_time_logs_nothing():
    e = EStop(timeout=0.5)
    e.message(False, 0.0)
    assert e.check(0.1) == (None, None) and e.check(0.5) == (None, None)


@pytest.mark.parametrize("kind", ["stop", "fault", "policy error", "non-finite"])
def test_every_safe_tick_reports_its_flags_exactly(kind):
    """fresh: the tick began from a zeroed state; restarted: rule 1 applied; resumed: never on a safe tick."""
    c, p = law()
    step(c, p, 0.5)

    def bad(dt):
        if kind == "stop":
            return c.update(1.0, dt, OBS, None, "e-stop engaged")
        if kind == "fault":
            return c.update(1.0, dt, OBS, STALE_FAULT, None)
        return step(c, p, StepError("x") if kind == "policy error" else math.nan, dt=dt)

    t = bad(PERIOD)  # from a state that had stepped
    assert (t.fresh, t.restarted, t.resumed) == (False, False, False)
    assert t.fresh is False and t.restarted is False and t.resumed is False
    t = bad(1.0)  # a gap: restarted, and the state is zeroed before the tick
    assert t.fresh is True and t.restarted is True and t.resumed is False
    t = step(c, p, 0.5)
    assert t.fresh is True and t.resumed is True and t.restarted is False
    t = step(c, p, 0.5)
    assert t.fresh is False and t.resumed is False and t.restarted is False
