"""A robot described by a URDF (`sim: {urdf: arm.urdf}`), completed from its spec, with no edit of the file.

MuJoCo compiles the URDF (links -> bodies, joints -> joints with the URDF's names, ranges, damping and
effort limits); `mujoco.MjSpec` then adds what a URDF lacks, each from the spec's `sim:` section:

    drives:    {default: {...}, JOINT: {...}}  per joint: interface (position | velocity | effort), kp, kd,
               gear (effort only), lower / upper (command limits), effort (force limit). Defaults: the
               URDF's <ros2_control> block (a joint's first <command_interface name=...>, its min / max
               <param>s, kp / kd <param>s of the joint), else the URDF's joint limits; the spec's
               action.interface for the joints it commands.
    imu:       {link: L, name: imu, pos: [x, y, z]}  a site and sensors <name>_gyro, <name>_accel,
               <name>_quat (framequat) for sensor_msgs/Imu observations, and <name>_up: the world's up axis
               in the IMU frame (minus the projected gravity of legged-robot policies; a Float64MultiArray
               observation reads it).
    sites:     {NAME: {link: L, pos: [x, y, z]}}  e.g. an end-effector point.
    goals:     {NAME: {pos: [x, y, z], axes: [x, z]}}  a massless-to-gravity body and site NAME that slide
               joints NAME_x, ... place (reset term goal_in_disc); nothing collides with it.
    cameras:   {NAME: {pos: [x, y, z], xyaxes: [6 numbers], track: LINK}}  cameras for videos (sim.camera names
               one): fixed in the world, or with `track` following that link's subtree at the offset `pos`.
    floor:     true  a ground plane at z = 0.
    floating:  true  the root link gets a free joint (`floating_base`) instead of being fixed to the world.
    physics:   {timestep, integrator, gravity, iterations}  MuJoCo options (integrator default implicitfast,
               which keeps stiff PD gains stable).
    xacro_args: {NAME: VALUE}  a `.xacro` URDF is expanded by xacro first, with these <xacro:arg>s.
    mesh_dirs: [DIR, ...]  where `package://PKG/PATH` meshes are found (DIR/PKG/PATH, then DIR/PATH), after
               AMENT_PREFIX_PATH (PREFIX/share/PKG/PATH) and ROS_PACKAGE_PATH (DIR/PKG/PATH).

Actuators are named after their joints, so the spec's action.names are the URDF's joint names, as a
ros2_control forward_command_controller lists them.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import mujoco

from liquid_control.core import checks
from liquid_control.core.errors import SpecError
from liquid_control.core.spec import TWIST, RobotSpec
from liquid_control.sim.actuators import Drive, add_actuator
from liquid_control.sim.commands import add_commands, parse_commands, require_mjspec

_DRIVE_KEYS = ("interface", "kp", "kd", "gear", "lower", "upper", "effort")
_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}
_INTEGRATORS = {"euler": mujoco.mjtIntegrator.mjINT_EULER, "rk4": mujoco.mjtIntegrator.mjINT_RK4,
                "implicit": mujoco.mjtIntegrator.mjINT_IMPLICIT,
                "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST}


# ---- the URDF file ----------------------------------------------------------------------------------------
def _expand_xacro(path: Path, args: dict[str, str]) -> str:
    """The URDF a .xacro file expands to with `args` (xacro's own Python package, as `ros2 run xacro` runs)."""
    try:
        import xacro
    except ModuleNotFoundError:
        raise SpecError(f"URDF {path} is xacro, which needs the Python module 'xacro' "
                        "(pip install 'liquid_control[train]', or rosdep key xacro)") from None
    try:
        return xacro.process_file(str(path), mappings=args).toxml()
    except Exception as exc:  # noqa: BLE001 - xacro raises its own, NameError, IOError, ...: one line, any kind
        raise SpecError(f"URDF {path}: xacro failed: {' '.join(str(exc).split()) or type(exc).__name__}") from None


def _parse(path: Path, xacro_args: dict[str, str]) -> ET.Element:
    try:
        if path.name.endswith(".xacro"):
            root = ET.fromstring(_expand_xacro(path, xacro_args))
        else:
            root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise SpecError(f"URDF {path} does not load: {exc}") from None
    if root.tag != "robot":
        raise SpecError(f"URDF {path}: the root element is <{root.tag}>, not <robot>")
    return root


def _xacro_args(raw: Any) -> dict[str, str]:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise SpecError(f"sim.xacro_args: expected a mapping of argument: value, got {raw!r}")
    out = {}
    for key, value in raw.items():
        if isinstance(value, (dict, list)) or value is None:
            raise SpecError(f"sim.xacro_args.{key}: expected a string, number or boolean, got {value!r}")
        out[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _search_dirs(pkg: str, rel: str, mesh_dirs: list[Path]) -> list[Path]:
    out = [Path(p) / "share" / pkg / rel for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for d in (Path(p) for p in os.environ.get("ROS_PACKAGE_PATH", "").split(os.pathsep) if p):
        out += [d / pkg / rel] + ([d / rel] if d.name == pkg else [])
    for d in mesh_dirs:
        out += [d / pkg / rel, d / rel]
    return out


def resolve_mesh(uri: str, urdf_dir: Path, mesh_dirs: list[Path]) -> Path:
    """The file a URDF mesh filename names: package://PKG/PATH (module docstring), file://PATH, or a path
    relative to the URDF. SpecError naming the file and where it was looked for."""
    if uri.startswith("package://"):
        pkg, _, rel = uri[len("package://"):].partition("/")
        candidates = _search_dirs(pkg, rel, mesh_dirs)
        where = "AMENT_PREFIX_PATH, ROS_PACKAGE_PATH and sim.mesh_dirs"
    else:
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)
        candidates = [path if path.is_absolute() else urdf_dir / path]
        where = str(candidates[0].parent)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise SpecError(f"URDF mesh {uri!r} not found (looked in {where}: "
                    f"{', '.join(str(c) for c in candidates) or 'none set'})")


def ros2_control_joints(root: ET.Element) -> dict[str, dict[str, Any]]:
    """Joint -> {"interfaces": {name: (min, max)}, "params": {name: value}} from <ros2_control> blocks
    (command interfaces in their order; min / max None when not given; numeric joint <param>s)."""
    out: dict[str, dict[str, Any]] = {}
    for block in root.iter("ros2_control"):
        for joint in block.iter("joint"):
            name = joint.get("name", "")
            interfaces = {}
            for ci in joint.findall("command_interface"):
                p = {e.get("name"): _float(e.text, f"<ros2_control> joint {name!r} param") for e in ci.findall("param")
                     if e.get("name") in ("min", "max")}
                interfaces[ci.get("name", "")] = (p.get("min"), p.get("max"))
            params = {e.get("name"): e.text for e in joint.findall("param")}
            params = {k: _float(v, f"<ros2_control> joint {name!r} param {k!r}") for k, v in params.items()
                      if k in ("kp", "kd")}
            out[name] = {"interfaces": interfaces, "params": params}
    return out


def _float(text: str | None, where: str) -> float:
    try:
        return float(str(text).strip())
    except ValueError:
        raise SpecError(f"URDF {where}: {text!r} is not a number") from None


def _urdf_joints(root: ET.Element) -> dict[str, tuple[str, dict[str, float]]]:
    """Joint -> (type, the <limit> attributes given: lower, upper, effort, velocity), in URDF order."""
    out = {}
    for joint in root.findall("joint"):
        name, lim = joint.get("name", ""), joint.find("limit")
        out[name] = (joint.get("type", ""), {} if lim is None else
                     {k: _float(v, f"joint {name!r} limit {k}") for k, v in lim.attrib.items()})
    return out


# ---- what the spec adds -----------------------------------------------------------------------------------
def drives(spec: RobotSpec, root: ET.Element) -> list[Drive]:
    """Each actuated joint's Drive (module docstring), in URDF joint order. A joint gets one when the
    <ros2_control> block commands it, the spec's action names it, or sim.drives names it."""
    joints = _urdf_joints(root)
    block = ros2_control_joints(root)
    raw = checks.mapping(spec.sim.get("drives") or {}, "sim.drives", ("default", *joints))
    default = checks.mapping(raw.get("default") or {}, "sim.drives.default", _DRIVE_KEYS)
    for name in block:
        if name not in joints:
            raise SpecError(f"the URDF's <ros2_control> block names joint {name!r}, which the URDF does not have")
    commanded = spec.action.names if spec.action.msg_type != TWIST else tuple(spec.sim.get("actuators") or ())
    unknown = [n for n in commanded if n not in joints]
    if unknown:
        raise SpecError(f"action.names: the URDF has no joint named {unknown[0]!r} (joints: {list(joints)})")
    out = []
    for name, (kind, limits) in joints.items():
        mine = checks.mapping(raw.get(name) or {}, f"sim.drives.{name}", _DRIVE_KEYS)
        offered = block.get(name, {}).get("interfaces", {})
        if name not in commanded and name not in raw and not offered:
            continue
        if kind not in ("revolute", "continuous", "prismatic"):
            raise SpecError(f"sim.drives.{name}: a {kind} joint takes no command")
        interface = (mine.get("interface") or (spec.action.interface if name in commanded else None)
                     or default.get("interface") or next(iter(offered), "effort"))
        where = f"sim.drives.{name}"
        if offered and interface not in offered:
            raise SpecError(f"{where}: joint {name!r} takes {list(offered)} in the URDF's <ros2_control> block, "
                            f"not {interface!r}")
        merged = {**block.get(name, {}).get("params", {}), **default, **mine}
        for key in ("kp", "kd", "gear", "lower", "upper", "effort"):
            if key in merged:
                merged[key] = checks.number(merged[key], f"{where}.{key}")
        lower, upper = offered.get(interface, (None, None))
        if interface == "position" and "lower" in limits and "upper" in limits and kind != "continuous":
            fallback = (limits["lower"], limits["upper"])
        elif interface != "position" and limits.get(interface if interface == "velocity" else "effort", 0) > 0:
            bound = limits["velocity" if interface == "velocity" else "effort"]
            fallback = (-bound, bound)
        else:
            fallback = (None, None)
        drive = Drive(joint=name, interface=interface, kp=merged.get("kp"), kd=merged.get("kd"),
                      gear=merged.get("gear", 1.0),
                      lower=merged.get("lower", lower if lower is not None else fallback[0]),
                      upper=merged.get("upper", upper if upper is not None else fallback[1]),
                      effort=merged.get("effort"))
        drive.check(where)
        out.append(drive)
    return out


def _vector(value: Any, where: str, n: int = 3, default: tuple[float, ...] = (0.0, 0.0, 0.0)) -> list[float]:
    if value is None:
        return list(default)
    if not isinstance(value, list) or len(value) != n:
        raise SpecError(f"{where}: expected a list of {n} numbers, got {value!r}")
    return [checks.number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _body(mjspec: mujoco.MjSpec, link: Any, where: str) -> mujoco.MjsBody:
    name = checks.text(link, where)
    body = mjspec.worldbody if name == "world" else mjspec.body(name)
    if body is None:
        raise SpecError(f"{where}: the URDF has no link {name!r}")
    return body


def _add_sites(mjspec: mujoco.MjSpec, sim: dict[str, Any]) -> None:
    for name, raw in (sim.get("sites") or {}).items():
        raw = checks.mapping(raw, f"sim.sites.{name}", ("link", "pos"), required=("link",))
        _body(mjspec, raw["link"], f"sim.sites.{name}.link").add_site(
            name=str(name), pos=_vector(raw.get("pos"), f"sim.sites.{name}.pos"), size=[0.01, 0.01, 0.01])
    if "imu" in sim:
        raw = checks.mapping(sim["imu"], "sim.imu", ("link", "name", "pos"), required=("link",))
        name = checks.name(raw.get("name", "imu"), "sim.imu.name")
        _body(mjspec, raw["link"], "sim.imu.link").add_site(name=name, pos=_vector(raw.get("pos"), "sim.imu.pos"),
                                                            size=[0.01, 0.01, 0.01])
        for suffix, kind in (("gyro", mujoco.mjtSensor.mjSENS_GYRO), ("accel", mujoco.mjtSensor.mjSENS_ACCELEROMETER),
                             ("quat", mujoco.mjtSensor.mjSENS_FRAMEQUAT)):
            mjspec.add_sensor(name=f"{name}_{suffix}", type=kind, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=name)
        mjspec.add_sensor(name=f"{name}_up", type=mujoco.mjtSensor.mjSENS_FRAMEZAXIS, objtype=mujoco.mjtObj.mjOBJ_BODY,
                          objname="world", reftype=mujoco.mjtObj.mjOBJ_SITE, refname=name)
    for name, raw in (sim.get("goals") or {}).items():
        where = f"sim.goals.{name}"
        raw = checks.mapping(raw, where, ("pos", "axes"), required=("axes",))
        axes = checks.names(raw["axes"], f"{where}.axes")
        if any(a not in _AXES for a in axes):
            raise SpecError(f"{where}.axes: choose from {list(_AXES)}, got {list(axes)}")
        # Gravity compensated and collision free: the goal stays where its reset puts it.
        body = mjspec.worldbody.add_body(name=str(name), pos=_vector(raw.get("pos"), f"{where}.pos"),
                                         mass=1e-3, inertia=[1e-6, 1e-6, 1e-6], gravcomp=1.0)
        for a in axes:
            body.add_joint(name=f"{name}_{a}", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=list(_AXES[a]))
        body.add_site(name=str(name), size=[0.02, 0.02, 0.02], rgba=[0.9, 0.2, 0.2, 1.0])


def _add_cameras(mjspec: mujoco.MjSpec, cameras: dict[str, Any]) -> None:
    for name, raw in cameras.items():
        where = f"sim.cameras.{name}"
        raw = checks.mapping(raw, where, ("pos", "xyaxes", "track"), required=("pos", "xyaxes"))
        parent = mjspec.worldbody
        if "track" in raw:  # follows the link's subtree (MuJoCo's trackcom), its view fixed in the world
            parent = mjspec.body(checks.text(raw["track"], f"{where}.track"))
            if parent is None:
                raise SpecError(f"{where}.track: the URDF has no link named {raw['track']!r}")
        camera = parent.add_camera(name=str(name), pos=_vector(raw["pos"], f"{where}.pos"))
        if "track" in raw:
            camera.mode = mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM
        camera.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
        camera.alt.xyaxes[:] = _vector(raw["xyaxes"], f"{where}.xyaxes", n=6)


def _set_physics(mjspec: mujoco.MjSpec, raw: dict[str, Any]) -> None:
    raw = checks.mapping(raw, "sim.physics", ("timestep", "integrator", "gravity", "iterations"))
    opt = mjspec.option
    integrator = _INTEGRATORS.get(raw.get("integrator", "implicitfast"))
    if integrator is None:
        raise SpecError(f"sim.physics.integrator: choose one of {list(_INTEGRATORS)}, got {raw['integrator']!r}")
    opt.integrator = integrator
    if "timestep" in raw:
        opt.timestep = checks.number(raw["timestep"], "sim.physics.timestep", low=0.0, high=1.0, low_open=True)
    if "gravity" in raw:
        opt.gravity[:] = _vector(raw["gravity"], "sim.physics.gravity")
    if "iterations" in raw:
        opt.iterations = int(checks.number(raw["iterations"], "sim.physics.iterations", low=1, high=1e5))


def build(spec: RobotSpec, path: str | Path) -> mujoco.MjSpec:
    """The MuJoCo model spec of a URDF robot, with everything the robot spec adds (module docstring)."""
    path = Path(path)
    require_mjspec("a URDF robot")
    sim = spec.sim
    root = _parse(path, _xacro_args(sim.get("xacro_args")))
    base = Path(spec.source).parent if spec.source is not None else Path.cwd()
    mesh_dirs = [d if d.is_absolute() else base / d for d in (Path(m) for m in sim.get("mesh_dirs") or ())]
    for mesh in root.iter("mesh"):
        if mesh.get("filename"):
            mesh.set("filename", str(resolve_mesh(mesh.get("filename"), path.parent, mesh_dirs)))
    # MuJoCo's URDF extension, in memory: keep every link a body (sites, IMUs and task terms name links),
    # keep visual meshes (for videos; they do not collide), and read the resolved mesh paths as they are.
    # What the file's own <mujoco><compiler> sets stays.
    ext = root.find("mujoco")
    if ext is None:
        ext = ET.Element("mujoco")
        root.insert(0, ext)
    compiler = ext.find("compiler")
    if compiler is None:
        compiler = ET.SubElement(ext, "compiler")
    for key in ("fusestatic", "discardvisual", "strippath"):
        compiler.attrib.setdefault(key, "false")
    try:
        mjspec = mujoco.MjSpec.from_string(ET.tostring(root, encoding="unicode"))
    except ValueError as exc:
        raise SpecError(f"URDF {path} does not load: {' '.join(str(exc).split())}") from None
    mjspec.modelname = spec.name
    for drive in drives(spec, root):
        add_actuator(mjspec, drive)
    _add_sites(mjspec, sim)
    _add_cameras(mjspec, sim.get("cameras") or {})
    _set_physics(mjspec, sim.get("physics") or {})
    if sim.get("floating"):
        roots = [b for b in mjspec.worldbody.bodies]
        if len(roots) != 1 or roots[0].joints:
            raise SpecError("sim.floating: the URDF's root link must be one link with no joint to the world")
        roots[0].add_freejoint(name="floating_base")
    if sim.get("floor"):
        _add_floor(mjspec)
    return mjspec


def _add_floor(mjspec: mujoco.MjSpec) -> None:
    """A ground plane at z = 0, checkered in 0.5 m squares so that videos show the robot's motion, under a
    directional light that reaches wherever a walking robot goes (a spot light fades with distance)."""
    mjspec.add_texture(name="floor_grid", type=mujoco.mjtTexture.mjTEXTURE_2D,
                       builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, width=64, height=64,
                       rgb1=[0.75, 0.75, 0.75], rgb2=[0.6, 0.6, 0.6])
    material = mjspec.add_material(name="floor_grid", texrepeat=[1.0, 1.0], texuniform=True)
    material.textures[int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = "floor_grid"
    mjspec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0.0, 0.0, 0.05],
                              material="floor_grid")
    mjspec.worldbody.add_light(pos=[0.0, 0.0, 3.0], dir=[0.0, -0.3, -1.0],
                               type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)


def load_urdf_model(spec: RobotSpec, path: str | Path) -> mujoco.MjModel:
    """Compile a URDF robot (build()); SpecError with MuJoCo's reason when it does not compile."""
    mjspec = build(spec, path)
    add_commands(mjspec, parse_commands(spec.sim))
    try:
        return mjspec.compile()
    except ValueError as exc:
        raise SpecError(f"URDF {path} does not compile with the spec's additions: {' '.join(str(exc).split())}") from None
