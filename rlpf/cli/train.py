"""``rlpf train``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_train`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse
import os

from rlpf.cli.help import lazy_epilog
from rlpf.core.config import describe


def add_parser(sub: argparse._SubParsersAction) -> None:
    rt = sub.add_parser(
        "train", help="RLPF: fine-tune a world model on physical feedback (TRL GRPO) and report before/after",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reinforcement Learning from Physical Feedback, end to end, every step cached:\n"
                    "  data -> pretraining of the base model (base_run) -> trackers (the learned one trained\n"
                    "  in tracker_run) -> fine-tuning by `method` -> evaluation of base and fine-tuned.\n\n"
                    "method rlpf: TRL's GRPOTrainer samples a group of clips per prompt, a tracker replays each\n"
                    "in MuJoCo, reward plugins score them (default 10 x tracking_success + 2 x alignment), and\n"
                    "group-relative PPO-clip with KL to the frozen base model updates the generator. Every term\n"
                    "is logged to TensorBoard (RUN/tb/rlpf). method sft_filter: fine-tune on the base model's own\n"
                    "samples that track. method base: only the base model's report. With `worlds` the base is a\n"
                    "multi-world model: every world's prompts train at once, each clip scored in its own world.\n\n"
                    "Leaves in RUN: report.md, report.json ({before, after, change, training}), samples/*.npz,\n"
                    "videos/*.mp4 (generated | tracked), model/ (the fine-tuned world model), tb/, config.yaml.\n"
                    "Running the same command again resumes from the last checkpoint; Ctrl-C saves one first.",
    )
    lazy_epilog(rt, lambda: "config fields (YAML via --config, or key=value; nested as grpo.beta=0.05):\n"
                 + describe(_rlpf_config())
                 + "\n\nexamples:\n  rlpf train --config experiments/configs/rlpf_ant.yaml --out runs/rlpf-ant\n"
                   "  rlpf train --config experiments/configs/rlpf_ant.yaml grpo.steps=50 --out runs/rlpf-short\n"
                   "  rlpf train --config experiments/configs/sft_filter_ant.yaml --out runs/sft-ant\n"
                   "  rlpf train --config experiments/configs/rlpf_metaworld.yaml --out runs/rlpf-metaworld"
                   "   # a suite: `runs: {task: config}`, one run per task, key=value applies to each\n"
                   "  rlpf train --config experiments/configs/rlpf_metaworld_mt10.yaml --out runs/rlpf-mt10"
                   "   # ONE multi-world model (worlds: [...]), all worlds at once, reported per world")
    rt.add_argument("--config", help="YAML file with RLPFConfig fields (default: the built-in defaults)")
    rt.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    rt.add_argument("--quiet", action="store_true", help="no progress bars")
    rt.set_defaults(overrides=[], func=cmd_train)


def _rlpf_config():
    from rlpf.finetune.pipeline import RLPFConfig

    return RLPFConfig


def cmd_train(args) -> int:
    from rlpf.core.config import load_config, read_yaml
    from rlpf.finetune.pipeline import RLPFConfig, train_rlpf
    from rlpf.finetune import suite

    if args.config and suite.is_suite(read_yaml(args.config)):   # one run per task (runs: name -> config)
        scfg = load_config(suite.SuiteConfig, args.config)
        report = suite.train_suite(scfg, args.out, list(args.overrides), progress=not args.quiet)
        with open(os.path.join(args.out, "report.md")) as f:
            print(f.read())
        print(f"report: {os.path.join(args.out, 'report.md')} (and report.json); each task in {args.out}/<task>/")
        return 1 if report["failed"] else 0
    cfg = load_config(RLPFConfig, args.config, args.overrides)
    report = train_rlpf(cfg, args.out, progress=not args.quiet)
    from rlpf.finetune.distributed import is_main

    if report is None or not is_main():
        return 0  # a non-main process of `accelerate launch`: the main one writes and prints the report
    with open(os.path.join(args.out, "report.md")) as f:
        print(f.read())
    print(f"report: {os.path.join(args.out, 'report.md')} (and report.json); TensorBoard: tensorboard --logdir {args.out}/tb")
    return 0
