"""Motion tokenizer settings compared on held-out ant clips, each trained for a fixed step budget on one thread.

    python experiments/tokenizer_sweep.py [--train 500 --test 100] [--mix] [--only NAME ...]
    python experiments/tokenizer_sweep.py --setting "big: hidden=128 steps=900"   # your own rows

Clips: ``simulate("ant", AntGait(), 64 + 20, seed)`` minus the first 20 frames (the drop from the
reset height); seeds 0..train-1 train, the next ``test`` seeds are held out. ``--mix`` makes half of
each set SmoothRandom(0.6). Prints one row per setting: steps, batch, training time and speed, and
the held-out reconstruction_report (root position error mean / at the last frame, hinge angle error,
codebook usage, perplexity).

Measured (2-core shared VM, one thread, 100 held-out AntGait clips; travel over a clip is ~1 m):

    setting           codes steps  time_s root_pos_m final_m joint_rad usage perplexity
    default            1000  3000   81      0.181    0.358   0.075    52%   353
    no-root-loss       1000  3000   72      0.307    0.584   0.056    51%   323
    root-weight-only   1000  3000   75      0.197    0.393   0.070    54%   380
    whole-clips        1000  1600   58      0.176    0.316   0.085    59%   412
    hidden128          1000  1200   67      0.181    0.352   0.079    49%   317
    levels-8-6-5        240  3000   78      0.228    0.464   0.088    78%   119
    levels-8-8-8-5-5  12800  3000   75      0.139    0.269   0.067     8%   826
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from rlpf.core.clips import Clip  # noqa: E402
from rlpf.worldmodel.tokenizer import MotionTokenizer, TokenizerConfig, reconstruction_report, train_tokenizer  # noqa: E402
from rlpf.policies.scripted import AntGait, SmoothRandom  # noqa: E402
from rlpf.data.simulate import simulate  # noqa: E402

# name: config fields and training settings over the defaults; step counts fit ~90 s on one idle core
SETTINGS = {
    "default": "",
    "no-root-loss": "root_weight=0 drift_weight=0",
    "root-weight-only": "drift_weight=0",
    "whole-clips": "window=64 steps=1600",
    "hidden128": "hidden=128 steps=1200",
    "levels-8-6-5": "levels=[8,6,5]",
    "levels-8-8-8-5-5": "levels=[8,8,8,5,5]",
}
DEFAULT_TRAIN = {"steps": 3000, "batch": 32, "lr": 2e-3, "window": 32}


def make_clips(seeds, mix: bool, frames: int, drop: int) -> list[Clip]:
    clips = []
    for s in seeds:
        ctrl = SmoothRandom(0.6) if mix and s % 2 else AntGait()
        c = simulate("ant", ctrl, frames + drop, seed=s)
        clips.append(Clip(qpos=c.qpos[drop:], fps=c.fps, world="ant", source=c.source))
    return clips


def parse_setting(text: str) -> tuple[TokenizerConfig, dict]:
    train, cfg = dict(DEFAULT_TRAIN), {}
    for item in text.split():
        key, _, raw = item.partition("=")
        (train if key in train else cfg)[key] = yaml.safe_load(raw)
    return TokenizerConfig(**cfg), train


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=500, help="training clips")
    ap.add_argument("--test", type=int, default=100, help="held-out clips")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--drop", type=int, default=20, help="frames dropped after reset")
    ap.add_argument("--mix", action="store_true", help="half AntGait, half SmoothRandom(0.6)")
    ap.add_argument("--only", nargs="*", help=f"run only these of {sorted(SETTINGS)}")
    ap.add_argument("--setting", action="append", default=[],
                    help='"name: key=value ..." (TokenizerConfig fields, steps, batch, lr, window)')
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", help="directory: save each trained tokenizer under it")
    args = ap.parse_args()
    torch.set_num_threads(1)

    settings = {k: v for k, v in SETTINGS.items() if not args.only or k in args.only}
    for s in args.setting:
        name, _, text = s.partition(":")
        settings[name.strip()] = text
    t0 = time.perf_counter()
    train = make_clips(range(args.train), args.mix, args.frames, args.drop)
    test = make_clips(range(args.train, args.train + args.test), args.mix, args.frames, args.drop)
    print(f"{len(train)} train / {len(test)} held-out clips of {args.frames} frames, simulated in "
          f"{time.perf_counter() - t0:.0f} s\n")
    head = (f"{'setting':20s} {'codes':>6s} {'params':>7s} {'steps':>5s} {'batch':>5s} {'time_s':>6s} {'steps/s':>7s} "
            f"{'root_pos_m':>10s} {'final_m':>8s} {'joint_rad':>9s} {'feat_mse':>8s} {'usage':>6s} {'perplex':>7s}")
    print(head)
    for name, text in settings.items():
        cfg, tr = parse_setting(text)
        torch.manual_seed(args.seed)
        tok = MotionTokenizer("ant", cfg)
        t = time.perf_counter()
        train_tokenizer(tok, train, steps=tr["steps"], batch_size=tr["batch"], lr=tr["lr"], window=tr["window"],
                        seed=args.seed)
        secs = time.perf_counter() - t
        r = reconstruction_report(tok, test)
        n_params = sum(p.numel() for p in tok.parameters())
        print(f"{name:20s} {tok.codebook_size:6d} {n_params / 1e3:6.0f}k {tr['steps']:5d} {tr['batch']:5d} {secs:6.1f} "
              f"{tr['steps'] / secs:7.1f} {r['root_pos_m']:10.3f} {r['root_pos_final_m']:8.3f} {r['joint_rad']:9.3f} "
              f"{r['feature_mse']:8.4f} {r['codebook_usage']:6.1%} {r['perplexity']:7.0f}", flush=True)
        if args.save:
            tok.save_pretrained(os.path.join(args.save, name))


if __name__ == "__main__":
    main()
