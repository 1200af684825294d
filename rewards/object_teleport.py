"""Object teleport: a velocity jump between two frames that no contact could give.

In one frame interval, gravity (or, for an articulation, its own spring, damper and weight) changes an
object's velocity by its acceleration x dt. A contact can add at most what a collision or a push
gives: restitution e <= 1 means the object's velocity relative to what strikes it cannot grow, so
the jump is at most 2 |v_before - v_toucher| (the robot's and the table's masses are effectively
infinite; the table's velocity is 0), and a push that carries the object along brings it at most to
the toucher's velocity, |v_toucher_after - v_before|. A joint limit stops an articulation like a
static wall (2 |v_before|); its damper can only brake it (to rest at most). Only touchers within ``object_analysis.CONTACT_BAND`` count. The excess
jump times dt is the displacement (m) off any path physics allows, read on the raw frames (smoothing
would spread a jump over three).
"""
import mujoco
import numpy as np

from rlpf.rewards.analysis import differentiate_pos
from rlpf.rewards.object_analysis import _geometry_model, near, object_geometry
from rlpf.rewards.registry import per_clip, register

THRESHOLD = 0.01
"""m: one frame's displacement off a physical path. Frame-level noise of sigma moves a second
difference by ~sqrt(6) sigma (2.5 mm at 1 mm noise); valid simulated clips measure ~0; a 1 cm
jump is a teleport at any frame rate."""


@register("object_teleport_m", threshold=THRESHOLD, unit="m", physics=True, needs=("objects|articulations",))
@per_clip
def object_teleport(clip, world):
    """Largest one-frame jump of a free object or articulation beyond what gravity and contacts allow (m)."""
    if not len(world.object_bodies) and not len(world.articulation_joints):
        return None
    geo = object_geometry(clip, world)
    T = len(geo.qpos)
    if T < 3:
        return 0.0
    dt = geo.dt
    m = world.model
    worst = 0.0
    k = np.arange(1, T - 1)                                               # frames between two intervals
    for o in range(len(world.object_bodies)):
        v = np.diff(geo.obj_pos[:, o], axis=0) / dt                      # [T-1, 3] raw interval velocities
        before, after = v[:-1], v[1:]
        robot = near(geo.obj_robot[:, o][:, None], window=1)[:, 0][k]
        static = near(np.minimum(geo.obj_support[:, o], geo.obj_other[:, o])[:, None], window=1)[:, 0][k]
        vt_b, vt_a = geo.obj_robot_vel[k - 1, o], geo.obj_robot_vel[np.minimum(k + 1, T - 1), o]
        allowed = float(np.linalg.norm(m.opt.gravity)) * dt + np.maximum.reduce([
            robot * 2.0 * np.linalg.norm(before - vt_b, axis=1),
            robot * np.linalg.norm(vt_a - before, axis=1),
            static * 2.0 * np.linalg.norm(before, axis=1),
        ])
        jump = np.linalg.norm(after - before, axis=1)
        worst = max(worst, float(np.maximum(jump - allowed, 0.0).max() * dt))
    raw = np.asarray(clip.qpos, float)
    own_frc = _own_force(world, raw, dt) if len(world.articulation_joints) else None
    for a in range(len(world.articulation_joints)):
        j, dof, adr = int(world.articulation_joints[a]), int(world.articulation_dofs[a]), int(world.articulation_qpos[a])
        v = np.diff(raw[:, adr]) / dt                                     # joint units / s
        before, after = v[:-1], v[1:]
        robot = near(np.minimum(geo.art_robot[:, a], geo.art_object[:, a])[:, None], window=1)[:, 0][k]
        vt_b, vt_a = geo.art_robot_qvel[k - 1, a], geo.art_robot_qvel[np.minimum(k + 1, T - 1), a]
        # the joint's own forces over one frame, at the state before the jump: spring and gravity as
        # they are; the damper only brakes, so it can take away at most the velocity there was
        damping = m.dof_damping[dof] * before
        rest = np.abs(own_frc[:, dof] + damping) / geo.art_inertia[a] * dt
        own = rest + np.minimum(np.abs(damping) / geo.art_inertia[a] * dt, np.abs(before))
        stop = np.zeros(len(k), bool)
        if m.jnt_limited[j]:
            lo, hi = m.jnt_range[j]
            q = raw[:, adr]
            at = (q < lo + 0.005) | (q > hi - 0.005)   # 5 mm / 5 mrad, articulation_motion.LIMIT_MARGIN
            stop = at[k - 1] | at[k] | at[k + 1]
        allowed = own + np.maximum.reduce([
            robot * 2.0 * np.abs(before - vt_b), robot * np.abs(vt_a - before), stop * 2.0 * np.abs(before)])
        excess = np.maximum(np.abs(after - before) - allowed, 0.0) * dt * geo.art_lever[a]   # m at the moved part
        worst = max(worst, float(excess.max()))
    return worst


def _own_force(world, raw, dt):
    """[T-2, nv] force of each dof's own spring, damper and gravity (N or N m) at frames 1..T-2, from
    the raw position there and the velocity of the interval before (so a jump does not inflate its damping)."""
    mi = _geometry_model(world)
    d = mujoco.MjData(mi)
    v = differentiate_pos(world.model, raw[:-1], raw[1:], dt)
    out = np.empty((len(raw) - 2, world.model.nv))
    for i, t in enumerate(range(1, len(raw) - 1)):
        d.qpos[:], d.qvel[:], d.qacc[:] = raw[t], v[t - 1], 0.0
        mujoco.mj_inverse(mi, d)
        out[i] = -d.qfrc_inverse      # qfrc_inverse at zero acceleration = bias - passive
    return out
