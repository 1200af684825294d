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
    pd_tracker: Any = None
    """The tracker class ``--tracker pd`` builds for this world, ``cls(world)`` (or its ``"module:name"``):
    the world's no-training physics tracker. None: ``rlpf.policies.pd_tracker.PDTracker`` (joint torques);
    Meta-World's mocap-driven arm declares ``rlpf.policies.mocap_tracker.MocapTracker``."""
    data: Any = None
    """The world's labelled motion data, an ``rlpf.data.motion_data.DataSource`` (or its ``"module:name"``):
    prompts, labeller, data controllers, artifact kinds. None: ``rlpf data`` and command accuracy do
    not apply to the world."""
    # --- manipulation scenes (a fixed-base arm among fixtures; all default to "none") -----------------
    robot_base: str | None = None
    """Body whose subtree is the robot in a fixed-base scene that also holds fixtures (a table, a
    cabinet): ``CompiledWorld.robot_geoms`` are then that subtree's geoms only. None: a floating
    robot is its root's subtree; a fixed-base one every body that is not an object (Pusher-v5)."""
    supports: tuple[str, ...] = ()
    """Body names whose collidable geoms are surfaces objects rest on (a table top). ``floor`` stays
    the ground plane the *robot* stands on (None where the robot is bolted down and nothing checks
    it); an object resting on a support is supported, one below its top is inside it."""
    articulations: tuple[str, ...] = ()
    """Joint names of unactuated slide / hinge joints (a drawer slide, a door hinge, a button
    slide): like ``objects`` they should move only when something touches the body they move."""
    anchor_objects: bool = False
    """Encode the objects' and articulations' coordinates for the world model as velocities anchored at
    a start pose, as the root is (``rlpf.worldmodel.features``): True where a resting object must
    decode exactly at rest (Meta-World). False keeps them absolute (the pusher's model was made so)."""
    view: tuple[float, ...] = ()
    """Free camera of a fixed-base world's videos: (lookat x, y, z in m, distance m, elevation deg,
    azimuth deg). Empty: the model's default view (a floating-base world's camera follows its root)."""
    hand_space: bool = False
    """Encode the arm for the world model by its ``hand``'s motion (what a mocap-driven arm is told;
    anchored at the start like an object) and decode the joints by inverse kinematics (``rlpf.worldmodel.features``): True for Meta-World,
    whose 7 joint angles compound their quantization errors into centimetres at the hand."""
    hand: str | None = None
    """Body name of the end effector (the gripper's palm), the body a mocap weld or IK drives."""
    mocap: str | None = None
    """Body name of the mocap body the hand follows through a weld equality (Meta-World's ``mocap``);
    None where the arm is driven by joint actuators only."""
    gripper: tuple[str, ...] = ()
    """Joint names of the gripper fingers, each driven by an actuator (``CompiledWorld.gripper_actuators``)."""
    fingers: tuple[str, ...] = ()
    """Geom names of the finger pads, the surfaces that hold a grasped object."""
    placements: tuple[tuple[str, tuple[float, float, float]], ...] = ()
    """(body name, position in its parent's frame) pairs set in the model after loading: fixtures the
    gym env's reset moves each episode (``model.body_pos``: Meta-World's drawer cabinet, door frame,
    button box), a position qpos does not hold. Declared at the middle of the env's reset range;
    a clip recorded at another placement scores exactly under ``rlpf.envs.metaworld.placed(world, env)``
    (the same World with the env's placements)."""
    prepare: Any = None
    """``fn(model)`` (or its ``"module:name"``) applied after the MJCF is loaded: the edits the gym env
    makes to its model at construction (Meta-World rewrites the mocap weld's ``eq_data``)."""
    gym_kwargs: tuple[tuple[str, Any], ...] = ()
    """Keyword arguments of ``gym.make(gym_id, **dict(gym_kwargs))`` (Meta-World's ``env_name``)."""
    recorder: Any = None
    """``fn(world, n_frames, seed) -> Clip`` (or its ``"module:name"``) that records a valid clip
    itself (through the world's gym env and its expert); ``rlpf simulate``'s default controller
    then. None: ``controller`` in ``rlpf.data.simulate``'s MuJoCo loop."""
    keypoints: Any = None
    """Where the 22 SMPL joints sit on the robot: a tuple of ``rlpf.data.retarget.Keypoint`` (body,
    offset in its frame, IK weight), or its ``"module:name"``; what ``rlpf import`` retargets BVH and
    joint-position motion onto. None: motion cannot be imported into the world."""


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
        keypoints="rlpf.data.retarget:HUMANOID_KEYPOINTS",
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
"""The worlds rlpf ships (gymnasium's v5 models, Meta-World's tasks); ``get_world`` also finds registered ones."""


def metaworld_asset(filename: str) -> str:
    """Path of an MJCF file shipped with Meta-World (``metaworld/assets/``), found without importing
    metaworld (its import takes ~1.5 s and registers its gym envs; only compiling a model needs the file)."""
    import importlib.util

    spec = importlib.util.find_spec("metaworld")
    root = os.path.dirname(spec.origin) if spec and spec.origin else "<metaworld is not installed: pip install metaworld>"
    return os.path.join(root, "assets", filename)


# Meta-World's Sawyer tasks, as ``gym.make("Meta-World/MT1", env_name=TASK)`` builds them: the
# env's MJCF (the task class's ``model_name``) with the weld rewrite of its constructor
# (``rlpf.envs.metaworld.prepare_model``). task -> (MJCF under metaworld/assets, free objects,
# articulations, placements). Read from metaworld 3.1.1's envs/sawyer_*_v3.py; a placement is the
# middle of the task's obj_low..obj_high, where reset_model puts model.body(NAME).pos (drawer: x in
# +-0.1; door: x 0..0.1, y 0.85..0.95; button box: x +-0.1, y 0.8..0.9, z 0.115 - its MJCF says 0.12,
# a height no reset keeps). The free objects' placement is in qpos (their free joint).
METAWORLD_TASKS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple]] = {
    "reach-v3": ("sawyer_xyz/sawyer_reach_v3.xml", ("obj",), (), ()),
    "push-v3": ("sawyer_xyz/sawyer_push_v3.xml", ("obj",), (), ()),
    "pick-place-v3": ("sawyer_xyz/sawyer_pick_place_v3.xml", ("obj",), (), ()),
    "drawer-open-v3": ("sawyer_xyz/sawyer_drawer.xml", (), ("goal_slidey",), (("drawer", (0.0, 0.9, 0.0)),)),
    "door-open-v3": ("sawyer_xyz/sawyer_door_pull.xml", (), ("doorjoint",), (("door", (0.05, 0.9, 0.15)),)),
    "button-press-topdown-v3": ("sawyer_xyz/sawyer_button_press_topdown.xml", (), ("btnbox_joint",),
                                (("box", (0.0, 0.85, 0.115)),)),
    # the rest of MT10: drawer x +-0.1; window-open x +-0.1, y 0.7..0.9; window-close y 0.75..0.9;
    # peg-insert-side: the peg is a free object (its start in qpos), the box with the hole a fixture
    # at the middle of goal_low..goal_high (x -0.35..-0.25, y 0.4..0.7, z +-0.001)
    "drawer-close-v3": ("sawyer_xyz/sawyer_drawer.xml", (), ("goal_slidey",), (("drawer", (0.0, 0.9, 0.0)),)),
    "peg-insert-side-v3": ("sawyer_xyz/sawyer_peg_insertion_side.xml", ("peg",), (), (("box", (-0.3, 0.55, 0.0)),)),
    "window-open-v3": ("sawyer_xyz/sawyer_window_horizontal.xml", (), ("window_slide",), (("window", (0.0, 0.8, 0.16)),)),
    "window-close-v3": ("sawyer_xyz/sawyer_window_horizontal.xml", (), ("window_slide",),
                        (("window", (0.0, 0.825, 0.2)),)),
}


def _metaworld_world(task: str) -> World:
    xml, objects, articulations, placements = METAWORLD_TASKS[task]
    return World(
        name=f"metaworld/{task}",
        xml=metaworld_asset(xml),
        # the Sawyer is bolted down and its pedestal stands below the table, so the ground plane
        # ("floor", z = -0.913 m) is never a contact to check; objects rest on the table top
        # (tablelink's box, z = 0), declared as the support
        floor=None,
        root_joint=None,
        objects=objects,
        fps=80.0,                     # 1 / env.dt: timestep 0.0025 s x frame_skip 5
        frame_skip=5,
        char_length=0.5,
        gym_id="Meta-World/MT1",
        gym_kwargs=(("env_name", task),),
        robot_base="base",            # the Sawyer's pedestal, arm and gripper; not the table or fixtures
        supports=("tablelink",),
        articulations=articulations,
        anchor_objects=True,
        hand_space=True,
        # the table's workspace (x +-0.3, y 0.4-0.9 m) seen from the front right, close enough that a
        # 4 cm puck and a drawer handle are a few pixels wide at 256 px
        view=(0.0, 0.7, 0.1, 1.0, -30.0, 135.0),
        hand="hand",                  # metaworld's get_endeff_pos()
        mocap="mocap",
        gripper=("r_close", "l_close"),
        fingers=("rightpad_geom", "leftpad_geom"),   # metaworld's touching_object() pads
        placements=placements,
        prepare="rlpf.envs.metaworld:prepare_model",
        pd_tracker="rlpf.policies.mocap_tracker:MocapTracker",   # the arm follows the mocap weld, not joint torques
        recorder="rlpf.data.metaworld_data:record_expert_clip",
        # labelled data (Meta-World's scripted experts) for the tasks rlpf.data.metaworld_data.TASKS labels
        data=f"rlpf.data.metaworld_data:SOURCES.{task.replace('-', '_')}" if task != "reach-v3" else None,
    )


BUILTIN_WORLDS.update({f"metaworld/{task}": _metaworld_world(task) for task in METAWORLD_TASKS})


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
    for field_name in ("reset", "controller", "data", "prepare", "recorder", "pd_tracker"):
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


def file_stem(world) -> str:
    """A world's name as one file-name component: ``/`` (Meta-World's ``metaworld/<task>``) and the
    OS separator become ``_``, so ``f"{file_stem(w)}_000.npz"`` never names a subdirectory."""
    name = world if isinstance(world, str) else get_world(world).name
    for sep in {"/", os.sep, os.altsep or "/"}:
        name = name.replace(sep, "_")
    return name


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
    # manipulation scenes (World.supports, articulations, hand, mocap, gripper, fingers); empty / None elsewhere
    support_geoms: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    """Collidable geoms of the ``World.supports`` bodies (the table top objects rest on)."""
    articulation_joints: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    """Joint ids of ``World.articulations`` (unactuated slide / hinge joints), in declaration order."""
    articulation_qpos: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    """qpos address of each articulation joint (one coordinate each)."""
    articulation_dofs: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    """dof (qvel) address of each articulation joint."""
    articulation_bodies: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    """The body each articulation joint moves (the drawer, the door, the button)."""
    articulation_geoms: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    """Collidable geoms moved by an articulation (its body's subtree: the handle, the door panel)."""
    fixture_geoms: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    """Collidable geoms that are neither robot, object, support nor articulated (walls, cabinet frames)."""
    hand_body: int | None = None
    """Body id of ``World.hand``."""
    mocap_body: int | None = None
    """Body id of ``World.mocap``; ``model.body_mocapid[mocap_body]`` indexes ``data.mocap_pos``."""
    mocap_weld: int | None = None
    """Equality id of the weld that ties ``mocap_body`` to the hand's chain."""
    gripper_joints: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    """Joint ids of ``World.gripper`` (the finger slides)."""
    gripper_actuators: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    """Actuator id driving each gripper joint, in ``World.gripper`` order."""
    finger_geoms: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    """Geom ids of ``World.fingers`` (the pads)."""

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


def load_model(world: World, edit=None) -> mujoco.MjModel:
    """The MjModel of ``world`` as compile_world has it (its MJCF, ``prepare``, ``placements``).

    edit: optional ``edit(spec: mujoco.MjSpec)`` applied to the MJCF's spec before compiling (the
    video contract's visual markers, rlpf.viz.contract); the world's own model is never edited."""
    xml = model_path(world)
    try:
        if edit is None:
            m = mujoco.MjModel.from_xml_path(xml)
        else:
            spec = mujoco.MjSpec.from_file(xml)
            edit(spec)
            m = spec.compile()
    except RLPFError:   # the edit's own error (a marker on a missing body) names what is wrong
        raise
    except Exception as e:
        raise UnknownWorldError(f"world {world.name!r}: cannot load {xml}: {e}") from None
    if world.prepare is not None:
        resolve(world.prepare, f"world {world.name!r}: prepare")(m)
    for body_name, pos in world.placements:
        b = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, body_name)
        if b < 0:
            raise UnknownWorldError(f"world {world.name!r}: placement of a body {body_name!r} that {xml} does not have")
        m.body_pos[b] = pos
    return m


@functools.lru_cache(maxsize=16)
def _compile(world: World) -> CompiledWorld:
    xml = model_path(world)
    m = load_model(world)

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
    elif world.robot_base:  # a fixed-base robot among fixtures: the base's subtree
        base = lookup(mujoco.mjtObj.mjOBJ_BODY, world.robot_base)
        robot_body_mask = np.array([_is_descendant(m, b, base) for b in range(m.nbody)]) & ~in_object
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
        if m.actuator_biastype[a] == int(mujoco.mjtBias.mjBIAS_AFFINE) and m.actuator_gaintype[a] == int(mujoco.mjtGain.mjGAIN_FIXED):
            # a position (servo) actuator: force = kp * ctrl + b0 + b1 * q, so ctrlrange bounds the
            # set point, not the force (Meta-World's fingers: kp 400 N/m). Its largest force is at
            # a corner of ctrlrange x the joint's range (inf for an unlimited joint); the velocity
            # term (b2 * qdot, damping) only opposes motion and is left out.
            if m.jnt_limited[j] and m.actuator_ctrllimited[a]:
                g, b = m.actuator_gainprm[a, 0], m.actuator_biasprm[a]
                bound = gear * max(abs(g * c + b[0] + b[1] * q) for c in m.actuator_ctrlrange[a] for q in m.jnt_range[j])
            else:
                bound = np.inf
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
    if root_body is None and world.robot_base:  # the robot's own mass, not the table's
        mass = float(m.body_subtreemass[lookup(mujoco.mjtObj.mjOBJ_BODY, world.robot_base)])
    scene = _manipulation_indices(world, m, lookup, collidable, robot_geoms, object_geoms)
    return CompiledWorld(
        world=world, model=m, floor_geom=floor_geom, floor_z=floor_z, root_body=root_body,
        root_dofs=root_dofs, robot_geoms=robot_geoms, foot_geoms=foot_geoms,
        object_bodies=object_bodies, object_dofs=object_dofs, object_geoms=object_geoms,
        limited_joints=limited_joints, actuated_dofs=np.array(actuated, int),
        torque_limit=np.array(limits, float), friction=friction, mass=mass,
        gravity=float(np.linalg.norm(m.opt.gravity)), dof_ancestor=ancestor,
        contact_margin=float(m.geom_margin[robot_geoms].max()) if len(robot_geoms) else 0.0,
        **scene,
    )


def _manipulation_indices(world: World, m: mujoco.MjModel, lookup, collidable, robot_geoms, object_geoms) -> dict:
    """CompiledWorld's manipulation fields (supports, articulations, hand, mocap, gripper, fingers), checked."""
    body = lambda name: lookup(mujoco.mjtObj.mjOBJ_BODY, name)  # noqa: E731
    ids = lambda xs: np.array(xs, int).reshape(-1)               # noqa: E731
    out: dict = {}
    supports = [body(b) for b in world.supports]
    out["support_geoms"] = ids([g for g in range(m.ngeom) if collidable[g] and m.geom_bodyid[g] in supports])
    if supports and not len(out["support_geoms"]):
        raise UnknownWorldError(f"world {world.name!r}: supports {list(world.supports)} have no collidable geom")
    joints, bodies = [], []
    actuated = {int(m.actuator_trnid[a, 0]) for a in range(m.nu) if m.actuator_trntype[a] == int(mujoco.mjtTrn.mjTRN_JOINT)}
    for name in world.articulations:
        j = lookup(mujoco.mjtObj.mjOBJ_JOINT, name)
        if int(m.jnt_type[j]) not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
            raise UnknownWorldError(f"world {world.name!r}: articulation {name!r} is not a hinge or slide joint")
        if j in actuated:
            raise UnknownWorldError(f"world {world.name!r}: articulation {name!r} is actuated (declare it in gripper or as robot)")
        joints.append(j)
        bodies.append(int(m.jnt_bodyid[j]))
    out["articulation_joints"] = ids(joints)
    out["articulation_qpos"] = ids([m.jnt_qposadr[j] for j in joints])
    out["articulation_dofs"] = ids([m.jnt_dofadr[j] for j in joints])
    out["articulation_bodies"] = ids(bodies)
    moved = np.array([any(_is_descendant(m, b, a) for a in bodies) for b in range(m.nbody)]) if bodies else np.zeros(m.nbody, bool)
    out["articulation_geoms"] = ids(np.flatnonzero(collidable & moved[m.geom_bodyid]))
    taken = set(robot_geoms) | set(object_geoms) | set(out["support_geoms"]) | set(out["articulation_geoms"])
    out["fixture_geoms"] = ids([g for g in range(m.ngeom) if collidable[g] and g not in taken
                                and m.geom_type[g] != int(mujoco.mjtGeom.mjGEOM_PLANE)]) if world.robot_base else ids([])
    if world.hand:
        out["hand_body"] = body(world.hand)
    if world.mocap:
        mb = body(world.mocap)
        if m.body_mocapid[mb] < 0:
            raise UnknownWorldError(f"world {world.name!r}: mocap body {world.mocap!r} is not a mocap body")
        welds = [e for e in range(m.neq) if m.eq_type[e] == int(mujoco.mjtEq.mjEQ_WELD) and mb in (m.eq_obj1id[e], m.eq_obj2id[e])]
        if not welds:
            raise UnknownWorldError(f"world {world.name!r}: no weld equality ties mocap body {world.mocap!r} to the robot")
        out["mocap_body"], out["mocap_weld"] = mb, int(welds[0])
    gj, ga = [], []
    for name in world.gripper:
        j = lookup(mujoco.mjtObj.mjOBJ_JOINT, name)
        acts = [a for a in range(m.nu) if m.actuator_trntype[a] == int(mujoco.mjtTrn.mjTRN_JOINT) and m.actuator_trnid[a, 0] == j]
        if not acts:
            raise UnknownWorldError(f"world {world.name!r}: gripper joint {name!r} has no actuator")
        gj.append(j)
        ga.append(acts[0])
    out["gripper_joints"], out["gripper_actuators"] = ids(gj), ids(ga)
    out["finger_geoms"] = ids([lookup(mujoco.mjtObj.mjOBJ_GEOM, g) for g in world.fingers])
    return out


def _translational_dofs(m: mujoco.MjModel, body: int) -> list[int]:
    """Slide dofs of a body, and the horizontal (x, y) dofs of its free joint."""
    dofs = []
    for j in range(m.body_jntadr[body], m.body_jntadr[body] + m.body_jntnum[body]):
        if m.jnt_type[j] == int(mujoco.mjtJoint.mjJNT_SLIDE):
            dofs.append(m.jnt_dofadr[j])
        elif m.jnt_type[j] == int(mujoco.mjtJoint.mjJNT_FREE):
            dofs += [m.jnt_dofadr[j], m.jnt_dofadr[j] + 1]
    return dofs
