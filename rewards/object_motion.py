"""Unexplained object motion: a movable object that speeds up or turns while nothing touches it."""
import numpy as np

from rlpf.rewards.analysis import analyze
from rlpf.rewards.registry import per_clip, register


@register("object_unexplained_mps", threshold=0.1, unit="m/s", physics=True, needs=("objects",))
@per_clip
def object_unexplained(clip, world):
    """Total velocity change of untouched objects that coasting cannot explain (m/s).

    Untouched, an object may keep the velocity its damping leaves it (decay exp(-dt * b / M)) or
    slow down by friction, down to rest; anything else - starting, speeding up, turning,
    teleporting - needed a push nothing gave.
    """
    if not len(world.object_dofs):
        return None
    ph = analyze(clip, world)
    m = world.model
    v = ph.vel_half[:, world.object_dofs]                              # [T-1, k]
    if len(v) < 2:
        return 0.0
    decay = np.exp(-ph.dt * m.dof_damping[world.object_dofs] / _dof_inertia(world))
    coast = v[:-1] * decay                                             # what the next interval may keep
    dv = v[1:] - coast
    # allowed: dv = -s * coast with s in [0, 1] (friction slows it, at most to rest)
    norm2 = np.sum(coast ** 2, axis=1)
    s = np.clip(-np.sum(dv * coast, axis=1) / np.maximum(norm2, 1e-12), 0.0, 1.0)
    unexplained = np.linalg.norm(dv + s[:, None] * coast, axis=1)
    free = ~(ph.object_touched[:-2] | ph.object_touched[1:-1] | ph.object_touched[2:])
    return float(unexplained[free].sum())


def _dof_inertia(world):
    key = "_object_inertia"
    if key not in world.__dict__:
        import mujoco

        m = world.model
        d = mujoco.MjData(m)
        mujoco.mj_forward(m, d)
        inertia = []
        for dof in world.object_dofs:  # diagonal of the mass matrix (armature included)
            e, out = np.zeros(m.nv), np.zeros(m.nv)
            e[dof] = 1.0
            mujoco.mj_mulM(m, d, out, e)
            inertia.append(out[dof])
        world.__dict__[key] = np.array(inertia)
    return world.__dict__[key]
