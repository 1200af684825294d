"""``rlpf simulate``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_simulate`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser(
        "simulate", help="record physically valid clips from a world with a scripted controller",
        description="Run a scripted controller in MuJoCo and write clips in the clip format; "
                    "optionally also a corrupted copy of each (to see what the scorer flags).",
    )
    sim.add_argument("--world", required=True, help="a registered world (ant, humanoid, pusher, or one of "
                     "rlpf.register_world / an 'rlpf.worlds' entry point) or an MJCF path")
    sim.add_argument("--n", type=int, default=4, help="number of clips (default 4)")
    sim.add_argument("--frames", type=int, default=100, help="frames per clip (default 100)")
    sim.add_argument("--controller", default="auto", choices=["auto", "random", "gait", "push"],
                     help="auto: the world's own scripted controller (World.controller: gait for ant, push "
                          "for pusher), smooth random actions otherwise")
    sim.add_argument("--corrupt", action="append", default=[], metavar="KIND",
                     help="also write a corrupted copy: float, sink, levitate, skate, teleport, jitter, "
                          "bend_joint, move_object (repeatable)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--out", required=True, help="output directory")
    sim.set_defaults(func=cmd_simulate)


def cmd_simulate(args) -> int:
    from tqdm import tqdm

    from rlpf.core.clips import save_clips
    from rlpf.data import corrupt
    from rlpf.data.simulate import simulate
    from rlpf.envs.worlds import UnknownWorldError, file_stem, get_world
    from rlpf.policies import scripted

    try:
        world = get_world(args.world)
    except UnknownWorldError as e:
        print(f"rlpf simulate: {e}", file=sys.stderr)
        return 2
    unknown = [k for k in args.corrupt if k not in corrupt.CORRUPTIONS]
    if unknown:
        print(f"rlpf simulate: unknown corruption {unknown}; choose from {sorted(corrupt.CORRUPTIONS)}", file=sys.stderr)
        return 2
    record = None   # a world that records its own clips (World.recorder: its gym env and expert)
    if args.controller == "auto":  # the world's own scripted controller (World.controller), else random
        from rlpf.envs.worlds import resolve

        try:
            make = scripted.SmoothRandom if world.controller is None else \
                resolve(world.controller, f"world {world.name!r}: controller")
            if world.recorder is not None:
                record = resolve(world.recorder, f"world {world.name!r}: recorder")
        except UnknownWorldError as e:
            print(f"rlpf simulate: {e}", file=sys.stderr)
            return 2
    else:
        make = {"random": scripted.SmoothRandom, "gait": scripted.AntGait, "push": scripted.PusherScript}[args.controller]
    from rlpf.core.outputs import check_output_dir

    check_output_dir(args.out)
    for i in tqdm(range(args.n), desc=f"simulating {world.name}", unit="clip", file=sys.stderr):
        try:
            clip = record(world, args.frames, args.seed + i) if record else simulate(world, make(), args.frames, seed=args.seed + i)
        except ValueError as e:   # e.g. more frames than the world's episodes have
            print(f"rlpf simulate: {e}", file=sys.stderr)
            return 2
        save_clips(os.path.join(args.out, f"{file_stem(world)}_{i:03d}.npz"), clip)
        for kind in args.corrupt:
            try:
                bad = corrupt.CORRUPTIONS[kind](clip)
            except ValueError as e:
                print(f"rlpf simulate: skipping {kind}: {e}", file=sys.stderr)
                continue
            save_clips(os.path.join(args.out, f"{file_stem(world)}_{i:03d}_{kind}.npz"), bad)
    print(f"wrote {args.n} clips of {world.name} to {args.out}")
    return 0
