"""Demonstrations from bags: (observation, dt, action) sequences for behaviour cloning.

The recorded commands define the ticks: each command message is the expert's answer to what it had
seen just before it was sent, so its observation is the spec's vector assembled (by the shared
ObservationAssembler) from the sensor messages received before the command, its dt is the time since
the previous command, and its target action is command / scale (the inverse of the pipeline's first
step; soft start and rate limit are the expert's business, clipped to the nominal [-1, 1]). A sensor
fault (missing, stale or invalid data) or a gap of more than `max_gap` periods between commands ends
a sequence: the hidden state would not have carried over it either.

Times are in the options' time base, as for replay (bags/timebase.py): receive time, or the header
clock, onto which the headerless commands are placed by the estimated clock offset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liquid_control.bags.io import BagError, BagReader, ReadStats
from liquid_control.bags.codecs import command_vector
from liquid_control.bags.replay import ReplayOptions, recorded_name
from liquid_control.bags.timebase import HeaderClock, in_time_order
from liquid_control.core.observation import ObservationAssembler
from liquid_control.core.spec import RobotSpec


@dataclass
class Demo:
    obs: np.ndarray  # (T, I) float32
    dt: np.ndarray  # (T,) float32, seconds since the previous command (the first: the spec's period)
    action: np.ndarray  # (T, A) float32, command / scale clipped to [-1, 1]
    source: str

    def __len__(self) -> int:
        return len(self.dt)


@dataclass
class DemoSet:
    demos: list[Demo] = field(default_factory=list)
    stats: list[ReadStats] = field(default_factory=list)
    breaks: int = 0  # sequences cut by a fault or a gap

    @property
    def steps(self) -> int:
        return sum(len(d) for d in self.demos)


def extract_demos(bag_paths: list[str | Path], spec: RobotSpec, *, options: ReplayOptions = ReplayOptions(),
                  min_length: int = 8, max_gap: float = 3.0) -> DemoSet:
    """Read every bag (streaming) into demonstration sequences; see the module docstring."""
    out = DemoSet()
    scale = np.asarray(spec.action.scale, np.float64)
    for path in bag_paths:
        with BagReader(path, distro=options.distro, recover=options.recover) as bag:
            out.stats.append(bag.stats)

            def recorded_as(topic: str) -> str:
                return recorded_name(options.remap, topic)

            asm = ObservationAssembler(spec)
            sensors = {recorded_as(t): t for t in asm.topics}
            bag.require({b: asm.msg_types[t] for b, t in sensors.items()}, "an observation topic of the spec")
            cmd_topic = recorded_as(spec.action.topic)
            bag.require({cmd_topic: spec.action.msg_type}, "the recorded commands to imitate")
            cmd_topic = bag.topic(cmd_topic).name
            start = bag.start_ns + int(round(options.start_offset * 1e9))
            stop = None if options.duration is None else start + int(round(options.duration * 1e9))
            window_ns = int(options.reorder_window * 1e9)
            clock = HeaderClock(window_ns)
            obs, dts, acts = [], [], []
            last_t = None
            origin = None

            def close(cut: bool) -> None:
                if len(dts) >= min_length:
                    out.demos.append(Demo(np.asarray(obs, np.float32), np.asarray(dts, np.float32),
                                          np.asarray(acts, np.float32), str(path)))
                out.breaks += cut and bool(dts)
                obs.clear(), dts.clear(), acts.clear()

            logged = ((m.log_time_ns, m.topic, m.msg) for m in bag.messages([*sensors, cmd_topic], start, stop))
            for t, topic, msg in in_time_order(logged, options.time_base, window_ns, clock):
                origin = t if origin is None else origin
                now = (t - origin) * 1e-9
                if topic != cmd_topic:
                    err = asm.update(sensors[topic], msg, now)
                    if err is not None:
                        bag.stats.skip(topic, f"does not fit the spec: {err}")
                    continue
                v = command_vector(msg, spec)
                if v is None:
                    bag.stats.skip(topic, "recorded command does not fit the spec's action")
                    continue
                vec, fault = asm.assemble(now)
                gap = last_t is not None and (t - last_t) * 1e-9 > max_gap * spec.period
                if fault is not None or gap:
                    close(cut=True)
                    last_t = None  # a new sequence starts from a zero state with one nominal period
                    if fault is not None:
                        continue
                dts.append(spec.period if last_t is None else (t - last_t) * 1e-9)
                obs.append(vec.copy())
                acts.append(np.clip(v / scale, -1.0, 1.0))
                last_t = t
            close(cut=False)
            if clock.dropped:
                bag.stats.skip("(all)", f"header stamp older than the {options.reorder_window:g} s reorder window",
                               clock.dropped)
    if not out.demos:
        raise BagError(f"no demonstration of at least {min_length} commands with good sensor data in "
                       f"{', '.join(map(str, bag_paths))}")
    return out
