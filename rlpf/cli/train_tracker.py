"""``rlpf train-tracker``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_train_tracker`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse
import os

from rlpf.cli.help import lazy_epilog
from rlpf.core.config import describe


def add_parser(sub: argparse._SubParsersAction) -> None:
    tt = sub.add_parser(
        "train-tracker", help="train the learned motion tracker (SB3 PPO on rlpf/MotionTracking-v0)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a tracking policy (DeepMimic-style reward, residual PD targets) with PPO over a\n"
                    "library of valid clips: the world's simulated clips (cached under runs/data, shared with\n"
                    "`rlpf pretrain`) or data=DIR. Output: RUN/tracker.zip + RUN/vecnormalize.json (use with\n"
                    "rlpf.policies.learned_tracker.LearnedTracker.load(RUN)), TensorBoard logs in RUN/tb,\n"
                    "checkpoints in RUN/checkpoints, and RUN/tracker_summary.json with the held-out evaluation\n"
                    "(success on valid clips and on levitated copies).\n\n"
                    "Running the same command again resumes from the newest checkpoint (Ctrl-C saves one); on a\n"
                    "finished run it only prints the stored summary. A larger total_timesteps=N trains a finished\n"
                    "run further from its last checkpoint; any other changed field is refused.",
    )
    lazy_epilog(tt, lambda: "config fields (YAML via --config, or key=value; nested as reward.pose_weight=0.6):\n"
                 + describe(_tracker_config())
                 + "\n\nexamples:\n  rlpf train-tracker --config experiments/configs/tracker_ant.yaml --out runs/tracker-ant\n"
                   "  rlpf train-tracker --config experiments/configs/tracker_ant.yaml total_timesteps=50000 "
                   "vec_env=dummy --out runs/tracker-quick")
    tt.add_argument("--config", help="YAML file with TrackerTrainConfig fields (default: the built-in defaults)")
    tt.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    tt.add_argument("--quiet", action="store_true", help="no progress bars")
    tt.set_defaults(overrides=[], func=cmd_train_tracker)


def _tracker_config():
    from rlpf.policies.learned_tracker import TrackerTrainConfig

    return TrackerTrainConfig


def cmd_train_tracker(args) -> int:
    from rlpf.core.config import load_config
    from rlpf.policies.learned_tracker import TrackerTrainConfig, train_tracker

    cfg = load_config(TrackerTrainConfig, args.config, args.overrides)
    summary = train_tracker(cfg, args.out, progress=not args.quiet)
    t = summary["timings"]
    if summary.get("cached"):
        print(f"{cfg.world} tracker in {args.out} already trained ({summary.get('num_timesteps', t.get('steps', 0)):,} "
              "steps): nothing to do (a larger total_timesteps=N trains it further)")
    else:
        print(f"trained {cfg.world} tracker in {args.out}  ({summary['n_train']} library clips, "
              f"{t.get('steps', 0):,} steps this run at {t.get('steps_per_s') or 0:.0f} steps/s)")
    for kind, e in summary.get("eval", {}).items():
        print(f"  held-out {kind:8s} (n={e['n']}): success {e['success_rate']:.2f}, mean body error "
              f"{e['mean_body_error_m']:.3f} m, fell {e['fell']}, diverged {e['diverged']}")
    print(f"tensorboard --logdir {os.path.join(args.out, 'tb')}")
    return 0
