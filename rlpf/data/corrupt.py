"""Physical corruptions of clips: the artifacts video-trained generators make.

Each takes a clip and returns a corrupted copy; amounts are in metres, radians and seconds.
Used to test the scorer and, with ``web_artifacts``, to emulate a generator pretrained on imperfect video.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rlpf.core.clips import Clip
from rlpf.envs.worlds import compile_world


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
