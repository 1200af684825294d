"""Where an RLPF step's time goes, scored in turn and scored ahead, side by side in one run.

    python experiments/benchmark_rlpf_step.py [--model runs/ant] [--steps 24] [--workers 2] [--backends local,ray]

Runs two short GRPO fine-tunings of the given base model with the default reward (PD tracker) in
temporary directories - ``grpo.overlap_scoring`` false, then true - and prints the mean seconds per
optimizer step of each part: generation, scoring (the time the step waits for rewards: decode +
physics terms + tracking, in ``--workers`` processes) and the update (1 torch thread), with the
workers' own scoring time per step beside it. The first generated batch (worker start-up; scored
ahead, two batches sampled and nothing to overlap with) is left out: the figures are the steady
state of a long run. With ``--backends local,ray`` both modes run with the scoring workers as local
processes and then as Ray actors (a local Ray of ``--workers`` CPUs, started once, outside the
timings), all four side by side: equal workers, equal clips. Run it on a quiet machine: on a shared
2-core box every part slows down.
"""
import argparse
import tempfile

import torch


def main():
    from rlpf.finetune.pipeline import step_time_breakdown
    from rlpf.finetune.grpo import GRPOSettings, finetune, log_history
    from rlpf.finetune.feedback import PhysicalFeedback

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/ant", help="base world model (pretraining run directory)")
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps (a multiple of 4: one generated batch per 4)")
    ap.add_argument("--workers", type=int, default=2, help="scoring processes")
    ap.add_argument("--backends", default="local", help="comma-separated: local, ray (both: side by side)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "ray" in backends:
        import time

        import ray

        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        print(f"local Ray ({args.workers} CPUs) started in {time.perf_counter() - t0:.1f} s (not in the timings)")
    rows = {}
    for backend in backends:
        for overlap in (False, True):
            with tempfile.TemporaryDirectory() as run, \
                    PhysicalFeedback("ant", workers=args.workers, backend=backend) as fb:
                settings = GRPOSettings(steps=args.steps, save_steps=args.steps, overlap_scoring=overlap)
                finetune(args.model, fb, settings, run, progress=True)
                steady = [h for h in log_history(run) if h.get("step", 0) > settings.cycle]
                rows[backend, overlap] = {**step_time_breakdown(steady),
                                          "work_s": fb.work_seconds / args.workers / args.steps}
    per_batch = settings.prompts_per_step * settings.num_generations * settings.steps_per_generation
    print(f"\nper optimizer step (mean of steps {settings.cycle + 1}-{args.steps}; {per_batch} clips generated and scored"
          f" every {settings.cycle} steps, {args.workers} workers; workers busy: their scoring time per step, averaged"
          " over all steps):")
    print(f"  {'backend':8s} {'scoring':18s} {'step':>7s} {'generation':>11s} {'scoring (wait)':>15s} {'update':>7s}"
          "   workers busy")
    for (backend, overlap), b in rows.items():
        name = "ahead (overlap)" if overlap else "in turn"
        print(f"  {backend:8s} {name:18s} {b['step_s']:6.3f}s {b['generation_s']:10.3f}s {b['scoring_s']:8.3f}s"
              f" ({b['scoring_fraction']:4.0%}) {b['update_s']:6.3f}s   {b['work_s']:.3f}s")
    for backend in backends:
        print(f"  {backend}: step time, ahead / in turn: "
              f"{rows[backend, True]['step_s'] / rows[backend, False]['step_s']:.2f}")
    if "ray" in backends and "local" in backends:
        for overlap in (False, True):
            print(f"  {'ahead' if overlap else 'in turn'}: step time, ray / local at {args.workers} workers: "
                  f"{rows['ray', overlap]['step_s'] / rows['local', overlap]['step_s']:.2f}")


if __name__ == "__main__":
    main()
