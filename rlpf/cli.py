"""The ``rlpf`` command line."""
from __future__ import annotations

import argparse
import os
import sys

EXAMPLES_DIR = os.path.join(os.path.dirname(__file__), "examples")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand anywhere, e.g. `rlpf score a.npz --world ant weights.x=1`
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if len(overrides) != len(extra) or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(a for a in extra if a not in overrides) or ' '.join(extra)}")
    if overrides:
        args.overrides = args.overrides + overrides
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


def build_parser() -> argparse.ArgumentParser:
    from rlpf import __version__

    p = argparse.ArgumentParser(
        prog="rlpf",
        description="Reinforcement Learning from Physical Feedback: score, simulate and (later) align "
                    "generative world models with a MuJoCo physics simulator.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"rlpf {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    from rlpf.config import describe
    from rlpf.scoring import ScoreConfig

    s = sub.add_parser(
        "score", help="score clip files for physical plausibility (table on stdout, JSON report)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score clips (.npz, see DESIGN.md) with the physics reward plugins.\n\n"
                    "Each clip gets every term (penetration, floating, skating, residual root force, joint\n"
                    "limits, torques, unexplained object motion), a score (weighted total: 0 = nothing\n"
                    "found, more negative = less plausible) and plausible = no term above its threshold.\n"
                    "Exit 0 when every input scored, 1 when any failed (the report still lists the rest).",
        epilog="config fields (YAML via --config, or key=value; dict entries as weights.NAME=W):\n"
               + describe(ScoreConfig)
               + "\n\nexamples:\n  rlpf score --examples\n  rlpf score clips/ --world ant --out report.json\n"
                 "  rlpf score a.npz weights.skate_mps=-20 weights.mypkg.rewards:smooth=-1",
    )
    s.add_argument("paths", nargs="*", metavar="PATH", help="clip files or directories (searched recursively for .npz)")
    s.add_argument("--world", help="built-in world (ant, humanoid, pusher) or MJCF path; default: each file's own")
    s.add_argument("--out", help="write the JSON report here")
    s.add_argument("--config", help="YAML file with ScoreConfig fields")
    s.add_argument("--examples", action="store_true", help="score the example clips bundled with rlpf")
    s.add_argument("--quiet", action="store_true", help="no table, no progress bar")
    s.set_defaults(overrides=[])
    s.set_defaults(func=cmd_score)

    sim = sub.add_parser(
        "simulate", help="record physically valid clips from a world with a scripted controller",
        description="Run a scripted controller in MuJoCo and write clips in the clip format; "
                    "optionally also a corrupted copy of each (to see what the scorer flags).",
    )
    sim.add_argument("--world", required=True, help="ant, humanoid or pusher")
    sim.add_argument("--n", type=int, default=4, help="number of clips (default 4)")
    sim.add_argument("--frames", type=int, default=100, help="frames per clip (default 100)")
    sim.add_argument("--controller", default="auto", choices=["auto", "random", "gait", "push"],
                     help="auto: gait for ant, push for pusher, smooth random actions otherwise")
    sim.add_argument("--corrupt", action="append", default=[], metavar="KIND",
                     help="also write a corrupted copy: float, sink, levitate, skate, teleport, jitter, "
                          "bend_joint, move_object (repeatable)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--out", required=True, help="output directory")
    sim.set_defaults(func=cmd_simulate)

    w = sub.add_parser("worlds", help="list built-in worlds and reward terms")
    w.set_defaults(func=cmd_worlds)
    return p


def cmd_score(args) -> int:
    from tqdm import tqdm

    from rlpf.clips import clip_files
    from rlpf.config import ConfigError, load_config
    from rlpf.rewards.registry import RewardError
    from rlpf.scoring import ScoreConfig, format_table, score_paths, write_report

    paths, overrides = [], []
    for a in args.paths + args.overrides:  # a path-less key=value given first lands in paths
        (overrides if "=" in a and not os.path.exists(a) else paths).append(a)
    if args.examples:
        paths.append(EXAMPLES_DIR)
    if not paths:
        print("rlpf score: give clip files or directories, or --examples", file=sys.stderr)
        return 2
    try:
        cfg = load_config(ScoreConfig, args.config, overrides)
        if args.world:
            cfg.world = args.world
        n_files = sum(1 for _ in clip_files(paths))
        with tqdm(total=None, unit="clip", desc="scoring", disable=args.quiet or n_files < 2, file=sys.stderr) as bar:
            report = score_paths(paths, cfg, progress=bar.update)
    except (ConfigError, RewardError) as e:
        print(f"rlpf score: {e}", file=sys.stderr)
        return 2
    if args.out:
        write_report(report, args.out)
    if not args.quiet:
        print(format_table(report))
        if args.out:
            print(f"report: {args.out}")
    return 1 if report["errors"] else 0


def cmd_simulate(args) -> int:
    from tqdm import tqdm

    from rlpf import corrupt
    from rlpf.clips import save_clips
    from rlpf.envs.worlds import UnknownWorldError, get_world
    from rlpf.policies import scripted
    from rlpf.simulate import simulate

    try:
        world = get_world(args.world)
    except UnknownWorldError as e:
        print(f"rlpf simulate: {e}", file=sys.stderr)
        return 2
    unknown = [k for k in args.corrupt if k not in corrupt.CORRUPTIONS]
    if unknown:
        print(f"rlpf simulate: unknown corruption {unknown}; choose from {sorted(corrupt.CORRUPTIONS)}", file=sys.stderr)
        return 2
    choice = args.controller
    if choice == "auto":
        choice = {"ant": "gait", "pusher": "push"}.get(world.name, "random")
    make = {"random": scripted.SmoothRandom, "gait": scripted.AntGait, "push": scripted.PusherScript}[choice]
    os.makedirs(args.out, exist_ok=True)
    for i in tqdm(range(args.n), desc=f"simulating {world.name}", unit="clip", file=sys.stderr):
        clip = simulate(world.name, make(), args.frames, seed=args.seed + i)
        save_clips(os.path.join(args.out, f"{world.name}_{i:03d}.npz"), clip)
        for kind in args.corrupt:
            try:
                bad = corrupt.CORRUPTIONS[kind](clip)
            except ValueError as e:
                print(f"rlpf simulate: skipping {kind}: {e}", file=sys.stderr)
                continue
            save_clips(os.path.join(args.out, f"{world.name}_{i:03d}_{kind}.npz"), bad)
    print(f"wrote {args.n} clips of {world.name} to {args.out}")
    return 0


def cmd_worlds(args) -> int:
    from rlpf.envs.worlds import BUILTIN_WORLDS, compile_world
    from rlpf.rewards.registry import registered

    print("worlds:")
    for name, w in BUILTIN_WORLDS.items():
        cw = compile_world(name)
        print(f"  {name:9s} {w.gym_id:12s} nq={cw.nq:<3d} fps={w.fps:.1f}  feet={len(w.feet)} objects={list(w.objects)}")
    print("reward terms (name, plausible threshold, unit):")
    for name, info in sorted(registered().items()):
        th = "-" if info.threshold is None else f"{info.threshold:g}"
        print(f"  {name:24s} <= {th:6s} {info.unit:18s} {info.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
