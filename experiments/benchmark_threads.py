"""The LM stage of `rlpf pretrain` alone and beside one busy process, with torch's default thread
settings and with rlpf's (rlpf/core/threads.py), in one run.

    flock /tmp/rlpf-cpu.lock .venv/bin/python experiments/benchmark_threads.py [--steps 40]

Run it on an otherwise quiet machine (load average well below 1): the "busy" process is the only
competitor it means to measure. Each measurement is a fresh Python process (OpenMP reads its wait
policy when torch is first imported, so settings cannot share a process), started with
OMP_NUM_THREADS, MKL_NUM_THREADS, OMP_WAIT_POLICY, KMP_BLOCKTIME and RLPF_THREADS removed from its
environment. Settings:

* old: torch's defaults - one thread per core, libgomp's default spin-then-sleep waiting;
* new: rlpf's - ``rlpf.core.threads.configure_threads(0)`` chooses the count from the free cores, as
  `rlpf pretrain` does, and ``run_stage`` adapts it between steps (``adapt_threads``);
* passive: new plus ``OMP_WAIT_POLICY=PASSIVE`` (the alternative rlpf/core/threads.py weighs).

"Busy" is ``python -c 'while True: pass'``, started 1 s before the thread count is chosen (before)
or 1 s after it (after: the count was chosen on an idle machine, the competitor arrives mid-run).
The timed work is ``rlpf.worldmodel.pretrain.lm_stage`` itself - the default ant LM (experiments/configs/
ant.yaml: 4 layers, hidden 128, batch 64) on 70 simulated ant clips with a normalizer-only tokenizer
(the LM's cost does not depend on what the codes mean). steps/s is (S2 - S1) / (t(S2) - t(S1)) over
two runs of the stage with S1 = 5 and S2 = 5 + --steps steps, so the fixed costs (model creation,
the held-out loss, saving) cancel; a 2-step run first warms up (and gives ``adapt_threads`` its
first look).
"""
import os
import sys

BASE_ENV = {k: v for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "RLPF_THREADS")}
"""The children's environment: this process's without the thread settings under test."""

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUSY = [sys.executable, "-c", "while True: pass"]
CASES = [("old", "none"), ("old", "before"), ("new", "none"), ("new", "before"), ("new", "after"),
         ("passive", "none"), ("passive", "before"), ("passive", "after")]
S1 = 5


def child(settings: str, busy: str, data: str, steps: int) -> dict:
    """One measurement, in this (fresh) process; prints its result as JSON on the last line."""
    if settings == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before torch loads libgomp, which reads it then
    import torch

    policy = os.environ.get("OMP_WAIT_POLICY", "(default)")
    competitor = None
    try:
        if busy == "before":
            competitor = subprocess.Popen(BUSY)
            time.sleep(1.0)
        if settings == "old":
            threads = torch.get_num_threads()
        else:
            from rlpf.core.threads import configure_threads

            threads = configure_threads(0)
        if busy == "after":
            competitor = subprocess.Popen(BUSY)
            time.sleep(1.0)
        from rlpf.worldmodel import training
        from rlpf.core.clips import load_clips
        from rlpf.worldmodel.tokenizer import MotionTokenizer
        from rlpf.worldmodel.pretrain import PretrainConfig, lm_stage, split

        counts: list[int] = []  # torch's thread count at each step (what adapt_threads left it at)
        adapt = training.adapt_threads

        def recording_adapt():
            adapt()
            counts.append(torch.get_num_threads())

        training.adapt_threads = recording_adapt  # observes run_stage's own call, changes nothing

        clips = load_clips(os.path.join(data, "clips.npz"))
        tok = MotionTokenizer.from_pretrained(os.path.join(data, "tokenizer"))
        train, heldout = split(clips, 0.1, 0)
        seconds = {}
        with tempfile.TemporaryDirectory() as tmp:
            for n in (2, S1, S1 + steps):
                cfg = PretrainConfig(world="ant", frames=64, lm_steps=n, log_every=n, ckpt_every=n)
                t0 = time.perf_counter()
                lm_stage(cfg, os.path.join(tmp, f"run{n}"), tok, train, heldout, progress=False)
                seconds[n] = time.perf_counter() - t0
        rate = steps / (seconds[S1 + steps] - seconds[S1])
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    timed = counts[-steps:]
    return {"settings": settings, "busy": busy, "threads": threads, "threads_end": torch.get_num_threads(),
            "timed_steps_per_count": {n: timed.count(n) for n in sorted(set(timed))},
            "steps_per_s": rate, "wait_policy": policy}


def make_data(data: str) -> None:
    """Simulated ant clips and a tokenizer with a fitted normalizer (1 training step), saved once."""
    from rlpf.core.clips import save_clips
    from rlpf.data.motion_data import make_dataset
    from rlpf.worldmodel.tokenizer import MotionTokenizer, TokenizerConfig, train_tokenizer

    clips = make_dataset("ant", 70, seed=0, frames=64, workers=1)
    save_clips(os.path.join(data, "clips.npz"), clips, world="ant")
    tok = MotionTokenizer("ant", TokenizerConfig(levels=(8, 5, 5, 5)))
    train_tokenizer(tok, clips, steps=1, batch_size=8)
    tok.save_pretrained(os.path.join(data, "tokenizer"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="timed LM steps per measurement (S2 - S1)")
    ap.add_argument("--cases", default=",".join(f"{a}/{b}" for a, b in CASES),
                    help="SETTINGS/BUSY pairs to measure (default: all)")
    ap.add_argument("--child", nargs=3, metavar=("SETTINGS", "BUSY", "DATA"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.steps)))
        return
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; cores usable: {len(os.sched_getaffinity(0))}")
    results = {}
    with tempfile.TemporaryDirectory() as data:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {ROOT + '/experiments'!r}); "
                        f"import benchmark_threads as b; b.make_data({data!r})"], env=BASE_ENV, check=True, cwd=ROOT)
        print(f"data: 70 ant clips x 64 frames, tokenizer normalizer ({time.perf_counter() - t0:.0f} s)")
        cases = [tuple(c.split("/")) for c in args.cases.split(",")]
        for settings, busy in cases:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--steps", str(args.steps),
                                  "--child", settings, busy, data], env=BASE_ENV, cwd=ROOT,
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"measurement {settings}/{busy} failed:\n{out.stderr[-3000:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[settings, busy] = r
            print(f"{settings:>7} settings, busy {busy:<6}: {r['steps_per_s']:6.2f} steps/s "
                  f"({r['threads']} torch threads at start; timed steps per thread count "
                  f"{r['timed_steps_per_count']}; OMP_WAIT_POLICY {r['wait_policy']})", flush=True)
    print()
    old_alone = results.get(("old", "none"), {}).get("steps_per_s")
    for settings, busy in cases:
        if busy != "none" and (settings, "none") in results:
            rate = results[settings, busy]["steps_per_s"]
            ratio = results[settings, "none"]["steps_per_s"] / rate
            vs_old = f"; old alone / this: {old_alone / rate:.2f}x" if old_alone else ""
            print(f"slowdown, {settings} settings, busy {busy}: alone / busy {ratio:.2f}x{vs_old}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
