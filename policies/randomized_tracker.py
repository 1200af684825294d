"""A tracker whose success must hold under several physics: the PD tracker on randomized plants.

A clip tracked only in the MJCF's nominal contact model may lean on that model's details (a foot's
traction at exactly μ = 1, contacts of exactly 20 ms): such motion passes ``--tracker pd`` and fails
in another simulator (README, "Cross-simulator": the RLPF-aligned ant's clips that MuJoCo tracks and
PyBullet does not drift 0.3-0.5 m by their last frames, their feet losing traction). Real motion,
and motion meant to be replayed on a real robot, has to survive physics the judge does not know
exactly. ``--tracker pd-randomized`` replays each clip with the same PD + inverse-dynamics controller
(its feedforward and gains from the world's own model, as a controller tuned on one simulator
runs on another) on ``draws`` plants drawn once from ``rlpf.data.dynamics.DynamicsRandomization``
(contact time constant and damping, friction, per-body masses), and a clip succeeds only when every
draw tracks it (the worst draw is the result; ``info["draw_success"]`` lists each). The draws are
fixed by ``seed`` when the tracker is built, so every clip meets the same physics and a worker
process rebuilds the same draws.

Used as RLPF's reward it asks the generator for motion that is possible under a range of physics,
not one: the same robustness a sim-to-real policy buys with domain randomization. Cost: ``draws``
PD rollouts per clip.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rlpf.core.clips import Clip
from rlpf.data.dynamics import DynamicsRandomization, randomized_model
from rlpf.envs.worlds import World, compile_world, portable_world
from rlpf.judge.tracking import Tracker, TrackerError, TrackResult

DEFAULT_RANGES = DynamicsRandomization(friction_scale=(0.5, 1.0), timestep_divisor=(1, 1))
"""The default plants: contacts and masses as rlpf.data.dynamics draws them, friction between half the
MJCF's and the MJCF's (a motion that holds at higher friction than the nominal is not made harder by
more of it), the MJCF's timestep (the PD loop is tuned for it; finer steps only cost time)."""


class RandomizedTracker(Tracker):
    """PD + inverse dynamics on ``draws`` randomized plants; success only when every draw succeeds."""

    name = "pd-randomized"

    def __init__(self, world: str | World, draws: int = 4, seed: int = 0, ranges: DynamicsRandomization | dict | None = None):
        from rlpf.policies.pd_tracker import PDTracker

        if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or not 1 <= int(draws) <= 64:
            raise TrackerError(f"pd-randomized: draws must be a whole number 1-64, got {draws!r}")
        if isinstance(ranges, dict):
            try:
                ranges = DynamicsRandomization(**{k: tuple(v) for k, v in ranges.items()})
            except (TypeError, ValueError) as e:
                raise TrackerError(f"pd-randomized: bad ranges {ranges!r}: {e}") from None
        self.world, self.draws, self.seed = world, int(draws), int(seed)
        self.ranges = ranges or DEFAULT_RANGES
        self._spec_world = portable_world(world)
        cw = compile_world(world)
        rng = np.random.default_rng(self.seed)
        self._trackers, self.dynamics = [], []
        for _ in range(self.draws):
            plant, drawn = randomized_model(cw.model, rng, self.ranges)
            t = PDTracker(world)
            t.set_plant(plant)
            self._trackers.append(t)
            self.dynamics.append(drawn)
        self.threshold_m = self._trackers[0].threshold_m

    def spec(self) -> tuple:
        return RandomizedTracker, {"world": self._spec_world, "draws": self.draws, "seed": self.seed,
                                   "ranges": dataclasses.asdict(self.ranges)}

    def __repr__(self) -> str:
        return f"RandomizedTracker({compile_world(self.world).name!r}, draws={self.draws}, seed={self.seed})"

    def track_one(self, clip: Clip) -> TrackResult:
        results = [t.track_one(clip) for t in self._trackers]
        # the worst draw: a failed one first, then the largest body error (NaN after a divergence: inf)
        worst = max(range(len(results)), key=lambda i: (not results[i].success, _peak(results[i].body_error_m)))
        w = results[worst]
        body_error = np.stack([r.body_error_m for r in results]).max(axis=0)   # NaN (a diverged draw) propagates
        info = dict(w.info, tracker=self.name, worst_draw=int(worst),
                    draw_success=[bool(r.success) for r in results],
                    wall_seconds=float(sum(r.info.get("wall_seconds", 0.0) for r in results)))
        return dataclasses.replace(w, body_error_m=body_error, fell=any(r.fell for r in results),
                                   diverged=any(r.diverged for r in results), info=info)


def _peak(err: np.ndarray) -> float:
    return float(np.inf) if not np.isfinite(err).all() else float(err.max())
