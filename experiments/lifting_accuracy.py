"""How well pose lifting reads ant videos: issue 17 part 3.

Held-out simulated ant clips (make_dataset with a seed whose episodes the training run never saw:
checked against the run's dataset), valid and corrupted (rlpf.data.corrupt at its default amounts:
float 0.1 m, sink 0.08 m, skate 0.6 m/s, teleport 0.5 m), are written as clip files, rendered through
``rlpf render``'s code path (rlpf.viz.videos.render_files), lifted through ``rlpf lift``'s
(rlpf.lifting.inference.lift_files), and compared with the true clips:

    joint angle error (deg, mean |error| over frames and joints)
    root position error (cm, mean over frames of |xyz error|; true x, y taken relative to frame 0)
    root height error (cm, mean |z error|)
    root orientation error (deg, mean rotation angle between the true and lifted torso orientation)
    verdict agreement: plausible-or-not of rlpf.score on the lifted clip == on the true clip

Known limits measured: monocular depth (root x error across the image vs y error along the view)
and occlusion (joint error of legs on the far side of the torso vs the near side).

    flock /tmp/rlpf-cpu.lock .venv/bin/python experiments/lifting_accuracy.py --pose runs/pose-ant --n 20

``--clips DIR [DIR ...]`` measures clips made elsewhere instead (each directory one group, named after
it; any frame count and frame rate), e.g. the independently simulated ant groups of
``experiments/humanoid_heldout.py make`` (perturbed contact models, clips recorded from gymnasium's
Ant-v5) -- the lifting's check on clips the project did not make for it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

KINDS = ("valid", "float", "sink", "skate", "teleport")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pose", required=True, help="a finished rlpf train-pose run")
    p.add_argument("--n", type=int, default=20, help="held-out clips per kind")
    p.add_argument("--seed", type=int, default=9001, help="make_dataset seed of the held-out clips")
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds to measure")
    p.add_argument("--clips", nargs="+", metavar="DIR",
                   help="measure these directories of ant clips (one group each) instead of make_dataset's")
    p.add_argument("--out", help="write the figures as JSON here")
    p.add_argument("--network-height", action="store_true",
                   help="the network's root height on every frame, not the root sphere's (rlpf.lifting.root_height)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="with --clips: the first N clips of each group")
    p.add_argument("--refine", action="store_true",
                   help="refine every lifted pose against its frame (rlpf.lifting.refine, rlpf lift --refine)")
    args = p.parse_args(argv)

    from tqdm import tqdm

    from rlpf.core.clips import load_clips, save_clips
    from rlpf.data.corrupt import CORRUPTIONS
    from rlpf.data.motion_data import make_dataset
    from rlpf.judge.scoring import score
    from rlpf.lifting.inference import PoseLifter, lift_files
    from rlpf.viz.videos import render_files

    lifter = PoseLifter.load(args.pose, sphere_height=not args.network_height, refine=args.refine)
    t0 = time.time()
    if args.clips:   # external groups: the clips as they are, no corruption added here
        groups = {}
        for d in args.clips:
            name = os.path.basename(os.path.normpath(d))
            groups[name] = [c for f in sorted(os.listdir(d)) if f.endswith(".npz")
                            for c in load_clips(os.path.join(d, f))][:args.limit]
            if not groups[name]:
                print(f"{d}: no .npz clip files", file=sys.stderr)
                return 2
    else:
        base = make_dataset("ant", args.n, seed=args.seed, frames=64, workers=1)
        trained = set()
        ds = os.path.join(args.pose, "dataset.npz")
        if os.path.exists(ds):
            with np.load(ds, allow_pickle=False) as z:
                trained = {s.split("+")[0] for s in z["sources"]}
        overlap = sorted({c.source for c in base} & trained)
        if overlap:
            print(f"held-out clips overlap the training set: {overlap[:3]}", file=sys.stderr)
            return 2
        groups = {k: [c if k == "valid" else CORRUPTIONS[k](c) for c in base] for k in args.kinds.split(",") if k}
    results = {}
    with tempfile.TemporaryDirectory(prefix="rlpf-lift-acc-") as tmp:
        for kind, clips in groups.items():
            cdir, vdir, ldir = (os.path.join(tmp, kind, x) for x in ("clips", "videos", "lifted"))
            os.makedirs(cdir)
            for i, c in enumerate(clips):
                save_clips(os.path.join(cdir, f"{kind}_{i:03d}.npz"), c)
            with tqdm(total=len(clips), desc=f"{kind}: render", file=sys.stderr) as bar:
                rendered = render_files([cdir], vdir, "ant", progress=bar.update)
            assert not rendered["errors"], rendered["errors"]
            with tqdm(total=len(clips), desc=f"{kind}: lift", file=sys.stderr) as bar:
                lifted = lift_files([vdir], lifter, ldir, progress=bar.update)
            assert not lifted["errors"], lifted["errors"]
            lifted_clips = [c["lifted"] for c in lifted["clips"]]
            true_rep = score(clips, world="ant")
            lift_rep = score(lifted_clips, world="ant")
            results[kind] = measure(clips, lifted_clips, true_rep, lift_rep)
            print(f"{kind}: {json.dumps({k: v for k, v in results[kind].items() if not isinstance(v, list)})}",
                  file=sys.stderr)
            if args.out:   # after every kind: a run stopped by a time limit keeps what it measured
                with open(args.out, "w") as f:
                    json.dump({"n": args.n, "seed": args.seed, "seconds": time.time() - t0, "results": results}, f, indent=1)
    elapsed = time.time() - t0
    print(table(results))
    what = (", ".join(f"{k} ({len(c)})" for k, c in groups.items()) if args.clips
            else f"{args.n} held-out clips per kind (make_dataset seed {args.seed})")
    print(f"\n{what}, {elapsed:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"n": args.n, "seed": args.seed, "seconds": elapsed, "results": results}, f, indent=1)
    return 0


def _leg_far_side(qpos: np.ndarray) -> np.ndarray:
    """[T, 4] True where a leg's foot is farther from the camera than the torso (camera looks along +y)."""
    import mujoco
    from rlpf.envs.worlds import compile_world

    cw = compile_world("ant")
    m, d = cw.model, mujoco.MjData(cw.model)
    out = np.zeros((len(qpos), 4), bool)
    for t, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        for leg, g in enumerate(cw.foot_geoms[:4]):
            out[t, leg] = d.geom_xpos[g, 1] > d.xpos[cw.root_body, 1]
    return out


def _rotation_deg(qa: np.ndarray, qb: np.ndarray) -> np.ndarray:
    """[T] angle (deg) of the rotation between unit quaternions qa and qb (w, x, y, z), sign-free."""
    qa = qa / np.linalg.norm(qa, axis=1, keepdims=True)
    qb = qb / np.linalg.norm(qb, axis=1, keepdims=True)
    return np.degrees(2 * np.arccos(np.clip(np.abs((qa * qb).sum(axis=1)), 0.0, 1.0)))


def measure(true_clips, lifted, true_rep, lift_rep) -> dict:
    joint, pos, height, ex, ey, far, near, ori = [], [], [], [], [], [], [], []
    for c, l in zip(true_clips, lifted):
        q, p = np.asarray(c.qpos), np.asarray(l.qpos)
        tq = q.copy()
        tq[:, :2] -= q[0, :2]
        jerr = np.degrees(np.abs(p[:, 7:] - tq[:, 7:]))       # [T, 8]: hip_i, ankle_i per leg
        joint.append(jerr.mean())
        pos.append(np.linalg.norm(p[:, :3] - tq[:, :3], axis=1).mean() * 100)
        height.append(np.abs(p[:, 2] - tq[:, 2]).mean() * 100)
        ori.append(_rotation_deg(tq[:, 3:7], p[:, 3:7]).mean())
        ex.append(np.abs(p[:, 0] - tq[:, 0]).mean() * 100)
        ey.append(np.abs(p[:, 1] - tq[:, 1]).mean() * 100)
        side = _leg_far_side(q)
        per_leg = jerr.reshape(len(q), 4, 2).mean(axis=2)
        far += list(per_leg[side])
        near += list(per_leg[~side])
    verdict_true = [c.plausible for c in true_rep.clips]
    verdict_lift = [c.plausible for c in lift_rep.clips]
    assert len(verdict_true) == len(verdict_lift) == len(true_clips), (true_rep.errors, lift_rep.errors)
    agree = [a == b for a, b in zip(verdict_true, verdict_lift)]
    return {"n": len(true_clips), "joint_deg": float(np.mean(joint)), "root_pos_cm": float(np.mean(pos)),
            "root_height_cm": float(np.mean(height)), "orientation_deg": float(np.mean(ori)),
            "root_x_cm": float(np.mean(ex)), "root_y_cm": float(np.mean(ey)),
            "joint_deg_far_legs": float(np.mean(far)) if far else None,
            "joint_deg_near_legs": float(np.mean(near)) if near else None,
            "true_plausible": float(np.mean(verdict_true)), "lifted_plausible": float(np.mean(verdict_lift)),
            "agreement": float(np.mean(agree)),
            "lifted_violations": [c.violations for c in lift_rep.clips]}


def table(results: dict) -> str:
    head = ["kind", "n", "joint deg", "orient deg", "root pos cm", "root z cm", "x cm", "y cm (depth)",
            "far/near legs deg",
            "plausible true", "plausible lifted", "agreement"]
    rows = [[k, str(r["n"]), f"{r['joint_deg']:.2f}", f"{r['orientation_deg']:.2f}", f"{r['root_pos_cm']:.2f}",
             f"{r['root_height_cm']:.2f}",
             f"{r['root_x_cm']:.2f}", f"{r['root_y_cm']:.2f}",
             f"{r['joint_deg_far_legs']:.2f}/{r['joint_deg_near_legs']:.2f}",
             f"{r['true_plausible']:.0%}", f"{r['lifted_plausible']:.0%}", f"{r['agreement']:.0%}"]
            for k, r in results.items()]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head, *rows])


if __name__ == "__main__":
    sys.exit(main())
