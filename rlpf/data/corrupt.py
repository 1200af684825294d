"""Physical corruptions of clips: the artifacts video-trained generators make.

Each takes a clip and returns a corrupted copy; amounts are in metres, radians and seconds.
Used to test the scorer and, with ``web_artifacts``, to emulate a generator pretrained on imperfect video.
"""
from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from rlpf.core.clips import Clip
from rlpf.core.errors import RLPFError
from rlpf.envs.worlds import compile_world


class CorruptionError(RLPFError, ValueError):
    """A corruption asked of a clip whose world lacks what it moves (a free object, an articulation)."""


def _copy(clip: Clip, kind: str) -> Clip:
    return dataclasses.replace(clip, qpos=clip.qpos.copy(), cache={}, source=f"{clip.source}+{kind}")


def _root(clip: Clip) -> int:
    cw = compile_world(clip.world)
    if not cw.floating:
        raise ValueError(f"world {cw.name!r} has no floating root to move")
    return int(cw.model.jnt_qposadr[cw.model.dof_jntid[cw.root_dofs[0]]])


def float_up(clip: Clip, height: float = 0.1) -> Clip:
    """The whole motion shifted up: feet never reach the floor."""
    out = _copy(clip, f"float{height}")
    out.qpos[:, _root(clip) + 2] += height
    return out


def sink(clip: Clip, depth: float = 0.08) -> Clip:
    """The whole motion shifted down into the floor."""
    out = _copy(clip, f"sink{depth}")
    out.qpos[:, _root(clip) + 2] -= depth
    return out


def levitate(clip: Clip, height: float = 0.5, start: float = 0.3) -> Clip:
    """From ``start`` of the clip on, the body rises smoothly to ``height`` and stays there."""
    out = _copy(clip, f"levitate{height}")
    T = clip.n_frames
    s = np.clip((np.arange(T) / max(T - 1, 1) - start) / max(1 - start, 1e-6) * 2, 0, 1)
    out.qpos[:, _root(clip) + 2] += height * (3 * s ** 2 - 2 * s ** 3)
    return out


def skate(clip: Clip, speed: float = 0.6) -> Clip:
    """The whole body glides sideways at ``speed`` m/s on top of its own motion (feet slide)."""
    out = _copy(clip, f"skate{speed}")
    t = np.arange(clip.n_frames) / clip.fps
    out.qpos[:, _root(clip) + 1] += speed * t
    return out


def teleport(clip: Clip, distance: float = 0.5, at: float = 0.5) -> Clip:
    """At fraction ``at`` of the clip, the body jumps ``distance`` m sideways and stays there."""
    out = _copy(clip, f"teleport{distance}")
    k = int(at * clip.n_frames)
    out.qpos[k:, _root(clip)] += distance
    return out


def jitter(clip: Clip, sigma: float = 0.02, seed: int = 0) -> Clip:
    """Independent Gaussian noise on every coordinate of every frame (frame-level flicker)."""
    out = _copy(clip, f"jitter{sigma}")
    out.qpos += np.random.default_rng(seed).normal(0, sigma, out.qpos.shape)
    return out


def bend_joint(clip: Clip, excess: float = 0.5, joint: int | None = None) -> Clip:
    """One limited joint bent ``excess`` rad past its range for the middle half of the clip."""
    cw = compile_world(clip.world)
    m = cw.model
    j = int(cw.limited_joints[0] if joint is None else joint)
    out = _copy(clip, f"bend{excess}")
    T = clip.n_frames
    span = slice(T // 4, 3 * T // 4)
    out.qpos[span, m.jnt_qposadr[j]] = m.jnt_range[j, 1] + excess
    return out


def move_object(clip: Clip, distance: float = 0.3) -> Clip:
    """The first object slides ``distance`` m along its first dof over the clip, touched or not."""
    cw = compile_world(clip.world)
    if not len(cw.object_dofs):
        raise ValueError(f"world {cw.name!r} has no movable objects")
    m = cw.model
    out = _copy(clip, f"move_object{distance}")
    adr = m.jnt_qposadr[m.dof_jntid[cw.object_dofs[0]]]
    out.qpos[:, adr] += np.linspace(0, distance, clip.n_frames)
    return out


CORRUPTIONS = {
    "float": float_up, "sink": sink, "levitate": levitate, "skate": skate, "teleport": teleport,
    "jitter": jitter, "bend_joint": bend_joint, "move_object": move_object,
}


# --- object corruptions (manipulation worlds: World.objects free bodies, World.articulations) ------
# Each starts from a valid clip and changes only the object's (or articulation's) coordinates, the
# way a video generator gets objects wrong while the robot's motion stays plausible.


def _free_object(clip: Clip) -> int:
    """qpos address of the first free object's free joint."""
    cw = compile_world(clip.world)
    m = cw.model
    for b in cw.object_bodies:
        for j in range(m.body_jntadr[b], m.body_jntadr[b] + m.body_jntnum[b]):
            if m.jnt_type[j] == int(mujoco.mjtJoint.mjJNT_FREE):
                return int(m.jnt_qposadr[j])
    raise CorruptionError(f"world {cw.name!r} has no free object to move (World.objects)")


def _articulation(clip: Clip) -> tuple[int, float, float]:
    """(qpos address, range low, range high) of the first articulation."""
    cw = compile_world(clip.world)
    if not len(cw.articulation_joints):
        raise CorruptionError(f"world {cw.name!r} has no articulation to move (World.articulations)")
    j = int(cw.articulation_joints[0])
    lo, hi = cw.model.jnt_range[j] if cw.model.jnt_limited[j] else (-1.0, 1.0)
    return int(cw.articulation_qpos[0]), float(lo), float(hi)


def _smoothstep(clip: Clip, start: float, end: float) -> np.ndarray:
    """[T] 0 before fraction ``start`` of the clip, 1 after ``end``, a smooth (C1) ramp between."""
    u = np.arange(clip.n_frames) / max(clip.n_frames - 1, 1)
    s = np.clip((u - start) / max(end - start, 1e-6), 0.0, 1.0)
    return 3 * s ** 2 - 2 * s ** 3


def levitate_object(clip: Clip, height: float = 0.1, start: float = 0.2, end: float = 0.5) -> Clip:
    """The first free object rises ``height`` m between fractions ``start`` and ``end`` of the clip and stays up."""
    adr = _free_object(clip)
    out = _copy(clip, f"levitate_object{height}")
    out.qpos[:, adr + 2] += height * _smoothstep(clip, start, end)
    return out


def sink_object(clip: Clip, depth: float = 0.02) -> Clip:
    """The first free object lowered ``depth`` m throughout (resting on the table, it is inside it)."""
    adr = _free_object(clip)
    out = _copy(clip, f"sink_object{depth}")
    out.qpos[:, adr + 2] -= depth
    return out


def slide_object(clip: Clip, distance: float = 0.1, start: float = 0.0, end: float = 0.25) -> Clip:
    """The first free object slides ``distance`` m along x between fractions ``start`` and ``end``
    (in expert clips, before the hand reaches it) and keeps the offset."""
    adr = _free_object(clip)
    out = _copy(clip, f"slide_object{distance}")
    out.qpos[:, adr] += distance * _smoothstep(clip, start, end)
    return out


def teleport_object(clip: Clip, distance: float = 0.05, at: float = 0.5) -> Clip:
    """At fraction ``at`` the first free object jumps ``distance`` m along x and stays there; in a world
    with no free object, the first articulation jumps a quarter of its range instead."""
    k = int(at * clip.n_frames)
    try:
        adr = _free_object(clip)
        step = distance
    except CorruptionError:
        adr, lo, hi = _articulation(clip)
        q = float(clip.qpos[k, adr])
        step = 0.25 * (hi - lo) * (1.0 if hi - q > q - lo else -1.0)
    out = _copy(clip, f"teleport_object{distance}")
    out.qpos[k:, adr] += step
    return out


def move_articulation(clip: Clip, fraction: float = 0.5, start: float = 0.0, end: float = 0.3) -> Clip:
    """The first articulation moves ``fraction`` of its range on its own between fractions ``start``
    and ``end`` of the clip (toward the end with room: a drawer opening, a door swinging, a button
    sinking, while the hand is still on its way) and keeps the offset."""
    adr, lo, hi = _articulation(clip)
    q0 = float(clip.qpos[0, adr])
    amount = fraction * (hi - lo) * (1.0 if hi - q0 > q0 - lo else -1.0)
    out = _copy(clip, f"move_articulation{fraction}")
    out.qpos[:, adr] += amount * _smoothstep(clip, start, end)
    return out


def pass_through_gripper(clip: Clip, start: float = 0.3, end: float = 0.7) -> Clip:
    """The first free object is pulled onto the first finger pad (World.fingers) over fractions
    ``start``..``end`` (a smooth bump: there at the middle, back on its own path at the ends), so the
    finger passes through it."""
    adr = _free_object(clip)
    cw = compile_world(clip.world)
    if not len(cw.finger_geoms):
        raise CorruptionError(f"world {cw.name!r} declares no finger geoms (World.fingers)")
    m = cw.model
    d = mujoco.MjData(m)
    pad = np.empty((clip.n_frames, 3))
    for t in range(clip.n_frames):
        d.qpos[:] = clip.qpos[t]
        mujoco.mj_kinematics(m, d)
        pad[t] = d.geom_xpos[cw.finger_geoms[0]]
    u = np.arange(clip.n_frames) / max(clip.n_frames - 1, 1)
    w = np.clip(np.sin(np.pi * np.clip((u - start) / max(end - start, 1e-6), 0, 1)) * 2.0, 0.0, 1.0)
    out = _copy(clip, "pass_through_gripper")
    out.qpos[:, adr:adr + 3] = (1 - w)[:, None] * clip.qpos[:, adr:adr + 3] + w[:, None] * pad
    return out


OBJECT_CORRUPTIONS = {
    "levitate_object": levitate_object, "sink_object": sink_object, "slide_object": slide_object,
    "teleport_object": teleport_object, "move_articulation": move_articulation,
    "pass_through_gripper": pass_through_gripper,
}
"""The object corruptions, each with the physics term that must catch it in a manipulation world."""
CORRUPTIONS.update(OBJECT_CORRUPTIONS)
