"""Which pip extra of liquid_control provides a missing third-party module, for one-line CLI errors."""
from __future__ import annotations

# Top-level import name -> the extra that installs it (setup.py's extras_require).
EXTRA_OF_MODULE: dict[str, str] = {
    **dict.fromkeys(("torch", "gymnasium", "mujoco", "stable_baselines3", "sb3_contrib", "imageio",
                     "imageio_ffmpeg", "tqdm", "matplotlib", "PIL"), "train"),
    **dict.fromkeys(("rclpy", "rcl_interfaces", "std_msgs", "sensor_msgs", "geometry_msgs", "std_srvs",
                     "diagnostic_msgs", "rosgraph_msgs", "lifecycle_msgs", "builtin_interfaces",
                     "ament_index_python"), "ros"),
    **dict.fromkeys(("rosbags", "apsw", "ruamel"), "bags"),
    "ncps": "ncps",
    "onnx": "", "onnxruntime": "", "numpy": "", "yaml": "",  # base requirements: a broken install
}
# Modules that the `bags` extra installs as well (the plots and progress bars of the bag tools): for the
# commands of that extra, the hint names it rather than `train`.
BAGS_ALSO = {"matplotlib", "tqdm"}
BAG_COMMANDS = {"replay", "play", "record"}


def missing_module_line(exc: ModuleNotFoundError, what: str, command: str | None = None) -> str | None:
    """One line saying which module is missing and how to install it; None for a module that is not a
    third-party dependency (a bug of ours: the caller lets the traceback through)."""
    cause: BaseException | None = exc
    while cause is not None and not getattr(cause, "name", None):  # a re-raise with a hint keeps it in __cause__
        cause = cause.__cause__ or cause.__context__
    top = (getattr(cause, "name", None) or "").split(".")[0]
    if top not in EXTRA_OF_MODULE:
        return None
    extra = "bags" if top in BAGS_ALSO and command in BAG_COMMANDS else EXTRA_OF_MODULE[top]
    install = f"pip install 'liquid_control[{extra}]'" if extra else "reinstall liquid_control (pip install liquid_control)"
    return f"{what}: needs the Python module '{top}', which is not installed here ({install})"
