"""The simulation layer: a MuJoCo env built from a robot spec, tasks, real-robot wrappers, rendering.

Importing this package registers the Gymnasium ids (mujoco itself loads only when an env is made; an OpenGL
backend is chosen only when a frame is first rendered, by liquid_control.sim.gl):

    import gymnasium, liquid_control.sim
    env = gymnasium.make("liquid_control/CartPole-v0")      # also CartPoleNovel-v0, CartPoleImu-v0, Reacher-v0,
                                                             # Hopper-v0, HopperPos-v0, HalfCheetah[Pos]-v0

or without the import: gymnasium.make("liquid_control.sim:liquid_control/CartPole-v0").
"""
from __future__ import annotations


# Gymnasium id -> robot spec. Any other robot: gymnasium.make("liquid_control/Robot-v0", robot="NAME_OR_PATH").
ENV_IDS: dict[str, str] = {
    "liquid_control/CartPole-v0": "cartpole",
    "liquid_control/CartPoleNovel-v0": "cartpole_novel",
    "liquid_control/CartPoleImu-v0": "cartpole_imu",
    "liquid_control/Reacher-v0": "reacher",
    "liquid_control/Hopper-v0": "hopper",
    "liquid_control/HopperPos-v0": "hopper_pos",
    "liquid_control/HalfCheetah-v0": "half_cheetah",
    "liquid_control/HalfCheetahPos-v0": "half_cheetah_pos",
}


def env_id_for(robot: str) -> str:
    """The Gymnasium id of a robot's env: a named id above, or one registered now for any other spec
    (name in config/robots, or a path) — a new robot needs no code. SpecError for an unknown robot."""
    import gymnasium

    from liquid_control.core.spec import load_spec

    for env_id, name in ENV_IDS.items():
        if name == robot:
            return env_id
    spec = load_spec(robot)
    env_id = f"liquid_control/robot-{spec.name}-{spec.hash}-v0"
    if env_id not in gymnasium.registry:
        steps = spec.sim.get("max_episode_steps")
        gymnasium.register(env_id, entry_point="liquid_control.sim.env:make_env", kwargs={"robot": robot},
                           max_episode_steps=None if steps is None else int(steps))
    return env_id


def _register() -> None:
    import gymnasium

    from liquid_control.core.spec import load_spec

    if "liquid_control/Robot-v0" not in gymnasium.registry:
        gymnasium.register("liquid_control/Robot-v0", entry_point="liquid_control.sim.env:make_env")
    for env_id, robot in ENV_IDS.items():
        if env_id in gymnasium.registry:
            continue
        steps = load_spec(robot).sim.get("max_episode_steps")
        gymnasium.register(env_id, entry_point="liquid_control.sim.env:make_env", kwargs={"robot": robot},
                           max_episode_steps=None if steps is None else int(steps))


_register()
