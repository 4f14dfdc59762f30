"""liquid_control: an ament_python ROS 2 package that is also pip-installable.

`colcon build` uses data_files to lay out share/liquid_control (launch, config, sim, policies);
`pip install .` installs the same files under <prefix>/share/liquid_control, where
liquid_control.core.resources finds them.
"""
from glob import glob
import os

from setuptools import find_packages, setup

package_name = "liquid_control"


def tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries that mirror `folder` under share/liquid_control."""
    entries = []
    for root, _dirs, files in os.walk(folder):
        paths = [os.path.join(root, f) for f in files if not f.endswith((".pyc", "~"))]
        if paths:
            entries.append((os.path.join("share", package_name, root), paths))
    return entries


# rclpy and the message packages the node uses, as PyPI wheels. `ros` is Kilted (the `ros-*` names);
# `ros-jazzy` is the same set from Jazzy's `ros-jazzy-*` wheels (rclpy 7.1.x).
ros_packages = [
    "rclpy", "std-msgs", "sensor-msgs", "geometry-msgs", "std-srvs",
    "diagnostic-msgs", "rosgraph-msgs", "lifecycle-msgs", "rmw-fastrtps-cpp",
]
ros_wheels = ["ros-" + name for name in ros_packages]
ros_jazzy_wheels = ["ros-jazzy-" + name for name in ros_packages]

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, package_name + ".*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        *tree("launch"),
        *tree("config"),
        *tree("sim"),
        *tree("policies"),
    ],
    python_requires=">=3.10",
    # Floors are the lowest versions the code runs with (requirements/min.txt pins them; `make test-min` tests
    # them): numpy 1.24.2 is onnxruntime 1.17's own floor; gymnasium 1.1 brought AutoresetMode; mujoco 3.1.2
    # renders again after an EGL context was freed (3.1.0-3.1.1 draw blank: test_render), while URDF robots and
    # sim.commands edit models with mujoco.MjSpec, from 3.2 (below it they are a one-line error); rosbags 0.11.6
    # brought the readers' _open hook that the bag layer's recovering readers override (and 0.11.3
    # Stores.ROS2_LYRICAL): rosbags internals (also storage_mcap.msgsrc), hence <0.12.
    install_requires=["numpy>=1.24.2", "onnx>=1.15", "onnxruntime>=1.17", "pyyaml>=6"],
    extras_require={
        "train": ["torch>=2.2,<3", "gymnasium[mujoco]>=1.1", "mujoco>=3.1.2", "tqdm>=4.60",
                  "matplotlib>=3.7", "imageio>=2.30", "imageio-ffmpeg>=0.5", "stable-baselines3>=2.3", "sb3-contrib>=2.3",
                  "xacro>=2.1.1"],
        "ros": ros_wheels,
        "ros-jazzy": ros_jazzy_wheels,
        "bags": ["rosbags>=0.11.6,<0.12", "tqdm>=4.60", "matplotlib>=3.7"],
        # Wired cells (--wiring ncp) and importing trained ncps models; ncps_import reads ncps modules' inner
        # attributes, checked against 1.0.1 (test_cells_ncps_parity, test_ncps_import).
        "ncps": ["ncps>=1.0.1,<1.1"],
        # Ray, with its client for ray://host:port addresses: `liquid-control replay BAG... --ray`
        # (imported only by liquid_control/ray_cluster.py).
        "dist": ["ray[client]>=2.60,<3"],
        "dev": ["pytest>=8", "ncps==1.0.1", "rosbags>=0.11.6,<0.12", "colcon-common-extensions>=0.3",
                "hypothesis>=6.100", "mutmut>=3.8,<3.9", "pytest-xdist>=3.6"],
    },
    zip_safe=False,  # resources (config/, sim/, policies/) are found next to the package on disk
    maintainer="liquid_control maintainers",
    maintainer_email="maintainers@users.noreply.example",
    description="Liquid neural network (CfC/LTC) policies as fixed-rate ROS 2 controllers",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "liquid-control = liquid_control.cli.main:main",
            "controller = liquid_control.cli.entry:controller",  # the nodes' main(), or one line for a missing extra
            "sim_bridge = liquid_control.cli.entry:sim_bridge",
        ],
    },
)
