"""Where installed files live: share/liquid_control (colcon or pip), or the source tree in development."""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from liquid_control.core.errors import LiquidControlError, SpecError

PACKAGE = "liquid_control"


@lru_cache(maxsize=1)
def share_dir() -> Path:
    """The folder holding config/, sim/, launch/ and policies/.

    Order: the source tree (an editable install or a checkout), the ament index (a colcon install on a
    robot), then <prefix>/share/liquid_control (pip install).
    """
    candidates = [Path(__file__).resolve().parents[2]]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # not a ROS install, or the package is not in the index: fall through
        pass
    candidates += [Path(sys.prefix) / "share" / PACKAGE, Path(os.environ.get("LIQUID_CONTROL_SHARE", "/nonexistent"))]
    for c in candidates:
        if (c / "config" / "robots").is_dir():
            return c
    raise LiquidControlError(f"cannot find the {PACKAGE} share folder (looked in {', '.join(map(str, candidates))})")


def robot_spec_path(robot_or_path: str | Path) -> Path:
    p = Path(robot_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    path = share_dir() / "config" / "robots" / f"{robot_or_path}.yaml"
    if not path.exists():
        known = sorted(f.stem for f in (share_dir() / "config" / "robots").glob("*.yaml"))
        raise SpecError(f"unknown robot {str(robot_or_path)!r}; known robots: {', '.join(known)}")
    return path


def default_policy_path(robot: str) -> Path:
    """The shipped policy for a robot: policies/<robot>.onnx in the share folder."""
    path = share_dir() / "policies" / f"{robot}.onnx"
    if not path.exists():
        from liquid_control.core.errors import ArtifactError

        raise ArtifactError(f"no shipped policy for robot {robot!r} (expected {path}); pass a model path")
    return path


def known_robots() -> list[str]:
    return sorted(f.stem for f in (share_dir() / "config" / "robots").glob("*.yaml"))
