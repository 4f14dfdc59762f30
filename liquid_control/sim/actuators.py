"""Joint actuators as ros2_control's command interfaces, applied by MuJoCo at the physics rate.

    effort    a <motor>: torque (force) = gear * command
    position  a <position> actuator: PD to the target, torque = kp (target - q) - kd qdot
    velocity  a <velocity> actuator: velocity servo, torque = kd (target - qdot)

The command is in joint units (rad, rad/s, N m; m, m/s, N for a slide joint), as a ros2_control
forward_command_controller for that interface forwards it to the hardware. `actuator_interface` reads the
interface back from a compiled model, so a spec's `action.interface` is checked against any model, MJCF
or URDF.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from liquid_control.core.errors import SpecError
from liquid_control.core.spec import INTERFACES, RobotSpec


@dataclass(frozen=True)
class Drive:
    """One joint's actuator. lower/upper bound the command (None: unbounded), effort the force it gives."""

    joint: str
    interface: str
    kp: float | None = None
    kd: float | None = None
    gear: float = 1.0
    lower: float | None = None
    upper: float | None = None
    effort: float | None = None

    def check(self, where: str) -> None:
        """SpecError (naming `where`) for an interface MuJoCo cannot apply with these gains."""
        if self.interface not in INTERFACES:
            raise SpecError(f"{where}: unknown interface {self.interface!r}; choose one of {list(INTERFACES)}")
        if self.interface == "position" and (self.kp is None or self.kp <= 0):
            raise SpecError(f"{where}: the position interface needs a gain kp > 0 (PD: kp, kd), got {self.kp}")
        if self.interface == "position" and self.kd is not None and self.kd < 0:
            raise SpecError(f"{where}: kd must be >= 0, got {self.kd}")
        if self.interface == "velocity" and (self.kd is None or self.kd <= 0):
            raise SpecError(f"{where}: the velocity interface needs a gain kd > 0 (velocity servo), got {self.kd}")
        if self.interface != "effort" and self.gear != 1.0:
            raise SpecError(f"{where}: gear applies to the effort interface; position and velocity targets "
                            "are in joint units")
        if self.gear <= 0:
            raise SpecError(f"{where}: gear must be > 0, got {self.gear}")
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise SpecError(f"{where}: command limits lower {self.lower} must be below upper {self.upper}")
        if self.effort is not None and self.effort <= 0:
            raise SpecError(f"{where}: effort limit must be > 0, got {self.effort}")


def add_actuator(mjspec: mujoco.MjSpec, drive: Drive) -> mujoco.MjsActuator:
    """An actuator named after its joint, applying `drive`'s interface (the module docstring)."""
    act = mjspec.add_actuator(name=drive.joint, target=drive.joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
    if drive.interface == "position":
        act.set_to_position(kp=drive.kp, kv=drive.kd or 0.0)
    elif drive.interface == "velocity":
        act.set_to_velocity(kv=drive.kd)
    else:
        act.set_to_motor()
        act.gear[0] = drive.gear
    if drive.lower is not None or drive.upper is not None:
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange[:] = (-np.inf if drive.lower is None else drive.lower,
                            np.inf if drive.upper is None else drive.upper)
    if drive.effort is not None:
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange[:] = (-drive.effort, drive.effort)
    return act


def actuator_interface(model: mujoco.MjModel, i: int) -> str | None:
    """The command interface a compiled joint actuator applies (module docstring), or None for another kind
    (muscles, tendons, sites, actuators with dynamics)."""
    if int(model.actuator_trntype[i]) not in (int(mujoco.mjtTrn.mjTRN_JOINT), int(mujoco.mjtTrn.mjTRN_JOINTINPARENT)):
        return None
    if int(model.actuator_dyntype[i]) != int(mujoco.mjtDyn.mjDYN_NONE):
        return None
    if int(model.actuator_gaintype[i]) != int(mujoco.mjtGain.mjGAIN_FIXED):
        return None
    bias, gain = int(model.actuator_biastype[i]), model.actuator_gainprm[i]
    if bias == int(mujoco.mjtBias.mjBIAS_NONE):
        return "effort"
    if bias != int(mujoco.mjtBias.mjBIAS_AFFINE) or model.actuator_biasprm[i][0] != 0.0:
        return None
    kp, kv = -model.actuator_biasprm[i][1], -model.actuator_biasprm[i][2]
    if kp > 0 and kp == gain[0]:
        return "position"
    if kp == 0 and kv > 0 and kv == gain[0]:
        return "velocity"
    return None


def check_interface(model: mujoco.MjModel, act_ids: np.ndarray, spec: RobotSpec) -> None:
    """SpecError unless every commanded actuator applies the spec's action.interface (when it names one)."""
    want = spec.action.interface
    if want is None:
        return
    for name, i in zip(spec.action.names, act_ids):
        got = actuator_interface(model, int(i))
        if got != want:
            raise SpecError(f"action.interface is {want!r}, but actuator {name!r} in the model applies "
                            f"{got or 'no joint command interface'!r}")
