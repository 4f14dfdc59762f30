"""rosbag2 tools (rosbags, pure Python; no rclpy).

    io        open/read (MCAP, sqlite3; stored definitions first; rmw-padded CDR; damaged bags), atomic writer:
              the interface; it gathers common, typestore, recovery, reader and writer
    census    what a bag says it holds (metadata.yaml, the storage's own counts) vs what a read got
    versions  rosbag2 metadata versions the writer offers (5-9; default 8: Humble, Jazzy and Kilted read it)
    timebase  message times: receive (log) time, or the header clock (headerless messages placed on it)
    replay    offline replay through a policy with the node's assembler and command pipeline
    demos     (observation, dt, action) sequences from recorded commands, for behaviour cloning
    synth     synthetic cart-pole bags for tests and benchmarks

Live playback and recording talk ROS 2, so they live in the ros layer (ros/bag_player.py,
ros/bag_recorder.py) and use io from here. Nothing is imported here: `import liquid_control.bags`
stays free of rosbags and rclpy.
"""
