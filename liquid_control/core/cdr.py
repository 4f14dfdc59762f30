"""Reading a sensor_msgs/msg/JointState straight from its CDR bytes: the one fixed-layout parser shared by the
live controller (ros/, a raw subscription) and bag replay (bags/, rosbag2 payloads).

JointState is the high-rate message of most robots. Reading its known layout directly costs a fraction of
building rclpy's message object or running rosbags' generic deserializer (figures in the README), which
matters at 500 Hz and in a 50x-real-time replay. Only plain little-endian CDR (XCDR1, what rmw_fastrtps and rosbag2 write)
is read: offsets count from the payload after the 4-byte encapsulation header, a float64 sequence is 8-aligned
only when it is not empty (as Fast-CDR and rosbags do). For anything it does not read exactly (big endian, a
string without its NUL, a count running past the end) it returns None and the caller asks the general
deserializer, whose errors then say what is wrong.

Only struct and numpy: core must import on a robot without rclpy or rosbags.
"""
from __future__ import annotations

import struct
from typing import Any, Callable, NamedTuple

import numpy as np

_u32 = struct.Struct("<I").unpack_from
_time = struct.Struct("<iI").unpack_from
_F64 = np.dtype("<f8")

# How a float64 sequence is returned: (data, count, offset) -> values.
FloatReader = Callable[[bytes, int, int], Any]


def numpy_floats(data: bytes, n: int, offset: int) -> np.ndarray:
    """A read-only float64 view of the bytes (no copy): what rosbags gives for a float64[]."""
    return np.frombuffer(data, _F64, n, offset if n else 0)


def tuple_floats(data: bytes, n: int, offset: int) -> tuple[float, ...]:
    """Python floats: fastest for a consumer that picks a few elements (the observation assembler)."""
    return struct.unpack_from(f"<{n}d", data, offset) if n else ()


class JointStateFields(NamedTuple):
    sec: int
    nanosec: int
    frame_id: str
    name: list[str]
    position: Any
    velocity: Any
    effort: Any
    trailing: int  # bytes after the last field (rmw padding); the caller decides how many are fine


def read_joint_state(data: bytes, floats: FloatReader = tuple_floats) -> JointStateFields | None:
    """The fields of a serialized JointState (encapsulation header included), or None: see the module doc."""
    if type(data) is not bytes:
        data = bytes(data)
    end = len(data)
    if end < 16 or data[0] != 0 or data[1] != 1:  # little-endian plain CDR only
        return None
    try:
        sec, nanosec = _time(data, 4)
        n = _u32(data, 12)[0]  # frame_id: length with its NUL, then the bytes
        p = 16 + n
        if n == 0 or p > end or data[p - 1] != 0:
            return None
        frame_id = data[16:p - 1].decode()
        p += -p & 3
        count = _u32(data, p)[0]
        p += 4
        if count * 5 > end - p:  # each name takes at least 5 bytes: a corrupt count fails here, cheaply
            return None
        names = []
        for _ in range(count):
            p += -p & 3
            n = _u32(data, p)[0]
            q = p + 4 + n
            if n == 0 or q > end or data[q - 1] != 0:
                return None
            names.append(data[p + 4:q - 1].decode())
            p = q
        arrays = []
        for _ in range(3):  # position, velocity, effort
            p += -p & 3
            n = _u32(data, p)[0]
            p += 4
            if n:
                p += -(p - 4) & 7
                if p + 8 * n > end:
                    return None
            arrays.append(floats(data, n, p))
            p += 8 * n
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    if p > end:
        return None
    return JointStateFields(sec, nanosec, frame_id, names, arrays[0], arrays[1], arrays[2], end - p)
