"""``rlpf export``: a robot clip written as a BVH file for viewing in standard tools (Blender, ...).

The work is ``rlpf.data.retarget.clip_to_bvh`` and ``rlpf.data.bvh.write_bvh``."""
from __future__ import annotations

import argparse
import sys
import tempfile


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a clip as a BVH file (its 22 SMPL keypoints) for viewing in standard tools",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a clip of a world that declares keypoints (humanoid) as BVH: the 22 SMPL joints\n"
                    "(names as in rlpf.data.retarget.SMPL22), in metres, y up by default, each joint with\n"
                    "position and ZXY rotation channels (it turns with the robot body it sits on).\n"
                    "`rlpf import` reads the file back.",
        epilog="examples:\n  rlpf export clip.npz --out motion.bvh\n  rlpf export clip.npz --out motion.bvh --up z",
    )
    p.add_argument("clip", help="a clip .npz (one clip; a batch file: --index)")
    p.add_argument("--out", required=True, help="the BVH file to write")
    p.add_argument("--world", help="the clip's world (default: the file's own)")
    p.add_argument("--index", type=int, default=0, help="which clip of a batch file (default 0)")
    p.add_argument("--up", default="y", help="up axis of the BVH: y (default, what viewers expect) or z")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from rlpf.core.clips import ClipError, load_clips
    from rlpf.core.outputs import EXIT_WRITE_FAILED, check_output_file, write_text
    from rlpf.data.bvh import bvh_text
    from rlpf.data.retarget import UP_AXES, MotionFormatError, clip_to_bvh

    if args.up not in UP_AXES:
        raise MotionFormatError("--up", f"unknown up axis {args.up!r}; choose one of {', '.join(UP_AXES)}")
    check_output_file(args.out, inputs=[args.clip])
    clips = load_clips(args.clip)
    if not 0 <= args.index < len(clips):
        raise ClipError(args.clip, f"--index {args.index}: the file holds {len(clips)} clip(s)")
    text = bvh_text(clip_to_bvh(clips[args.index], world=args.world, up=args.up))
    try:
        write_text(args.out, text)
    except OSError as e:
        fd, rescue = tempfile.mkstemp(prefix="rlpf-export-", suffix=".bvh")
        with open(fd, "w") as f:
            f.write(text)
        print(f"rlpf export: could not write {args.out} ({e.strerror or e}); the BVH is saved in {rescue}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    print(f"wrote {args.out}: {clips[args.index].n_frames} frames, 22 joints")
    return 0
