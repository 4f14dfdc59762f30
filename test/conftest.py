"""Test-wide setup: an isolated DDS domain per test run, localhost-only discovery, offscreen GL."""
import os
import random

# Set before any rclpy import (here or in child processes, which inherit the environment).
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYTHONUNBUFFERED", "1")
