"""Does tracking success separate physically valid clips from corrupted ones? (PD tracker by default)

    python experiments/tracking_separation.py [--n 40] [--seed 1000] [--worlds ant humanoid pusher]
                                              [--tracker pd] [--workers 2] [--limits]

For each world, makes N valid clips (seeds not used by the tests): ant from ``make_dataset`` (the
world model's PD-driven CPG gaits, 64 frames at 20 fps), humanoid from ``simulate(SmoothRandom(0.5),
200 frames)`` (3 s at 67 fps: it topples from its reset pose within ~1 s, then moves its limbs on
the floor), pusher from ``make_dataset`` (directed pushes). Each corruption of ``rlpf.data.corrupt`` at its default amount (float
+10 cm, sink -8 cm, levitate to +50 cm, skate 0.6 m/s, teleport 0.5 m; pusher: object slid 30 cm
untouched, a joint 0.5 rad past its limit) is applied to every clip, and each group is tracked.

Prints, per world and group: tracking success rate, fell / diverged rates, and the median and
largest worst-frame body error (and, with objects, the object divergence). Wanted: valid >= 95 %,
levitate / skate / teleport <= 20 %; small float / sink may pass (the kinematic terms catch them).
``--limits`` adds the clips the PD tracker is known to find hard (see the printed notes).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rlpf.data import corrupt  # noqa: E402
from rlpf.data.motion_data import make_dataset  # noqa: E402
from rlpf.policies.scripted import AntGait, SmoothRandom  # noqa: E402
from rlpf.data.simulate import simulate  # noqa: E402
from rlpf.judge.tracking import load_tracker  # noqa: E402

KINDS = {
    "ant": ["float", "sink", "levitate", "skate", "teleport"],
    "humanoid": ["float", "sink", "levitate", "skate", "teleport"],
    "pusher": ["move_object", "bend_joint"],
}


HUMANOID_FRAMES = 200
"""3 s. Shorter humanoid clips are mostly the topple from the reset pose, and a body in a fall keeps the
sideways momentum a skating clip's first frames give it (the tracker starts at the reference's
velocity), so a 0.6 m/s skate over 1.5 s is largely physically possible: 100-frame clips measured 25 %
skate success, the sideways drift of the simulated body 0.5-1.4 m. Over 3 s the body lies in contact
with the floor for 2 s, where friction stops any glide."""


def valid_clips(world: str, n: int, seed: int, frames: int | None = None):
    if world == "humanoid":
        return [simulate("humanoid", SmoothRandom(0.5), frames or HUMANOID_FRAMES, seed=seed + i) for i in range(n)]
    return make_dataset(world, n, seed=seed, frames=frames or 64, workers=1)


def row(world, group, results, wall):
    worst = np.array([np.nanmax(r.body_error_m) if np.isfinite(r.body_error_m).any() else np.inf for r in results])
    finite = worst[np.isfinite(worst)]
    obj = [np.nanmax(r.object_error_m) for r in results
           if r.object_error_m is not None and np.isfinite(r.object_error_m).any()]
    cells = [world, group, f"{np.mean([r.success for r in results]):.0%}", f"{np.mean([r.fell for r in results]):.0%}",
             f"{np.mean([r.diverged for r in results]):.0%}",
             f"{np.median(finite):.3f}" if finite.size else "-", f"{finite.max():.3f}" if finite.size else "-",
             f"{np.median(obj):.3f}" if obj else "-", f"{wall:.1f}"]
    print("| " + " | ".join(cells) + " |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="valid clips per world (default 40)")
    ap.add_argument("--seed", type=int, default=1000, help="first seed (default 1000; the tests use < 100)")
    ap.add_argument("--worlds", nargs="+", default=["ant", "humanoid", "pusher"])
    ap.add_argument("--tracker", default="pd", help="pd, learned or a trained tracker's run directory")
    ap.add_argument("--workers", type=int, default=None, help="tracking processes (default min(2, CPUs))")
    ap.add_argument("--limits", action="store_true", help="also the known hard cases (chaotic ant gaits, short humanoid clips, faster skating)")
    args = ap.parse_args()

    print(f"tracker {args.tracker}, {args.n} valid clips per world, seeds from {args.seed}\n")
    print("| world | group | success | fell | diverged | worst-frame error median (m) | worst-frame error max (m) | object divergence median (m) | wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for world in args.worlds:
        tracker = load_tracker(args.tracker, world)
        clips = valid_clips(world, args.n, args.seed)
        groups = {"valid": clips}
        groups.update({k: [corrupt.CORRUPTIONS[k](c) for c in clips] for k in KINDS[world]})
        if args.limits and world in ("ant", "humanoid"):
            groups["skate 1.0 m/s"] = [corrupt.skate(c, 1.0) for c in clips]
        for group, cs in groups.items():
            t0 = time.perf_counter()
            results = tracker.track(cs, workers=args.workers)
            row(world, group, results, time.perf_counter() - t0)
        if args.limits and world == "humanoid":
            short = valid_clips("humanoid", args.n, args.seed, frames=100)
            for group, cs in {"valid, 100 frames": short, "skate, 100 frames": [corrupt.skate(c) for c in short],
                              "teleport, 100 frames": [corrupt.teleport(c) for c in short]}.items():
                t0 = time.perf_counter()
                row(world, group, tracker.track(cs, workers=args.workers), time.perf_counter() - t0)
        if args.limits and world == "ant":
            for label, make in (("valid, AntGait (open-loop CPG)", AntGait),
                                ("valid, SmoothRandom(0.6) actions", lambda: SmoothRandom(0.6))):
                cs = [simulate("ant", make(), 80, seed=args.seed + i) for i in range(args.n // 2)]
                t0 = time.perf_counter()
                row(world, label, tracker.track(cs, workers=args.workers), time.perf_counter() - t0)
    if args.limits:
        print("\nnotes: the open-loop ant gaits are chaotic - replaying a clip's own recorded actions from its first\n"
              "frame with a 1 mm/s velocity error already drifts the root up to ~1 m - so no tracker that sees only\n"
              "20 fps poses follows them reliably. The humanoid topples within ~1 s of its reset pose: a skating\n"
              "clip's initial sideways velocity is physically possible momentum during the fall, so 100-frame clips\n"
              "skate only partly out of reach; the default 200-frame clips separate.")


if __name__ == "__main__":
    main()
