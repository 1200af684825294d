"""``rlpf import``: a BVH file or a joint-position array retargeted onto a world's robot as a clip.

The work is ``rlpf.data.retarget.import_motion`` (mink IK on the MuJoCo model); heavy imports stay
inside ``cmd_import``."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="retarget a BVH file or SMPL/HumanML3D joint positions onto a robot (a clip .npz)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read real motion and retarget it onto a world's robot with mink (IK on the MuJoCo model):\n"
                    "a BVH file (any skeleton with SMPL or CMU/Mixamo joint names), or joint positions [T, 22, 3]\n"
                    "in metres in the HumanML3D / SMPL 22-joint order (.npy, or .npz with a 'joints' array and\n"
                    "optionally 'fps'). The correspondence is the world's World.keypoints (humanoid: the table in\n"
                    "rlpf/data/retarget.py). The source is scaled by leg length to the robot, its up axis turned\n"
                    "to z; each frame's IK starts from the previous one, joint limits are hard constraints.\n"
                    "Prints the scale and the keypoint error (how closely the robot follows the source).\n"
                    "Back to BVH for a viewer: rlpf export CLIP --out motion.bvh.",
        epilog="examples:\n  rlpf import motion.bvh --world humanoid --out clip.npz\n"
               "  rlpf import joints.npy --format joints --up y --source-fps 20 --fps 30 --out clip.npz\n"
               "  rlpf score clip.npz",
    )
    p.add_argument("source", help="a .bvh file, or a .npy / .npz joint-position file")
    p.add_argument("--world", default="humanoid", help="a world that declares keypoints (default humanoid)")
    p.add_argument("--out", required=True, help="the clip file to write (.npz)")
    p.add_argument("--format", default="auto", choices=["auto", "bvh", "joints"],
                   help="auto: by extension (.bvh: bvh; .npy / .npz: joints)")
    p.add_argument("--up", default="y", help="the source's up axis: y (BVH, SMPL, HumanML3D; default) or z")
    p.add_argument("--fps", type=float, help="frame rate of the clip (the motion is resampled); default the source's")
    p.add_argument("--source-fps", type=float,
                   help="frame rate of a joint file that stores none (default 20, HumanML3D's)")
    p.add_argument("--prompt", help="text stored as the clip's prompt")
    p.set_defaults(func=cmd_import)


def cmd_import(args) -> int:
    from rlpf.core.outputs import EXIT_WRITE_FAILED, check_output_file
    from rlpf.data.retarget import MotionFormatError, UP_AXES

    if args.up not in UP_AXES:
        raise MotionFormatError("--up", f"unknown up axis {args.up!r}; choose one of {', '.join(UP_AXES)}")
    if not args.out.endswith(".npz"):
        raise MotionFormatError(f"--out {args.out}", "a clip file ends in .npz")
    check_output_file(args.out, inputs=[args.source])  # before the work: never over the input
    from rlpf.core.clips import save_clips
    from rlpf.data.retarget import import_motion

    res = import_motion(args.source, world=args.world, fmt=args.format, up=args.up, fps=args.fps,
                        source_fps=args.source_fps)
    res.clip.prompt = args.prompt
    try:
        save_clips(args.out, res.clip)
    except OSError as e:
        fd, rescue = tempfile.mkstemp(prefix="rlpf-import-", suffix=".npz")
        os.close(fd)
        save_clips(rescue, res.clip)
        print(f"rlpf import: could not write {args.out} ({e.strerror or e}); the clip is saved in {rescue}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    c = res.clip
    print(f"wrote {args.out}: {c.n_frames} frames at {c.fps:g} fps ({c.duration:.2f} s) of {c.world}; "
          f"scale {res.scale:.4g}, {len(res.joints)} of 22 joints, keypoint error "
          f"{100 * res.error_m.mean():.2f} cm mean, {100 * res.error_m.max():.2f} cm worst frame")
    return 0
