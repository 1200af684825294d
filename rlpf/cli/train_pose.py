"""``rlpf train-pose``: train the video -> qpos pose lifting network of a world (rlpf.lifting.training).

Heavy imports (torch, MuJoCo) stay inside ``cmd_train_pose``."""
from __future__ import annotations

import argparse

from rlpf.cli.help import lazy_epilog


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "train-pose", help="train pose lifting (video -> qpos) on rlpf's own simulated clips rendered under the video contract",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Simulate clips of the world (valid and corrupted), render them under the video contract with\n"
                    "domain randomization (lighting, small camera jitter, floor colours), and train a per-frame CNN\n"
                    "with a temporal model over frames that predicts root height, orientation, joints and velocity,\n"
                    "with a confidence per frame. The run directory is locked, its config written once; running the\n"
                    "same command again resumes (--budget-min trains in chunks).",
    )
    lazy_epilog(s, lambda: "config fields (YAML via --config, or key=value):\n" + _describe()
                + "\n\nexamples:\n  rlpf train-pose --world ant --out runs/pose-ant\n"
                  "  rlpf train-pose --world ant --out runs/pose-ant --budget-min 7   # again to continue\n"
                  "  rlpf lift videos/ --pose runs/pose-ant --out lifted/")
    s.add_argument("--world", help="world to train for (default ant; the config's world field)")
    s.add_argument("--out", required=True, metavar="RUN", help="run directory (created; an existing one is resumed)")
    s.add_argument("--config", help="YAML file with TrainPoseConfig fields")
    s.add_argument("--budget-min", type=float, default=None, metavar="MIN",
                   help="stop at a checkpoint after this many minutes; the same command continues")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(overrides=[], func=cmd_train_pose)


def _describe() -> str:
    from rlpf.core.config import describe
    from rlpf.lifting.training import TrainPoseConfig

    return describe(TrainPoseConfig)


def cmd_train_pose(args) -> int:
    from rlpf.core.config import load_config
    from rlpf.lifting.training import TrainPoseConfig, train_pose

    overrides = list(args.overrides) + ([f"world={args.world}"] if args.world else [])
    cfg = load_config(TrainPoseConfig, args.config, overrides)
    budget = None if args.budget_min is None else 60.0 * args.budget_min
    out = train_pose(cfg, args.out, progress=not args.quiet, max_seconds=budget)
    t = out["timings"]
    times = ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in t.items())
    if not out["done"]:
        print(f"stopped at step {out['step']}/{cfg.steps} (budget); run the same command to continue  ({times})")
        return 0
    m = out["metrics"]
    print(f"pose run {args.out}: {cfg.world}, {cfg.clips} clips, {cfg.steps} steps  ({times})")
    if m.get("n_clips"):
        print(f"  held-out frames ({m['n_clips']} clips, network alone): root height {m['root_height_cm']:.2f} cm, "
              f"joints {m['joint_deg']:.2f} deg, velocity {m['velocity_cm_per_frame']:.2f} cm/frame")
    print(f"next: rlpf lift VIDEO.mp4 --pose {args.out} --out lifted/   |   rlpf score videos/ --pose {args.out}")
    return 0
