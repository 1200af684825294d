"""What the pose network predicts per frame, and back to qpos: the lifting's target encoding.

For a floating-base world (free root joint at qpos[0:7], then the other joints):

    z        root height (m)
    rot6     the root rotation's first two columns (6 numbers: continuous, unlike a quaternion's sign)
    joints   qpos[7:] (rad / m)
    vel      the root's x, y displacement to the next frame (m; the last frame repeats the one before)

x and y are not read from one frame (the camera follows them): the lifted clip's root starts at
x = y = 0 and integrates the displacement (floor odometry, or ``vel`` where it fails), the way the
motion tokenizer anchors the root at the clip's start.
"""
from __future__ import annotations

import mujoco
import numpy as np

FIELDS = ("z", "rot6", "joints", "vel")


def quat_to_rot6(quat: np.ndarray) -> np.ndarray:
    """[T, 4] unit quaternions (w, x, y, z) -> [T, 6] first two columns of their rotation matrices."""
    out = np.empty((len(quat), 6))
    m = np.empty(9)
    for t, q in enumerate(np.asarray(quat, np.float64)):
        mujoco.mju_quat2Mat(m, q / np.linalg.norm(q))
        R = m.reshape(3, 3)
        out[t] = np.r_[R[:, 0], R[:, 1]]
    return out


def rot6_to_quat(rot6: np.ndarray) -> np.ndarray:
    """[T, 6] -> [T, 4] unit quaternions (Gram-Schmidt on the two columns)."""
    out = np.empty((len(rot6), 4))
    for t, r in enumerate(np.asarray(rot6, np.float64)):
        a = r[:3] / (np.linalg.norm(r[:3]) + 1e-9)
        b = r[3:] - a * (a @ r[3:])
        b /= np.linalg.norm(b) + 1e-9
        R = np.stack([a, b, np.cross(a, b)], 1)
        q = np.empty(4)
        mujoco.mju_mat2Quat(q, R.ravel())
        out[t] = q
    return out


def encode(qpos: np.ndarray) -> np.ndarray:
    """[T, nq] qpos of a free-root world -> [T, 1 + 6 + (nq - 7) + 2] targets (z, rot6, joints, vel)."""
    q = np.asarray(qpos, np.float64)
    vel = np.diff(q[:, :2], axis=0)
    vel = np.vstack([vel, vel[-1:]]) if len(vel) else np.zeros((len(q), 2))
    return np.concatenate([q[:, 2:3], quat_to_rot6(q[:, 3:7]), q[:, 7:], vel], axis=1)


def layout(nq: int) -> dict[str, slice]:
    """The columns of each field in ``encode``'s output for a world with ``nq`` coordinates."""
    nj = nq - 7
    return {"z": slice(0, 1), "rot6": slice(1, 7), "joints": slice(7, 7 + nj), "vel": slice(7 + nj, 9 + nj)}


def decode(targets: np.ndarray, nq: int, xy: np.ndarray | None = None) -> np.ndarray:
    """[T, D] targets -> [T, nq] qpos; root x, y from ``xy`` [T, 2], else the integrated ``vel`` from 0."""
    y = np.asarray(targets, np.float64)
    L = layout(nq)
    if xy is None:
        vel = y[:, L["vel"]]
        xy = np.vstack([np.zeros((1, 2)), np.cumsum(vel[:-1], axis=0)])
    q = np.empty((len(y), nq))
    q[:, :2] = xy
    q[:, 2] = y[:, 0]
    q[:, 3:7] = rot6_to_quat(y[:, L["rot6"]])
    q[:, 7:] = y[:, L["joints"]]
    return q
