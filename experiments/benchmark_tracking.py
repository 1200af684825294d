"""PD tracking speed beside raw mj_step, measured in one run on one core.

    python experiments/benchmark_tracking.py [--world ant] [--clips 40] [--frames 64] [--repeats 3]

Tracks N valid clips serially (one process, one thread) with the world's PDTracker and prints the
simulated seconds per wall second (x real time) of the whole ``track_one`` (reference smoothing and
inverse dynamics, the PD rollout, body errors), the raw ``mj_step`` rate of the same model as x real
time, and their ratio. Target for the ant: >= 20x real time. Best of ``--repeats`` timings (the box
is shared and noisy).
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from rlpf.envs.worlds import compile_world  # noqa: E402
from rlpf.policies.pd_tracker import PDTracker  # noqa: E402
from rlpf.policies.scripted import SmoothRandom  # noqa: E402
from rlpf.data.simulate import simulate  # noqa: E402

from benchmark_scoring import mj_step_rate  # noqa: E402  (this folder is on sys.path when run as a script)


def clips_for(world, n, frames, seed=2000):
    if world in ("ant", "pusher"):
        from rlpf.data.motion_data import make_dataset

        return make_dataset(world, n, seed=seed, frames=frames, workers=1)
    return [simulate(world, SmoothRandom(0.5), frames, seed=seed + i) for i in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="ant")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cw = compile_world(args.world)
    h = cw.model.opt.timestep
    clips = clips_for(args.world, args.clips, args.frames)
    tracker = PDTracker(args.world)
    sim_seconds = sum(c.duration for c in clips)
    tracker.track_one(clips[0])  # warm caches (inverse model, allocations)

    best = np.inf
    for _ in range(args.repeats):
        for c in clips:
            c.cache.clear()
        t0 = time.perf_counter()
        results = tracker.track(clips, workers=1)
        best = min(best, time.perf_counter() - t0)
    raw = mj_step_rate(cw)
    rt_track = sim_seconds / best
    rt_raw = raw * h
    ok = np.mean([r.success for r in results])
    print(f"world {args.world}: {len(clips)} clips x {args.frames} frames = {sim_seconds:.1f} s simulated "
          f"({sim_seconds / h:,.0f} steps of {h * 1000:g} ms, {mujoco.mjtIntegrator(cw.model.opt.integrator).name[6:]}); tracked {ok:.0%}")
    print(f"PD tracking   : {best:.2f} s wall -> {rt_track:7.1f}x real time  ({sim_seconds / h / best:,.0f} steps/s)")
    print(f"raw mj_step   : {raw:,.0f} steps/s -> {rt_raw:7.1f}x real time")
    target = f" (ant target >= 20x real time: {'met' if rt_track >= 20 else 'NOT met'})" if args.world == "ant" else ""
    print(f"ratio         : tracking runs at {rt_track / rt_raw:.2f}x the raw stepping rate{target}")


if __name__ == "__main__":
    main()
