"""``rlpf evaluate``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_evaluate`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse
import os


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "evaluate", help="evaluate a world model: command accuracy, physics, FID, diversity, R-precision",
        description="Generate --n clips per prompt and measure command accuracy (from the motion itself),\n"
                    "the physics scorer's plausible rate and term means, and FID / diversity / R-precision\n"
                    "in the learned motion-text feature space against the run's clean held-out clips.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("--checkpoint", required=True, help="pretraining run directory")
    ev.add_argument("--n", type=int, default=32, help="clips per prompt (default 32)")
    ev.add_argument("--temperature", type=float, default=1.0)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", help="write the JSON report here (default RUN/eval.json)")
    ev.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from rlpf.core.clips import load_clips
    from rlpf.core.errors import RLPFError
    from rlpf.core.outputs import EXIT_WRITE_FAILED, check_output_file, write_or_rescue
    from rlpf.worldmodel.evaluation import evaluate_world_model, format_evaluation
    from rlpf.worldmodel.evaluator import load as load_evaluator
    from rlpf.worldmodel.model import WorldModel

    if args.n < 2 or not args.temperature > 0:
        raise RLPFError(f"--n must be >= 2 and --temperature > 0 (got {args.n}, {args.temperature})")
    wm = WorldModel.from_pretrained(args.checkpoint)
    run = args.checkpoint if os.path.isdir(os.path.join(args.checkpoint, "model")) else os.path.dirname(args.checkpoint.rstrip("/"))
    out = args.out or os.path.join(run, "eval.json")
    heldout_path = os.path.join(run, "heldout.npz")
    check_output_file(out, inputs=[os.path.join(run, "model"), os.path.join(run, "evaluator"), heldout_path])
    evaluator = load_evaluator(os.path.join(run, "evaluator"))
    heldout = load_clips(heldout_path)
    report = evaluate_world_model(wm, evaluator, heldout, n_per_prompt=args.n,
                                  temperature=args.temperature, seed=args.seed)
    print(format_evaluation(report))
    if not write_or_rescue(out, report, "evaluate"):
        return EXIT_WRITE_FAILED
    print(f"report: {out}")
    return 0
