"""Cross-simulator tracking: the same clips tracked in MuJoCo (``--tracker pd``) and in Bullet (``--tracker bullet``).

    python experiments/cross_simulator.py [--n 20] [--seed 3000] [--worlds ant humanoid] [--workers 2]
    python experiments/cross_simulator.py --no-simulated --clips base=RUN/samples/base.npz rlpf=RUN/samples/rlpf.npz

Simulated groups (per world, seeds from ``--seed``; the tests use < 100, tracking_separation 1000+):

* ant ``valid (CPG gaits)``: ``rlpf.data.motion_data.make_dataset`` - the world model's training data,
  PD-driven CPG gaits, 64 frames at 20 fps; ``valid (AntGait)``: the open-loop CPG controller through
  ``rlpf.data.simulate``, 80 frames (chaotic gaits: see tracking_separation.py --limits);
* humanoid ``valid (SmoothRandom)``: ``simulate(SmoothRandom(0.5), 200 frames)`` (3 s at 67 fps: it
  topples from its reset pose, then moves its limbs on the floor);
* each corruption of ``rlpf.data.corrupt`` at its default amount applied to the first valid group:
  float +10 cm, levitate to +50 cm, skate 0.6 m/s, teleport 0.5 m.

``--clips LABEL=PATH ...``: clip files or directories (``.npz``, e.g. a run's samples) tracked as extra
groups in the world each clip names (``--world`` overrides it); ``--no-simulated`` skips
the simulated groups.

Prints a table per world and group - clips, success in MuJoCo and in Bullet, agreement (same verdict),
the disagreements each way, and seconds per clip of each tracker (this machine, ``--workers``
processes) - then every disagreeing clip with each tracker's outcome: tracked (worst-frame error),
fell (at which frame, root drop), the error over the threshold (how much, at which frame) or diverged.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rlpf.core.clips import load_by_world  # noqa: E402
from rlpf.data import corrupt  # noqa: E402
from rlpf.data.motion_data import make_dataset  # noqa: E402
from rlpf.data.simulate import simulate  # noqa: E402
from rlpf.judge.tracking import agreement, load_tracker  # noqa: E402
from rlpf.policies.scripted import AntGait, SmoothRandom  # noqa: E402

TRACKERS = ("pd", "bullet")
CORRUPTIONS = ("float", "levitate", "skate", "teleport")


def simulated_groups(world: str, n: int, seed: int) -> dict:
    if world == "ant":
        valid = make_dataset("ant", n, seed=seed, frames=64, workers=1)
        groups = {"valid (CPG gaits)": valid,
                  "valid (AntGait)": [simulate("ant", AntGait(), 80, seed=seed + i) for i in range(n)]}
    elif world == "humanoid":
        valid = [simulate("humanoid", SmoothRandom(0.5), 200, seed=seed + i) for i in range(n)]
        groups = {"valid (SmoothRandom)": valid}
    else:
        raise SystemExit(f"no simulated clips for world {world!r}: use --clips")
    groups.update({k: [corrupt.CORRUPTIONS[k](c) for c in valid] for k in CORRUPTIONS})
    return groups


def outcome(r) -> str:
    """Why a track succeeded or failed, in a few words."""
    err = r.body_error_m
    if r.diverged:
        return f"diverged ({r.info.get('why', '?')})"
    worst = float(np.nanmax(err)) if np.isfinite(err).any() else float("nan")
    k = int(np.nanargmax(err)) if np.isfinite(err).any() else -1
    if r.fell:
        return f"fell (root {r.info.get('root_drop_m', float('nan')):.2f} m below the reference; worst error {worst:.2f} m)"
    if not r.success:
        return f"error {worst:.2f} m > {r.threshold_m:.2f} at frame {k}"
    return f"tracked (worst error {worst:.2f} m)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="valid clips per simulated group (default 20)")
    ap.add_argument("--seed", type=int, default=3000, help="first seed (default 3000)")
    ap.add_argument("--worlds", nargs="+", default=["ant", "humanoid"])
    ap.add_argument("--clips", nargs="+", default=[], metavar="LABEL=PATH",
                    help="clip files or directories to track as extra groups (e.g. a run's samples)")
    ap.add_argument("--world", default=None, help="world of the --clips (default: the one each file names)")
    ap.add_argument("--no-simulated", action="store_true", help="only the --clips groups")
    ap.add_argument("--workers", type=int, default=None, help="tracking processes (default min(2, CPUs))")
    args = ap.parse_args()

    groups: dict[str, dict] = {}
    if not args.no_simulated:
        for world in args.worlds:
            groups[world] = simulated_groups(world, args.n, args.seed)
    for spec in args.clips:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = os.path.basename(os.path.normpath(spec)), spec
        by_world, problems = load_by_world([path], args.world)
        for p in problems:
            print(f"skipped {p['source']}: {p['error']}", file=sys.stderr)
        for world, clips in by_world.items():
            groups.setdefault(world, {})[label] = clips

    print(f"trackers {' vs '.join(TRACKERS)} (MuJoCo vs PyBullet); simulated seeds from {args.seed}\n")
    print("| world | group | clips | MuJoCo (pd) | Bullet | agreement | only MuJoCo | only Bullet | s/clip pd | s/clip bullet |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    disagreements = []
    for world, by_group in groups.items():
        trackers = {name: load_tracker(name, world) for name in TRACKERS}
        for group, clips in by_group.items():
            results, secs = {}, {}
            for name, tr in trackers.items():
                t0 = time.perf_counter()
                results[name] = tr.track(clips, workers=args.workers)
                secs[name] = (time.perf_counter() - t0) / max(len(clips), 1)
            ok = {name: [r.success for r in rs] for name, rs in results.items()}
            pair = agreement(ok)[f"{TRACKERS[0]} vs {TRACKERS[1]}"]
            print(f"| {world} | {group} | {len(clips)} | {np.mean(ok['pd']):.0%} | {np.mean(ok['bullet']):.0%} | "
                  f"{pair['rate']:.0%} | {pair['only_pd']} | {pair['only_bullet']} | {secs['pd']:.2f} | "
                  f"{secs['bullet']:.2f} |", flush=True)
            for i, clip in enumerate(clips):
                if ok["pd"][i] != ok["bullet"][i]:
                    disagreements.append((world, group, clip.source, outcome(results["pd"][i]),
                                          outcome(results["bullet"][i])))
    if disagreements:
        print(f"\n{len(disagreements)} disagreements:\n")
        print("| world | group | clip | MuJoCo (pd) | Bullet |")
        print("|---|---|---|---|---|")
        for row in disagreements:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
