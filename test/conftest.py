"""Test-wide setup: an isolated DDS domain per test run, localhost-only discovery.

The domain is always overridden (never inherited): on a machine with a live ROS graph, a test's
controller and sim bridge must not reach real drivers. ROS logs go to a temporary folder.
"""
import os
import random
import tempfile

import pytest

# Set before any rclpy import (here or in child processes, which inherit the environment).
# Domain ids 0..232 are valid on Linux with the default port mapping; 0 is everyone's default.
# Under pytest-xdist (make test runs two workers) the controller process draws a base once and each worker
# takes base + its index, so workers never share a domain.
_base = int(os.environ.setdefault("LC_TEST_DOMAIN_BASE", str(random.SystemRandom().randint(1, 200))))
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
os.environ["ROS_DOMAIN_ID"] = str(_base + (1 + int(_worker[2:]) if _worker.startswith("gw") else 0))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="lc_test_roslog_")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


@pytest.fixture(scope="session")
def offscreen_gl() -> str:
    """The GL backend the rendering tests draw with; they are skipped, with the fix, where none works here."""
    from liquid_control.sim.gl import RenderError, backend

    try:
        return backend()
    except RenderError as exc:
        pytest.skip(str(exc))
