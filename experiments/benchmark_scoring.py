"""Scoring throughput beside raw mj_step, measured in one run on one core.

    python experiments/benchmark_scoring.py [--world ant] [--clips 20] [--frames 200]

Prints clip-frames per second for the whole physics pass, for the residual-root-force term on its
own (inverse dynamics + contact fit), and the raw mj_step rate of the same model, with ratios.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from rlpf.envs.worlds import compile_world  # noqa: E402
from rlpf.policies.scripted import SmoothRandom  # noqa: E402
from rlpf.rewards import evaluate_rewards, physics_terms  # noqa: E402
from rlpf.rewards.analysis import analyze, contact_solution  # noqa: E402
from rlpf.data.simulate import simulate  # noqa: E402


def mj_step_rate(cw, seconds=2.0):
    m = cw.model
    d = mujoco.MjData(m)
    mujoco.mj_resetData(m, d)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(1000):
            d.ctrl[:] = 0.3 * np.sin(n * 0.01)
            mujoco.mj_step(m, d)
        n += 1000
        if d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number:
            mujoco.mj_resetData(m, d)
    return n / (time.perf_counter() - t0)


def fresh(clips):
    for c in clips:
        c.cache.clear()
    return clips


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="ant")
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    cw = compile_world(args.world)
    clips = [simulate(args.world, SmoothRandom(0.6), args.frames, seed=s) for s in range(args.clips)]
    frames = args.clips * args.frames
    weights = {k: 1.0 for k in physics_terms()}
    evaluate_rewards(fresh(clips[:1]), weights, world=cw)  # warm-up: model copies, imports

    t0 = time.perf_counter()
    for c in fresh(clips):
        contact_solution(c, cw)
    root_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for c in fresh(clips):
        analyze(c, cw)
    pass_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    evaluate_rewards(fresh(clips), weights, world=cw)
    all_s = time.perf_counter() - t0

    step = mj_step_rate(cw)
    print(f"world {args.world}: {args.clips} clips x {args.frames} frames = {frames} clip-frames at {cw.world.fps:.1f} fps")
    print(f"  raw mj_step                      {step:10.0f} steps/s")
    print(f"  kinematics + inverse dynamics    {frames / pass_s:10.0f} frames/s  ({frames / pass_s / step:.2f}x mj_step)")
    print(f"  residual root force (ID + fit)   {frames / root_s:10.0f} frames/s  ({frames / root_s / step:.2f}x mj_step)")
    print(f"  all physics terms                {frames / all_s:10.0f} frames/s  ({frames / all_s / step:.2f}x mj_step)")


if __name__ == "__main__":
    main()
