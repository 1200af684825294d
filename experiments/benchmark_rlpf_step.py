"""Where an RLPF step's time goes: generation / physics scoring (decode + physics terms + tracking) / update.

    python experiments/benchmark_rlpf_step.py [--model runs/ant] [--steps 24] [--workers 2]

Runs a short GRPO fine-tuning of the given base model with the default reward (PD tracker) in a
temporary directory and prints the mean seconds per optimizer step of each part, measured in the
same run. Scoring runs in ``--workers`` processes; the update in this one (1 torch thread).
Run it on a quiet machine: on a shared 2-core box every part slows down.
"""
import argparse
import tempfile

import torch


def main():
    from rlpf.experiment import step_time_breakdown
    from rlpf.grpo import GRPOSettings, finetune, log_history
    from rlpf.physical_feedback import PhysicalFeedback

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/ant", help="base world model (pretraining run directory)")
    ap.add_argument("--steps", type=int, default=24, help="optimizer steps (a multiple of 4: one generated batch per 4)")
    ap.add_argument("--workers", type=int, default=2, help="scoring processes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as run, PhysicalFeedback("ant", workers=args.workers) as fb:
        finetune(args.model, fb, GRPOSettings(steps=args.steps, save_steps=args.steps), run, progress=True)
        b = step_time_breakdown(log_history(run))
    print(f"per optimizer step (mean of {args.steps}; 144 clips generated and scored every 4 steps):")
    for part in ("generation_s", "scoring_s", "update_s", "step_s"):
        print(f"  {part[:-2]:10s} {b[part]:.3f} s  ({b[part] / b['step_s']:.0%})")


if __name__ == "__main__":
    main()
