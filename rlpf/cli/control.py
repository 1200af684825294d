"""``rlpf control``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_control`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse
import os

from rlpf.cli.help import lazy_epilog
from rlpf.core.config import describe


def add_parser(sub: argparse._SubParsersAction) -> None:
    ct = sub.add_parser(
        "control", help="compare controllers on gymnasium tasks: control head on world models vs BC, RL, expert",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and evaluate, per task: the scripted expert, an MLP behaviour-cloned on raw state, SB3\n"
                    "RL from scratch at a stated env-step budget, and the control head (action query tokens on\n"
                    "a world model's hidden states) on every backbone in `backbones` (a missing base backbone\n"
                    "is pretrained; one without a trainer is skipped with the reason). Writes RUN/report.json\n"
                    "with a `table` of {method, env, success_rate, return_mean, env_steps}, videos in\n"
                    "RUN/videos, TensorBoard logs under RUN/policies. Running it again reuses finished parts.",
    )
    lazy_epilog(ct, lambda: "config fields (YAML via --config, or key=value; nested as head.head=flow):\n"
                 + describe(_control_config())
                 + "\n\nexamples:\n  rlpf control --config experiments/configs/control_pusher.yaml --out runs/control\n"
                   "  rlpf control --config experiments/configs/control_pusher.yaml envs=[Reacher-v5] "
                   "eval_episodes=10 --out runs/control-quick")
    ct.add_argument("--config", help="YAML file with ControlConfig fields (default: the built-in defaults)")
    ct.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    ct.add_argument("--quiet", action="store_true", help="no progress bars")
    ct.set_defaults(overrides=[], func=cmd_control)


def _control_config():
    from rlpf.control.pipeline import ControlConfig

    return ControlConfig


def cmd_control(args) -> int:
    from rlpf.control.pipeline import ControlConfig, format_table, run_control
    from rlpf.core.config import load_config

    cfg = load_config(ControlConfig, args.config, args.overrides)
    report = run_control(cfg, args.out, progress=not args.quiet)
    print(format_table(report))
    print(f"report: {os.path.join(args.out, 'report.json')}  ({report['timings']['total_s']:.0f} s)")
    return 0
