"""Heading-invariant per-frame motion features, decodable back to qpos by integrating the root.

A floating-base world (free root joint at qpos[0:7]) gets, per frame:

    root height z                                   1
    root linear velocity in the heading frame       3   (forward difference: frame t -> t+1)
    root yaw rate                                   1   (forward difference)
    root orientation with the yaw removed           4   (unit quaternion, w >= 0)
    every other qpos coordinate (joints, objects)   nq - 7

so a motion reads the same wherever it starts and whichever way it faces. ``decode`` integrates the
velocities from a start pose (by default the origin facing +x), which makes ``decode(encode(q),
start=q[0]) == q`` up to float error. A fixed-base world (no free root) uses its qpos as features.

Anchored scene coordinates (worlds declaring ``World.anchor_objects``, the Meta-World scenes): a
movable object's free joint and every slide / hinge joint of an object or articulation is encoded as
its velocity - linear (3) and angular (3, the rotation from frame t to t+1 as a world-frame rotation
vector times fps) for a free joint, the joint rate for a slide or hinge - and decoded by integrating
from the start pose, as the root is. Why: a resting puck or a closed drawer must decode *exactly* at
rest. Absolute coordinates carry the tokenizer's quantization error (~cm) into every frame, which the
object terms read as an object moving untouched, floating or sinking (their tolerances are 5-10 mm);
a velocity of zero decodes to near-zero motion and the error becomes a slow drift that the tokenizer's
drift loss bounds. The start supplies the absolute scene: a clip's own first frame, or
``default_start`` (the tokenizer sets it to the median first frame of its training data).

Hand-space arms (``World.hand_space``, Meta-World's mocap-driven Sawyer): the joints of the chain
from the base to the ``hand`` (the gripper's own joints aside) are encoded as the hand's velocity
(3 features: forward kinematics, then anchored like an object: integrated from the start's hand)
and decoded by damped least-squares inverse kinematics onto that position, the hand's orientation
steered toward the start pose's (the mocap weld holds it nearly fixed; ``IK_ROTATION_WEIGHT``),
warm-started frame to frame from the start's joints. Why: the arm is *commanded* in hand space, and
a tokenizer's ~0.04 rad per joint compounds over a 7-joint chain into 3-5 cm at the hand (measured,
Meta-World push), more than the gap between the fingers and a 4 cm puck. Measured on 60 held-out
push clips, encoded and decoded by a tokenizer of the same size (the manipulation tracker replaying
them): expert pushes still tracked 0.05 with joint angles, 0.00 with the hand's absolute position
(3 cm mean hand error: the velocity channels get the drift loss, absolute ones do not), 0.81 with
the anchored hand velocity. IK's redundant (null-space) joint differs from the weld's;
the hand, the pads and what they touch are where the clip says.
"""
from __future__ import annotations

import numpy as np

from rlpf.envs.worlds import CompiledWorld, compile_world


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of [..., 4] (w, x, y, z) quaternions."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def yaw_of(quat: np.ndarray) -> np.ndarray:
    """Heading angle of the body x-axis projected on the ground plane, [...]."""
    quat = quat / np.linalg.norm(quat, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(quat, -1, 0)
    return np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def yaw_quat(yaw: np.ndarray) -> np.ndarray:
    z = np.zeros_like(yaw)
    return np.stack([np.cos(yaw / 2), z, z, np.sin(yaw / 2)], axis=-1)


def wrap_angle(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


class MotionFeatures:
    """Encodes qpos [..., T, nq] to features [..., T, dim] and back, for one world."""

    def __init__(self, world: str | CompiledWorld):
        self.cw = world if isinstance(world, CompiledWorld) else compile_world(world)
        m = self.cw.model
        self.nq = m.nq
        self.floating = self.cw.floating and self.cw.root_dofs is not None and int(m.jnt_qposadr[_root_joint(self.cw)]) == 0
        if self.floating:
            rest = [_qpos_name(m, i) for i in range(7, m.nq)]
            self.names = ["root_z", "root_vx", "root_vy", "root_vz", "root_yaw_rate",
                          "root_qw", "root_qx", "root_qy", "root_qz"] + rest
        else:
            self.names = [_qpos_name(m, i) for i in range(m.nq)]
        self.anchored = _anchored_joints(self.cw) if self.cw.world.anchor_objects else []
        self.arm = _arm_chain(self.cw) if self.cw.world.hand_space and not self.floating else []
        """qpos addresses (= joint ids' addresses) of the joints encoded by the hand's position."""
        self._plan = self._scene_plan()
        offset = 9 if self.floating else 0
        names, integrated = [], []
        for kind, adr, name in self._plan:
            cols = {"abs": [name], "rate": [f"{name}_rate"], "hand": ["hand_vx", "hand_vy", "hand_vz"],
                    "free": [f"{name}_v{a}" for a in "xyz"] + [f"{name}_w{a}" for a in "xyz"]}[kind]
            if kind in ("rate", "free", "hand"):
                integrated += range(offset + len(names), offset + len(names) + len(cols))
            names += cols
        self.names = self.names[:offset] + names
        self.integrated = ([1, 2, 4] if self.floating else []) + integrated
        """Feature channels that decode integrates (the root's planar velocity and yaw rate, anchored
        scene velocities): their errors accumulate into drift, so the tokenizer weighs them more."""
        self.dim = len(self.names)
        self.default_start = np.asarray(self.cw.model.qpos0, np.float64).copy()
        """The start pose decode anchors scene coordinates at when given none (the model's qpos0 until
        a tokenizer sets it from its data)."""

    def _scene_plan(self) -> list[tuple[str, int, str]]:
        """(kind, qpos address, name) for every qpos coordinate after the root, in qpos order; kind is
        abs (as is), rate (an anchored slide / hinge) or free (an anchored free joint, 7 coordinates)."""
        m = self.cw.model
        anchored = {int(m.jnt_qposadr[j]): j for j in self.anchored}
        arm = set(self.arm)
        plan, i = [], 7 if self.floating else 0
        while i < m.nq:
            if i in arm:   # the whole chain becomes the hand's position, where its first joint was
                if i == self.arm[0]:
                    plan.append(("hand", i, "hand"))
                i += 1
                continue
            j = anchored.get(i)
            if j is None:
                plan.append(("abs", i, _qpos_name(m, i)))
                i += 1
                continue
            name = mujoco_name(m, j)
            free = int(m.jnt_type[j]) == _FREE
            plan.append(("free" if free else "rate", i, name))
            i += 7 if free else 1
        return plan

    def _encode_scene(self, q: np.ndarray, fps: float) -> np.ndarray:
        cols = []
        for kind, adr, _ in self._plan:
            if kind == "hand":
                cols.append(_forward_rate(self._hand_positions(q), fps))
            elif kind == "abs":
                cols.append(q[..., adr:adr + 1])
            elif kind == "rate":
                cols.append(_forward_rate(q[..., adr:adr + 1], fps))
            else:
                quat = q[..., adr + 3:adr + 7] / np.linalg.norm(q[..., adr + 3:adr + 7], axis=-1, keepdims=True)
                rel = quat_mul(quat[..., 1:, :], quat_conj(quat[..., :-1, :]))   # world-frame rotation t -> t+1
                w = quat_to_rotvec(rel) * fps
                cols += [_forward_rate(q[..., adr:adr + 3], fps), np.concatenate([w, w[..., -1:, :]], axis=-2)]
        return np.concatenate(cols, axis=-1) if cols else q[..., :0]

    def _decode_scene(self, f: np.ndarray, fps: float, start: np.ndarray) -> np.ndarray:
        """qpos coordinates after the root from scene features ``f`` (they start after the root's)."""
        dt, out, col, hand = 1.0 / fps, [], 0, None
        for kind, adr, _ in self._plan:
            if kind == "hand":
                hand = _integrate(f[..., col:col + 3], self._hand_positions(start), dt)
                out.append(np.zeros(f.shape[:-1] + (len(self.arm),)))   # filled by IK below
                col += 3
            elif kind == "abs":
                out.append(f[..., col:col + 1])
                col += 1
            elif kind == "rate":
                out.append(_integrate(f[..., col:col + 1], start[..., adr:adr + 1], dt))
                col += 1
            else:
                out.append(_integrate(f[..., col:col + 3], start[..., adr:adr + 3], dt))
                quat = np.empty(f.shape[:-1] + (4,))
                quat[..., 0, :] = start[..., adr + 3:adr + 7] / np.linalg.norm(start[..., adr + 3:adr + 7], axis=-1, keepdims=True)
                step = rotvec_to_quat(f[..., col + 3:col + 6] * dt)
                for t in range(1, f.shape[-2]):   # frame t's orientation composes the rotations of frames < t
                    quat[..., t, :] = quat_mul(step[..., t - 1, :], quat[..., t - 1, :])
                out.append(quat)
                col += 6
        q = np.concatenate(out, axis=-1) if out else f[..., :0]
        if hand is not None:
            q[..., self.arm] = self._inverse_kinematics(hand, start)
        return q

    # --- hand space (World.hand_space) ---

    def _hand_positions(self, q: np.ndarray) -> np.ndarray:
        import mujoco

        m, d = self.cw.model, self._mj_data()
        flat = q.reshape(-1, q.shape[-1])
        out = np.empty((len(flat), 3))
        for i, x in enumerate(flat):
            d.qpos[:] = x
            mujoco.mj_kinematics(m, d)
            out[i] = d.xpos[self.cw.hand_body]
        return out.reshape(q.shape[:-1] + (3,))

    def _inverse_kinematics(self, hand: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Arm joints [..., T, n_arm] that put the hand at ``hand`` [..., T, 3] with the start's orientation."""
        import mujoco

        m, d = self.cw.model, self._mj_data()
        arm = np.asarray(self.arm)
        dofs = np.array([int(m.jnt_dofadr[_joint_at(m, a)]) for a in arm])
        lo, hi = _joint_limits(m, arm)
        jp, jr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        lead = hand.shape[:-2]
        targets = hand.reshape((-1,) + hand.shape[-2:])
        starts = np.broadcast_to(start, lead + (self.nq,)).reshape(-1, self.nq)
        out = np.empty(targets.shape[:-1] + (len(arm),))
        for b, (target, q0) in enumerate(zip(targets, starts)):
            d.qpos[:] = q0
            mujoco.mj_kinematics(m, d)
            quat_ref = d.xquat[self.cw.hand_body].copy()
            q = q0[arm].astype(np.float64).copy()
            for t, x in enumerate(target):
                for _ in range(IK_ITERATIONS):
                    err = np.zeros(3)
                    d.qpos[arm] = q
                    mujoco.mj_kinematics(m, d)
                    mujoco.mj_comPos(m, d)
                    e_pos = x - d.xpos[self.cw.hand_body]
                    mujoco.mju_subQuat(err, quat_ref, d.xquat[self.cw.hand_body])
                    err = d.xmat[self.cw.hand_body].reshape(3, 3) @ err   # hand frame -> world (the Jacobian's)
                    if np.linalg.norm(e_pos) < IK_TOLERANCE_M and np.linalg.norm(err) < 10 * IK_TOLERANCE_M:
                        break
                    mujoco.mj_jacBody(m, d, jp, jr, self.cw.hand_body)
                    jac = np.vstack([jp[:, dofs], jr[:, dofs]])
                    e = np.concatenate([e_pos, IK_ROTATION_WEIGHT * err])
                    jac[3:] *= IK_ROTATION_WEIGHT
                    q = np.clip(q + jac.T @ np.linalg.solve(jac @ jac.T + IK_DAMPING ** 2 * np.eye(6), e), lo, hi)
                out[b, t] = q
        return out.reshape(lead + out.shape[-2:])

    def _mj_data(self):
        import mujoco

        if getattr(self, "_data", None) is None:
            self._data = mujoco.MjData(self.cw.model)
        return self._data

    @property
    def world(self) -> str:
        return self.cw.name

    def encode(self, qpos: np.ndarray, fps: float) -> np.ndarray:
        qpos = np.asarray(qpos, dtype=np.float64)
        if qpos.shape[-1] != self.nq:
            raise ValueError(f"qpos has width {qpos.shape[-1]} but world {self.world!r} has nq={self.nq}")
        if self.anchored and qpos.shape[-2] < 2:
            raise ValueError("need at least 2 frames to encode velocities")
        if not self.floating:
            return self._encode_scene(qpos, fps)
        if qpos.shape[-2] < 2:
            raise ValueError("need at least 2 frames to encode velocities")
        pos, quat = qpos[..., :3], qpos[..., 3:7] / np.linalg.norm(qpos[..., 3:7], axis=-1, keepdims=True)
        yaw = yaw_of(quat)
        vel = _forward_rate(pos, fps)
        yaw_rate = wrap_angle(np.diff(yaw, axis=-1)) * fps
        yaw_rate = np.concatenate([yaw_rate, yaw_rate[..., -1:]], axis=-1)
        c, s = np.cos(yaw), np.sin(yaw)
        v_head = np.stack([c * vel[..., 0] + s * vel[..., 1], -s * vel[..., 0] + c * vel[..., 1], vel[..., 2]], -1)
        local = quat_mul(yaw_quat(-yaw), quat)
        local = local * np.where(local[..., :1] < 0, -1.0, 1.0)
        return np.concatenate([pos[..., 2:3], v_head, yaw_rate[..., None], local, self._encode_scene(qpos, fps)], axis=-1)

    def decode(self, feats: np.ndarray, fps: float, start: np.ndarray | None = None) -> np.ndarray:
        """qpos [..., T, nq] from features; ``start`` (qpos [nq] or [..., nq]) anchors x, y and yaw, and the
        anchored scene coordinates (default ``default_start``'s)."""
        feats = np.asarray(feats, dtype=np.float64)
        if feats.shape[-1] != self.dim:
            raise ValueError(f"features have width {feats.shape[-1]} but world {self.world!r} uses {self.dim}")
        lead = feats.shape[:-2]
        scene_start = np.broadcast_to(np.asarray(self.default_start if start is None else start, np.float64),
                                      lead + (self.nq,))
        if not self.floating:
            return self._decode_scene(feats, fps, scene_start)
        x0 = np.zeros(lead + (2,))
        yaw0 = np.zeros(lead)
        if start is not None:
            start = np.broadcast_to(np.asarray(start, np.float64), lead + (self.nq,))
            x0 = start[..., :2]
            yaw0 = yaw_of(start[..., 3:7])
        dt = 1.0 / fps
        # frame t's pose integrates the velocities of frames 0..t-1
        yaw = yaw0[..., None] + np.concatenate(
            [np.zeros(lead + (1,)), np.cumsum(feats[..., :-1, 4], axis=-1) * dt], axis=-1)
        c, s = np.cos(yaw), np.sin(yaw)
        vx, vy = feats[..., 1], feats[..., 2]
        world_v = np.stack([c * vx - s * vy, s * vx + c * vy], axis=-1)
        xy = x0[..., None, :] + np.concatenate(
            [np.zeros(lead + (1, 2)), np.cumsum(world_v[..., :-1, :], axis=-2) * dt], axis=-2)
        local = feats[..., 5:9]
        local = local / np.maximum(np.linalg.norm(local, axis=-1, keepdims=True), 1e-9)
        quat = quat_mul(yaw_quat(yaw), local)
        return np.concatenate([xy, feats[..., 0:1], quat, self._decode_scene(feats[..., 9:], fps, scene_start)], axis=-1)


_FREE = 0   # mujoco.mjtJoint.mjJNT_FREE
IK_ITERATIONS = 30
"""Damped least-squares steps per frame at most (warm-started from the previous frame)."""
IK_TOLERANCE_M = 1e-4
"""Hand position error (m) at which a frame's IK stops: far below the tokenizer's ~1 cm."""
IK_DAMPING = 0.05
"""Damping (m) of the least-squares step: keeps steps bounded near singular poses."""
IK_ROTATION_WEIGHT = 0.01
"""Metres per radian of hand-orientation error in the IK residual: position first, the orientation
only steers the redundant joint. The weld lets the hand tilt up to ~10 deg from the start in contact
(measured, push), so holding it harder (0.3) leaves up to 3.5 cm of position error where the two
conflict; 0.01 keeps the position within 8 mm and the orientation within 4 deg on average of the
clip's (10 held-out push clips); 0 leaves it to drift (9 deg mean, 23 max)."""


def _arm_chain(cw: CompiledWorld) -> list[int]:
    """qpos addresses of the 1-dof joints on the chain from the world to ``World.hand`` (not the gripper)."""
    import mujoco

    m = cw.model
    if cw.hand_body is None:
        return []
    chain, b = set(), int(cw.hand_body)
    while b > 0:
        chain.add(b)
        b = int(m.body_parentid[b])
    grip = set(int(j) for j in cw.gripper_joints)
    one_dof = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    return sorted(int(m.jnt_qposadr[j]) for j in range(m.njnt)
                  if int(m.jnt_bodyid[j]) in chain and j not in grip and int(m.jnt_type[j]) in one_dof)


def _joint_at(m, adr: int) -> int:
    return int(np.flatnonzero(m.jnt_qposadr == adr)[0])


def _joint_limits(m, addresses) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.full(len(addresses), -np.inf), np.full(len(addresses), np.inf)
    for i, a in enumerate(addresses):
        j = _joint_at(m, a)
        if m.jnt_limited[j]:
            lo[i], hi[i] = m.jnt_range[j]
    return lo, hi


def quat_conj(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    """Rotation vectors [..., 3] (axis x angle, |angle| <= pi) of unit quaternions [..., 4]."""
    q = q * np.where(q[..., :1] < 0, -1.0, 1.0)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2 * np.arctan2(s, q[..., :1])
    # angle / sin(angle/2) -> 2 as the rotation vanishes
    scale = np.where(s > 1e-12, angle / np.maximum(s, 1e-12), 2.0)
    return q[..., 1:] * scale


def rotvec_to_quat(v: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    half = angle / 2
    scale = np.where(angle > 1e-12, np.sin(half) / np.maximum(angle, 1e-12), 0.5)
    return np.concatenate([np.cos(half), v * scale], axis=-1)


def _forward_rate(x: np.ndarray, fps: float) -> np.ndarray:
    """Forward-difference rate [..., T, k] of x [..., T, k]; the last frame keeps its rate."""
    r = np.diff(x, axis=-2) * fps
    return np.concatenate([r, r[..., -1:, :]], axis=-2)


def _integrate(rate: np.ndarray, x0: np.ndarray, dt: float) -> np.ndarray:
    """Inverse of _forward_rate: frame t = x0 + the rates of frames 0..t-1 times dt."""
    lead = rate.shape[:-2]
    return x0[..., None, :] + np.concatenate(
        [np.zeros(lead + (1, rate.shape[-1])), np.cumsum(rate[..., :-1, :], axis=-2) * dt], axis=-2)


def _anchored_joints(cw: CompiledWorld) -> list[int]:
    """Joints whose coordinates are anchored: the free / slide / hinge joints of the movable objects and
    the articulation joints, in joint order (never the robot's root)."""
    import mujoco

    m = cw.model
    objects = set(int(b) for b in cw.object_bodies)
    articulations = set(int(j) for j in cw.articulation_joints)
    root = _root_joint(cw) if cw.floating else -1
    kinds = {int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_SLIDE), int(mujoco.mjtJoint.mjJNT_HINGE)}
    return [j for j in range(m.njnt) if j != root and int(m.jnt_type[j]) in kinds
            and (j in articulations or int(m.jnt_bodyid[j]) in objects)]


def mujoco_name(m, j: int) -> str:
    import mujoco

    return mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}"


def _root_joint(cw: CompiledWorld) -> int:
    import mujoco

    for j in range(cw.model.njnt):
        if int(cw.model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_FREE):
            return j
    return -1


def _qpos_name(m, i: int) -> str:
    import mujoco

    for j in range(m.njnt):
        adr = int(m.jnt_qposadr[j])
        width = {int(mujoco.mjtJoint.mjJNT_FREE): 7, int(mujoco.mjtJoint.mjJNT_BALL): 4}.get(int(m.jnt_type[j]), 1)
        if adr <= i < adr + width:
            name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}"
            return name if width == 1 else f"{name}[{i - adr}]"
    return f"q{i}"
