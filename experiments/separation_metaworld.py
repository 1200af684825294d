"""How well the object physics terms separate valid Meta-World clips from object-corrupted ones.

    python experiments/separation_metaworld.py [--seeds 6] [--seed 5000] [--noise 0 0.2] [--tasks all|TASK ...]

Valid clips are recorded here, independently of rlpf's data pipeline: ``gym.make("Meta-World/MT1",
env_name=TASK, seed=s)`` driven by Meta-World's own scripted expert (``metaworld.policies``), with
DART-style Gaussian action noise of each ``--noise`` level (clipped to the action box), qpos after
every env.step at fps = 1 / env.dt, ended 30 steps after the task's success flag (or at 300 steps).
Each clip is scored in its episode's world (``rlpf.envs.metaworld.placed``: the env's fixture
placement). Every clip then gets each object corruption its world admits (rlpf.data.corrupt).

Printed: per term, the rate of valid clips it flags, the rate of the corruptions it is meant to
catch that it flags, and the AUC of its value (valid vs those corruptions); then the judge's overall
verdict (every physics term, as ``rlpf score`` decides ``plausible``) and the AUC of its score,
and which terms flag valid clips. Thresholds are the registered ones: nothing here is tuned.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from rlpf.core.clips import Clip
from rlpf.data import corrupt
from rlpf.envs.metaworld import make_env, placed
from rlpf.envs.worlds import METAWORLD_TASKS
from rlpf.judge.scoring import ScoreConfig, score_clips
from rlpf.rewards import physics_terms

TASKS = ["pick-place-v3", "push-v3", "drawer-open-v3", "door-open-v3", "button-press-topdown-v3"]
"""The default tasks (the first five worlds); ``--tasks all`` is every declared Meta-World world (MT10)."""
FREE = ["levitate_object", "sink_object", "slide_object", "teleport_object", "pass_through_gripper"]
ARTICULATED = ["move_articulation", "teleport_object"]
TARGETS = {  # term -> the corruptions it exists to catch
    "object_levitation_mps": ["levitate_object"],
    "object_in_support_m": ["sink_object"],
    "robot_object_penetration_m": ["pass_through_gripper"],
    "object_unexplained_mps": ["slide_object"],
    "articulation_unexplained_mps": ["move_articulation"],
    "object_teleport_m": ["teleport_object"],
}


def record(task: str, seed: int, noise: float, max_steps: int = 300, after_success: int = 30):
    """A valid clip of Meta-World's expert on ``task`` and the World of its episode."""
    from metaworld.policies import ENV_POLICY_MAP

    world = f"metaworld/{task}"
    env = make_env(world, seed=seed)
    obs, _ = env.reset(seed=seed)
    policy = ENV_POLICY_MAP[task]()
    rng = np.random.default_rng(seed)
    u = env.unwrapped
    qpos, done_at = [u.data.qpos.copy()], None
    for t in range(max_steps):
        a = policy.get_action(obs)
        if noise:
            a = np.clip(a + rng.normal(0.0, noise, a.shape), -1.0, 1.0)
        obs, _, term, trunc, info = env.step(a)
        qpos.append(u.data.qpos.copy())
        if info["success"] and done_at is None:
            done_at = t
        if (done_at is not None and t >= done_at + after_success) or term or trunc:
            break
    w = placed(world, env)
    env.close()
    clip = Clip(qpos=np.array(qpos), fps=1.0 / u.dt, world=world, source=f"{task}/seed{seed}/noise{noise}")
    return clip, w, done_at is not None


def auc(neg, pos) -> float:
    """P(pos > neg) + 0.5 P(tie): the Mann-Whitney AUC of separating ``pos`` from ``neg``."""
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    if not len(neg) or not len(pos):
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).mean()
    eq = (pos[:, None] == neg[None, :]).mean()
    return float(gt + 0.5 * eq)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--seed", type=int, default=5000)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2])
    ap.add_argument("--tasks", nargs="+", default=TASKS, help="Meta-World tasks, or 'all' (every declared world)")
    args = ap.parse_args()
    tasks = list(METAWORLD_TASKS) if args.tasks == ["all"] else args.tasks
    unknown = sorted(set(tasks) - set(METAWORLD_TASKS))
    if unknown:
        ap.error(f"unknown Meta-World task(s) {unknown}; declared: {sorted(METAWORLD_TASKS)}")
    cfg = ScoreConfig()
    t0 = time.time()
    rows = []  # (group, kind, entry)
    n_success = n_clips = 0
    for task in tasks:
        for i in range(args.seeds):
            for noise in args.noise:
                clip, world, ok = record(task, args.seed + i, noise)
                n_clips += 1
                n_success += ok
                rows.append(("valid", "valid", score_clips([clip], world, cfg)[0]))
                kinds = FREE if world.objects else ARTICULATED
                for kind in kinds:
                    bad = corrupt.CORRUPTIONS[kind](clip)
                    rows.append(("corrupted", kind, score_clips([bad], world, cfg)[0]))
    errors = [e for _, _, e in rows if "error" in e]
    rows = [r for r in rows if "error" not in r[2]]
    terms = physics_terms()
    print(f"{n_clips} valid clips ({n_success} reached success), {len(rows) - n_clips} corrupted, "
          f"{len(errors)} errors, {time.time() - t0:.0f} s")
    print(f"\n{'term':30s} {'threshold':>10s} {'valid flagged':>14s} {'corrupted flagged':>18s} {'AUC':>6s}  (corruptions)")
    valid = [e for g, _, e in rows if g == "valid"]
    for name, kinds in TARGETS.items():
        thr = terms[name].threshold
        v = [e["terms"][name] for e in valid if name in e["terms"]]
        c = [e["terms"][name] for g, k, e in rows if k in kinds and name in e["terms"]]
        print(f"{name:30s} {thr:10.3g} {np.mean(np.array(v) > thr):14.1%} {np.mean(np.array(c) > thr):18.1%} "
              f"{auc(v, c):6.3f}  ({', '.join(kinds)}; {len(v)} valid, {len(c)} corrupted)")
    print("\noverall verdict (every physics term, as `rlpf score`):")
    for label, exclude in (("all physics terms", set()), ("without torque_excess", {"torque_excess"})):
        def flagged(e):
            return bool(set(e["violations"]) - exclude)

        def total(e):
            return -sum(-v / terms[k].threshold for k, v in e["terms"].items() if k in terms and k not in exclude)
        cor = [e for g, _, e in rows if g == "corrupted"]
        print(f"  {label:24s} valid flagged {np.mean([flagged(e) for e in valid]):6.1%}   corrupted flagged "
              f"{np.mean([flagged(e) for e in cor]):6.1%}   AUC {auc([total(e) for e in valid], [total(e) for e in cor]):.3f}")
    for kind in FREE + ["move_articulation"]:
        es = [e for g, k, e in rows if k == kind]
        if es:
            print(f"  {kind:24s} flagged {np.mean([bool(set(e['violations']) - {'torque_excess'}) for e in es]):6.1%} "
                  f"(n={len(es)}, without torque_excess)")
    flags: dict[str, int] = {}
    for e in valid:
        for k in e["violations"]:
            flags[k] = flags.get(k, 0) + 1
    print("\nterms flagging valid clips:", {k: f"{n}/{len(valid)}" for k, n in sorted(flags.items())} or "none")
    for e in errors[:5]:
        print("error:", e["source"], e["error"][:200])


if __name__ == "__main__":
    main()
