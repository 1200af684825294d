"""Per-frame geometry of a manipulation clip's objects and articulations, computed once per clip and
cached on it (as ``analysis.analyze`` caches the robot's physics pass).

What the object terms need at every frame, from MuJoCo's own collision code (``mj_geomDistance``,
signed: negative is penetration depth) on the clip's raw frames:

- for each free object (``World.objects``): its signed distance to the supports (the table), to the
  robot, to everything else that could carry it (other objects, articulated parts, fixtures such as
  walls and cabinets), and the velocity of the robot's material there when the robot is near;
- for each articulation (``World.articulations``: unactuated slide / hinge joints): the signed
  distance of the parts it moves to the robot and to the free objects, and the robot's velocity
  there along the part's motion;
- the clip's smoothed kinematics (``analysis.smoothed_kinematics``) and the generalized force the
  objects' and articulations' motion needs with contacts, limits and the mocap weld switched off
  (``mj_inverse``), so a term can ask what force nothing but a contact or a limit could supply.

Distances are capped at ``REACH`` (nothing farther matters to any term).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import mujoco
import numpy as np

from rlpf.core.clips import Clip
from rlpf.envs.worlds import CompiledWorld
from rlpf.rewards.analysis import smoothed_kinematics

REACH = 0.1
"""m: distances beyond this are reported as REACH (no term looks farther)."""
CONTACT_BAND = 0.01
"""m: two surfaces this close may be in contact. MuJoCo's soft contacts push from their margin
(1 mm on the Sawyer's geoms) and let surfaces overlap by millimetres; 1 cm adds slack for geometry
a generator places to the centimetre (the same 1 cm floating.py allows a body above the floor)."""
DEEPEST_CONTACT = 0.01
"""m: the deepest overlap that is still a contact that can carry an object: soft contacts sink a
gripped object up to ~7.5 mm into the pads (measured on valid Meta-World clips); a body buried
deeper than 1 cm is passing through it (object_penetration's violation), not holding it."""
CONTACT_WINDOW = 2
"""frames: a contact at frame t +- 2 may have pushed the motion measured at t (the smoothed
acceleration at t reads frames t-2..t+2, and an impact can fall between two frames)."""


@dataclass
class ObjectGeometry:
    """Per-frame geometry of one clip's free objects (O of them) and articulations (A of them)."""

    dt: float
    qpos: np.ndarray            # [T, nq] smoothed (analysis.smoothed_kinematics)
    qvel: np.ndarray            # [T, nv]
    qacc: np.ndarray            # [T, nv]
    qfrc: np.ndarray            # [T, nv] generalized force the motion needs without contacts, limits or welds
    obj_pos: np.ndarray         # [T, O, 3] raw position of each object's frame (its free joint's origin)
    obj_support: np.ndarray     # [T, O] signed distance object - supports (m)
    obj_robot: np.ndarray       # [T, O] signed distance object - robot
    obj_other: np.ndarray       # [T, O] signed distance object - other objects, articulated parts, fixtures
    obj_robot_vel: np.ndarray   # [T, O, 3] velocity of the robot's material at its point closest to the object (0 beyond CONTACT_BAND), m/s
    art_robot: np.ndarray       # [T, A] signed distance articulated parts - robot
    art_object: np.ndarray      # [T, A] signed distance articulated parts - free objects
    art_robot_qvel: np.ndarray  # [T, A] the robot's closest material point's velocity along the part's motion there, in joint units/s (0 beyond CONTACT_BAND)
    art_lever: np.ndarray       # [A] m per unit of joint coordinate (1 for a slide, the farthest moved point's radius for a hinge)
    art_inertia: np.ndarray     # [A] joint-space inertia (kg or kg m^2, armature included) at qpos0


def object_geometry(clip: Clip, cw: CompiledWorld) -> ObjectGeometry | None:
    """The clip's object geometry (cached on the clip); None for a world with neither free objects
    nor articulations."""
    if not len(cw.object_bodies) and not len(cw.articulation_joints):
        return None
    key = ("object_geometry", cw.name, id(cw))
    if key not in clip.cache:
        clip.cache[key] = _object_geometry(clip, cw)
    return clip.cache[key]


def object_groups(cw: CompiledWorld) -> list[np.ndarray]:
    """Collidable geoms of each free object (its body's subtree), in World.objects order."""
    m = cw.model
    return [np.array([g for g in cw.object_geoms if _below(m, int(m.geom_bodyid[g]), int(b))], int)
            for b in cw.object_bodies]


def articulation_groups(cw: CompiledWorld) -> list[np.ndarray]:
    """Collidable geoms each articulation joint moves (its body's subtree), in World.articulations order."""
    m = cw.model
    return [np.array([g for g in cw.articulation_geoms if _below(m, int(m.geom_bodyid[g]), int(b))], int)
            for b in cw.articulation_bodies]


def _below(m: mujoco.MjModel, body: int, ancestor: int) -> bool:
    while body > 0:
        if body == ancestor:
            return True
        body = int(m.body_parentid[body])
    return False


def _min_distance(m, d, geoms_a, geoms_b, fromto_out=None):
    """Smallest signed distance between two geom sets (capped at REACH), and the pair that has it."""
    best, pair = REACH, None
    ft = np.zeros(6)
    for a in geoms_a:
        for b in geoms_b:
            if a == b:
                continue
            dist = mujoco.mj_geomDistance(m, d, int(a), int(b), REACH, ft)
            if dist < best:
                best, pair = dist, (int(a), int(b), ft.copy())
    return best, pair


def _geometry_model(cw: CompiledWorld) -> mujoco.MjModel:
    # the compiled world's own model (placements and the env's edits applied) with contacts, joint
    # limits and equality constraints (the mocap weld, whose target qpos does not hold) off: its
    # mj_inverse is the force the motion needs from contacts and limits alone
    key = "_object_geometry_model"
    if key not in cw.__dict__:
        mi = copy.deepcopy(cw.model)
        mi.opt.disableflags |= (int(mujoco.mjtDisableBit.mjDSBL_CONTACT) | int(mujoco.mjtDisableBit.mjDSBL_LIMIT)
                                | int(mujoco.mjtDisableBit.mjDSBL_EQUALITY))
        cw.__dict__[key] = mi
    return cw.__dict__[key]


def _lever(m: mujoco.MjModel, d: mujoco.MjData, joint: int, geoms: np.ndarray) -> float:
    """m per unit of the joint's coordinate at its moved parts: 1 for a slide; for a hinge the
    largest distance of a moved geom's bounding sphere from the axis (the door's outer edge)."""
    if int(m.jnt_type[joint]) == int(mujoco.mjtJoint.mjJNT_SLIDE):
        return 1.0
    anchor, axis = d.xanchor[joint], d.xaxis[joint]
    r = 0.0
    for g in geoms:
        off = d.geom_xpos[g] - anchor
        radial = off - np.dot(off, axis) * axis
        r = max(r, float(np.linalg.norm(radial) + m.geom_rbound[g]))
    return max(r, 1e-3)


def _object_geometry(clip: Clip, cw: CompiledWorld) -> ObjectGeometry:
    m = cw.model
    dt = clip.dt
    raw = np.asarray(clip.qpos, dtype=np.float64)
    qpos, _, qvel, qacc = smoothed_kinematics(m, raw, dt)
    T = len(raw)
    objs, arts = object_groups(cw), articulation_groups(cw)
    O, A = len(objs), len(arts)
    robot = np.asarray(cw.robot_geoms, int)
    all_obj = np.asarray(cw.object_geoms, int)
    others = np.r_[all_obj, cw.articulation_geoms, cw.fixture_geoms].astype(int)
    support = np.asarray(cw.support_geoms, int)

    d = mujoco.MjData(m)
    gpos = np.empty((T, m.ngeom, 3))
    gmat = np.empty((T, m.ngeom, 3, 3))
    obj_pos = np.zeros((T, O, 3))
    obj_support = np.full((T, O), REACH)
    obj_robot = np.full((T, O), REACH)
    obj_other = np.full((T, O), REACH)
    art_robot = np.full((T, A), REACH)
    art_object = np.full((T, A), REACH)
    obj_pair: list[list] = [[None] * O for _ in range(T)]
    art_pair: list[list] = [[None] * A for _ in range(T)]
    levers = np.ones(A)
    for t in range(T):
        d.qpos[:] = raw[t]
        mujoco.mj_kinematics(m, d)
        gpos[t], gmat[t] = d.geom_xpos, d.geom_xmat.reshape(-1, 3, 3)
        for o, geoms in enumerate(objs):
            obj_pos[t, o] = d.xpos[cw.object_bodies[o]]
            obj_support[t, o] = _min_distance(m, d, geoms, support)[0]
            obj_robot[t, o], obj_pair[t][o] = _min_distance(m, d, geoms, robot)
            obj_other[t, o] = _min_distance(m, d, geoms, [g for g in others if g not in set(geoms)])[0]
        for a, geoms in enumerate(arts):
            art_robot[t, a], art_pair[t][a] = _min_distance(m, d, geoms, robot)
            art_object[t, a] = _min_distance(m, d, geoms, all_obj)[0]
            if t == 0:
                levers[a] = _lever(m, d, int(cw.articulation_joints[a]), geoms)

    obj_vel = _toucher_velocity(obj_robot, obj_pair, gpos, gmat, dt)
    art_vel = _toucher_velocity(art_robot, art_pair, gpos, gmat, dt)
    art_qvel = np.zeros((T, A))
    for a in range(A):  # project on the direction the part's touched point moves per unit joint velocity
        j = int(cw.articulation_joints[a])
        for t in range(T):
            if art_pair[t][a] is None or art_robot[t, a] > CONTACT_BAND:
                continue
            d.qpos[:] = raw[t]
            mujoco.mj_kinematics(m, d)
            p = art_pair[t][a][2][:3]                       # the part's closest point
            if int(m.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_SLIDE):
                du = d.xaxis[j].copy()
            else:
                du = np.cross(d.xaxis[j], p - d.xanchor[j])
            n2 = float(du @ du)
            if n2 > 1e-12:
                art_qvel[t, a] = float(art_vel[t, a] @ du) / n2

    mi = _geometry_model(cw)
    di = mujoco.MjData(mi)
    qfrc = np.empty((T, m.nv))
    for t in range(T):
        di.qpos[:], di.qvel[:], di.qacc[:] = qpos[t], qvel[t], qacc[t]
        mujoco.mj_inverse(mi, di)
        qfrc[t] = di.qfrc_inverse
    inertia = _joint_inertia(cw)
    return ObjectGeometry(dt=dt, qpos=qpos, qvel=qvel, qacc=qacc, qfrc=qfrc, obj_pos=obj_pos,
                          obj_support=obj_support, obj_robot=obj_robot, obj_other=obj_other,
                          obj_robot_vel=obj_vel, art_robot=art_robot, art_object=art_object,
                          art_robot_qvel=art_qvel, art_lever=levers, art_inertia=inertia)


def _toucher_velocity(dist, pairs, gpos, gmat, dt):
    """[T, K, 3] velocity of the robot's material at the closest robot point, where the robot is within
    CONTACT_BAND (0 elsewhere): central differences of that point held fixed in its geom's frame."""
    T, K = dist.shape
    out = np.zeros((T, K, 3))
    if T < 2:
        return out
    for t in range(T):
        for k in range(K):
            if dist[t, k] > CONTACT_BAND or pairs[t][k] is None:
                continue
            _, g, ft = pairs[t][k]
            p = ft[3:]  # the robot geom's closest point (geom 2 of the pair)
            local = gmat[t, g].T @ (p - gpos[t, g])
            a, b = max(t - 1, 0), min(t + 1, T - 1)
            out[t, k] = ((gpos[b, g] + gmat[b, g] @ local) - (gpos[a, g] + gmat[a, g] @ local)) / ((b - a) * dt)
    return out


def _joint_inertia(cw: CompiledWorld) -> np.ndarray:
    """Diagonal of the mass matrix at each articulation dof (armature included), at qpos0."""
    m = cw.model
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    out = []
    for dof in cw.articulation_dofs:
        e, res = np.zeros(m.nv), np.zeros(m.nv)
        e[dof] = 1.0
        mujoco.mj_mulM(m, d, res, e)
        out.append(res[dof])
    return np.array(out, float)


def near(dist: np.ndarray, band: float = CONTACT_BAND, window: int = CONTACT_WINDOW,
         deepest: float = np.inf) -> np.ndarray:
    """[T, K] bool: within ``band`` of contact (and no deeper than ``deepest`` inside) at some frame
    in t-window..t+window."""
    close = (dist < band) & (dist > -deepest)
    out = close.copy()
    for k in range(1, window + 1):
        out[k:] |= close[:-k]
        out[:-k] |= close[k:]
    return out
