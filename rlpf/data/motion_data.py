"""Simulated, honestly labelled motion data for pretraining a text-to-motion world model.

Every clip is simulated in MuJoCo by a scripted controller (so it is physically valid) and its prompt
is *measured from the motion* by ``label_motion``, never taken from the controller's intent. The same
labeller scores generated clips ("command accuracy"), so it reads only qpos and works on any clip.

Ant (free root, 20 fps): measured in the clip's initial heading frame (yaw of frame 0's body x-axis;
generated clips start at the origin facing +x). Velocities are least-squares slopes over the clip,
so a gait's wobble within a stride and per-frame noise do not decide the label:

    yaw rate  r = slope of the unwrapped heading (deg/s, + = counter-clockwise = left)
    velocity  (vf, vl) = slope of root x, y in the initial heading frame (m/s, + = forward, left)
    speed     v = |(vf, vl)|,  direction = atan2(vl, vf)

    |r| >= 15 deg/s                 -> "turn left" (r > 0) / "turn right"
    else v < 0.05 m/s               -> "stand still"
    else direction within 45 deg of forward:
         v < 0.15 m/s               -> "walk forward slowly"
         v < 0.30 m/s               -> "walk forward"
         otherwise                  -> "walk forward fast"
    else within 45 deg of left / right / backward -> "walk left" / "walk right" / "walk backward"

Pusher (fixed-base arm, 20 fps): from the object's displacement d = (dx, dy) over the clip (mean of
its last frames minus mean of its first frames). qpos[-4] is ``obj_slidey`` (world y), qpos[-3]
``obj_slidex`` (world x), qpos[-2:] the goal (goal_slidey, goal_slidex). Directions are in the
frame of Pusher-v5's default camera (azimuth 90: it looks along +y from behind the arm's base at
y = -0.6, whose "eyes" face +y): away = +y (away from the robot), closer = -y, right = +x, left = -x.

    |d| < 0.025 m                   -> "reach without pushing"
    else the 90-degree sector of d  -> "push the object away" / "closer" / "left" / "right"

The push threshold is small because Pusher-v5's object is: it weighs 8e-6 kg on damped slides
(0.5 N s/m), so MuJoCo's soft contact moves it at ~3-4 cm/s at most, and the arm (2 N m motors)
needs ~1.5 s to reach it from the reset pose; a 3.2 s clip from reset moves it 3-10 cm. An object
nothing touches does not move at all (0 mm), so the classes are still far apart.

Each world's part - prompts, measurements, labeller, ambiguity bands, controllers, warm-up,
artifact kinds - is one ``DataSource`` (``ANT_DATA``, ``PUSHER_DATA``) named by the world's
declaration (``World.data`` in ``rlpf.envs.worlds``); a registered world brings its own.

Datasets (``make_dataset``) are balanced over ``PROMPTS[world]`` by rejection sampling: each
attempt draws controller parameters biased toward a wanted prompt, simulates, labels, and is kept
when its measured label still has room in its quota and its measurements are not near a decision
boundary (``MARGINS``: clips in the band around a threshold are rejected, so classes stay separable
and the labels learnable). Ant episodes run a steerable PD-tracked CPG (``rlpf.policies.scripted.
AntCPG``) for an unrecorded 1 s warm-up (the drop from the reset height and the gait's ramp-in),
then record; the clip is moved to start at the origin facing +x (a symmetry of the floor, so it
stays physical and its actions, joint torques, still apply). Pusher episodes start at Pusher-v5's
reset and run ``DirectedPush`` (push the object a drawn distance in a drawn direction) or
``HoverReach`` (move the gripper around the object without touching it); a clip shorter than 64
frames is the end of a 64-frame episode (``PUSHER_EPISODE_FRAMES``).

Measured (2-core box, seed 7): 450 ant clips from 621 attempts (28 % rejected: 106 over quota, 65
ambiguous), 250 pusher clips from 339 attempts (26 %); the scorer found 100 % of both plausible.

``add_artifacts`` corrupts a fraction of a dataset with the artifacts of video-trained generators
(``rlpf.data.corrupt``: floating, sinking, skating, jitter for the ant; an untouched object sliding and
jitter for the pusher) at magnitudes the scorer flags, keeping the prompt and appending the kind to
``clip.source`` (``artifact_kind`` reads it back): the data of a generator pretrained on imperfect
video.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Callable, Iterable, Sequence

import mujoco
import numpy as np

from rlpf.core.clips import Clip
from rlpf.worldmodel.features import quat_mul, yaw_of, yaw_quat
from rlpf.core.pool import WorkerPool

ANT_PROMPTS: tuple[str, ...] = (
    "stand still",
    "walk forward slowly",
    "walk forward",
    "walk forward fast",
    "walk backward",
    "walk left",
    "walk right",
    "turn left",
    "turn right",
)
PUSHER_PROMPTS: tuple[str, ...] = (
    "push the object away",
    "push the object closer",
    "push the object left",
    "push the object right",
    "reach without pushing",
)


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A world's labelled motion data, declared in its ``World(data=...)``: what ``make_dataset``,
    ``label_motion`` and command accuracy need. Functions should be module-level (picklable), so a
    World that carries its DataSource can be shipped to worker processes."""

    prompts: tuple[str, ...]
    """Every label the labeller gives; datasets are balanced over them, in this order."""
    measure: Callable[[np.ndarray, float], dict]
    """``measure(qpos [T >= 2, nq] finite, fps) -> {quantity: value}``; ValueError for a qpos it cannot read."""
    label: Callable[[dict], str]
    """``label(measurements) -> prompt``: one of ``prompts``."""
    is_clear: Callable[[dict], bool]
    """``is_clear(measurements)``: outside every band around a decision boundary (kept in datasets)."""
    controller: Callable[[str, np.random.Generator], object]
    """``controller(prompt, rng)``: a scripted controller (``reset(m, d, rng)``, ``__call__(m, d, rng) -> ctrl``)
    drawn so that its clip likely reads as ``prompt``."""
    warmup: Callable[[int], int]
    """``warmup(frames)``: unrecorded frames simulated before a ``frames``-frame clip."""
    canonical: Callable[[np.ndarray], np.ndarray] | None = None
    """Applied to a recorded clip's qpos (e.g. ``canonical_start``: start at the origin facing +x)."""
    artifact_kinds: tuple[str, ...] = ("jitter",)
    """The ``rlpf.data.corrupt`` kinds ``add_artifacts`` draws for the world's clips by default."""
    episode: Callable[[str, int, int], Clip] | None = None
    """``episode(prompt, seed, frames) -> Clip`` that records a clip itself (through the world's gym env
    and its expert, ``rlpf.data.metaworld_data``), its prompt measured; ``simulate_episode`` then
    calls it instead of running ``controller`` in its own MuJoCo loop. Same contract: deterministic in
    its arguments, RuntimeError when the simulation diverges."""
    task_prompts: tuple[str, ...] = ()
    """The prompts that ask for the task's success (Meta-World: "open the drawer"); a generated clip for
    one of them succeeds when its measured label equals it (``task_success``). Empty: no task."""


class _Prompts(Mapping):
    """``PROMPTS[world]``: the prompts of every world with a data source (registered ones too), live."""

    def __getitem__(self, world) -> tuple[str, ...]:
        src = data_source(world)
        if src is None:
            raise KeyError(world)
        return tuple(src.prompts)

    def __iter__(self):
        from rlpf.envs.worlds import registered_worlds

        return iter([name for name, w in registered_worlds().items() if w.data is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, world) -> bool:
        return data_source(world) is not None

    def __repr__(self) -> str:
        return repr({name: self[name] for name in self})


PROMPTS: Mapping[str, tuple[str, ...]] = _Prompts()
"""World name -> the prompts of its data source (``World.data``); worlds without one are absent."""


def data_source(world) -> DataSource | None:
    """The ``DataSource`` of ``world`` (name, World or CompiledWorld), or None (no data, unknown world)."""
    from rlpf.envs.worlds import data_source as declared

    if world is None or (isinstance(world, str) and world.endswith(".xml")):
        return None  # an MJCF file declares no data
    return declared(world)


def _source(world, what: str) -> DataSource:
    """``data_source(world)``, or ValueError naming ``what`` and the worlds that have data."""
    if world is None:
        raise ValueError(f"{what}: the clip has no world")
    src = data_source(world)
    if src is None:
        raise ValueError(f"{what}: no labeller for world {_world_name(world)!r}; labelled worlds are {sorted(PROMPTS)}")
    return src


# ant thresholds (see the module docstring)
ANT_TURN_DEG_S = 15.0
ANT_STILL_M_S = 0.05
ANT_SLOW_M_S = 0.15
ANT_FAST_M_S = 0.30
# pusher threshold
PUSHER_STILL_M = 0.025

MARGINS = {
    "turn_deg_s": 3.0,     # dataset clips keep |r| >= 18 (turns) or <= 12 deg/s (the rest)
    "speed_rel": 0.15,     # ... speeds at least 15 % away from 0.05 / 0.15 / 0.30 m/s
    "angle_deg": 12.0,     # ... directions at least 12 deg away from a sector edge
    "push_m": 0.01,        # ... object displacement <= 0.015 m (reaches) or >= 0.035 m (pushes)
}
"""Bands around the labeller's thresholds in which ``make_dataset`` rejects a clip as ambiguous."""


# ----------------------------------------------------------------------------------------------
# labeller


def measure_motion(qpos: np.ndarray, fps: float, world: str) -> dict[str, float]:
    """The quantities ``label_motion`` decides on (see the module docstring for their definitions)."""
    q = np.asarray(qpos, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] < 2:
        raise ValueError(f"label_motion: qpos must be [T >= 2, nq], got shape {q.shape}")
    if not np.isfinite(q).all():
        raise ValueError("label_motion: qpos has non-finite values")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"label_motion: fps must be positive, got {fps}")
    return _source(world, "label_motion").measure(q, fps)


def _ant_measure(q: np.ndarray, fps: float) -> dict[str, float]:
    if q.shape[1] < 7:
        raise ValueError(f"label_motion: ant qpos needs a free root (>= 7 columns), got {q.shape[1]}")
    quat = q[:, 3:7]
    norm = np.linalg.norm(quat, axis=1, keepdims=True)
    quat = np.where(norm > 1e-9, quat / np.maximum(norm, 1e-12), np.array([1.0, 0, 0, 0]))
    yaw = np.unwrap(yaw_of(quat))
    c, s = np.cos(yaw[0]), np.sin(yaw[0])
    rel = q[:, :2] - q[0, :2]
    fwd, lat = c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]
    t = np.arange(q.shape[0]) / fps
    vf, vl, r = (_slope(t, x) for x in (fwd, lat, np.degrees(yaw)))
    return {"forward_m_s": vf, "left_m_s": vl, "speed_m_s": float(np.hypot(vf, vl)),
            "direction_deg": float(np.degrees(np.arctan2(vl, vf))), "yaw_rate_deg_s": r}


def _pusher_measure(q: np.ndarray, fps: float) -> dict[str, float]:
    if q.shape[1] < 4:
        raise ValueError(f"label_motion: pusher qpos needs the object and goal slides, got {q.shape[1]} columns")
    k = max(1, min(4, q.shape[0] // 4))
    d = q[-k:, -4:-2].mean(0) - q[:k, -4:-2].mean(0)   # (obj_slidey, obj_slidex)
    dx, dy = float(d[1]), float(d[0])
    return {"dx_m": dx, "dy_m": dy, "distance_m": float(np.hypot(dx, dy)),
            "direction_deg": float(np.degrees(np.arctan2(dy, dx)))}


def label_motion(qpos: np.ndarray, fps: float, world: str) -> str:
    """The canonical prompt (one of ``PROMPTS[world]``) that describes this motion, measured from qpos."""
    return _source(world, "label_motion").label(measure_motion(qpos, fps, world))


def _ant_label(m: dict) -> str:
    r, v, a = m["yaw_rate_deg_s"], m["speed_m_s"], m["direction_deg"]
    if abs(r) >= ANT_TURN_DEG_S:
        return "turn left" if r > 0 else "turn right"
    if v < ANT_STILL_M_S:
        return "stand still"
    if abs(a) <= 45:
        if v < ANT_SLOW_M_S:
            return "walk forward slowly"
        return "walk forward" if v < ANT_FAST_M_S else "walk forward fast"
    if 45 < a <= 135:
        return "walk left"
    if -135 <= a < -45:
        return "walk right"
    return "walk backward"


def _pusher_label(m: dict) -> str:
    if m["distance_m"] < PUSHER_STILL_M:
        return "reach without pushing"
    a = m["direction_deg"]
    if abs(a) <= 45:
        return "push the object right"
    if 45 < a <= 135:
        return "push the object away"
    if -135 <= a < -45:
        return "push the object closer"
    return "push the object left"


def is_clear(m: dict, world: str) -> bool:
    """True when the measurements sit outside every ``MARGINS`` band that decides their label."""
    return _source(world, "is_clear").is_clear(m)


def _ant_is_clear(m: dict) -> bool:
    r, v, a = abs(m["yaw_rate_deg_s"]), m["speed_m_s"], m["direction_deg"]
    if abs(r - ANT_TURN_DEG_S) < MARGINS["turn_deg_s"]:
        return False
    if r >= ANT_TURN_DEG_S:
        return True
    rel = MARGINS["speed_rel"]
    if abs(v - ANT_STILL_M_S) < rel * ANT_STILL_M_S:
        return False
    if v < ANT_STILL_M_S:
        return True
    if _near_sector_edge(a):
        return False
    if abs(a) <= 45:
        return all(abs(v - th) >= rel * th for th in (ANT_SLOW_M_S, ANT_FAST_M_S))
    return True


def _pusher_is_clear(m: dict) -> bool:
    d = m["distance_m"]
    if abs(d - PUSHER_STILL_M) < MARGINS["push_m"]:
        return False
    return d < PUSHER_STILL_M or not _near_sector_edge(m["direction_deg"])


def _near_sector_edge(angle_deg: float) -> bool:
    return any(abs(abs(angle_deg) - edge) < MARGINS["angle_deg"] for edge in (45.0, 135.0))


def command_matches(clips: Iterable[Clip]) -> list[bool]:
    """Per clip: does ``label_motion`` of its qpos equal its prompt? Unlabelled or unreadable (NaN,
    too short) -> False; a world without a labeller raises ValueError."""
    out = []
    for c in clips:
        if data_source(_world_name(c.world)) is None:
            raise ValueError(f"command accuracy: no labeller for world {c.world!r}; labelled worlds are {sorted(PROMPTS)}")
        try:
            out.append(c.prompt is not None and label_motion(c.qpos, c.fps, c.world) == c.prompt.strip())
        except ValueError:
            out.append(False)
    return out


def task_success(clips: list[Clip], matches: list[bool] | None = None) -> float | None:
    """Task success of generated clips: the fraction of clips prompted with one of their world's
    ``task_prompts`` whose motion measurably does it (None when no clip asks for a task)."""
    matches = command_matches(clips) if matches is None else matches
    hits = [ok for c, ok in zip(clips, matches)
            if c.prompt and c.prompt.strip() in getattr(data_source(_world_name(c.world)), "task_prompts", ())]
    return float(np.mean(hits)) if hits else None


def command_accuracy(clips: Iterable[Clip]) -> float:
    """Fraction of clips whose measured label equals their prompt (nan for no clips)."""
    m = command_matches(clips)
    return float(np.mean(m)) if m else float("nan")


def _slope(t: np.ndarray, x: np.ndarray) -> float:
    tc = t - t.mean()
    return float(tc @ (x - x.mean()) / (tc @ tc))


def _world_name(world) -> str:
    name = getattr(world, "name", world)
    if name is None:
        raise ValueError("label_motion: the clip has no world")
    return str(name)


# ----------------------------------------------------------------------------------------------
# generators: one episode = a controller drawn for a wanted prompt, simulated and labelled

ANT_WARMUP_FRAMES = 20
"""Unrecorded frames (1 s at 20 fps) before an ant clip starts: the drop from the reset height and the
gait's ramp-in happen here, so clips start in steady state."""

ANT_TROT_SHARE = 0.8
"""Share of ant episodes that trot (the steerable gait); the rest pace, bound or wave, which walk in
less predictable directions and add variety (their label is measured like any other)."""

PUSHER_EPISODE_FRAMES = 64
"""Pusher clips record an episode from Pusher-v5's reset; one shorter than this many frames is the
*end* of such an episode (the first frames go unrecorded): the arm needs ~1.5 s to reach the object
and then pushes it at ~3-4 cm/s, so a shorter episode would rarely move it."""

_ANT_TARGETS = {  # prompt -> (heading rad or None = any, freq*stride range)
    "stand still": (None, (0.0, 0.02)),
    "walk forward slowly": (0.0, (0.055, 0.105)),
    "walk forward": (0.0, (0.14, 0.19)),
    "walk forward fast": (0.0, (0.34, 0.58)),
    "walk backward": (np.pi, (0.05, 0.5)),
    "walk left": (np.pi / 2, (0.05, 0.5)),
    "walk right": (-np.pi / 2, (0.05, 0.5)),
}
ANT_YAW_PER_TURN_STRIDE = 147.0
"""deg/s of yaw per unit of turn * freq * stride for the trot (measured fit, r = 1.0)."""


def ant_controller(prompt: str, rng: np.random.Generator):
    """An ``AntCPG`` with parameters drawn so that its clip likely reads as ``prompt``."""
    from rlpf.policies.scripted import AntCPG

    gait = "trot" if rng.random() < ANT_TROT_SHARE else str(rng.choice(["pace", "bound", "wave"]))
    freq = rng.uniform(0.6, 1.3)
    turn = 0.0
    if prompt in ("turn left", "turn right"):
        turn = rng.uniform(0.5, 1.0) * (1 if prompt == "turn left" else -1)
        heading = rng.uniform(-np.pi, np.pi)
        fs = rng.uniform(20.0, 70.0) / (ANT_YAW_PER_TURN_STRIDE * abs(turn))
    else:
        heading, fs_range = _ANT_TARGETS[prompt]
        heading = rng.uniform(-np.pi, np.pi) if heading is None else heading + rng.uniform(-0.25, 0.25)
        fs = rng.uniform(*fs_range)
    freq = max(freq, min(fs / 0.45, 1.3))   # keep the stride within the hip range (|stroke| <= 0.45 rad)
    stride = min(fs / freq, 0.45)
    if prompt == "stand still":  # stepping in place drifts, the more so off the trot
        lift = rng.uniform(0.0, 0.15 if gait == "trot" else 0.06)
    else:
        lift = rng.uniform(0.05, 0.25)
    return AntCPG(freq=freq, stride=stride, heading=heading, turn=turn, lift=lift, height=(0.8, 0.95),
                  phases=gait, phase_jitter=0.3, kp=(0.8, 1.5), kd=(0.08, 0.15))


def simulate_episode(world: str, prompt: str, seed: int, frames: int = 64) -> Clip:
    """One simulated clip whose controller was drawn for ``prompt``; ``clip.prompt`` is the *measured* label.

    Deterministic in (world, prompt, seed, frames). Raises RuntimeError if the simulation diverges.
    """
    from rlpf.envs.worlds import compile_world
    from rlpf.data.simulate import reset_state

    cw = compile_world(world)
    src = data_source(cw.world)
    if src is None:
        raise ValueError(f"no data generator for world {cw.name!r}; generated worlds are {sorted(PROMPTS)}")
    if src.episode is not None:   # the world records its own episodes (its gym env and expert)
        return src.episode(prompt, seed, frames)
    m = cw.model
    d = mujoco.MjData(m)
    rng = np.random.default_rng(seed)
    reset_state(cw.world, m, d, rng, noise=0.05)
    controller, warmup = src.controller(prompt, rng), src.warmup(frames)
    controller.reset(m, d, rng)
    qpos = np.empty((frames, m.nq))
    actions = np.empty((frames, m.nu))
    for t in range(warmup + frames):
        u = controller(m, d, rng)
        if t >= warmup:
            qpos[t - warmup], actions[t - warmup] = d.qpos, u
        d.ctrl[:] = u
        for _ in range(cw.world.frame_skip):
            mujoco.mj_step(m, d)
        if d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number or not np.isfinite(d.qpos).all():
            raise RuntimeError(f"simulation of {cw.name} diverged at frame {t} (seed {seed})")
    if src.canonical is not None:
        qpos = src.canonical(qpos)
    clip = Clip(qpos=qpos, fps=cw.world.fps, world=cw.name, actions=actions, source=f"data:{cw.name}:{seed}")
    clip.prompt = label_motion(qpos, clip.fps, cw.world)
    return clip


def canonical_start(qpos: np.ndarray) -> np.ndarray:
    """A free-root clip moved and turned about z so that frame 0's root is at x = y = 0 facing +x."""
    q = np.array(qpos, dtype=np.float64)
    yaw0 = yaw_of(q[0, 3:7])
    c, s = np.cos(-yaw0), np.sin(-yaw0)
    xy = q[:, :2] - q[0, :2]
    q[:, 0], q[:, 1] = c * xy[:, 0] - s * xy[:, 1], s * xy[:, 0] + c * xy[:, 1]
    q[:, 3:7] = quat_mul(yaw_quat(np.full(len(q), -yaw0)), q[:, 3:7])
    return q


class _WristController:
    """Task-space PD for the Pusher-v5 arm: the wrist (body ``tips_arm``, the middle of the gripper's
    bar) follows a reference point that moves toward a goal at a limited speed, the hand keeps its
    U-shaped gripper horizontal with its x-axis along ``x_des``, and a small posture torque keeps
    the elbow bent (the arm starts straight, a singular pose). torque = J_p^T F + J_r^T M."""

    kp, kd, kr, kdr, kpost, elbow_bent = 150.0, 25.0, 6.0, 0.5, 0.5, -1.2
    SHOULDER = np.array([0.0, -0.6])   # the shoulder pan axis in the world (x, y)

    def _setup(self, m, d):
        self.tip = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "tips_arm")
        self.obj = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "object")
        self.elbow = int(m.jnt_dofadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "r_elbow_flex_joint")])
        self.jacp, self.jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        self.dt = m.opt.timestep * 5
        self.ref = d.xpos[self.tip].copy()
        radial = d.xpos[self.obj, :2] - self.SHOULDER
        self.radial = np.r_[radial / np.linalg.norm(radial), 0.0]
        self.x_des = self.radial

    def _move_ref(self, goal, speed) -> bool:
        """Step the reference toward ``goal`` at ``speed`` m/s; True once it is there."""
        step = goal - self.ref
        n = float(np.linalg.norm(step))
        self.ref = self.ref + step * min(1.0, speed * self.dt / max(n, 1e-9))
        return n <= speed * self.dt

    def _torque(self, m, d):
        R = d.xmat[self.tip].reshape(3, 3)
        z_des = np.array([0.0, 0.0, 1.0 if R[2, 2] >= 0 else -1.0])
        e_rot = 0.5 * (np.cross(R[:, 0], self.x_des) + np.cross(R[:, 2], z_des))
        mujoco.mj_jacBody(m, d, self.jacp, self.jacr, self.tip)
        force = self.kp * (self.ref - d.xpos[self.tip]) - self.kd * (self.jacp @ d.qvel)
        moment = self.kr * e_rot - self.kdr * (self.jacr @ d.qvel)
        tau = self.jacp.T @ force + self.jacr.T @ moment
        tau[self.elbow] += self.kpost * (self.elbow_bent - d.qpos[m.jnt_qposadr[m.dof_jntid[self.elbow]]])
        return np.clip(tau[: m.nu], *m.actuator_ctrlrange.T)


class DirectedPush(_WristController):
    """Push the Pusher-v5 object ``distance`` m along world angle ``angle`` (radians, 0 = +x).

    The wrist goes above a point behind the object, descends, then presses the gripper's bar
    ``depth`` m into the object and follows it: Pusher-v5's object weighs 8e-6 kg on damped slides,
    so contact forces are tiny and it moves at ~3-4 cm/s at most; a deeper press turns the contact
    normal vertical and loses the object. The bar is held across the push direction, facing the
    way that keeps the hand pointing away from the shoulder. Done pushing, the hand lifts off.
    """

    def __init__(self, angle: float, distance: float = 0.15, speed: float = 1.0, depth: float = 0.06,
                 clearance: float = 0.12, tolerance: float = 0.035, patience: int = 12):
        self.angle, self.distance, self.speed, self.depth = angle, distance, speed, depth
        self.clearance, self.tolerance, self.patience = clearance, tolerance, patience

    def reset(self, m, d, rng):
        self._setup(m, d)
        obj = d.xpos[self.obj].copy()
        self.dir = np.array([np.cos(self.angle), np.sin(self.angle), 0.0])
        self.x_des = self.dir * (1.0 if self.dir @ self.radial >= 0 else -1.0)
        self.low = np.array([0.0, 0.0, -0.005])   # the bar just below the object's middle
        self.behind = obj - 0.09 * self.dir + self.low
        self.start = obj
        self.phase, self.waited = 0, 0

    def __call__(self, m, d, rng):
        obj = d.xpos[self.obj]
        if self.phase == 2 and (obj - self.start) @ self.dir >= self.distance:
            self.phase, self.lift_goal = 3, self.ref + np.array([0.0, 0.0, 0.1])
        if self.phase == 0:
            goal, speed = self.behind + np.array([0.0, 0.0, self.clearance]), self.speed
        elif self.phase == 1:
            goal, speed = self.behind, 0.5 * self.speed
        elif self.phase == 2:
            goal, speed = obj - (0.07 - self.depth) * self.dir + self.low, 0.5
        else:
            goal, speed = self.lift_goal, 0.3
        arrived = self._move_ref(goal, speed)
        if self.phase < 2 and arrived:
            self.waited += 1
            if np.linalg.norm(d.xpos[self.tip] - goal) < self.tolerance or self.waited > self.patience:
                self.phase, self.waited = self.phase + 1, 0
        return self._torque(m, d)


class HoverReach(_WristController):
    """Move the Pusher-v5 gripper between ``n_waypoints`` random points around the object without
    touching it: each at 0.22-0.35 m from the object, travelling at a height that clears it."""

    def __init__(self, n_waypoints: int = 2, speed: float = 0.8):
        self.n_waypoints, self.speed = n_waypoints, speed

    def reset(self, m, d, rng):
        self._setup(m, d)
        obj = d.xpos[self.obj].copy()
        self.legs = []
        for _ in range(self.n_waypoints):
            for _ in range(20):   # a point the arm can reach (within ~0.75 m of the shoulder)
                a, r = rng.uniform(-np.pi, np.pi), rng.uniform(0.22, 0.35)
                p = obj + np.array([r * np.cos(a), r * np.sin(a), rng.uniform(0.0, 0.15)])
                if np.linalg.norm(p[:2] - self.SHOULDER) < 0.75:
                    break
            high = np.r_[p[:2], obj[2] + 0.15]
            self.legs += [high, p]
        self.leg = 0

    def __call__(self, m, d, rng):
        if self._move_ref(self.legs[self.leg], self.speed) and self.leg < len(self.legs) - 1:
            self.leg += 1
        return self._torque(m, d)


_PUSH_ANGLES = {"push the object right": 0.0, "push the object away": np.pi / 2,
                "push the object left": np.pi, "push the object closer": -np.pi / 2}


def pusher_controller(prompt: str, rng: np.random.Generator):
    """A pusher controller drawn so that its clip likely reads as ``prompt``."""
    if prompt in _PUSH_ANGLES:
        return DirectedPush(_PUSH_ANGLES[prompt] + rng.uniform(-0.3, 0.3), distance=rng.uniform(0.05, 0.15),
                            depth=rng.uniform(0.05, 0.065))
    return HoverReach(n_waypoints=int(rng.integers(1, 4)), speed=rng.uniform(0.5, 1.0))


def _ant_warmup(frames: int) -> int:
    return ANT_WARMUP_FRAMES


def _pusher_warmup(frames: int) -> int:
    return max(0, PUSHER_EPISODE_FRAMES - frames)


ANT_DATA = DataSource(prompts=ANT_PROMPTS, measure=_ant_measure, label=_ant_label, is_clear=_ant_is_clear,
                      controller=ant_controller, warmup=_ant_warmup, canonical=canonical_start,
                      artifact_kinds=("float", "sink", "skate", "jitter"))
"""The ant's data (``World("ant", data="rlpf.data.motion_data:ANT_DATA")``): steerable CPG gaits, labelled
by heading-frame velocities and yaw rate; clips start at the origin facing +x."""
PUSHER_DATA = DataSource(prompts=PUSHER_PROMPTS, measure=_pusher_measure, label=_pusher_label,
                         is_clear=_pusher_is_clear, controller=pusher_controller, warmup=_pusher_warmup,
                         artifact_kinds=("move_object", "jitter"))
"""The pusher's data: directed pushes and hovering reaches, labelled by the object's displacement."""


# ----------------------------------------------------------------------------------------------
# balanced datasets


def episode_seed(seed: int, attempt: int) -> int:
    """The simulation seed of attempt ``attempt`` of a dataset drawn with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(attempt)]).generate_state(1)[0])


OVERDRAW = 0.3
"""Extra attempts per round, as a fraction of the clips a prompt still misses (rounded up)."""


def _attempt(job: tuple) -> tuple[int, Clip | None, bool, str]:
    world, prompt, attempt, eseed, frames = job
    try:
        clip = simulate_episode(world, prompt, eseed, frames)
    except RuntimeError as e:   # a diverged simulation is a rejected attempt
        return attempt, None, False, str(e)
    return attempt, clip, is_clear(measure_motion(clip.qpos, clip.fps, world), world), ""


def _quotas(world: str, n: int) -> dict[str, int]:
    prompts = PROMPTS[world]
    return {p: n // len(prompts) + (i < n % len(prompts)) for i, p in enumerate(prompts)}


def make_dataset(world: str, n: int, seed: int = 0, frames: int = 64, workers: int | None = None,
                 progress: Callable[[int], None] | None = None, stats: dict | None = None) -> list[Clip]:
    """``n`` simulated clips of ``world`` balanced over ``PROMPTS[world]``, each labelled by ``label_motion``.

    Rejection sampling in rounds: each round asks for every prompt's missing clips (times an
    overdraw factor) with controllers drawn for that prompt; results are taken in attempt order and
    kept when their *measured* label has room left and is not ambiguous (``is_clear``). A prompt's
    quota is n // len(prompts), the first n % len(prompts) prompts get one more. Attempt k of the
    dataset simulates with ``episode_seed(seed, k)`` (its clip's source is ``data:WORLD:SEED``), so
    the result depends on (world, n, seed, frames) only, not on ``workers``. ``progress(k)`` is
    called with the number of clips kept as they are kept; ``stats``, if given, is filled with
    attempts, kept, rejected and diverged counts. Clips come grouped by prompt in ``PROMPTS`` order.
    """
    if world not in PROMPTS:
        raise ValueError(f"no motion data for world {_world_name(world)!r}; choose from {sorted(PROMPTS)}")
    from rlpf.envs.worlds import portable_world

    # what the jobs carry: a world registered in this process reaches the workers as its declaration
    job_world = portable_world(world)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if frames < 4 or frames % 4:
        raise ValueError(f"frames must be a positive multiple of 4, got {frames}")
    quotas = _quotas(world, n)
    kept: dict[str, list[Clip]] = {p: [] for p in quotas}
    counts = {"attempts": 0, "kept": 0, "ambiguous": 0, "over_quota": 0, "diverged": 0}
    issued, max_attempts = 0, 60 * n + 200
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    pool = WorkerPool(workers, name="rlpf-data") if workers > 1 and n > 1 else None
    try:
        while any(len(kept[p]) < q for p, q in quotas.items()):
            if issued >= max_attempts:
                short = {p: f"{len(kept[p])}/{q}" for p, q in quotas.items() if len(kept[p]) < q}
                raise RuntimeError(f"make_dataset({world!r}): gave up after {issued} attempts; "
                                   f"prompts short of their quota: {short} (too few frames for them?)")
            # ask for each prompt's missing clips plus a margin (50-100 % of attempts hit their
            # prompt; a miss may still fill another prompt), interleaved so that no prompt goes first
            wanted = {p: q - len(kept[p]) for p, q in quotas.items() if len(kept[p]) < q}
            wanted = {p: w + int(np.ceil(OVERDRAW * w)) for p, w in wanted.items()}
            jobs = []
            for r in range(max(wanted.values())):
                for p in (p for p, w in wanted.items() if r < w):
                    k = issued + len(jobs)
                    jobs.append((job_world, p, k, episode_seed(seed, k), frames))
            issued += len(jobs)
            results = map(_attempt_result, pool.imap(_attempt, jobs, chunksize=max(1, min(8, len(jobs) // (8 * workers))))) \
                if pool else map(_attempt, jobs)
            for _, clip, clear, _err in results:
                if all(len(kept[p]) >= q for p, q in quotas.items()):
                    break   # the rest of the round could not be kept: stop early (same result)
                counts["attempts"] += 1
                if clip is None:
                    counts["diverged"] += 1
                elif not clear:
                    counts["ambiguous"] += 1
                elif len(kept.get(clip.prompt, ())) >= quotas.get(clip.prompt, 0):
                    counts["over_quota"] += 1   # a measured label the dataset holds no (more) room for
                else:
                    kept[clip.prompt].append(clip)
                    counts["kept"] += 1
                    if progress:
                        progress(1)
    finally:
        if pool:
            pool.close()  # stops the attempts of a round that were not needed
    if stats is not None:
        stats.update(counts)
    return [c for p in quotas for c in kept[p]]


def _attempt_result(outcome) -> tuple[int, Clip | None, bool, str]:
    """An attempt's result from the pool. A worker that died under it (a crash in native code, the
    OOM killer) cannot be taken as a rejection - run in this process the attempt would have ended the
    program, and the dataset must not depend on ``workers`` - so it stops ``make_dataset``."""
    if outcome.died:
        raise RuntimeError(f"make_dataset: a simulation {outcome.error}; the dataset cannot be completed "
                           f"identically without that attempt (rerun it, or run with workers=1 to see the crash)")
    return outcome.unwrap()


# ----------------------------------------------------------------------------------------------
# web-like artifacts

ARTIFACT_RANGES: dict[str, tuple[float, float]] = {
    "float": (0.08, 0.2),         # m up: feet never reach the floor       (float_m > 0.03)
    "sink": (0.06, 0.12),         # m down into the floor                   (penetration_m > 0.01)
    "levitate": (0.3, 0.6),       # m, rising during the clip
    "skate": (0.7, 1.2),          # m/s sideways glide                      (skate_mps > 0.25)
    "teleport": (0.4, 0.8),       # m jump
    "jitter": (0.015, 0.03),      # m (and rad) of per-frame noise on every coordinate
    "bend_joint": (0.4, 0.7),     # rad past the joint's limit
    "move_object": (0.15, 0.3),   # m the object slides untouched           (object_unexplained_mps > 0.1)
    # manipulation worlds (rlpf.data.corrupt's object kinds; the first argument of each)
    "levitate_object": (0.05, 0.15),      # m the free object rises and stays up with nothing holding it
    "sink_object": (0.015, 0.03),         # m the object is lowered into the table (object_in_support_m > 0.01)
    "slide_object": (0.08, 0.2),          # m the object slides untouched before the hand arrives
    "teleport_object": (0.05, 0.1),       # m jump (an articulation: a quarter of its range)
    "move_articulation": (0.3, 0.6),      # fraction of the joint's range it moves on its own
    "pass_through_gripper": (0.2, 0.4),   # the clip fraction where the object starts moving onto a finger pad
}
"""Magnitude range drawn per corrupted clip, chosen where the scorer flags the artifact."""


def add_artifacts(clips: Sequence[Clip], fraction: float, kinds: Iterable[str] | None = None,
                  seed: int = 0) -> list[Clip]:
    """A copy of ``clips`` in which round(fraction * len(clips)) random clips carry one artifact each.

    Each corrupted clip gets one kind drawn from ``kinds`` (default: its world's
    ``DataSource.artifact_kinds``, jitter for a world without data; kinds that do not apply to a clip's world, e.g. float on the fixed-base pusher, are
    skipped for it) at a magnitude drawn from ``ARTIFACT_RANGES``. The prompt (and the recorded
    actions, which no longer reproduce the motion) are kept; ``source`` gets ``+KIND<magnitude>``
    appended (``artifact_kind`` reads it back). The input clips are not modified.
    """
    from rlpf.data import corrupt

    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    kinds = None if kinds is None else tuple(kinds)
    unknown = [k for k in kinds or () if k not in corrupt.CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown artifact kinds {unknown}; choose from {sorted(corrupt.CORRUPTIONS)}")
    rng = np.random.default_rng(seed)
    out = [dataclasses.replace(c, qpos=c.qpos.copy(), cache={}) for c in clips]
    chosen = rng.choice(len(out), size=int(round(fraction * len(out))), replace=False) if out else []
    for i in sorted(int(i) for i in chosen):
        clip = out[i]
        options = list(kinds if kinds is not None else _artifact_kinds(clip.world))
        rng.shuffle(options)
        for kind in options:
            lo, hi = ARTIFACT_RANGES[kind]
            amount = round(float(rng.uniform(lo, hi)), 3)
            try:
                if kind == "jitter":
                    bad = corrupt.jitter(clip, amount, seed=int(rng.integers(2**31)))
                elif kind == "move_object":
                    bad = corrupt.move_object(clip, amount * rng.choice([-1.0, 1.0]))
                else:
                    bad = corrupt.CORRUPTIONS[kind](clip, amount)
            except ValueError:   # the kind does not apply to this world
                continue
            out[i] = bad
            break
        else:
            raise ValueError(f"none of the artifact kinds {options} applies to world {clip.world!r}")
    return out


def _artifact_kinds(world) -> tuple[str, ...]:
    src = data_source(world)
    return tuple(src.artifact_kinds) if src is not None else ("jitter",)


_ARTIFACT_SUFFIX = re.compile(r"\+([a-z_]+?)(-?\d+(?:\.\d+)?(?:e-?\d+)?)$")


def artifact_kind(clip_or_source: Clip | str) -> str | None:
    """The artifact kind ``add_artifacts`` (or ``rlpf.data.corrupt``) gave a clip, from its source; None if clean."""
    source = getattr(clip_or_source, "source", clip_or_source)
    m = _ARTIFACT_SUFFIX.search(source or "")
    return m.group(1) if m else None


# ----------------------------------------------------------------------------------------------
# files


def prompt_slug(prompt: str) -> str:
    """A file-name-safe form of a prompt ("walk forward fast" -> "walk_forward_fast")."""
    return re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_") or "unlabelled"


def save_dataset(clips: Sequence[Clip], directory: str) -> list[str]:
    """Write a dataset as one batch .npz per prompt (``WORLD_PROMPT.npz``; clips with artifacts go to
    ``WORLD_PROMPT_artifacts.npz``) plus ``manifest.json`` (file, index in the file, prompt, source of
    every clip, since .npz clips do not keep their source). Returns the paths written."""
    import json

    from rlpf.core.clips import save_clips

    os.makedirs(directory, exist_ok=True)
    groups: dict[tuple, list[Clip]] = {}
    for c in clips:
        key = (c.world or "clip", c.prompt or "", artifact_kind(c) is not None, c.qpos.shape, c.fps)
        groups.setdefault(key, []).append(c)
    names: dict[str, int] = {}
    paths, manifest = [], []
    for (world, prompt, corrupted, _, _), group in groups.items():
        from rlpf.envs.worlds import file_stem

        stem = f"{file_stem(world)}_{prompt_slug(prompt)}" + ("_artifacts" if corrupted else "")
        names[stem] = names.get(stem, 0) + 1
        if names[stem] > 1:   # another length or frame rate of the same prompt
            stem += f"_{names[stem]}"
        path = save_clips(os.path.join(directory, stem + ".npz"), group)
        paths.append(path)
        manifest += [{"file": os.path.basename(path), "index": i, "prompt": c.prompt, "source": c.source}
                     for i, c in enumerate(group)]
    tmp = os.path.join(directory, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"n_clips": len(manifest), "clips": manifest}, f, indent=1)
    os.replace(tmp, os.path.join(directory, "manifest.json"))
    return paths
