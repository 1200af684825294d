"""Tracking reward terms: can a controller in MuJoCo perform the clip? (RLPF's physical feedback)

Every term reads one tracking pass per clip and tracker (``rlpf.judge.tracking.track_clips`` caches it in
``clip.cache``), so asking for all three simulates each clip once. Context keywords:

* ``tracker``: a ``rlpf.judge.tracking.Tracker``, or a name for ``load_tracker`` (``"pd"``, ``"learned"``,
  a run directory); default: a ``PDTracker`` for the world (one per world and process);
* ``tracker_workers``: processes for the tracking pass (default: up to 2).

They are not physics terms (``physics=False``): the default ``rlpf score`` does not run them;
``rlpf score --tracker pd`` or ``weights.tracking_success=W`` does.
"""
from __future__ import annotations

import numpy as np

from rlpf.rewards.registry import register
from rlpf.judge.tracking import Tracker, TrackResult, load_tracker, track_clips

OBJECT_DIVERGENCE_M = 0.05
"""m: an object the tracked arm leaves this far from where the clip puts it (one Pusher-v5 object
radius) moved in a way the arm's contact did not cause. Valid pushes diverge < 1 mm."""

_TRACKERS: dict[tuple, Tracker] = {}


def tracker_for(world, tracker=None) -> Tracker:
    """The tracker to use for ``world``: the given one, one made by name, or the world's default PD tracker."""
    from rlpf.envs.worlds import CompiledWorld, compile_world

    cw = world if isinstance(world, CompiledWorld) else compile_world(world)
    if isinstance(tracker, Tracker):
        own = getattr(tracker, "cw", None)
        if own is not None and getattr(own, "name", cw.name) != cw.name:
            raise ValueError(f"the tracker is for world {own.name!r} but the clips are of world {cw.name!r}")
        return tracker
    key = (tracker or "pd", cw.world)
    if key not in _TRACKERS:
        _TRACKERS[key] = load_tracker(tracker or "pd", cw)
    return _TRACKERS[key]


def tracked(clips, world, tracker=None, tracker_workers=None) -> list[TrackResult]:
    """Each clip's TrackResult under the context's tracker (one shared, cached pass)."""
    return track_clips(clips, tracker_for(world, tracker), workers=tracker_workers)


@register("tracking_success", threshold=None, unit="1 = tracked")
def tracking_success(clips, *, world, tracker=None, tracker_workers=None, **_):
    """1.0 when the tracker follows the clip (no fall, no divergence, body error within the world's threshold at every frame), else 0.0."""
    return [1.0 if r.success else 0.0 for r in tracked(clips, world, tracker, tracker_workers)]


@register("tracking_error_m", threshold=None, unit="m")
def tracking_error_m(clips, *, world, tracker=None, tracker_workers=None, **_):
    """Mean over frames of the mean body-position error between the tracked simulation and the clip (None if it diverged)."""
    return [None if r.diverged or not np.isfinite(r.mean_error_m) else r.mean_error_m
            for r in tracked(clips, world, tracker, tracker_workers)]


@register("object_divergence_m", threshold=OBJECT_DIVERGENCE_M, unit="m")
def object_divergence_m(clips, *, world, tracker=None, tracker_workers=None, **_):
    """Largest distance at any frame between the clip's objects and the objects the tracked arm moves in simulation (worlds with objects)."""
    from rlpf.envs.worlds import CompiledWorld, compile_world

    cw = world if isinstance(world, CompiledWorld) else compile_world(world)
    if not len(cw.object_bodies):
        return [None] * len(clips)
    out = []
    for r in tracked(clips, cw, tracker, tracker_workers):
        err = r.object_error_m
        if err is None or r.diverged or not np.isfinite(err).any():
            out.append(None)
        else:
            out.append(float(np.nanmax(err)))
    return out
