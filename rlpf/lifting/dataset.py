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


def training_clips(world: str, n: int, seed: int, frames: int, corrupt_fraction: float,
                   progress=None) -> list[Clip]:
    """``n`` simulated clips of ``world`` (make_dataset with ``seed``), ``corrupt_fraction`` of them corrupted."""
    from rlpf.data.corrupt import CORRUPTIONS as KINDS
    from rlpf.data.motion_data import make_dataset

    clips = make_dataset(world, n, seed=seed, frames=frames, workers=1, progress=progress)
    rng = np.random.default_rng([seed, 17])
    out = []
    for clip in clips:
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

