"""What a multi-world Meta-World world model's hidden states encode: linear probes on held-out episodes.

    python experiments/probe_mt10.py --backbone runs/metaworld-mt10/model [--backbone NAME=PATH ...]
        [--episodes 20] [--seed 2000] [--every 5] [--out probe.json]

The MT10 control head reads the frozen LM's hidden states after ``<bos> <world> task prompt <motion>
| the last 16 frames as motion codes``. Whether those states hold what control needs is measured here,
independently of any head: for noisy expert episodes of every task with a world of its own (seeds from
``--seed``, disjoint from the demonstrations' 0-49 and the evaluation's 1000-1049), every ``--every``-th
step, a ridge regression (closed form, ridge chosen by inner validation, 5 folds split *by episode*)
predicts from a feature vector:

* ``hand_xyz`` (obs[0:3]), ``object_xyz`` (obs[4:7]: the puck, peg, handle or button), the hand-object
  distance, and two binary events scored by balanced accuracy of the thresholded prediction:
  ``near`` (hand within 5 cm of the object) and ``moving`` (the object moves > 1 mm over the next env
  step: the robot is pushing, carrying or turning it).

Feature sets, each a row of the table: the LM's last hidden state at the final motion code (each
``--backbone``), the same LM architecture with random weights (what the code tokens alone give through
an untrained transformer), and the raw qpos window the codes were made from (16 frames, flattened: what
the tokenizer was given). Scores are held-out R^2 (1 = perfect, 0 = the mean) and balanced accuracy
(0.5 = chance), averaged over tasks (per task in ``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from rlpf.control.mt10 import MT10, collect_mt_demos
from rlpf.control.mt10_head import _prompt_table, demo_code_ids, frame_stride, model_inputs, window_offsets

HISTORY = 16
TARGETS = ("hand_xyz", "object_xyz", "hand_object_m", "near", "moving")
BINARY = ("near", "moving")


def targets(demos: dict, rows: np.ndarray) -> dict[str, np.ndarray]:
    obs = demos["obs"]
    nxt = np.minimum(rows + 1, len(obs) - 1)
    same_ep = demos["episode"][nxt] == demos["episode"][rows]
    dist = np.linalg.norm(obs[rows, 0:3] - obs[rows, 4:7], axis=1)
    moved = np.linalg.norm(obs[nxt, 4:7] - obs[rows, 4:7], axis=1) * same_ep
    return {"hand_xyz": obs[rows, 0:3], "object_xyz": obs[rows, 4:7], "hand_object_m": dist[:, None],
            "near": (dist < 0.05).astype(float)[:, None], "moving": (moved > 1e-3).astype(float)[:, None]}


@torch.no_grad()
def lm_features(wm, demos: dict, tasks, rows: np.ndarray) -> np.ndarray:
    """The LM's last hidden state after prompt + motion codes, for the given demo rows."""
    prompt_ids, prompt_mask = _prompt_table(wm, model_inputs(wm, tasks))
    codes = torch.as_tensor(demo_code_ids(wm, demos, tasks, HISTORY)[rows])
    k = torch.as_tensor(demos["task"][rows].astype(np.int64))
    ids = torch.cat([prompt_ids[k], codes], 1)
    mask = torch.cat([prompt_mask[k], torch.ones_like(codes)], 1)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    out = []
    for i in range(0, len(ids), 512):
        h = wm.lm.model(input_ids=ids[i:i + 512], attention_mask=mask[i:i + 512],
                        position_ids=pos[i:i + 512]).last_hidden_state[:, -1]
        out.append(h.float().numpy())
    return np.concatenate(out)


def qpos_features(wm, demos: dict, tasks, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per task (their qpos sizes differ): the flattened 16-frame qpos window of each row."""
    out = {}
    for t in tasks:
        task_rows = np.flatnonzero(demos["task"] == MT10.index(t))
        sel = np.searchsorted(task_rows, rows[demos["task"][rows] == MT10.index(t)])
        steps = demos["step"][task_rows[sel]].astype(np.int64)
        back = np.minimum(window_offsets(HISTORY, frame_stride(wm, t))[None], steps[:, None])
        out[t] = demos[f"qpos__{t}"][sel[:, None] - back].reshape(len(sel), -1)
    return out


def ridge_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, binary: bool, folds: int = 5) -> float:
    """Held-out R^2 (or balanced accuracy of the prediction thresholded at 0.5), folds split by group;
    the ridge strength picked per fold on an inner split of its training groups."""
    ug = np.unique(groups)
    fold_of = {g: i % folds for i, g in enumerate(np.random.default_rng(0).permutation(ug))}
    f = np.array([fold_of[g] for g in groups])
    pred = np.zeros_like(y)

    def fit(xa, ya, lam):
        mu, sd = xa.mean(0), np.maximum(xa.std(0), 1e-3)   # near-constant columns are not blown up
        z = (xa - mu) / sd
        ym = ya.mean(0)
        w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (ya - ym))
        return lambda xb: ((xb - mu) / sd) @ w + ym

    for k in range(folds):
        tr, te = f != k, f == k
        inner = f[tr] == (k + 1) % folds
        best = min((np.mean((fit(x[tr][~inner], y[tr][~inner], lam)(x[tr][inner]) - y[tr][inner]) ** 2), lam)
                   for lam in (1e-2, 1e-1, 1, 10, 100, 1000))[1]
        pred[te] = fit(x[tr], y[tr], best)(x[te])
    if binary:
        yt, yp = y[:, 0] > 0.5, pred[:, 0] > 0.5
        if yt.all() or not yt.any():
            return float("nan")
        return float(0.5 * (np.mean(yp[yt]) + np.mean(~yp[~yt])))
    # pooled over the target's coordinates: a coordinate that hardly varies (a puck's height) does not
    # dominate with its tiny denominator
    return float(1 - ((y - pred) ** 2).sum() / max(((y - y.mean(0)) ** 2).sum(), 1e-12))


def main(argv=None) -> int:
    from rlpf.worldmodel.multiworld import MultiWorldModel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", action="append", required=True,
                    help="a multi-world model (PATH or NAME=PATH); repeat to compare backbones")
    ap.add_argument("--episodes", type=int, default=20, help="expert episodes per task")
    ap.add_argument("--seed", type=int, default=2000, help="first episode seed (disjoint from demos / eval)")
    ap.add_argument("--every", type=int, default=5, help="probe every N-th env step")
    ap.add_argument("--out", help="write the per-task figures as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    backbones = dict(b.split("=", 1) if "=" in b else (os.path.basename(os.path.dirname(b.rstrip("/"))) or b, b)
                     for b in args.backbone)
    models = {n: MultiWorldModel.from_pretrained(p) for n, p in backbones.items()}
    first = next(iter(models.values()))
    tasks = [t for t in MT10 if f"metaworld/{t}" in first.worlds]
    demos = collect_mt_demos(tasks, args.episodes, seed=args.seed)
    rows = np.flatnonzero(demos["step"] % args.every == 0)
    y = targets(demos, rows)
    feats = {f"LM hidden state ({n})": lm_features(wm, demos, tasks, rows) for n, wm in models.items()}
    rand = MultiWorldModel.from_pretrained(backbones[next(iter(backbones))])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        # re-drawn as LLaMA initializes (transformers 5 skips modules it thinks initialized, so by hand):
        # matrices N(0, initializer_range), the RMSNorm gains 1 (LLaMA has no biases)
        for p in rand.lm.parameters():
            torch.nn.init.normal_(p, 0.0, rand.lm.config.initializer_range) if p.dim() > 1 else torch.nn.init.ones_(p)
    feats["same LM, random weights"] = lm_features(rand, demos, tasks, rows)
    qpos = qpos_features(first, demos, tasks, rows)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name in list(feats) + ["qpos window (16 frames)"]:
        table[name] = {}
        for t in tasks:
            sel = demos["task"][rows] == MT10.index(t)
            x = qpos[t] if name.startswith("qpos") else feats[name][sel]
            table[name][t] = {k: round(ridge_cv(x, y[k][sel], demos["episode"][rows][sel], k in BINARY), 3)
                              for k in TARGETS}
    print(f"{len(rows)} probed steps of {args.episodes} episodes x {len(tasks)} tasks; mean over tasks "
          "(R^2; near / moving: balanced accuracy, 0.5 = chance)")
    print("| features | " + " | ".join(TARGETS) + " |")
    print("|---|" + "---|" * len(TARGETS))
    for name, per_task in table.items():
        means = [np.nanmean([per_task[t][k] for t in tasks]) for k in TARGETS]
        print(f"| {name} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"tasks": tasks, "episodes": args.episodes, "seed": args.seed, "table": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
