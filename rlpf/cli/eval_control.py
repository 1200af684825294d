"""``rlpf eval-control``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_eval_control`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse
import os


def add_parser(sub: argparse._SubParsersAction) -> None:
    ec = sub.add_parser(
        "eval-control", help="evaluate a policy on a gymnasium robot task: success rate, mean return, videos",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run seeded, deterministic episodes of a policy on gymnasium's Pusher-v5 or Reacher-v5 and\n"
                    "report the success rate (Pusher-v5: the object ends >= 0.10 m closer to the goal; Reacher-v5:\n"
                    "the fingertip ends within 0.02 m of the target), the mean return and the final distance.\n"
                    "--policy: `expert` (the scripted expert), a policy directory or policy.pt written by\n"
                    "`rlpf control` (control head or MLP), or an SB3 model (.zip, or a directory with model.zip).",
        epilog="examples:\n  rlpf eval-control --env Pusher-v5 --policy expert --episodes 20\n"
               "  rlpf eval-control --env Pusher-v5 --policy runs/control/policies/head-base/Pusher-v5 "
               "--episodes 50 --out report.json --video videos/",
    )
    ec.add_argument("--env", required=True, help="gymnasium env id: Pusher-v5 or Reacher-v5")
    ec.add_argument("--policy", required=True, help="expert, a policy directory / policy.pt, or an SB3 .zip")
    ec.add_argument("--episodes", type=int, default=20, help="episodes (default 20)")
    ec.add_argument("--seed", type=int, default=1000, help="seed of the first episode (default 1000)")
    ec.add_argument("--out", help="write the JSON report here")
    ec.add_argument("--video", metavar="DIR", help="write mp4s of the first --video-episodes episodes here")
    ec.add_argument("--video-episodes", type=int, default=2, metavar="N", help="episodes to render (default 2)")
    ec.add_argument("--quiet", action="store_true", help="no progress bar")
    ec.set_defaults(func=cmd_eval_control)


def cmd_eval_control(args) -> int:
    from rlpf.control.evaluate import evaluate, load_policy
    from rlpf.core.outputs import EXIT_WRITE_FAILED, check_output_dir, check_output_file, write_or_rescue

    if args.out:
        check_output_file(args.out, inputs=[args.policy])
    if args.video and args.video_episodes:
        check_output_dir(args.video, inputs=[args.policy], what="--video")
    policy = load_policy(args.policy, args.env)
    report = evaluate(policy, args.env, args.episodes, args.seed, args.video, args.video_episodes,
                      label=os.path.basename(os.path.normpath(args.policy)), progress=not args.quiet)
    if args.out and not write_or_rescue(args.out, report, "eval-control"):
        return EXIT_WRITE_FAILED
    print(f"{args.env} {args.policy}: success {report['success_rate']:.2f} ({report['success_rule']}), "
          f"return {report['return_mean']:.2f} +- {report['return_std']:.2f}, final distance "
          f"{report['final_distance_mean']:.3f} m over {report['episodes']} episodes (seeds {args.seed}..)")
    for v in report["videos"]:
        print(f"  video {v}")
    return 0
