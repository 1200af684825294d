"""Peak memory of `rlpf score` per frame, and what a clip over the frame limit costs to refuse.

Each measurement runs `rlpf score` on one ant clip in a fresh process, which reports its own peak
resident memory (ru_maxrss); the per-frame cost is the slope between clip lengths (the interpreter,
torch-free imports and the compiled model are the intercept). Run alone on the box:

    python experiments/benchmark_memory.py [--frames 500 2000 5000 10000]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


CHILD = ("import resource, sys\n"
         "from rlpf.cli import main\n"
         "code = main(sys.argv[1:])\n"
         "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, code)")


def peak_mb(args: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit code) of ``rlpf ARGS`` run in a fresh child process."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True).stdout
    seconds = time.perf_counter() - t0
    mb, code = out.rsplit("PEAK", 1)[1].split()
    return float(mb), seconds, int(code)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[500, 2000, 5000, 10000])
    args = ap.parse_args()

    from rlpf.core.clips import MAX_FRAMES
    from rlpf.policies.scripted import AntGait
    from rlpf.data.simulate import simulate

    tmp = tempfile.mkdtemp(prefix="rlpf-mem-")
    base = simulate("ant", AntGait(), 400, seed=0).qpos
    rows = []
    for n in sorted(args.frames):
        reps = -(-n // len(base))
        # a long, physically valid-looking motion: the simulated gait repeated, root x kept continuous
        pieces = []
        for k in range(reps):
            q = base.copy()
            q[:, 0] += k * (base[-1, 0] - base[0, 0])
            pieces.append(q)
        qpos = np.concatenate(pieces)[:n]
        path = os.path.join(tmp, f"ant_{n}.npz")
        np.savez_compressed(path, qpos=qpos, fps=20.0, world=np.str_("ant"))
        mb, s, code = peak_mb(["score", path, "--quiet", "--out", os.path.join(tmp, f"r{n}.json")])
        rows.append((n, mb, s, code))
        print(f"{n:7d} frames: peak {mb:7.0f} MB, {s:5.1f} s, exit {code}", flush=True)
    n0, m0 = rows[0][0], rows[0][1]
    for n, mb, _, _ in rows[1:]:
        print(f"  {n0} -> {n} frames: {(mb - m0) * 1024 / (n - n0):.1f} KB per frame")
    big = os.path.join(tmp, "ant_1e6.npz")
    np.savez_compressed(big, qpos=np.zeros((1_000_000, 15)), fps=20.0, world=np.str_("ant"))
    mb, s, code = peak_mb(["score", big, "--quiet"])
    print(f"1e6 frames ({os.path.getsize(big) / 1e3:.0f} KB file, limit {MAX_FRAMES}): refused with exit {code} "
          f"in {s:.1f} s, peak {mb:.0f} MB")


if __name__ == "__main__":
    main()
