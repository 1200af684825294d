"""``rlpf generate``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_generate`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse
import os


def add_parser(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser(
        "generate", help="sample clips from a pretrained world model (clip format, ready for `rlpf score`)",
        description="Generate clips for a prompt; --first-frames continues a given clip's start "
                    "(the image-to-video analogue). Output: one batch .npz per prompt in --out.",
    )
    gen.add_argument("--checkpoint", required=True, help="pretraining run directory (or its model/ directory)")
    gen.add_argument("--prompt", action="append", required=True,
                     help="text prompt, e.g. 'walk forward' (repeatable); unknown words list the vocabulary")
    gen.add_argument("--n", type=int, default=8, help="clips per prompt (default 8)")
    gen.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--first-frames", metavar="CLIP", help="clip file whose first --context frames start every sample")
    gen.add_argument("--context", type=int, default=8, help="frames of --first-frames to keep (default 8)")
    gen.add_argument("--world", help="multi-world models: the world to generate in (default: the world "
                                     "trained on the prompt; needed for a prompt of several worlds or none)")
    gen.add_argument("--out", required=True, help="output directory")
    gen.set_defaults(func=cmd_generate)


def cmd_generate(args) -> int:
    from rlpf.core.clips import load_clips, save_clips
    from rlpf.core.errors import RLPFError
    from rlpf.core.outputs import check_output_dir, check_output_file
    from rlpf.worldmodel.multiworld import MultiWorldModel, load_world_model

    if args.n < 1 or args.context < 1 or not args.temperature > 0:
        raise RLPFError(f"--n and --context must be >= 1 and --temperature > 0 (got {args.n}, {args.context}, "
                        f"{args.temperature})")
    wm = load_world_model(args.checkpoint)
    multi = isinstance(wm, MultiWorldModel)
    if args.world and not multi:
        raise RLPFError(f"--world {args.world}: {args.checkpoint} is a one-world model (world {wm.world}); "
                        "--world is for multi-world models")
    first = None
    inputs = [args.checkpoint] + ([args.first_frames] if args.first_frames else [])
    if args.first_frames:
        first = load_clips(args.first_frames)[0].qpos[:args.context]
    worlds = {p: wm.resolve_world(p, args.world) if multi else (wm.check_prompt(p) or wm.world) for p in args.prompt}
    check_output_dir(args.out, inputs=inputs)
    paths = {prompt: os.path.join(args.out, "_".join(prompt.split()) + ".npz") for prompt in args.prompt}
    for path in paths.values():  # before sampling: never over an input (the --first-frames clip, say)
        check_output_file(path, inputs=inputs)
    for k, (prompt, path) in enumerate(paths.items()):
        kw = {"world": worlds[prompt]} if multi else {}
        clips = wm.generate(prompt, n=args.n, temperature=args.temperature, first_frames=first, seed=args.seed + k, **kw)
        save_clips(path, clips, world=worlds[prompt])
        print(f"{path}: {len(clips)} clips of '{prompt}' in {worlds[prompt]} ({wm.n_frames} frames at {wm.fps:g} fps)")
    print(f"score them: rlpf score {args.out}")
    return 0
