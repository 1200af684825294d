"""Evaluate a trained learned tracker against its own zero-residual PD baseline, and time the env.

    python experiments/tracker_eval.py runs/tracker-ant [--n 200] [--bench]

On the run's held-out clips (valid, never trained on) and on copies corrupted by levitation
(+0.5 m from 30 % of the clip on), skating (0.6 m/s) and teleporting (0.5 m), ``rlpf.data.corrupt``'s
defaults, it reports success (RLPF's rule:
no fall, no divergence, mean body error <= the world's threshold at every frame) and body errors for

  * the learned tracker (deterministic policy),
  * the same PD loop with the residual fixed at zero (targets = the next reference frame), which is
    what the policy starts from: the policy is worth its training only where it beats this, and
  * the PD + inverse-dynamics tracker (``--tracker pd``), the other tracker.

``--bench`` also times ``env.step`` (single env, random actions) and SB3's vectorized envs.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from rlpf.core.clips import load_clips
from rlpf.policies.learned_tracker import LearnedTracker, evaluate_tracker


class ZeroResidualTracker(LearnedTracker):
    """The learned tracker's PD loop with the policy's residual replaced by zero."""

    name = "zero-residual PD"

    def act(self, obs):
        return np.zeros_like(self.policy.action_low)


def bench(run_dir: str, seconds: float = 10.0) -> dict:
    from stable_baselines3.common.vec_env import VecNormalize

    from rlpf.envs.motion_tracking import MotionTrackingEnv
    from rlpf.policies.learned_tracker import load_library, make_vec_env

    tracker = LearnedTracker.load(run_dir)
    cfg = tracker.cfg
    clips = load_library(cfg)[:300]
    env = MotionTrackingEnv(cfg.world, clips=clips, **cfg.env_kwargs())
    env.reset(seed=0)
    out = {}
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        n += 1
        if term or trunc:
            env.reset()
    out["single_env_steps_per_s"] = n / (time.perf_counter() - t0)
    for kind, n_envs in (("dummy", 1), ("dummy", 2), ("subproc", 2), ("subproc", 4)):
        cfg.vec_env, cfg.n_envs = kind, n_envs
        venv = VecNormalize(make_vec_env(cfg, clips))
        venv.reset()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            venv.step(np.random.uniform(-1, 1, (n_envs, venv.action_space.shape[0])).astype(np.float32))
            n += n_envs
        out[f"{kind}_{n_envs}_steps_per_s"] = n / (time.perf_counter() - t0)
        venv.close()
    return {k: round(v) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="tracker run directory")
    p.add_argument("--n", type=int, default=200, help="held-out clips (default 200)")
    p.add_argument("--bench", action="store_true", help="also time the env and the vectorized envs")
    args = p.parse_args()
    heldout = load_clips(os.path.join(args.run, "heldout.npz"))[:args.n]
    report = {}
    from rlpf.policies.pd_tracker import PDTracker

    learned = LearnedTracker.load(args.run)
    for tracker in (learned, ZeroResidualTracker.load(args.run), PDTracker(learned.world)):
        t0 = time.perf_counter()
        report[tracker.name] = evaluate_tracker(tracker, heldout, corruptions=("levitate", "skate", "teleport"))
        report[tracker.name]["seconds"] = round(time.perf_counter() - t0, 1)
    if args.bench:
        report["bench"] = bench(args.run)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
