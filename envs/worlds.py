"""Worlds: a MuJoCo model plus every fact the rest of rlpf needs about it.

Adding a robot is one ``World(...)`` declaration (or just an MJCF path, from which the
declaration is inferred): the scorer's floor, root, feet and objects, the trackers' success
threshold, fall drop and PD gains, and - where the world has them - its reset, its scripted
controller and its labelled-data source (prompts, labeller, data controllers, artifact kinds).
Nothing outside these declarations branches on a world's name. ``compile_world`` turns a world into
index arrays once per process.

Worlds are found by name in a registry (gymnasium's ``register`` / ``make`` pattern):
``register_world("mybot", World(...))`` makes ``mybot`` usable wherever a world is named (the CLI,
YAML configs, a clip's ``world`` field); an installed package ships worlds as entry points in the
group ``rlpf.worlds`` (each a ``World`` object), looked up only when a name is not registered, so a
broken third-party package never breaks ``import rlpf``. Worker processes do not share the
registry: what goes to them is ``portable_world(world)``, the World itself unless it is a built-in.

References from a declaration to code that needs heavier imports (the data source, the scripted
controller, the reset) are ``"module:attribute"`` strings resolved only when used, so this module
imports neither ``rlpf.data.motion_data`` nor ``rlpf.policies``.
"""
from __future__ import annotations

from rlpf.core.entry_points import load_entry_point
from rlpf.core.errors import RLPFError

import dataclasses
import functools
import importlib
import importlib.metadata
import os
from dataclasses import dataclass, field
from typing import Any

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
    success_threshold_m: float | None = None
    """Largest mean body-position error (m) at any frame of a successful track (``rlpf.judge.tracking``).
    None: ``DEFAULT_THRESHOLD_M`` (the PHC/UHC 0.5 m, meant for a humanoid-sized body)."""
    fall_drop_m: float | None = None
    """m the floating root may sink below the reference's before the body has fallen. None:
    ``FALL_DROP_FRACTION`` of the free root's height in the model's qpos0 (0 for a fixed base)."""
    pd_gains: tuple[float, float] | None = None
    """(kp in 1/s^2, kd in 1/s) of ``rlpf.policies.pd_tracker.PDTracker``, both multiplied by each
    joint's effective inertia. None: ``DEFAULT_PD_GAINS``."""
    reset: Any = None
    """``fn(model, data, rng)`` (or its ``"module:name"``) placing the scene after the qpos0 + noise
    reset of ``rlpf.data.simulate`` (the gymnasium env's own reset, e.g. Pusher-v5's object placement)."""
    controller: Any = None
    """The scripted controller class ``rlpf simulate`` runs by default (or its ``"module:name"``);
    None: ``rlpf.policies.scripted.SmoothRandom``."""
    data: Any = None
    """The world's labelled motion data, an ``rlpf.data.motion_data.DataSource`` (or its ``"module:name"``):
    prompts, labeller, data controllers, artifact kinds. None: ``rlpf data`` and command accuracy do
    not apply to the world."""


DEFAULT_THRESHOLD_M = 0.5
"""Success threshold (m) of a world that declares none."""
FALL_DROP_FRACTION = 0.25
"""Fall drop of a floating world that declares none: this fraction of the root's height in qpos0."""
DEFAULT_PD_GAINS = (900.0, 60.0)
"""(kp, kd) of a world that declares none (stable for simulator timesteps up to ~0.03 s)."""


_ASSETS = {"ant": "ant.xml", "humanoid": "humanoid.xml", "pusher": "pusher_v5.xml"}

BUILTIN_WORLDS: dict[str, World] = {
    # success thresholds: humanoid 0.5 m, the PHC/UHC rule RLPF uses; ant and pusher 0.5 m scaled by
    # body size, the mean distance of the robot's bodies from their centroid at qpos0 (humanoid 0.43 m,
    # ant 0.26 m, pusher 0.28 m: x0.6 -> 0.3 m). Measured (experiments/tracking_separation.py, 40
    # clips): the PD tracker's worst frame on valid ant clips stays below ~0.2 m, while a 0.5 m
    # teleport or levitation crosses 0.3 m.
    # fall drops: about a quarter of the standing root height (ant 0.55 m, humanoid 1.3 m).
    # PD gains: measured with experiments/tracking_separation.py (seeds 300-599; see the README table).
    "ant": World(
        name="ant",
        xml=_ASSETS["ant"],
        feet=("left_ankle_geom", "right_ankle_geom", "third_ankle_geom", "fourth_ankle_geom"),
        fps=20.0,
        char_length=0.5,
        gym_id="Ant-v5",
        success_threshold_m=0.3,
        fall_drop_m=0.2,
        pd_gains=(900.0, 60.0),      # 30 rad/s, critically damped; kd * 0.01 s = 0.6
        controller="rlpf.policies.scripted:AntGait",
        data="rlpf.data.motion_data:ANT_DATA",
    ),
    "humanoid": World(
        name="humanoid",
        xml=_ASSETS["humanoid"],
        feet=("right_foot", "left_foot"),
        fps=1.0 / (0.003 * 5),
        char_length=1.0,
        gym_id="Humanoid-v5",
        success_threshold_m=0.5,
        fall_drop_m=0.35,
        pd_gains=(6400.0, 160.0),    # 80 rad/s; kd * 0.003 s = 0.48; softer gains let it fall early
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
        success_threshold_m=0.3,
        pd_gains=(900.0, 60.0),      # arm error ~2 mm at any gain from 400 up
        reset="rlpf.data.simulate:pusher_reset",
        controller="rlpf.policies.scripted:PusherScript",
        data="rlpf.data.motion_data:PUSHER_DATA",
    ),
}
"""The worlds rlpf ships (gymnasium's v5 models); ``get_world`` also finds registered ones."""


class UnknownWorldError(RLPFError, ValueError):
    """A world that cannot be found or loaded; the message names it and says what exists."""


class WorldRegistryError(RLPFError, ValueError):
    """A bad ``register_world`` call: a taken name (without ``replace=True``) or a bad declaration."""


ENTRY_POINT_GROUP = "rlpf.worlds"
"""Entry-point group an installed package ships worlds in (``name = package.module:WORLD``)."""

_REGISTRY: dict[str, World] = dict(BUILTIN_WORLDS)


def register_world(name: str, world: World | str, *, replace: bool = False) -> World:
    """Make ``world`` (a ``World``, or an MJCF path to infer one from) available under ``name``.

    Then ``name`` works wherever a world is named: the CLI (``--world``), YAML configs, a clip's
    ``world`` field, ``compile_world``. The model is loaded and checked now, so a bad declaration
    fails here, not in the middle of scoring. Registering a taken name (a built-in included) raises
    WorldRegistryError unless ``replace=True``. Returns the registered World.
    """
    if not isinstance(name, str) or not name or name != name.strip() or name.endswith(".xml") or ":" in name:
        raise WorldRegistryError(f"register_world: bad world name {name!r}: a non-empty name without "
                                 "surrounding spaces, ':' or a '.xml' ending (those name files and import paths)")
    if isinstance(world, str):
        if not os.path.isfile(world):
            raise WorldRegistryError(f"register_world({name!r}): {world!r} is neither a World nor an MJCF file")
        world = dataclasses.replace(infer_world(world), name=name)
    if not isinstance(world, World):
        raise WorldRegistryError(f"register_world({name!r}): expected a World or an MJCF path, "
                                 f"got {type(world).__name__}")
    if world.name != name:
        raise WorldRegistryError(f"register_world({name!r}): the World is named {world.name!r}; clips and "
                                 f"reports use World.name, so give it name={name!r} (dataclasses.replace)")
    if name in _REGISTRY and not replace:
        raise WorldRegistryError(f"register_world: world {name!r} is already registered "
                                 f"({_REGISTRY[name].xml}); pass replace=True to replace it")
    _check_declaration(world)
    _REGISTRY[name] = world
    return world


def unregister_world(name: str) -> None:
    """Forget a registered world (a built-in comes back as it ships)."""
    _REGISTRY.pop(name, None)
    if name in BUILTIN_WORLDS:
        _REGISTRY[name] = BUILTIN_WORLDS[name]


def registered_worlds() -> dict[str, World]:
    """Every registered world by name (built-ins first); entry-point worlds appear once they are used."""
    return dict(_REGISTRY)


def get_world(name_or_path: str | World) -> World:
    """A World: given as one, a registered name, an ``rlpf.worlds`` entry point, or an MJCF file path."""
    if isinstance(name_or_path, World):
        return name_or_path
    if isinstance(name_or_path, CompiledWorld):
        return name_or_path.world
    if not isinstance(name_or_path, str):
        raise UnknownWorldError(f"world {name_or_path!r}: give a world name, an MJCF path or a World")
    if name_or_path in _REGISTRY:
        return _REGISTRY[name_or_path]
    if name_or_path.endswith(".xml"):
        if not os.path.isfile(name_or_path):
            raise UnknownWorldError(f"world {name_or_path!r}: MJCF file not found")
        return infer_world(name_or_path)
    found = _from_entry_point(name_or_path)
    if found is not None:
        return found
    raise UnknownWorldError(
        f"unknown world {name_or_path!r}: registered worlds are {sorted(_REGISTRY)}, "
        f"or give a path to an MJCF .xml file, or install a package with an '{ENTRY_POINT_GROUP}' "
        "entry point of that name"
    )


def _from_entry_point(name: str, entry_points=None) -> World | None:
    """The World an installed package ships as entry point ``name`` (registered on first use), or None.

    ``entry_points``: the entry points to search (default: the installed ones of ``ENTRY_POINT_GROUP``).
    A broken one warns and raises UnknownWorldError naming it; other worlds keep working.
    """
    def as_world(obj) -> World:
        if callable(obj) and not isinstance(obj, World):
            obj = obj()  # a factory, so a package can build its declaration on demand
        if not isinstance(obj, World):
            raise TypeError(f"it is a {type(obj).__name__}, not an rlpf World")
        world = obj if obj.name == name else dataclasses.replace(obj, name=name)
        _check_declaration(world)
        return world

    world = load_entry_point(ENTRY_POINT_GROUP, name, "world", lambda msg: UnknownWorldError(f"world {name!r}: {msg}"),
                             as_world, entry_points)
    if world is None:
        return None
    _REGISTRY.setdefault(name, world)
    return _REGISTRY[name]


def _check_declaration(world: World) -> None:
    """Raise for a declaration that cannot work: bad facts, an unloadable model, missing elements."""
    for field_name in ("success_threshold_m", "fall_drop_m"):
        v = getattr(world, field_name)
        if v is not None and not (isinstance(v, (int, float)) and v >= 0 and v == v and v != float("inf")):
            raise WorldRegistryError(f"world {world.name!r}: {field_name} must be a finite number >= 0, got {v!r}")
    if world.pd_gains is not None:
        g = world.pd_gains
        if not (isinstance(g, tuple) and len(g) == 2 and all(isinstance(x, (int, float)) and x >= 0 for x in g)):
            raise WorldRegistryError(f"world {world.name!r}: pd_gains must be a (kp, kd) tuple of numbers >= 0, got {g!r}")
    for field_name in ("reset", "controller", "data"):
        v = getattr(world, field_name)
        if isinstance(v, str) and (":" not in v or not all(v.partition(":")[::2])):
            raise WorldRegistryError(f"world {world.name!r}: {field_name} {v!r} is not a 'module:name' import path")
    try:
        compile_world(world)
    except UnknownWorldError as e:
        raise WorldRegistryError(str(e)) from None


def resolve(ref: Any, what: str = "reference") -> Any:
    """A declaration's reference: an object as it is, a ``"module:name"`` string imported (cached)."""
    if not isinstance(ref, str):
        return ref
    return _import(ref, what)


@functools.lru_cache(maxsize=64)
def _import(ref: str, what: str) -> Any:
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
    except Exception as e:
        raise UnknownWorldError(f"{what} {ref!r}: cannot import module {module!r}: {type(e).__name__}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UnknownWorldError(f"{what} {ref!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def portable_world(world: "str | World | CompiledWorld") -> "str | World":
    """What to hand a worker process for ``world``: a built-in's name or an MJCF path as they are
    (readable specs and cache keys), any other world as its World object - the worker's registry
    holds only the built-ins and entry points, not worlds registered in this process."""
    if isinstance(world, str) and world.endswith(".xml"):
        return world
    w = get_world(world)
    return w.name if BUILTIN_WORLDS.get(w.name) == w else w


def data_source(world) -> Any:
    """The world's ``DataSource`` (resolved), or None where it has no labelled data or is unknown."""
    try:
        w = get_world(world)
    except UnknownWorldError:
        return None
    return resolve(w.data, f"world {w.name!r}: data source") if w.data is not None else None


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
    """Load and index a world (a name, an MJCF path or a World); cached per process by declaration."""
    return world if isinstance(world, CompiledWorld) else _compile(get_world(world))


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
