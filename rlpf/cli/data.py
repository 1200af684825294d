"""``rlpf data``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_data`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser(
        "data", help="simulate a prompt-labelled, prompt-balanced motion dataset (world-model pretraining data)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Simulate clips in MuJoCo with randomized scripted controllers (ant: steerable CPG gaits;\n"
                    "pusher: directed pushes and reaches), label each by what the motion does (measured, see\n"
                    "rlpf.data.motion_data), and keep them by rejection sampling until every prompt has its share.\n"
                    "The same --seed gives the same clips whatever --workers is.\n\n"
                    "prompts:\n"
                    "  ant:    stand still, walk forward slowly, walk forward, walk forward fast, walk backward,\n"
                    "          walk left, walk right, turn left, turn right\n"
                    "  pusher: push the object away / closer / left / right, reach without pushing\n\n"
                    "Output: one batch .npz per prompt (WORLD_PROMPT.npz, clips with --artifacts in\n"
                    "WORLD_PROMPT_artifacts.npz) and manifest.json with every clip's source.",
        epilog="examples:\n  rlpf data --world ant --n 900 --out data/ant\n"
               "  rlpf data --world pusher --n 500 --frames 64 --seed 1 --out data/pusher\n"
               "  rlpf data --world ant --n 900 --artifacts 0.3 --out data/ant-web   # 30% with artifacts\n"
               "  rlpf score data/ant --quiet --out report.json",
    )
    data.add_argument("--world", required=True, help="a world with a data source: ant, pusher, or a registered one")
    data.add_argument("--n", type=int, required=True, help="number of clips (split evenly over the prompts)")
    data.add_argument("--out", required=True, help="output directory")
    data.add_argument("--frames", type=int, default=64, help="frames per clip, a multiple of 4 (default 64 = 3.2 s at 20 fps)")
    data.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    data.add_argument("--workers", type=int, default=None, help="simulation processes (default min(2, CPUs))")
    data.add_argument("--artifacts", type=float, default=0.0, metavar="FRACTION",
                      help="give this fraction of the clips one web-video-like artifact (ant: float, sink, "
                           "skate, jitter; pusher: move_object, jitter), prompt kept (default 0)")
    data.add_argument("--quiet", action="store_true", help="no progress bar")
    data.set_defaults(func=cmd_data)


def cmd_data(args) -> int:
    import time
    from collections import Counter

    from tqdm import tqdm

    from rlpf.data.motion_data import PROMPTS, add_artifacts, artifact_kind, make_dataset, save_dataset

    def fail(msg: str) -> int:
        print(f"rlpf data: {msg}", file=sys.stderr)
        return 2

    if args.world not in PROMPTS:  # a world declares its data (World.data); registered worlds included
        return fail(f"unknown world {args.world!r}: motion data exists for {sorted(PROMPTS)}")
    if args.n < 1:
        return fail(f"--n must be at least 1, got {args.n}")
    if args.frames < 4 or args.frames % 4:
        return fail(f"--frames must be a positive multiple of 4, got {args.frames}")
    if not 0.0 <= args.artifacts <= 1.0:
        return fail(f"--artifacts must be a fraction in [0, 1], got {args.artifacts}")
    if args.workers is not None and args.workers < 1:
        return fail(f"--workers must be at least 1, got {args.workers}")
    if os.path.isdir(args.out) and any(f.endswith(".npz") for f in os.listdir(args.out)):
        return fail(f"{args.out} already holds .npz clips; give an empty or new directory")
    from rlpf.core.outputs import check_output_dir

    check_output_dir(args.out)
    t0 = time.perf_counter()
    stats: dict = {}
    try:
        with tqdm(total=args.n, desc=f"simulating {args.world}", unit="clip", file=sys.stderr,
                  disable=args.quiet) as bar:
            clips = make_dataset(args.world, args.n, seed=args.seed, frames=args.frames, workers=args.workers,
                                 progress=bar.update, stats=stats)
    except RuntimeError as e:
        return fail(str(e))
    if args.artifacts:
        clips = add_artifacts(clips, args.artifacts, seed=args.seed)
    paths = save_dataset(clips, args.out)
    dt = time.perf_counter() - t0
    counts = Counter(c.prompt for c in clips)
    corrupted = Counter(c.prompt for c in clips if artifact_kind(c))
    print(f"{len(clips)} clips of {args.world} ({args.frames} frames at {clips[0].fps:g} fps) in {len(paths)} files "
          f"under {args.out}:")
    for p in PROMPTS[args.world]:
        extra = f"  ({corrupted[p]} with artifacts)" if corrupted[p] else ""
        print(f"  {p:24s} {counts[p]:5d}{extra}")
    rejected = stats["attempts"] - stats["kept"]
    print(f"{stats['attempts']} simulated, {rejected} rejected ({rejected / max(stats['attempts'], 1):.0%}: "
          f"{stats['over_quota']} over quota, {stats['ambiguous']} ambiguous, {stats['diverged']} diverged); "
          f"{dt:.1f} s, {len(clips) / dt:.1f} clips/s")
    return 0
