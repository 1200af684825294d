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
        self.dim = len(self.names)

    @property
    def world(self) -> str:
        return self.cw.name

    def encode(self, qpos: np.ndarray, fps: float) -> np.ndarray:
        qpos = np.asarray(qpos, dtype=np.float64)
        if qpos.shape[-1] != self.nq:
            raise ValueError(f"qpos has width {qpos.shape[-1]} but world {self.world!r} has nq={self.nq}")
        if not self.floating:
            return qpos.copy()
        if qpos.shape[-2] < 2:
            raise ValueError("need at least 2 frames to encode velocities")
        pos, quat = qpos[..., :3], qpos[..., 3:7] / np.linalg.norm(qpos[..., 3:7], axis=-1, keepdims=True)
        yaw = yaw_of(quat)
        vel = np.diff(pos, axis=-2) * fps
        vel = np.concatenate([vel, vel[..., -1:, :]], axis=-2)  # the last frame keeps its velocity
        yaw_rate = wrap_angle(np.diff(yaw, axis=-1)) * fps
        yaw_rate = np.concatenate([yaw_rate, yaw_rate[..., -1:]], axis=-1)
        c, s = np.cos(yaw), np.sin(yaw)
        v_head = np.stack([c * vel[..., 0] + s * vel[..., 1], -s * vel[..., 0] + c * vel[..., 1], vel[..., 2]], -1)
        local = quat_mul(yaw_quat(-yaw), quat)
        local = local * np.where(local[..., :1] < 0, -1.0, 1.0)
        return np.concatenate([pos[..., 2:3], v_head, yaw_rate[..., None], local, qpos[..., 7:]], axis=-1)

    def decode(self, feats: np.ndarray, fps: float, start: np.ndarray | None = None) -> np.ndarray:
        """qpos [..., T, nq] from features; ``start`` (qpos [nq] or [..., nq]) anchors x, y and yaw."""
        feats = np.asarray(feats, dtype=np.float64)
        if feats.shape[-1] != self.dim:
            raise ValueError(f"features have width {feats.shape[-1]} but world {self.world!r} uses {self.dim}")
        if not self.floating:
            return feats.copy()
        lead = feats.shape[:-2]
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
        return np.concatenate([xy, feats[..., 0:1], quat, feats[..., 9:]], axis=-1)


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
