"""Does the motion-text evaluator's FID / R-precision / diversity notice broken generators? (ant, simulated)

    python experiments/evaluator_validation.py [--n 40] [--steps 400] [--threads 1]

Five prompts with genuinely different scripted ant motions; ``--n`` training clips per prompt and 40
fresh evaluation clips per prompt (other seeds), 64 frames each (84 simulated, the first 20 dropped:
the drop from the reset height). The evaluation clips are split into two disjoint halves; half A is
the real reference, half B and broken versions of it are the "generated" sets.
"""
import argparse
import dataclasses
import time

import numpy as np
import torch

from rlpf.worldmodel import evaluator as me
from rlpf.policies.scripted import AntGait, SmoothRandom
from rlpf.data.simulate import simulate

PROMPTS = {
    "walk with small steps": lambda: AntGait(amplitude=(0.1, 0.25), turn=(-0.05, 0.05)),
    "walk with big strides": lambda: AntGait(amplitude=(0.45, 0.6), turn=(-0.05, 0.05)),
    "turn left": lambda: AntGait(amplitude=(0.3, 0.5), turn=(0.2, 0.3)),
    "turn right": lambda: AntGait(amplitude=(0.3, 0.5), turn=(-0.3, -0.2)),
    "flail randomly": lambda: SmoothRandom(0.6),
}
DROP, FRAMES = 20, 64


def make_clips(n: int, seed0: int) -> list:
    out = []
    for k, (prompt, make) in enumerate(PROMPTS.items()):
        for i in range(n):
            c = simulate("ant", make(), DROP + FRAMES, seed=seed0 + 100_000 * k + i, prompt=prompt)
            out.append(dataclasses.replace(c, qpos=c.qpos[DROP:], actions=c.actions[DROP:]))
    return out


def with_qpos(clips, fn):
    return [dataclasses.replace(c, qpos=fn(c.qpos.copy(), i), cache={}) for i, c in enumerate(clips)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="training clips per prompt")
    ap.add_argument("--steps", type=int, default=me.EvaluatorConfig.steps)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train, evalset = make_clips(args.n, 0), make_clips(40, 50_000)
    print(f"simulated {len(train)} training + {len(evalset)} evaluation clips in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    cfg = me.EvaluatorConfig(steps=args.steps, seed=args.seed)
    ev = me.train_evaluator(train, "ant", cfg)
    print(f"trained in {time.perf_counter() - t0:.1f} s ({args.threads} thread(s), {cfg.steps} steps, batch {cfg.batch})")

    a, b = evalset[0::2], evalset[1::2]  # disjoint halves, 20 clips per prompt each
    rng = np.random.default_rng(1)
    joints = slice(7, None)

    def noisy(sigma):
        def f(q, i):
            q[:, joints] += np.random.default_rng(i).normal(0, sigma, q[:, joints].shape)
            return q
        return f

    still = [dataclasses.replace(c, prompt=p.prompt) for c, p in zip(
        [simulate("ant", AntGait(amplitude=(0.0, 0.02), turn=(0, 0)), DROP + FRAMES, seed=900 + i) for i in range(len(b))], b)]
    still = [dataclasses.replace(c, qpos=c.qpos[DROP:], actions=None) for c in still]
    one_prompt = [dataclasses.replace(c, prompt=p.prompt) for c, p in zip(
        [x for x in b if x.prompt == "walk with big strides"] * len(PROMPTS), b)]
    groups = {
        "real (half B)": b,
        "time-shuffled": with_qpos(b, lambda q, i: q[rng.permutation(len(q))]),
        "joint noise 0.02 rad": with_qpos(b, noisy(0.02)),
        "joint noise 0.1 rad": with_qpos(b, noisy(0.1)),
        "played backwards": with_qpos(b, lambda q, i: q[::-1]),
        "first 32 frames": with_qpos(b, lambda q, i: q[:32]),
        "standing still": still,
        "one prompt's motions": one_prompt,
        "one clip repeated": [dataclasses.replace(b[0], prompt=c.prompt) for c in b],
    }
    print(f"{'generated set':24s} {'FID':>7s} {'div':>6s} {'R@1':>5s} {'R@2':>5s} {'R@3':>5s} {'MMdist':>6s}")
    for name, gen in groups.items():
        m = me.quality_metrics(ev, gen, a)
        print(f"{name:24s} {m['fid']:7.3f} {m['diversity']:6.3f} {m['r_precision_top1']:5.2f} "
              f"{m['r_precision_top2']:5.2f} {m['r_precision_top3']:5.2f} {m['mm_dist']:6.3f}")
    print(f"real (half A) diversity {m['real_diversity']:.3f}; chance R@1 = {1 / len(PROMPTS):.2f}; "
          f"n_real {m['n_real']}, n_gen {m['n_gen']}")
    emb_a = ev.embed_motions(a)
    within = np.mean([me.diversity(emb_a[[c.prompt == p for c in a]]) for p in PROMPTS])
    print(f"real (half A) diversity within one prompt {within:.3f} (mean over prompts)")
    tr = me.r_precision(ev.embed_motions(train), [c.prompt for c in train], ev)
    print(f"training-set R@1 {tr[1]:.2f}")


if __name__ == "__main__":
    main()
