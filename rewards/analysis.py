"""The one physics pass every built-in term reads: kinematics, contact-free inverse dynamics and the
best contact forces, computed once per clip at the clip's own frame rate and cached on the clip.

Why contact-free inverse dynamics plus a contact fit instead of plain ``mj_inverse``: MuJoCo's soft
contacts invert only at the simulator's own timestep; at mocap rates (20-60 Hz, mm noise) a real clip
shows more root residual than a floating one. Without contacts, ``mj_inverse`` gives the generalized
force the motion needs; non-negative friction-cone forces at points near the floor explain what they
can; the remainder at the root is force that nothing in the scene could have applied.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from rlpf.core.clips import Clip, quaternion_addresses
from rlpf.envs.worlds import CompiledWorld, model_path
from rlpf.rewards.contact_forces import batched_nnls, friction_pyramid

CONTACT_BAND = 0.03
"""m: a body point this close to the floor may carry contact force (soft contacts, mocap noise)."""
FOOT_CONTACT_BAND = 0.02
"""m: a foot whose lowest point is this close to the floor is planted (skating is measured then)."""
TOUCH_BAND = 0.03
"""m: a robot geom this close to an object may be pushing it."""
LIMIT_MARGIN = 0.01
"""rad or m: a joint this close to its range limit may be held there by the limit."""
SLIDE_SPEED = 0.3
"""m/s: a contact point whose material moves faster than this over the floor is sliding, not sticking.

Above the noise floor of sticking contacts at clip rates: points MuJoCo holds well inside the cone
(|f_t| < 0.5 mu f_n) and on the floor for three frames running show central-difference material
speeds up to 0.13 m/s on the ant at 20 fps and 0.27 m/s (p99 0.16) on the humanoid at 66.7 fps
(4 smooth-random / CPG clips per world, mujoco 3.3.0); a 0.6-0.8 m/s glide is well above it."""
SLIDE_WINDOW = 2
"""frames either side: a point counts as sliding at frame t only if it stays on the floor and slides
throughout t-2..t+2, the frames whose positions frame t's acceleration averages ([1,2,1] smoothing
plus the second difference); one that may stick, touch down or lift off within them keeps the cone."""
TORQUE_ROW_WEIGHT = 0.05
"""Relative weight of 'least actuator effort' against 'explain the root wrench' in the contact fit."""


@dataclass
class ClipPhysics:
    """Per-frame quantities of one clip in one world ([T, ...] arrays)."""

    dt: float
    qpos: np.ndarray         # [T, nq] lightly smoothed
    qvel: np.ndarray         # [T, nv]
    qacc: np.ndarray         # [T, nv]
    vel_half: np.ndarray     # [T-1, nv] velocity between consecutive frames
    qfrc: np.ndarray         # [T, nv] generalized force the motion needs without contacts or limits
    geom_low: np.ndarray     # [T, G] lowest point of each robot geom, height above the floor
    points: np.ndarray       # [T, P, 3] candidate contact points (lowest points of geom parts)
    point_body: np.ndarray   # [P]
    point_geom: np.ndarray   # [P] index into robot geoms
    point_vel: np.ndarray    # [T, P, 3] velocity of the body material at each candidate point
    foot_height: np.ndarray  # [T, F] lowest point of each foot above the floor
    foot_slip: np.ndarray    # [T, F] horizontal speed of the foot's material point at its lowest point
    object_touched: np.ndarray  # [T] bool: some robot geom within TOUCH_BAND of an object
    cdof: np.ndarray         # [T, nv, 6]
    com_root: np.ndarray     # [T, 3] subtree com of the kinematic root (the origin of cdof)


def analyze(clip: Clip, cw: CompiledWorld) -> ClipPhysics:
    key = ("physics", cw.name)
    if key not in clip.cache:
        clip.cache[key] = _analyze(clip, cw)
    return clip.cache[key]


def smooth_time(x: np.ndarray) -> np.ndarray:
    """Binomial [1, 2, 1]/4 filter along time: removes frame-level noise, keeps motion.

    Edges are extended linearly (odd reflection), so a body moving steadily is not slowed at the ends.
    """
    if len(x) < 3:
        return x.copy()
    p = np.concatenate([2 * x[:1] - x[1:2], x, 2 * x[-1:] - x[-2:-1]])
    return 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]


def smoothed_kinematics(m: mujoco.MjModel, qpos: np.ndarray, dt: float):
    """[1,2,1]-smoothed qpos (sign-continuous unit quaternions), the velocity between consecutive
    frames [T-1, nv], and central-difference qvel and qacc [T, nv]."""
    raw = np.array(qpos, dtype=np.float64)
    quats = quaternion_addresses(m)
    for adr in quats:  # q and -q are one rotation: make the sign continuous before averaging
        q = raw[:, adr:adr + 4]
        flips = np.cumsum(np.r_[0, np.sum(q[1:] * q[:-1], axis=1) < 0]) % 2
        raw[:, adr:adr + 4] = np.where(flips[:, None] == 1, -q, q)
    qpos = smooth_time(raw)
    for adr in quats:
        q = qpos[:, adr:adr + 4]
        qpos[:, adr:adr + 4] = q / np.linalg.norm(q, axis=1, keepdims=True)
    vel_half = differentiate_pos(m, qpos[:-1], qpos[1:], dt)
    qvel = np.empty((len(qpos), m.nv))
    qvel[0], qvel[-1] = vel_half[0], vel_half[-1]
    qvel[1:-1] = 0.5 * (vel_half[1:] + vel_half[:-1])
    qacc = np.zeros_like(qvel)
    if len(qpos) > 2:
        qacc[1:-1] = (vel_half[1:] - vel_half[:-1]) / dt
        qacc[0], qacc[-1] = qacc[1], qacc[-2]
    return qpos, vel_half, qvel, qacc


def _analyze(clip: Clip, cw: CompiledWorld) -> ClipPhysics:
    m = cw.model
    dt = clip.dt
    qpos, vel_half, qvel, qacc = smoothed_kinematics(m, clip.qpos, dt)

    mi = _inverse_model(cw)
    d = mujoco.MjData(mi)
    T, G = len(qpos), len(cw.robot_geoms)
    qfrc = np.empty((T, m.nv))
    gpos = np.empty((T, G, 3))
    gmat = np.empty((T, G, 3, 3))
    cdof = np.empty((T, m.nv, 6))
    com_root = np.zeros((T, 3))
    touched = np.zeros(T, bool)
    kin_root = m.body_rootid[cw.root_body] if cw.floating else 0
    pairs = _touch_pairs(cw)
    for t in range(T):
        d.qpos[:] = qpos[t]
        d.qvel[:] = qvel[t]
        d.qacc[:] = qacc[t]
        mujoco.mj_inverse(mi, d)
        qfrc[t] = d.qfrc_inverse
        gpos[t] = d.geom_xpos[cw.robot_geoms]
        gmat[t] = d.geom_xmat[cw.robot_geoms].reshape(G, 3, 3)
        cdof[t] = d.cdof
        com_root[t] = d.subtree_com[kin_root]
        for g1, g2 in pairs:
            if mujoco.mj_geomDistance(mi, d, g1, g2, TOUCH_BAND, None) < TOUCH_BAND:
                touched[t] = True
                break

    points, point_geom = geom_lowest_points(m, cw.robot_geoms, gpos, gmat)
    point_geom = np.asarray(point_geom)
    floor = cw.floor_z
    height = points[..., 2] - floor
    geom_low = np.full((T, G), np.inf)
    for g in range(G):
        geom_low[:, g] = height[:, point_geom == g].min(axis=1)

    point_vel = material_point_velocity(points, point_geom, gpos, gmat, dt)
    foot_height, foot_slip = _feet(cw, point_geom, height, point_vel)
    if len(touched) > 2:  # a push can begin or end between two frames
        touched = touched | np.r_[touched[1:], False] | np.r_[False, touched[:-1]]
    return ClipPhysics(
        dt=dt, qpos=qpos, qvel=qvel, qacc=qacc, vel_half=vel_half, qfrc=qfrc, geom_low=geom_low,
        points=points, point_body=m.geom_bodyid[cw.robot_geoms][point_geom], point_geom=point_geom,
        point_vel=point_vel, foot_height=foot_height, foot_slip=foot_slip, object_touched=touched, cdof=cdof, com_root=com_root,
    )


def _feet(cw, point_geom, height, point_vel):
    """Height and horizontal slip speed of each foot's lowest point, per frame."""
    T = len(height)
    robot_index = {int(g): i for i, g in enumerate(cw.robot_geoms)}
    foot_height = np.zeros((T, len(cw.foot_geoms)))
    foot_slip = np.zeros((T, len(cw.foot_geoms)))
    for f, g in enumerate(cw.foot_geoms):
        cols = np.flatnonzero(point_geom == robot_index[int(g)])
        low = cols[height[:, cols].argmin(axis=1)]
        foot_height[:, f] = height[np.arange(T), low]
        foot_slip[:, f] = np.linalg.norm(point_vel[np.arange(T), low, :2], axis=1)
    return foot_height, foot_slip


def _inverse_model(cw: CompiledWorld) -> mujoco.MjModel:
    # contacts and joint limits are explained by the contact fit instead (see module docstring)
    if "_inverse_model" not in cw.__dict__:
        mi = mujoco.MjModel.from_xml_path(model_path(cw.world))
        mi.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT) | int(mujoco.mjtDisableBit.mjDSBL_LIMIT)
        cw.__dict__["_inverse_model"] = mi
    return cw.__dict__["_inverse_model"]


def _touch_pairs(cw: CompiledWorld) -> list[tuple[int, int]]:
    m = cw.model
    pairs = []
    for go in cw.object_geoms:
        for gr in cw.robot_geoms:
            if (m.geom_contype[go] & m.geom_conaffinity[gr]) or (m.geom_contype[gr] & m.geom_conaffinity[go]):
                pairs.append((int(gr), int(go)))
    return pairs


def differentiate_pos(m: mujoco.MjModel, q1: np.ndarray, q2: np.ndarray, dt: float) -> np.ndarray:
    """Vectorised ``mj_differentiatePos``: [B, nq] x2 -> [B, nv] (free/ball angular parts in the local frame)."""
    v = np.empty((len(q1), m.nv))
    for j in range(m.njnt):
        qa, va, jt = m.jnt_qposadr[j], m.jnt_dofadr[j], int(m.jnt_type[j])
        if jt == int(mujoco.mjtJoint.mjJNT_FREE):
            v[:, va:va + 3] = (q2[:, qa:qa + 3] - q1[:, qa:qa + 3]) / dt
            v[:, va + 3:va + 6] = quat_log_diff(q1[:, qa + 3:qa + 7], q2[:, qa + 3:qa + 7]) / dt
        elif jt == int(mujoco.mjtJoint.mjJNT_BALL):
            v[:, va:va + 3] = quat_log_diff(q1[:, qa:qa + 4], q2[:, qa:qa + 4]) / dt
        else:
            v[:, va] = (q2[:, qa] - q1[:, qa]) / dt
    return v


def quat_log_diff(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Rotation vector of conj(q1) * q2 (wxyz quaternions), i.e. the local-frame rotation from q1 to q2."""
    w1, v1 = q1[:, :1], -q1[:, 1:]
    w2, v2 = q2[:, :1], q2[:, 1:]
    w = w1 * w2 - np.sum(v1 * v2, axis=1, keepdims=True)
    v = w1 * v2 + w2 * v1 + np.cross(v1, v2)
    sign = np.where(w < 0, -1.0, 1.0)  # shortest arc
    w, v = w * sign, v * sign
    s = np.linalg.norm(v, axis=1, keepdims=True)
    angle = 2.0 * np.arctan2(s, w)
    return np.where(s > 1e-12, v * angle / np.maximum(s, 1e-12), 2.0 * v)


def geom_lowest_points(m: mujoco.MjModel, geoms: np.ndarray, gpos: np.ndarray, gmat: np.ndarray):
    """Points that can touch a horizontal floor first, per geom part: [T, P, 3] and the geom index of each.

    Spheres give their bottom; capsules and cylinders the bottom of each end; boxes their 8 corners;
    ellipsoids their lowest point; meshes their lowest vertex.
    """
    T = gpos.shape[0]
    down = np.array([0.0, 0.0, -1.0])
    pts, owner = [], []
    for i, g in enumerate(geoms):
        c, R, s = gpos[:, i], gmat[:, i], m.geom_size[g]
        typ = int(m.geom_type[g])
        if typ == int(mujoco.mjtGeom.mjGEOM_SPHERE):
            new = [c + s[0] * down]
        elif typ == int(mujoco.mjtGeom.mjGEOM_CAPSULE):
            axis = R[:, :, 2] * s[1]
            new = [c + axis + s[0] * down, c - axis + s[0] * down]
        elif typ == int(mujoco.mjtGeom.mjGEOM_CYLINDER):
            a = R[:, :, 2]
            radial = down - np.sum(down * a, axis=1, keepdims=True) * a
            n = np.linalg.norm(radial, axis=1, keepdims=True)
            radial = np.where(n > 1e-9, radial / np.maximum(n, 1e-9), 0.0) * s[0]
            new = [c + a * s[1] + radial, c - a * s[1] + radial]
        elif typ == int(mujoco.mjtGeom.mjGEOM_BOX):
            signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
            new = [c + np.einsum("tij,j->ti", R, sg * s) for sg in signs]
        elif typ == int(mujoco.mjtGeom.mjGEOM_ELLIPSOID):
            # support point in direction -z: c - R S^2 R^T z / |S R^T z|
            rz = R[:, 2, :] * s  # rows of R^T z scaled
            n = np.linalg.norm(rz, axis=1, keepdims=True)
            new = [c - np.einsum("tij,tj->ti", R, rz * s / np.maximum(n, 1e-12))]
        elif typ == int(mujoco.mjtGeom.mjGEOM_MESH):
            mid = m.geom_dataid[g]
            verts = m.mesh_vert[m.mesh_vertadr[mid]:m.mesh_vertadr[mid] + m.mesh_vertnum[mid]]
            world = c[:, None, :] + np.einsum("tij,vj->tvi", R, verts)
            new = [world[np.arange(T), world[:, :, 2].argmin(axis=1)]]
        else:  # planes, height fields: not part of a robot's contact surface
            continue
        pts += new
        owner += [i] * len(new)
    if not pts:
        return np.zeros((T, 0, 3)), []
    return np.stack(pts, axis=1), owner


def material_point_velocity(points, point_geom, gpos, gmat, dt):
    """[T, P, 3] velocity of the body material under each candidate point (central differences).

    The point is held fixed in its geom's frame, so a foot rolling or pivoting over its contact
    point has zero velocity there, and a sliding one does not.
    """
    T = len(points)
    if T < 2:
        return np.zeros_like(points)
    c, R = gpos[:, point_geom], gmat[:, point_geom]                      # [T, P, 3], [T, P, 3, 3]
    local = np.einsum("tpji,tpj->tpi", R, points - c)
    nxt = np.r_[c[1:], c[-1:]] + np.einsum("tpij,tpj->tpi", np.r_[R[1:], R[-1:]], local)
    prv = np.r_[c[:1], c[:-1]] + np.einsum("tpij,tpj->tpi", np.r_[R[:1], R[:-1]], local)
    span = np.full((T, 1, 1), 2.0 * dt)
    span[0] = span[-1] = dt
    return (nxt - prv) / span


def window_min(x: np.ndarray, half: int) -> np.ndarray:
    """Minimum over frames t-half..t+half (edges held), along axis 0."""
    out = x.copy()
    for k in range(1, half + 1):
        out[k:] = np.minimum(out[k:], x[:-k])
        out[:-k] = np.minimum(out[:-k], x[k:])
    return out


def window_max(x: np.ndarray, half: int) -> np.ndarray:
    return -window_min(-x, half)


def kinetic_column(slip: np.ndarray, mu: float) -> np.ndarray:
    """[..., 3] unit force direction of a sliding contact: normal +z with kinetic friction mu*N
    opposing the horizontal slip ``slip`` [..., 2] (Coulomb: a sliding point cannot push along its
    slip, nor get less friction than mu*N). Zero slip gives the bare normal."""
    speed = np.linalg.norm(slip, axis=-1, keepdims=True)
    f = np.zeros((*slip.shape[:-1], 3))
    f[..., :2] = -mu * slip / np.maximum(speed, 1e-12)
    f[..., 2] = 1.0
    return f / np.linalg.norm(f, axis=-1, keepdims=True)


def contact_points(ph: ClipPhysics, cw: CompiledWorld) -> tuple[np.ndarray, np.ndarray]:
    """[T, P] bool masks: candidate points that may carry floor force at each frame, and those of them
    that slide (kinetic friction only, ``contact_columns``)."""
    height = ph.points[..., 2] - cw.floor_z
    # the acceleration at frame t averages frames t-2..t+2 (smoothing + second difference),
    # so a point that touched the floor anywhere in that window may have pushed
    # and at mocap rates a fast foot can touch down between two frames: allow the distance it
    # covers vertically in half a frame interval
    reach = height - 0.5 * ph.dt * np.abs(ph.point_vel[..., 2])
    active = window_min(reach, 2) < CONTACT_BAND + cw.contact_margin
    # Coulomb friction that cannot be skipped: a point that stays on the floor and slides
    # throughout t-2..t+2 (the window frame t's acceleration averages over) gets exactly one
    # column, its normal force with kinetic friction mu*N against the slip (``kinetic_column``),
    # so a body sliding without propulsion keeps a root residual. A point that sticks, or may
    # stick, touch down or lift off within the window keeps the cone: its friction averaged
    # over the window can be anything up to mu*N, in any direction
    speed = np.linalg.norm(ph.point_vel[..., :2], axis=-1)
    sliding = ((window_max(height, SLIDE_WINDOW) < CONTACT_BAND + cw.contact_margin)
               & (window_min(speed, SLIDE_WINDOW) > SLIDE_SPEED))
    return active, sliding


def contact_columns(point_vel: np.ndarray, sliding: np.ndarray, mu: float) -> np.ndarray:
    """[T, P, 4, 3] unit contact force directions per candidate point: a sticking point's four
    friction-pyramid edges, a sliding point's one kinetic column (``kinetic_column``) and three zero
    columns (``batched_nnls`` leaves zero columns out of the solve)."""
    pyramid = friction_pyramid(mu)
    edges = np.broadcast_to(pyramid / np.linalg.norm(pyramid, axis=1, keepdims=True),
                            (*sliding.shape, 4, 3)).copy()
    kinetic = np.zeros_like(edges)
    kinetic[..., 0, :] = kinetic_column(point_vel[..., :2], mu)
    return np.where(sliding[..., None, None], kinetic, edges)


@dataclass
class ContactSolution:
    root_residual: np.ndarray   # [T] root wrench no contact explains, in body weights
    torque_ratio: np.ndarray    # [T, A] |actuator torque needed| / actuator limit
    support_need: np.ndarray    # [T] vertical force the root needs, in body weights
    remainder: np.ndarray | None = None  # [T, nv] generalized force left after the fitted contacts and limits:
    # on the actuated dofs, the joint torques the motion needs (rlpf.policies.residual_tracker's feedforward)


def contact_solution(clip: Clip, cw: CompiledWorld) -> ContactSolution:
    key = ("contacts", cw.name)
    if key not in clip.cache:
        clip.cache[key] = _solve_contacts(analyze(clip, cw), cw)
    return clip.cache[key]


def _solve_contacts(ph: ClipPhysics, cw: CompiledWorld) -> ContactSolution:
    m = cw.model
    T = len(ph.qfrc)
    weight = cw.mass * max(cw.gravity, 1e-9)
    rows = np.r_[cw.root_dofs, cw.actuated_dofs].astype(int)
    scale = np.r_[np.full(3, 1.0 / weight), np.full(3, 1.0 / (weight * cw.world.char_length))][: len(cw.root_dofs)]
    scale = np.r_[scale, TORQUE_ROW_WEIGHT / cw.torque_limit]

    columns = []  # each [T, nv]: generalized force of a unit contact/limit force
    if cw.floating and cw.floor_geom is not None and ph.points.shape[1]:
        height = ph.points[..., 2] - cw.floor_z                                     # [T, P]
        active, sliding = contact_points(ph, cw)
        edges = contact_columns(ph.point_vel, sliding, cw.friction)
        off = ph.points - ph.com_root[:, None, :]                                  # [T, P, 3]
        lin, ang = ph.cdof[:, :, 3:], ph.cdof[:, :, :3]                              # [T, nv, 3]
        mask = cw.dof_ancestor[ph.point_body]                                       # [P, nv]
        moment = np.cross(off[:, :, None, :], edges)                                # [T, P, 4, 3]
        gen = np.einsum("tvk,tpek->tpev", lin, edges) + np.einsum("tvk,tpek->tpev", ang, moment)
        gen *= (mask[None, :, None, :] * active[..., None, None])
        T_, P_ = height.shape
        columns.append(gen.reshape(T_, P_ * 4, m.nv))
    cols = np.concatenate(columns, axis=1) if columns else np.zeros((T, 0, m.nv))

    limit_cols = []
    for j in cw.limited_joints:
        lo, hi = m.jnt_range[j]
        q = ph.qpos[:, m.jnt_qposadr[j]]
        dof = m.jnt_dofadr[j]
        for sign, near in ((1.0, q < lo + LIMIT_MARGIN), (-1.0, q > hi - LIMIT_MARGIN)):
            if near.any():
                c = np.zeros((T, m.nv))
                c[:, dof] = sign * near
                limit_cols.append(c)
    if limit_cols:
        cols = np.concatenate([cols, np.stack(limit_cols, axis=1)], axis=1)

    A = (cols[:, :, rows] * scale).transpose(0, 2, 1)                # [T, R, C]
    b = ph.qfrc[:, rows] * scale                                       # [T, R]
    lam = batched_nnls(A, b)
    explained = np.einsum("tcv,tc->tv", cols, lam)                    # [T, nv]
    remainder = ph.qfrc - explained
    nr = len(cw.root_dofs)
    if nr:
        root_res = np.linalg.norm(remainder[:, cw.root_dofs] * scale[:nr], axis=1)
        support = ph.qfrc[:, cw.root_dofs[2]] / weight
    else:
        root_res = np.zeros(T)
        support = np.zeros(T)
    torque_ratio = np.abs(remainder[:, cw.actuated_dofs]) / cw.torque_limit
    return ContactSolution(root_residual=root_res, torque_ratio=torque_ratio, support_need=support, remainder=remainder)
