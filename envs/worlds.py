"""Worlds: a MuJoCo model plus the few facts the physics scorer needs about it.

Adding a robot is one ``World(...)`` declaration (or just an MJCF path, from which the
declaration is inferred). ``compile_world`` turns it into index arrays once per process.
"""
from __future__ import annotations

from rlpf.errors import RLPFError

import functools
import os
from dataclasses import dataclass, field

import mujoco
import numpy as np


def gymnasium_asset(filename: str) -> str:
    """Path of an MJCF file shipped with gymnasium's MuJoCo envs (the exact v5 models)."""
    import gymnasium

    return os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", filename)


@dataclass(frozen=True)
class World:
    """What the scorer needs to know about a MuJoCo scene."""

    name: str
    """Short name used in clips, reports and the CLI."""
    xml: str
    """Path to the MJCF model."""
    floor: str | None = "floor"
    """Geom name of the horizontal ground plane; None if the scene has no floor contact to check."""
    root_joint: str | None = "root"
    """Free joint of a floating-base robot; None for a fixed-base arm."""
    feet: tuple[str, ...] = ()
    """Geom names checked for skating (their contact point must not slide)."""
    objects: tuple[str, ...] = ()
    """Body names of movable objects that should move only when something touches them."""
    fps: float = 20.0
    """Frame rate of clips recorded from the matching gymnasium env (1 / env.dt)."""
    frame_skip: int = 5
    """Simulator steps per recorded frame in the matching gymnasium env."""
    char_length: float = 1.0
    """Metres; turns root torques into forces (N·m / length) so both read in body weights."""
    gym_id: str | None = None
    """The gymnasium env whose model this is, if any."""


_ASSETS = {"ant": "ant.xml", "humanoid": "humanoid.xml", "pusher": "pusher_v5.xml"}

BUILTIN_WORLDS: dict[str, World] = {
    "ant": World(
        name="ant",
        xml=_ASSETS["ant"],
        feet=("left_ankle_geom", "right_ankle_geom", "third_ankle_geom", "fourth_ankle_geom"),
        fps=20.0,
        char_length=0.5,
        gym_id="Ant-v5",
    ),
    "humanoid": World(
        name="humanoid",
        xml=_ASSETS["humanoid"],
        feet=("right_foot", "left_foot"),
        fps=1.0 / (0.003 * 5),
        char_length=1.0,
        gym_id="Humanoid-v5",
    ),
    "pusher": World(
        name="pusher",
        xml=_ASSETS["pusher"],
        floor=None,
        root_joint=None,
        objects=("object",),
        fps=20.0,
        char_length=0.5,
        gym_id="Pusher-v5",
    ),
}


class UnknownWorldError(RLPFError, ValueError):
    pass


def get_world(name_or_path: str) -> World:
    """A built-in world by name, or a world inferred from an MJCF file path."""
    if isinstance(name_or_path, World):
        return name_or_path
    if name_or_path in BUILTIN_WORLDS:
        return BUILTIN_WORLDS[name_or_path]
    if name_or_path.endswith(".xml"):
        if not os.path.isfile(name_or_path):
            raise UnknownWorldError(f"world {name_or_path!r}: MJCF file not found")
        return infer_world(name_or_path)
    raise UnknownWorldError(
        f"unknown world {name_or_path!r}: built-in worlds are {sorted(BUILTIN_WORLDS)}, "
        "or give a path to an MJCF .xml file"
    )


def infer_world(xml: str) -> World:
    """Declare a world from an MJCF file: the first plane is the floor, the free-jointed body with
    the largest subtree is the robot, its leaf geoms are feet, other jointed top-level bodies are objects."""
    try:
        m = mujoco.MjModel.from_xml_path(xml)
    except Exception as e:  # mujoco raises ValueError with the parser message
        raise UnknownWorldError(f"world {xml!r}: cannot load MJCF: {e}") from None
    planes = [g for g in range(m.ngeom) if m.geom_type[g] == int(mujoco.mjtGeom.mjGEOM_PLANE) and m.geom_bodyid[g] == 0]
    floor = _name(m, mujoco.mjtObj.mjOBJ_GEOM, planes[0]) if planes else None
    free = [j for j in range(m.njnt) if m.jnt_type[j] == int(mujoco.mjtJoint.mjJNT_FREE)]
    subtree = lambda b: sum(1 for c in range(m.nbody) if _is_descendant(m, c, b))  # noqa: E731
    root_joint, robot_body = None, None
    if free:
        j = max(free, key=lambda j: subtree(m.jnt_bodyid[j]))
        root_joint, robot_body = _name(m, mujoco.mjtObj.mjOBJ_JOINT, j), m.jnt_bodyid[j]
    feet: list[str] = []
    objects: list[str] = []
    if robot_body is not None:
        leaves = [b for b in range(1, m.nbody) if _is_descendant(m, b, robot_body)
                  and not any(m.body_parentid[c] == b for c in range(m.nbody))]
        for g in range(m.ngeom):
            if m.geom_bodyid[g] in leaves and (m.geom_contype[g] or m.geom_conaffinity[g]):
                feet.append(_name(m, mujoco.mjtObj.mjOBJ_GEOM, g))
    for b in range(1, m.nbody):
        if m.body_parentid[b] == 0 and b != robot_body and m.body_jntnum[b] > 0:
            if robot_body is not None or not _is_arm_base(m, b):
                objects.append(_name(m, mujoco.mjtObj.mjOBJ_BODY, b))
    name = os.path.splitext(os.path.basename(xml))[0]
    return World(name=name, xml=os.path.abspath(xml), floor=floor, root_joint=root_joint,
                 feet=tuple(feet), objects=tuple(objects))


def _is_arm_base(m: mujoco.MjModel, b: int) -> bool:
    # a fixed-base robot is the jointed top-level body with actuated descendants
    return any(_is_descendant(m, m.jnt_bodyid[m.actuator_trnid[a, 0]], b) for a in range(m.nu)
               if m.actuator_trntype[a] == int(mujoco.mjtTrn.mjTRN_JOINT))


def _name(m: mujoco.MjModel, kind, i: int) -> str:
    n = mujoco.mj_id2name(m, kind, i)
    if not n:
        raise UnknownWorldError(f"MJCF element {kind.name} #{i} needs a name to be declared in a world")
    return n


def _is_descendant(m: mujoco.MjModel, body: int, ancestor: int) -> bool:
    while body > 0:
        if body == ancestor:
            return True
        body = m.body_parentid[body]
    return ancestor == 0


@dataclass
class CompiledWorld:
    """A world's model with the index arrays the physics terms use (built once, see compile_world)."""

    world: World
    model: mujoco.MjModel
    floor_geom: int | None
    floor_z: float
    root_body: int | None
    root_dofs: np.ndarray
    robot_geoms: np.ndarray
    foot_geoms: np.ndarray
    object_bodies: np.ndarray
    object_dofs: np.ndarray
    object_geoms: np.ndarray
    limited_joints: np.ndarray
    actuated_dofs: np.ndarray
    torque_limit: np.ndarray
    friction: float
    mass: float
    gravity: float
    contact_margin: float
    """m: the largest contact margin of the robot's geoms (MuJoCo pushes back from that distance)."""
    dof_ancestor: np.ndarray = field(repr=False)
    """[nbody, nv] bool: dof moves body (the column mask of mj_jac)."""

    @property
    def name(self) -> str:
        return self.world.name

    @property
    def nq(self) -> int:
        return self.model.nq

    @property
    def floating(self) -> bool:
        return self.root_body is not None


def compile_world(world: World | str) -> CompiledWorld:
    """Load and index a world; cached per process by declaration."""
    return _compile(get_world(world) if isinstance(world, str) else world)


def model_path(world: World) -> str:
    """The MJCF file of a world: its own path, or a gymnasium asset name."""
    return world.xml if os.path.isabs(world.xml) or os.path.isfile(world.xml) else gymnasium_asset(world.xml)


@functools.lru_cache(maxsize=16)
def _compile(world: World) -> CompiledWorld:
    xml = model_path(world)
    try:
        m = mujoco.MjModel.from_xml_path(xml)
    except Exception as e:
        raise UnknownWorldError(f"world {world.name!r}: cannot load {xml}: {e}") from None

    def lookup(kind, name):
        i = mujoco.mj_name2id(m, kind, name)
        if i < 0:
            raise UnknownWorldError(f"world {world.name!r}: no {kind.name[6:].lower()} named {name!r} in {xml}")
        return i

    floor_geom = lookup(mujoco.mjtObj.mjOBJ_GEOM, world.floor) if world.floor else None
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    floor_z = float(d.geom_xpos[floor_geom, 2]) if floor_geom is not None else 0.0
    if floor_geom is not None and abs(d.geom_xmat[floor_geom, 8]) < 0.999:
        raise UnknownWorldError(f"world {world.name!r}: floor {world.floor!r} is not horizontal")

    root_body, root_dofs = None, np.zeros(0, int)
    if world.root_joint:
        j = lookup(mujoco.mjtObj.mjOBJ_JOINT, world.root_joint)
        if m.jnt_type[j] != int(mujoco.mjtJoint.mjJNT_FREE):
            raise UnknownWorldError(f"world {world.name!r}: root joint {world.root_joint!r} is not a free joint")
        root_body = int(m.jnt_bodyid[j])
        root_dofs = np.arange(m.jnt_dofadr[j], m.jnt_dofadr[j] + 6)

    object_bodies = np.array([lookup(mujoco.mjtObj.mjOBJ_BODY, b) for b in world.objects], int)
    in_object = np.array([any(_is_descendant(m, b, o) for o in object_bodies) for b in range(m.nbody)])
    collidable = (m.geom_contype != 0) | (m.geom_conaffinity != 0)
    geom_body = m.geom_bodyid
    if root_body is not None:
        robot_body_mask = np.array([_is_descendant(m, b, root_body) for b in range(m.nbody)])
    else:  # fixed base: every non-world body that is not an object
        robot_body_mask = ~in_object
        robot_body_mask[0] = False
    robot_geoms = np.flatnonzero(collidable & robot_body_mask[geom_body])
    object_geoms = np.flatnonzero(collidable & in_object[geom_body])
    foot_geoms = np.array([lookup(mujoco.mjtObj.mjOBJ_GEOM, g) for g in world.feet], int)

    object_dofs = np.array([dof for b in object_bodies for dof in _translational_dofs(m, b)], int)

    limited_joints = np.array([j for j in range(m.njnt) if m.jnt_limited[j]
                               and int(m.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
                               and robot_body_mask[m.jnt_bodyid[j]]], int)

    actuated, limits = [], []
    for a in range(m.nu):
        if m.actuator_trntype[a] != int(mujoco.mjtTrn.mjTRN_JOINT):
            continue
        j = m.actuator_trnid[a, 0]
        gear = abs(m.actuator_gear[a, 0])
        bound = np.inf
        if m.actuator_ctrllimited[a]:
            bound = gear * np.abs(m.actuator_ctrlrange[a]).max()
        if m.actuator_forcelimited[a]:
            bound = min(bound, np.abs(m.actuator_forcerange[a]).max())
        if np.isfinite(bound) and bound > 0:
            actuated.append(m.jnt_dofadr[j])
            limits.append(bound)

    ancestor = np.zeros((m.nbody, m.nv), bool)
    for b in range(m.nbody):
        for dof in range(m.nv):
            ancestor[b, dof] = _is_descendant(m, b, m.dof_bodyid[dof]) and m.dof_bodyid[dof] > 0

    friction = float(m.geom_friction[floor_geom, 0]) if floor_geom is not None else 1.0
    if len(robot_geoms):
        friction = max(friction, float(m.geom_friction[robot_geoms, 0].max()))  # MuJoCo combines by max
    mass = float(m.body_subtreemass[root_body]) if root_body is not None else float(m.body_subtreemass[0])
    return CompiledWorld(
        world=world, model=m, floor_geom=floor_geom, floor_z=floor_z, root_body=root_body,
        root_dofs=root_dofs, robot_geoms=robot_geoms, foot_geoms=foot_geoms,
        object_bodies=object_bodies, object_dofs=object_dofs, object_geoms=object_geoms,
        limited_joints=limited_joints, actuated_dofs=np.array(actuated, int),
        torque_limit=np.array(limits, float), friction=friction, mass=mass,
        gravity=float(np.linalg.norm(m.opt.gravity)), dof_ancestor=ancestor,
        contact_margin=float(m.geom_margin[robot_geoms].max()) if len(robot_geoms) else 0.0,
    )


def _translational_dofs(m: mujoco.MjModel, body: int) -> list[int]:
    """Slide dofs of a body, and the horizontal (x, y) dofs of its free joint."""
    dofs = []
    for j in range(m.body_jntadr[body], m.body_jntadr[body] + m.body_jntnum[body]):
        if m.jnt_type[j] == int(mujoco.mjtJoint.mjJNT_SLIDE):
            dofs.append(m.jnt_dofadr[j])
        elif m.jnt_type[j] == int(mujoco.mjtJoint.mjJNT_FREE):
            dofs += [m.jnt_dofadr[j], m.jnt_dofadr[j] + 1]
    return dofs
