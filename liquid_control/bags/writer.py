"""Writing a rosbag2 bag atomically: the bag is written under a temporary name beside the target and renamed
into place when complete, so a failure never leaves a half-written bag at the target path."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from rosbags.interfaces import (Connection, MessageDefinitionFormat, Qos, QosDurability, QosHistory, QosLiveliness,
                                QosReliability, QosTime)
from rosbags.rosbag2 import Writer, WriterError
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.typesys.store import Typestore

from liquid_control.bags import versions as bag_versions
from liquid_control.bags.common import STORAGES, SUFFIX, BagError, explain, normalize_topic
from liquid_control.bags.reader import BagTopic
from liquid_control.bags.typestore import distro_typestore


def qos_profile(*, reliable: bool = True, depth: int = 10, transient_local: bool = False) -> Qos:
    """A QoS profile as rosbag2 stores it (offered_qos_profiles) and `ros2 bag play` reuses it."""
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth,
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


# Stored in a bag's metadata (offered_qos_profiles), not rclpy profiles: the live ones are ros/qos.py's.
BAG_SENSOR_QOS = qos_profile(reliable=False, depth=5)  # rclpy's qos_profile_sensor_data
BAG_COMMAND_QOS = qos_profile(reliable=True, depth=1)  # as the controller node publishes


def check_bag_version(value: int | str | None) -> int:
    """A rosbag2 metadata version we write (None: the default); BagError with the choices otherwise."""
    try:
        return bag_versions.parse_bag_version(value)
    except ValueError as exc:
        raise BagError(str(exc)) from None


class BagWriter:
    """Writes a rosbag2 bag atomically: nothing appears at `path` until close() succeeds.

    MCAP by default, sqlite3 on request; `version` is the rosbag2 metadata version (bags/versions.py:
    the default opens in Humble, Jazzy and Kilted). Every topic carries its message definition (from the
    typestore, or copied from a source bag) and its offered QoS profiles, so `ros2 bag info/play`
    and rosbags read the result. Use as a context manager: an exception aborts and removes the
    temporary bag.
    """

    def __init__(self, path: str | Path, *, storage: str = "mcap", typestore: Typestore | None = None,
                 overwrite: bool = False, version: int | str | None = None):
        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r}; choose {' or '.join(STORAGES)}")
        self.version = check_bag_version(version)
        self.path = Path(path)
        if self.path.suffix in SUFFIX:
            raise BagError(f"{self.path}: give a bag directory name (without {self.path.suffix}); "
                           "the storage file is created inside it")
        if self.path.exists() and not overwrite:
            raise BagError(f"output bag {self.path} exists already (not overwriting)")
        if not self.path.parent.is_dir():
            raise BagError(f"cannot write bag {self.path}: folder {self.path.parent} does not exist")
        self.storage = storage
        self.overwrite = overwrite
        self.typestore = typestore or distro_typestore(None)
        # The temporary parent keeps the final directory name, so the storage file inside is named
        # <bag>.mcap / <bag>.db3 as `ros2 bag record` would name it.
        self._tmp_parent = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        shutil.rmtree(self._tmp_parent, ignore_errors=True)
        self._tmp_parent.mkdir()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._tmp_parent / self.path.name, version=bag_versions.rosbags_version(self.version),
                              storage_plugin=plugin)
        try:
            self._writer.open()
        except (WriterError, OSError) as exc:
            shutil.rmtree(self._tmp_parent, ignore_errors=True)
            raise BagError(f"cannot write bag {self.path}: {explain(exc)}") from None
        self._conns: dict[str, Connection] = {}
        self.count = 0
        self._closed = False

    def add_topic(self, topic: str, msgtype: str, *, qos: Iterable[Qos] = (BAG_COMMAND_QOS,),
                  msgdef: str | None = None, digest: str | None = None) -> Connection:
        """Register a topic; its definition comes from the typestore unless given."""
        topic = normalize_topic(topic)
        if topic in self._conns:
            raise BagError(f"topic {topic} added twice to {self.path}")
        if not msgdef or not digest:
            if msgtype not in self.typestore.fielddefs:
                raise BagError(f"cannot write {topic}: unknown message type {msgtype}")
            msgdef, digest = self.typestore.generate_msgdef(msgtype, ros_version=2)[0], self.typestore.hash_rihs01(msgtype)
        conn = self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=digest,
                                           offered_qos_profiles=list(qos))
        self._conns[topic] = conn
        return conn

    def add_topic_like(self, source: BagTopic, source_typestore: Typestore, topic: str | None = None) -> Connection:
        """Register a topic copied from a source bag: same type, definition and QoS."""
        conn = source.connection
        msgdef = conn.msgdef.data if conn.msgdef.format != MessageDefinitionFormat.NONE else None
        if msgdef is None:
            msgdef = source_typestore.generate_msgdef(conn.msgtype, ros_version=2)[0]
        digest = conn.digest or source_typestore.hash_rihs01(conn.msgtype)
        return self.add_topic(topic or source.name, conn.msgtype, qos=source.qos or (BAG_COMMAND_QOS,),
                              msgdef=msgdef, digest=digest)

    def write(self, topic: str, log_time_ns: int, data: bytes | memoryview) -> None:
        """Write serialized CDR as is (no re-serialisation)."""
        conn = self._conns.get(topic) or self._conns.get(normalize_topic(topic))
        if conn is None:
            raise BagError(f"topic {topic} was not added to {self.path}")
        self._writer.write(conn, int(log_time_ns), data)
        self.count += 1

    def write_msg(self, topic: str, log_time_ns: int, msg: Any) -> None:
        conn = self._conns.get(topic) or self._conns[normalize_topic(topic)]
        self.write(topic, log_time_ns, self.typestore.serialize_cdr(msg, conn.msgtype))

    def set_custom_data(self, key: str, value: str) -> None:
        if self.version < bag_versions.BAG_FIELD_SINCE["custom_data"]:
            raise BagError(f"bag version {self.version} has no custom_data (version 6 and later have)")
        self._writer.set_custom_data(key, value)

    def close(self) -> Path:
        """Finish the bag and move it into place. Returns the final path."""
        if self._closed:
            return self.path
        try:
            self._writer.close()
            if self.version < 8:
                bag_versions.rewrite_bag_version(self._tmp_parent / self.path.name, self.version)
            if self.path.exists() and self.overwrite:
                shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
            os.replace(self._tmp_parent / self.path.name, self.path)
        except BaseException:
            self.abort()
            raise
        finally:
            shutil.rmtree(self._tmp_parent, ignore_errors=True)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop everything written; the target path is left as it was."""
        if self._closed:
            return
        try:
            self._writer.abort()
        except Exception:
            pass
        shutil.rmtree(self._tmp_parent, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
