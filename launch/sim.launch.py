"""MuJoCo sim bridge + the liquid controller: the closed loop over ROS 2.

    ros2 launch liquid_control sim.launch.py robot:=cartpole mode:=lockstep
    (the same as `liquid-control sim --robot cartpole --mode lockstep` beside `liquid-control run ...`)

In lockstep the bridge publishes /clock and the controller runs on sim time (use_sim_time defaults to
true then); in realtime both run on the wall clock. Arguments: robot, model, mode, use_sim_time, and
params_file and namespace, passed to controller.launch.py (see there). Both nodes go into the namespace,
so the sensor and command topics meet there; /clock stays global.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    robot = LaunchConfiguration("robot")
    mode = LaunchConfiguration("mode")
    namespace = LaunchConfiguration("namespace")
    passed = ("robot", "model", "use_sim_time", "params_file", "namespace")
    controller = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare("liquid_control"), "launch",
                                                            "controller.launch.py"])),
        launch_arguments=[*((name, LaunchConfiguration(name)) for name in passed), ("autostart", "true")],
    )
    return LaunchDescription([
        DeclareLaunchArgument("robot", default_value="cartpole", description="robot name (config/robots/<robot>.yaml)"),
        DeclareLaunchArgument("model", default_value="", description="policy artifact; empty = the shipped policy"),
        DeclareLaunchArgument("mode", default_value="lockstep",
                              description="sim clock: lockstep (publishes /clock) or realtime (wall clock)"),
        DeclareLaunchArgument("use_sim_time", default_value=PythonExpression(["'", mode, "' == 'lockstep'"]),
                              description="controller follows /clock (default: true in lockstep)"),
        # The same default as controller.launch.py's (a flat list: a concatenation every launch accepts).
        DeclareLaunchArgument("params_file", default_value=[FindPackageShare("liquid_control"), "/config/", robot,
                                                            ".yaml"],
                              description="controller params YAML (default: config/<robot>.yaml of this package)"),
        DeclareLaunchArgument("namespace", default_value="", description="ROS namespace of both nodes ('' = none)"),
        Node(
            package="liquid_control",
            executable="sim_bridge",
            name="sim_bridge",
            namespace=namespace,
            output="screen",
            parameters=[{
                "robot": ParameterValue(robot, value_type=str),
                "mode": ParameterValue(mode, value_type=str),
            }],
        ),
        controller,
    ])
