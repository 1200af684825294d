"""``rlpf render``: clips -> mp4 videos under the video contract (docs/video-contract.md).

The work is rlpf.viz.videos; MuJoCo and imageio are imported inside ``cmd_render``."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "render", help="render clips to mp4 videos under the video contract (what rlpf lift reads back)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Render each clip as an mp4 named after it (walk.npz -> walk.mp4; clip i of a batch file\n"
                    "batch.npz -> batch-<i>.mp4) at the clip's own fps, from its world's contract camera\n"
                    "(ant: follows the root in x, y at a fixed height, distance 2.5 m, elevation -35,\n"
                    "azimuth 90; 128x128 px; coloured legs; the MJCF's checker floor): docs/video-contract.md.\n"
                    "A clip that cannot be read or rendered is reported and the rest are still rendered\n"
                    "(exit 1); an input is never written over.",
        epilog="examples:\n  rlpf render clips/ --world ant --out videos/\n"
               "  rlpf render walk.npz --out videos/ --size 256\n  rlpf score videos/ --world ant --pose runs/pose-ant",
    )
    s.add_argument("paths", nargs="+", metavar="CLIP", help="clip files (.npz) or directories (searched recursively)")
    s.add_argument("--world", help="world of the clips (default: each file's own 'world')")
    s.add_argument("--out", required=True, metavar="DIR", help="directory the videos are written into (created)")
    s.add_argument("--size", type=int, default=None, metavar="PX",
                   help="frame width and height in pixels (default: the contract's, 128 for ant; lifting reads any size)")
    s.add_argument("--quiet", action="store_true", help="no progress bar, no listing")
    s.set_defaults(func=cmd_render)


def cmd_render(args) -> int:
    from tqdm import tqdm

    from rlpf.core.clips import clip_files
    from rlpf.core.outputs import check_output_dir
    from rlpf.viz.contract import contract_for
    from rlpf.viz.videos import render_files

    check_output_dir(args.out, inputs=args.paths)
    if args.size is not None and args.world:
        contract_for(args.world, args.size)  # a bad size is refused before any work
    elif args.size is not None and not 16 <= args.size <= 1024:
        from rlpf.viz.render import RenderError

        raise RenderError(f"--size must be 16-1024 px, got {args.size}")
    n = sum(1 for _ in clip_files(args.paths))
    with tqdm(total=n, unit="file", desc="rendering", disable=args.quiet, file=sys.stderr) as bar:
        result = render_files(args.paths, args.out, args.world, args.size, progress=bar.update)
    if not args.quiet:
        for v in result["videos"]:
            print(f"{v['video']}  ({v['frames']} frames, {v['fps']:g} fps, {v['size']}x{v['size']}, {v['world']})")
    for e in result["errors"]:
        print(f"ERROR {e['source']}: {e['error']}", file=sys.stderr)
    if not args.quiet:
        print(f"{len(result['videos'])} videos in {args.out}" + (f", {len(result['errors'])} errors" if result["errors"] else ""))
    return 1 if result["errors"] else 0
