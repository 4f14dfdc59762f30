"""rosbag2 tools (rosbags, pure Python; rclpy only for live play/record).

    io        open/read (MCAP, sqlite3; stored definitions first; rmw-padded CDR; damaged bags), atomic writer
    replay    offline replay through a policy with the node's assembler and command pipeline
    demos     (observation, dt, action) sequences from recorded commands, for behaviour cloning
    synth     synthetic cart-pole bags for tests and benchmarks
    player    live playback on ROS 2 topics (raw CDR, /clock)          [rclpy]
    recorder  recording of a robot's spec topics from a live graph     [rclpy]

Nothing is imported here: `import liquid_control.bags` stays free of rosbags and rclpy.
"""
