"""The pose network's training data: rlpf's own simulated clips rendered under the video contract.

Clips come from the world's labelled data generator (``rlpf.data.motion_data.make_dataset``: valid,
simulated motion); a fraction is corrupted (``rlpf.data.corrupt``: floating, sinking, levitating,
skating, teleporting, at random amounts) so the network sees bodies off the floor, in it and jumping.
Each clip is rendered with its own domain-randomization draw inside the contract (lighting, a small
camera jitter, floor colours: ``rlpf.viz.contract.Randomization``), written and read back as the mp4
``rlpf render`` writes (H.264 included), resized to the network's input and stored with its targets.
"""
from __future__ import annotations

import tempfile

import numpy as np

from rlpf.core.clips import Clip
from rlpf.lifting.frames import mp4_roundtrip, resize
from rlpf.lifting.targets import encode

CORRUPTIONS = {
    "float": lambda rng: {"height": rng.uniform(0.03, 0.2)},
    "sink": lambda rng: {"depth": rng.uniform(0.03, 0.12)},
    "levitate": lambda rng: {"height": rng.uniform(0.1, 0.5), "start": rng.uniform(0.1, 0.6)},
    "skate": lambda rng: {"speed": rng.uniform(0.2, 1.0) * rng.choice([-1, 1])},
    "teleport": lambda rng: {"distance": rng.uniform(0.2, 0.55) * rng.choice([-1, 1]), "at": rng.uniform(0.2, 0.8)},
}
"""Corruption kind -> its random amounts (rlpf.data.corrupt's parameters)."""


def turned(clip: Clip, yaw: float, offset) -> Clip:
    """The clip turned by ``yaw`` about the vertical through the origin and moved by ``offset`` (x, y):
    a symmetry of the flat floor, so the motion stays as physical as it was."""
    import dataclasses

    from rlpf.worldmodel.features import quat_mul, yaw_quat

    q = np.array(clip.qpos, np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    x, y = q[:, 0].copy(), q[:, 1].copy()
    q[:, 0], q[:, 1] = c * x - s * y + offset[0], s * x + c * y + offset[1]
    q[:, 3:7] = quat_mul(yaw_quat(np.full(len(q), yaw)), q[:, 3:7])
    return dataclasses.replace(clip, qpos=q, cache={})


def reset_clips(world: str, n: int, seed: int, frames: int, dynamics: bool = True) -> list[Clip]:
    """``n`` clips simulated from the world's reset without a warm-up, by scripted controllers in
    turn (``AntGait``, ``SmoothRandom`` from uniform to smoothed actions, ``JointServo`` to targets
    anywhere in the joint ranges, and ``JointServo`` holding the rest pose): the poses a gym recording from reset holds (legs flat at
    the reset, the drop onto them, random actions, servoed poses) that the labelled gaits never reach.
    ``dynamics``: each clip under its own contact model, friction and masses
    (``rlpf.data.dynamics.randomized_model``), so feet sit in the floor as other contact models let them."""
    from rlpf.data.dynamics import randomized_model
    from rlpf.data.simulate import simulate
    from rlpf.envs.worlds import compile_world
    from rlpf.policies.scripted import AntGait, JointServo, SmoothRandom

    rng = np.random.default_rng([seed, 29])
    # random actions from uniform (smoothing 0) to an Ornstein-Uhlenbeck walk, and servo targets over
    # the whole joint ranges: a gym recording under random actions spends most frames with its joints
    # at a limit (Ant-v5, smoothed actions: 64 % of joint values within 3 degrees of one), which the
    # labelled gaits (13 %) rarely reach
    makers = (AntGait,
              lambda: SmoothRandom(scale=float(rng.uniform(0.3, 1.0)), smoothing=float(rng.uniform(0.0, 0.9))),
              lambda: JointServo(spread=(0.05, 1.0)),
              lambda: JointServo(spread=(0.0, 0.05), hold=(0.5, 2.0)))
    out = []
    for i in range(n):
        ctrl = makers[i % len(makers)]()
        model = randomized_model(compile_world(world).model, rng)[0] if dynamics else None
        try:
            out.append(simulate(world, ctrl, frames, seed=int(rng.integers(2**31)), model=model))
        except RuntimeError:   # a diverged simulation: skipped
            continue
    return out


def training_clips(world: str, n: int, seed: int, frames: int, corrupt_fraction: float,
                   progress=None, reset_fraction: float = 0.0) -> list[Clip]:
    """``n`` simulated clips of ``world``: ``reset_fraction`` of them from the reset (``reset_clips``),
    the rest labelled data (make_dataset with ``seed``); each turned to a random heading and floor
    offset (``turned``), then ``corrupt_fraction`` of them corrupted."""
    from rlpf.data.corrupt import CORRUPTIONS as KINDS
    from rlpf.data.motion_data import make_dataset

    n_reset = round(reset_fraction * n)
    clips = make_dataset(world, n - n_reset, seed=seed, frames=frames, workers=1, progress=progress)
    clips += reset_clips(world, n_reset, seed, frames)
    rng = np.random.default_rng([seed, 17])
    out = []
    for clip in clips:
        clip = turned(clip, rng.uniform(-np.pi, np.pi), rng.uniform(0, 1.34, 2))
        if rng.random() < corrupt_fraction:
            kind = str(rng.choice(sorted(CORRUPTIONS)))
            clip = KINDS[kind](clip, **CORRUPTIONS[kind](rng))
        out.append(clip)
    return out


def render_dataset(clips: list[Clip], contract, input_size: int, seed: int, randomize=None,
                   progress=None) -> dict:
    """{"frames": uint8 [N, T, S, S, 3], "targets": float32 [N, T, D], "sources": [N]} of clips of one world and length."""
    from rlpf.viz.contract import Randomization

    dr = randomize or Randomization()
    rng = np.random.default_rng([seed, 23])
    r = contract.renderer()
    frames, targets = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="rlpf-pose-") as tmp:
            for clip in clips:
                dr.apply(r, contract, rng)
                video = mp4_roundtrip(r.frames(clip.qpos), clip.fps, tmp)
                frames.append(resize(video, input_size))
                targets.append(encode(clip.qpos).astype(np.float32))
                if progress:
                    progress(1)
    finally:
        r.close()
    return {"frames": np.stack(frames), "targets": np.stack(targets), "sources": np.array([c.source for c in clips])}

