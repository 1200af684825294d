"""``rlpf lift``: videos -> lifted clips (.npz in the clip format) with a trained pose run (rlpf.lifting)."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "lift", help="lift videos (rendered under the video contract) to clips with a trained pose run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Each video becomes OUT/<name>.npz: qpos per frame (root height, orientation and joints from the\n"
                    "pose network; root x, y from 0, integrated from the floor's motion), the video's fps, the\n"
                    "run's world, and a per-frame 'confidence' (0-1). A video that cannot be read is reported and\n"
                    "the rest are lifted (exit 1). Videos must follow docs/video-contract.md (rlpf render).",
        epilog="examples:\n  rlpf lift videos/ --pose runs/pose-ant --out lifted/\n  rlpf score lifted/\n"
               "  rlpf score videos/ --world ant --pose runs/pose-ant --out report.json   # lift and score in one",
    )
    s.add_argument("paths", nargs="+", metavar="VIDEO", help="video files (.mp4) or directories (searched recursively)")
    s.add_argument("--pose", required=True, metavar="RUN", help="a finished rlpf train-pose run directory")
    s.add_argument("--out", required=True, metavar="DIR", help="directory the lifted clips are written into (created)")
    s.add_argument("--refine", action="store_true",
                   help="fit each lifted pose to its frame by rendering it under the contract and comparing body "
                        "parts (rlpf.lifting.refine): joints read better on motion unlike the run's training clips; "
                        "~0.4-0.9 s per frame on 2 cores")
    s.add_argument("--quiet", action="store_true", help="no progress bar, no listing")
    s.set_defaults(func=cmd_lift)


def cmd_lift(args) -> int:
    from tqdm import tqdm

    from rlpf.core.outputs import check_output_dir
    from rlpf.lifting.frames import video_files
    from rlpf.lifting.inference import PoseLifter, lift_files

    check_output_dir(args.out, inputs=args.paths)
    lifter = PoseLifter.load(args.pose, refine=args.refine)  # a missing / unfinished run is refused before any work
    with tqdm(total=len(video_files(args.paths)), unit="video", desc="lifting", disable=args.quiet, file=sys.stderr) as bar:
        result = lift_files(args.paths, lifter, args.out, progress=bar.update)
    if not args.quiet:
        for c in result["clips"]:
            print(f"{c['clip']}  ({c['frames']} frames, {c['fps']:g} fps, {c['world']}, mean confidence {c['confidence']:.2f})")
    for e in result["errors"]:
        print(f"ERROR {e['source']}: {e['error']}", file=sys.stderr)
    if not args.quiet:
        print(f"{len(result['clips'])} clips in {args.out}" + (f", {len(result['errors'])} errors" if result["errors"] else ""))
    return 1 if result["errors"] else 0
