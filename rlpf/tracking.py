"""The tracker interface: replay clips in MuJoCo with a controller and report how well it followed.

A tracker turns reference clips into ``TrackResult``s. Physical feedback, as the RLPF paper defines
it, is whether a controller in a simulator can perform the motion: a clip fails when the simulated
body falls or its mean body-position error exceeds the world's threshold at any frame (PHC/UHC rule,
0.5 m for the humanoid; scaled per world in ``SUCCESS_THRESHOLD_M``).

Concrete trackers implement ``track_one``; ``track`` runs them over clips in parallel worker
processes (each worker builds its own tracker from ``spec()``), and a failure inside one clip's
simulation is a failed track for that clip, never an exception for the batch.
"""
from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rlpf.clips import Clip

SUCCESS_THRESHOLD_M = {"humanoid": 0.5}
"""Largest mean body-position error (m) at any frame for a successful track, per world.
Worlds not listed use DEFAULT_THRESHOLD_M; trackers may refine these (documented where set)."""
DEFAULT_THRESHOLD_M = 0.5


def success_threshold(world: str) -> float:
    return SUCCESS_THRESHOLD_M.get(world, DEFAULT_THRESHOLD_M)


@dataclass
class TrackResult:
    """What happened when one clip was tracked."""

    source: str
    qpos: np.ndarray
    """[T, nq] simulated qpos at the clip's frames (NaN after a divergence)."""
    body_error_m: np.ndarray
    """[T] mean over bodies of the distance between simulated and reference body positions."""
    torques: np.ndarray
    """[T, nu] actuator-space torques applied (or [T, 0] when not applicable)."""
    fell: bool
    diverged: bool
    threshold_m: float
    object_error_m: np.ndarray | None = None
    """[T] mean distance between simulated and reference object positions (worlds with objects)."""
    info: dict = field(default_factory=dict)

    @property
    def success(self) -> bool:
        err = self.body_error_m
        return bool(not self.fell and not self.diverged and np.isfinite(err).all() and err.max() <= self.threshold_m)

    @property
    def mean_error_m(self) -> float:
        err = self.body_error_m[np.isfinite(self.body_error_m)]
        return float(err.mean()) if err.size else float("inf")


class Tracker:
    """Base class: subclasses implement ``track_one(clip) -> TrackResult`` and ``spec()``."""

    name = "tracker"

    def spec(self) -> tuple:
        """(class, kwargs) that rebuild this tracker in a worker process."""
        raise NotImplementedError

    def track_one(self, clip: Clip) -> TrackResult:
        raise NotImplementedError

    def track(self, clips: Sequence[Clip], workers: int | None = None, progress=None) -> list[TrackResult]:
        """Track every clip (in ``workers`` processes; default: up to 2); results keep the clip order."""
        clips = list(clips)
        workers = min(workers or min(2, os.cpu_count() or 1), len(clips)) if clips else 1
        if workers <= 1:
            out = []
            for c in clips:
                out.append(self.track_one(c))
                if progress:
                    progress(1)
            return out
        ctx = multiprocessing.get_context("spawn" if os.name == "nt" else "fork")
        cls, kwargs = self.spec()
        with ctx.Pool(workers, initializer=_init_worker, initargs=(cls, kwargs)) as pool:
            out = []
            for r in pool.imap(_track_in_worker, clips, chunksize=max(1, len(clips) // (4 * workers))):
                out.append(r)
                if progress:
                    progress(1)
            return out


_WORKER_TRACKER: Tracker | None = None


def _init_worker(cls, kwargs) -> None:
    global _WORKER_TRACKER
    import torch

    torch.set_num_threads(1)  # processes are the parallelism; threads inside them only contend
    _WORKER_TRACKER = cls(**kwargs)


def _track_in_worker(clip: Clip) -> TrackResult:
    assert _WORKER_TRACKER is not None
    return _WORKER_TRACKER.track_one(clip)
