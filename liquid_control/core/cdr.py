"""Plain CDR bytes of the few fixed-layout messages on the hot paths, without rclpy or rosbags: the byte-level
code shared by both codec modules (ros/messages.py, the live side; bags/codecs.py, the bag side).

  read_joint_state   sensor_msgs/JointState -> its fields (the controller's raw subscription, bag replay)
  JointStateCdr      sensor_msgs/JointState with fixed names <- stamp and values (the sim bridge's sensors)
  Float64ArrayCdr    std_msgs/Float64MultiArray with an empty layout <-> values (commands, both sides)
  ClockCdr           rosgraph_msgs/Clock <- nanoseconds (the sim's /clock)

Reading and packing a known layout directly costs a fraction of building rclpy's message object or running
rosbags' generic (de)serializer (figures in the README), which matters at 500 Hz and in a 50x-real-time
replay. Only plain little-endian CDR (XCDR1, what rmw_fastrtps and rosbag2 write) is read and written:
offsets count from the payload after the 4-byte encapsulation header, a float64 sequence is 8-aligned only
when it is not empty (as Fast-CDR and rosbags do), padding is zeros. For anything a reader does not read
exactly (big endian, a string without its NUL, a count running past the end) it returns None and the
caller asks the general deserializer, whose errors then say what is wrong. test/test_messages.py checks
each against rclpy's and rosbags' bytes.

Only struct and numpy: core must import on a robot without rclpy or rosbags.
"""
from __future__ import annotations

import struct
from typing import Any, Callable, NamedTuple

import numpy as np

_u32 = struct.Struct("<I").unpack_from
_time = struct.Struct("<iI").unpack_from
_F64 = np.dtype("<f8")
CDR_LE = b"\x00\x01\x00\x00"  # encapsulation header: plain CDR, little endian

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


def _pack_time(buf: bytearray, offset: int, ns: int) -> None:
    """builtin_interfaces/Time (sec int32, nanosec uint32) for `ns` nanoseconds."""
    struct.pack_into("<iI", buf, offset, *divmod(ns, 1_000_000_000))


class JointStateCdr:
    """sensor_msgs/JointState with a fixed frame_id and joint names, and one value per joint in position,
    velocity and effort, as CDR bytes. The layout never changes, so the bytes are laid out once and each
    message only writes the stamp and the values in place. read_joint_state reads them back."""

    def __init__(self, names: tuple[str, ...] | list[str], frame_id: str = ""):
        body = bytearray()

        def align(k: int) -> None:
            body.extend(bytes(-len(body) % k))

        def string(text: str) -> None:  # uint32 length with the NUL, the characters, NUL
            raw = text.encode() + b"\0"
            align(4)
            body.extend(struct.pack("<I", len(raw)) + raw)

        n = len(names)
        body.extend(bytes(8))  # header.stamp: sec (int32), nanosec (uint32)
        string(frame_id)
        align(4)
        body.extend(struct.pack("<I", n))
        for name in names:
            string(name)
        offsets = []
        for _ in range(3):  # position, velocity, effort: count, then the doubles aligned to 8 (if any)
            align(4)
            body.extend(struct.pack("<I", n))
            if n:
                align(8)
            offsets.append(len(CDR_LE) + len(body))
            body.extend(bytes(8 * n))
        self._buf = bytearray(CDR_LE + body)
        self._position, self._velocity, self._effort = (
            np.frombuffer(self._buf, dtype="<f8", count=n, offset=off) for off in offsets)

    def encode(self, stamp_ns: int, position: Any, velocity: Any, effort: Any) -> bytes:
        """The serialized message: `stamp_ns` in the header, n values in each array."""
        _pack_time(self._buf, 4, stamp_ns)
        self._position[:] = position
        self._velocity[:] = velocity
        self._effort[:] = effort
        return bytes(self._buf)


class Float64ArrayCdr:
    """std_msgs/Float64MultiArray with an empty layout and `n` values, as CDR bytes:
    layout.dim count 0 (uint32), data_offset 0 (uint32), value count (uint32), 4 bytes of padding (doubles
    align to 8), the values."""

    HEAD = 20  # encapsulation + dim count + data_offset + count + padding

    def __init__(self, n: int):
        self.n = n
        self._buf = bytearray(self.HEAD + 8 * n)
        self._buf[:4] = CDR_LE
        struct.pack_into("<III", self._buf, 4, 0, 0, n)
        self._pack = struct.Struct(f"<{n}d").pack_into

    def encode(self, values: Any) -> bytes:
        """The serialized message carrying `values` (n numbers)."""
        self._pack(self._buf, self.HEAD, *values)
        return bytes(self._buf)

    @classmethod
    def decode(cls, data: bytes) -> np.ndarray | None:
        """The values of a serialized Float64MultiArray with an empty layout (a new float64 array), or None
        when the bytes are anything else (a layout with dims, another encoding, truncated)."""
        if len(data) < cls.HEAD or data[:4] != CDR_LE:
            return None
        dims, _offset, n = struct.unpack_from("<III", data, 4)
        if dims != 0 or len(data) < cls.HEAD + 8 * n:
            return None
        return np.frombuffer(data, dtype="<f8", count=n, offset=cls.HEAD).astype(np.float64)


class ClockCdr:
    """rosgraph_msgs/Clock as CDR bytes: sec (int32), nanosec (uint32)."""

    def __init__(self) -> None:
        self._buf = bytearray(CDR_LE + bytes(8))

    def encode(self, ns: int) -> bytes:
        _pack_time(self._buf, 4, ns)
        return bytes(self._buf)
