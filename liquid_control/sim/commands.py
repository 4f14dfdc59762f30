"""Commands: what an operator asks of the robot (a walking speed), drawn per episode in the sim.

A spec names its commands in `sim.commands`, each with the range it is drawn from, uniformly, at every
reset (after the reset terms, from the same rng):

    sim:
      commands:
        forward_speed: [0.2, 0.7]        # m/s, drawn in [low, high] per episode

The policy sees a command like any sensor: an observation entry with `sim: {command: NAME}` (on the robot,
a topic such as /cmd_vel that an operator or a planner publishes; in the sim bridge, published with the
sensors). Reward terms read it by name (`track_velocity` with `command: NAME` instead of `target`).

Commands live in MjData.userdata (slot 0 is always 0, command i in slot i + 1), so the observation reader
copies them like any MuJoCo array; the model records each command's slot as a custom numeric
`command/NAME`, so a reader or term resolves a name from the model alone.
"""
from __future__ import annotations

import math
from typing import Any

import mujoco
import numpy as np

from liquid_control.core import checks
from liquid_control.core.errors import SpecError

PREFIX = "command/"
ZERO_SLOT = 0  # a userdata slot that stays 0: the axes of a command's message that no command fills


def parse_commands(sim: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """name -> (low, high) of a spec's sim.commands (empty when it has none)."""
    raw = sim.get("commands")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"sim.commands: expected a mapping of name: [low, high], got {raw!r}")
    out = {}
    for name, rng in raw.items():
        where = f"sim.commands.{name}"
        checks.name(name, where)
        if not isinstance(rng, list) or len(rng) != 2:
            raise SpecError(f"{where}: expected [low, high], got {rng!r}")
        low, high = (checks.number(v, f"{where}[{i}]") for i, v in enumerate(rng))
        if low > high:
            raise SpecError(f"{where}: low {low:g} is above high {high:g}")
        out[name] = (low, high)
    return out


def require_mjspec(what: str) -> None:
    """Model editing (URDF completion, commands) needs mujoco.MjSpec, which mujoco's Python bindings have
    from 3.2 on; the declared floor (3.1.2) serves MJCF robots without commands."""
    if not hasattr(mujoco, "MjSpec"):
        raise SpecError(f"{what} needs mujoco 3.2 or later (mujoco.MjSpec); this is mujoco {mujoco.__version__}")


def add_commands(mjspec: mujoco.MjSpec, commands: dict[str, tuple[float, float]]) -> None:
    """Room for the commands in MjData.userdata, and each one's slot as numeric `command/NAME`."""
    if not commands:
        return
    mjspec.nuserdata = max(int(mjspec.nuserdata), len(commands) + 1)
    for slot, name in enumerate(commands, start=1):
        mjspec.add_numeric(name=PREFIX + name, data=[float(slot)])


def slot(model: mujoco.MjModel, name: str, where: str) -> int:
    """The userdata slot of command `name`; SpecError naming it when the model has no such command."""
    i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_NUMERIC, PREFIX + str(name))
    if i < 0:
        known = [model.numeric(k).name.removeprefix(PREFIX) for k in range(model.nnumeric)
                 if model.numeric(k).name.startswith(PREFIX)]
        raise SpecError(f"{where}: no command named {name!r} (sim.commands: {', '.join(known) or 'none'})")
    return int(model.numeric_data[model.numeric_adr[i]])


def parse_settings(text: str) -> dict[str, float]:
    """'NAME=VALUE,NAME=VALUE' (the sim bridge's `commands` parameter, the CLI's --command) as a mapping."""
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            number = float(value) if sep and name.strip() else None
        except ValueError:
            number = None
        if number is None or not math.isfinite(number):
            raise SpecError(f"command {item!r}: expected NAME=VALUE with a finite number, e.g. forward_speed=0.5")
        out[name.strip()] = number
    return out


class Commands:
    """Draws a spec's commands into MjData.userdata at each reset."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, sim: dict[str, Any]):
        ranges = parse_commands(sim)
        self.names = tuple(ranges)
        self._slots = np.asarray([slot(model, n, f"sim.commands.{n}") for n in self.names], dtype=np.intp)
        self._low = np.asarray([lo for lo, _hi in ranges.values()], dtype=np.float64)
        self._high = np.asarray([hi for _lo, hi in ranges.values()], dtype=np.float64)
        self._userdata = data.userdata

    def sample(self, rng: np.random.Generator) -> None:
        """A new episode's commands (no draw when the spec has none, so other robots' streams are unchanged)."""
        if self.names:
            self._userdata[self._slots] = rng.uniform(self._low, self._high)

    def set(self, values: dict[str, float]) -> None:
        """Set commands by name (an operator's choice; names the spec does not have are a SpecError)."""
        for name, value in values.items():
            if name not in self.names:
                raise SpecError(f"no command named {name!r} (sim.commands: {', '.join(self.names) or 'none'})")
            self._userdata[self._slots[self.names.index(name)]] = float(value)

    def values(self) -> dict[str, float]:
        return {n: float(self._userdata[s]) for n, s in zip(self.names, self._slots)}
