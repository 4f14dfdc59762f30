"""MuJoCo sim bridge + the liquid controller: the closed loop over ROS 2.

    ros2 launch liquid_control sim.launch.py robot:=cartpole mode:=lockstep
    (the same as `liquid-control sim --robot cartpole --mode lockstep` beside `liquid-control run ...`)

In lockstep the bridge publishes /clock and the controller runs on sim time (use_sim_time defaults to
true then); in realtime both run on the wall clock. Arguments: robot, model, use_sim_time, mode.
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
    model = LaunchConfiguration("model")
    mode = LaunchConfiguration("mode")
    use_sim_time = LaunchConfiguration("use_sim_time")
    controller = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare("liquid_control"), "launch",
                                                            "controller.launch.py"])),
        launch_arguments={"robot": robot, "model": model, "use_sim_time": use_sim_time,
                          "autostart": "true"}.items(),
    )
    return LaunchDescription([
        DeclareLaunchArgument("robot", default_value="cartpole", description="robot name (config/robots/<robot>.yaml)"),
        DeclareLaunchArgument("model", default_value="", description="policy artifact; empty = the shipped policy"),
        DeclareLaunchArgument("mode", default_value="lockstep",
                              description="sim clock: lockstep (publishes /clock) or realtime (wall clock)"),
        DeclareLaunchArgument("use_sim_time", default_value=PythonExpression(["'", mode, "' == 'lockstep'"]),
                              description="controller follows /clock (default: true in lockstep)"),
        Node(
            package="liquid_control",
            executable="sim_bridge",
            name="sim_bridge",
            output="screen",
            parameters=[{
                "robot": ParameterValue(robot, value_type=str),
                "mode": ParameterValue(mode, value_type=str),
            }],
        ),
        controller,
    ])
