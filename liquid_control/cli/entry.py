"""Console entry points of the ROS executables `controller` and `sim_bridge` (setup.py): the node's main(),
or, when a module it needs is not installed, one line naming the pip extra instead of an import traceback."""
from __future__ import annotations

import importlib
import sys

from liquid_control.cli.extras import missing_module_line


def _main(module: str, executable: str) -> int:
    try:
        return int(importlib.import_module(module).main() or 0)
    except ModuleNotFoundError as exc:  # at import, or a lazy import while the node starts
        line = missing_module_line(exc, executable)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2


def controller() -> int:
    return _main("liquid_control.ros.controller.run", "controller")


def sim_bridge() -> int:
    return _main("liquid_control.ros.sim_bridge", "sim_bridge")
