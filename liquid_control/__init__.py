"""liquid_control: liquid neural network policies (CfC / LTC) as fixed-rate ROS 2 controllers.

The top level imports the core layer only, so `import liquid_control` works on a robot with numpy
and onnxruntime and nothing else. `export_ncps` pulls in torch when it is called.
"""
from liquid_control.core.errors import ArtifactError, LiquidControlError, SpecError, StepError
from liquid_control.core.spec import RobotSpec, load_spec

__version__ = "0.1.0"

__all__ = ["Policy", "RobotSpec", "load_spec", "export_ncps", "LiquidControlError", "SpecError",
           "ArtifactError", "StepError", "__version__"]


def __getattr__(name: str):
    # Lazy: Policy pulls in onnxruntime, export_ncps pulls in torch; neither is paid for by `import liquid_control`.
    if name == "Policy":
        from liquid_control.core.policy import Policy

        return Policy
    if name == "export_ncps":
        from liquid_control.learning.ncps_import import export_ncps

        return export_ncps
    raise AttributeError(name)
