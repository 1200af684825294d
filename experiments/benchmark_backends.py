"""Scoring throughput per backend and worker count: rlpf.score with tracker pd on simulated ant clips,
and dataset curation (``rlpf score DIR --filter plausible --out-dir KEPT``, ``rlpf.judge.curation``)
of the same clips as files, each as a ratio to raw ``mj_step`` of the same clips.

    python experiments/benchmark_backends.py [--clips 40] [--frames 64] [--repeats 1]

Simulates ``--clips`` ant clips (the data generator's controllers, one prompt each in turn), then
times ``rlpf.score(clips, trackers=["pd"], workers=W, backend=B)`` for the local process pool and Ray
at 1 and 2 workers, all in this one run so the ratios sit side by side. Every timing includes what
the backend pays per call - starting its workers (forkserver processes / Ray actors, each building
the pd tracker once) - but not starting Ray itself, which happens once per process and is printed
on its own. Checks that every backend gives the same report (and the same curation manifest).

"raw mj_step" is the floor: in this process, for each clip, ``mj_step`` of the ant model (no control,
no tracker, no terms) for as many physics steps as the clip lasts (duration / timestep, what the PD
tracker steps); "x mj_step" is a configuration's time over that. Curation is timed with the
manifest, the kept copies and the file reading included (a fresh output directory each run), with
the tracker pd, so it does what scoring with --tracker pd does plus the files. Run it alone (inside
the CPU lock): the figures are throughput, and other jobs on the cores change them.
"""
import argparse
import json
import os
import shutil
import tempfile
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
    raw = raw_mj_step(clips)
    print(f"raw mj_step of the same clips (one process): {raw:.3f} s, {args.clips / raw:.1f} clips/s")
    tmp = tempfile.mkdtemp(prefix="rlpf-bench-")
    src = os.path.join(tmp, "clips")
    from rlpf.core.clips import save_clips

    for i, c in enumerate(clips):
        save_clips(os.path.join(src, f"clip_{i:04d}.npz"), c)

    import ray

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"local Ray (2 CPUs) started in {time.perf_counter() - t0:.1f} s (once per process, not in the timings)")

    from rlpf.judge.curation import MANIFEST, curate
    from rlpf.judge.scoring import ScoreConfig

    rows, reports, manifests = [], {}, {}
    for backend in ("local", "ray"):
        for workers in (1, 2):
            best = best_cur = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                report = score(clips, trackers=["pd"], workers=workers, backend=backend)
                best = min(best, time.perf_counter() - t0)
                out = os.path.join(tmp, f"kept-{backend}-{workers}")
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                curate([src], out, ScoreConfig(trackers=["pd"], backend=backend), "plausible", workers=workers)
                best_cur = min(best_cur, time.perf_counter() - t0)
                with open(os.path.join(out, MANIFEST)) as f:
                    manifests[(backend, workers)] = [{k: v for k, v in json.loads(line).items() if k != "file"}
                                                     for line in f]
            reports[(backend, workers)] = report.to_json()
            rows.append((backend, workers, best, best_cur))
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)

    base = rows[0][2]
    print(f"\n{args.clips} clips x {args.frames} frames, tracker pd (best of {args.repeats}); x mj_step = time / raw mj_step:")
    print(f"{'backend':8s} {'workers':>7s} | {'score s':>8s} {'clips/s':>8s} {'vs local 1':>10s} {'x mj_step':>9s} |"
          f" {'curate s':>8s} {'clips/s':>8s} {'x mj_step':>9s}")
    for backend, workers, s, c in rows:
        print(f"{backend:8s} {workers:7d} | {s:8.2f} {args.clips / s:8.2f} {base / s:9.2f}x {s / raw:8.1f}x |"
              f" {c:8.2f} {args.clips / c:8.2f} {c / raw:8.1f}x")
    first = reports[("local", 1)]
    same = all(r == first for r in reports.values())
    print(f"\nsame report from every backend and worker count: {same}")
    m0 = manifests[("local", 1)]
    print(f"same curation manifest from every backend and worker count: {all(m == m0 for m in manifests.values())}")
    print(f"plausible {first['summary']['plausible_rate']:.0%}, tracked {first['summary']['tracking_success_rate']:.0%}, "
          f"kept by curation {sum(r['kept'] for r in m0)} of {len(m0)}")
    for backend in ("local", "ray"):
        one, two = [r[3] for r in rows if r[0] == backend]
        print(f"curation scaling 1 -> 2 workers, {backend}: {one / two:.2f}x (efficiency {one / two / 2:.0%}); "
              f"per-clip cost at 1 worker {one / args.clips * 1000:.1f} ms")


def raw_mj_step(clips) -> float:
    """Seconds of bare mj_step over every clip's duration (module docstring)."""
    import mujoco

    from rlpf.envs.worlds import compile_world

    m = compile_world("ant").model
    d = mujoco.MjData(m)
    t0 = time.perf_counter()
    for c in clips:
        mujoco.mj_resetData(m, d)
        d.qpos[:] = c.qpos[0]
        for _ in range(int(round((c.n_frames - 1) / c.fps / m.opt.timestep))):
            mujoco.mj_step(m, d)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
