"""Scoring throughput per backend and worker count: rlpf.score with tracker pd on simulated ant clips.

    python experiments/benchmark_backends.py [--clips 40] [--frames 64] [--repeats 1]

Simulates ``--clips`` ant clips (the data generator's controllers, one prompt each in turn), then
times ``rlpf.score(clips, trackers=["pd"], workers=W, backend=B)`` for the local process pool and Ray
at 1 and 2 workers, all in this one run so the ratios sit side by side. Every timing includes what
the backend pays per call - starting its workers (forkserver processes / Ray actors, each building
the pd tracker once) - but not starting Ray itself, which happens once per process and is printed
on its own. Checks that every backend gives the same report. Run it alone (inside the CPU lock):
the figures are throughput, and other jobs on the cores change them.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from rlpf.data.motion_data import PROMPTS, simulate_episode  # noqa: E402
from rlpf.judge.scoring import score  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per configuration (the best is kept)")
    args = ap.parse_args()

    prompts = PROMPTS["ant"]
    t0 = time.perf_counter()
    clips = [simulate_episode("ant", prompts[i % len(prompts)], seed=i, frames=args.frames) for i in range(args.clips)]
    print(f"{args.clips} ant clips x {args.frames} frames simulated in {time.perf_counter() - t0:.1f} s")

    import ray

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"local Ray (2 CPUs) started in {time.perf_counter() - t0:.1f} s (once per process, not in the timings)")

    rows, reports = [], {}
    for backend in ("local", "ray"):
        for workers in (1, 2):
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                report = score(clips, trackers=["pd"], workers=workers, backend=backend)
                best = min(best, time.perf_counter() - t0)
            reports[(backend, workers)] = report.to_json()
            rows.append((backend, workers, best))
    ray.shutdown()

    base = rows[0][2]
    print(f"\nrlpf.score, tracker pd, {args.clips} clips (best of {args.repeats}):")
    print(f"{'backend':8s} {'workers':>7s} {'seconds':>8s} {'clips/s':>8s} {'vs local 1':>10s}")
    for backend, workers, s in rows:
        print(f"{backend:8s} {workers:7d} {s:8.2f} {args.clips / s:8.2f} {base / s:9.2f}x")
    first = reports[("local", 1)]
    same = all(r == first for r in reports.values())
    print(f"\nsame report from every backend and worker count: {same}")
    print(f"plausible {first['summary']['plausible_rate']:.0%}, tracked {first['summary']['tracking_success_rate']:.0%}")


if __name__ == "__main__":
    main()
