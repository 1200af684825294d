"""Is friction skippable? Glide / skate detection and false positives on valid clips, before and after.

    python experiments/glide_check.py [--n 10] [--seed 1000] [--before HEAD~1]

A body sliding over the floor under its own weight must be decelerated by kinetic Coulomb friction
(mu*N against the slip). This script scores, with the contact fit of the working tree ("after") and,
with ``--before REV``, the fit of git revision REV ("before", its ``_solve_contacts`` swapped in for
the same clips in the same run):

* valid clips, simulated here with seeds the tests do not use: the ant under smooth random actions,
  large-amplitude smooth random actions (bouncy), uniform random actions every frame, the CPG gaits
  of ``AntGait`` and of ``rlpf.data.motion_data`` (``simulate_episode``); the humanoid under smooth
  random actions (it falls) at its own 66.7 fps and subsampled to 33 fps; and clips recorded from
  gymnasium's own Ant-v5 (20 fps, 5 s) and Humanoid-v5 (66.7 fps, until the env terminates) with
  smoothed and with uniform random actions, ``qpos = env.unwrapped.data.qpos.copy()`` after each
  ``env.step``, ``fps = 1 / env.unwrapped.dt``;
* the humanoid whole-body glide: every valid humanoid clip's root translated at 0.8 m/s in a random
  horizontal direction, and the foot skate of ``rlpf.data.corrupt.skate`` (0.6 m/s sideways);
* the corruptions of ``experiments/separation.py`` on its groups (same controllers, frame counts and,
  at the default ``--seed 1000``, the same seeds, so its table is reproduced), for the rates and the
  per-world AUC of the total score (valid vs corrupted).

Prints per group the flagged rate (1 - plausible), per world valid-flagged / corrupted-flagged / AUC,
and the scoring wall time of each fit. Targets (issue 16): glide and skate flagged >= 90 %, valid
flagged <= 10 %.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rlpf.core.clips import Clip  # noqa: E402
from rlpf.data import corrupt  # noqa: E402
from rlpf.data.motion_data import PROMPTS, simulate_episode  # noqa: E402
from rlpf.data.simulate import simulate  # noqa: E402
from rlpf.judge.scoring import ScoreConfig, score_clips  # noqa: E402
from rlpf.policies.scripted import AntGait, PusherScript, SmoothRandom  # noqa: E402
from rlpf.rewards import analysis  # noqa: E402

GLIDE_SPEED = 0.8
"""m/s: the issue's whole-body glide."""


def glide(clip: Clip, speed: float, rng: np.random.Generator) -> Clip:
    """The root translated at ``speed`` m/s in a random horizontal direction on top of its own motion."""
    out = corrupt._copy(clip, f"glide{speed}")
    heading = rng.uniform(-np.pi, np.pi)
    t = np.arange(clip.n_frames) / clip.fps
    root = corrupt._root(clip)
    out.qpos[:, root] += speed * np.cos(heading) * t
    out.qpos[:, root + 1] += speed * np.sin(heading) * t
    return out


def subsample(clip: Clip, k: int) -> Clip:
    return Clip(qpos=clip.qpos[::k].copy(), fps=clip.fps / k, world=clip.world, source=f"{clip.source}/{k}")


def gym_clip(env_id: str, world: str, seed: int, smooth: bool, max_frames: int) -> Clip:
    """A clip recorded from gymnasium's own env the way the README tells a user to."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    u = np.zeros(env.action_space.shape)
    frames = []
    for _ in range(max_frames):
        a = env.action_space.sample()
        u = 0.85 * u + 0.15 * a if smooth else a
        _, _, terminated, truncated, _ = env.step(u)
        frames.append(env.unwrapped.data.qpos.copy())
        if terminated or truncated:
            break
    fps = 1.0 / env.unwrapped.dt
    env.close()
    return Clip(qpos=np.array(frames), fps=fps, world=world, source=f"{env_id}:{seed}:{'smooth' if smooth else 'uniform'}")


def ant_episodes(n, seed):
    prompts = list(PROMPTS["ant"])
    return [simulate_episode("ant", prompts[i % len(prompts)], seed + i, frames=64) for i in range(n)]


def valid_groups(n: int, seed: int):
    """world -> [(label, clips)]."""
    s = seed
    hum = [simulate("humanoid", SmoothRandom(0.5), 150, seed=s + i) for i in range(n)]
    return {
        "ant": [
            ("smooth random 0.6", [simulate("ant", SmoothRandom(0.6), 100, seed=s + i) for i in range(n)]),
            ("smooth random 1.0 (bouncy)", [simulate("ant", SmoothRandom(1.0), 100, seed=s + i) for i in range(n)]),
            ("uniform random", [simulate("ant", SmoothRandom(1.0, 0.0), 100, seed=s + i) for i in range(n)]),
            ("CPG AntGait", [simulate("ant", AntGait(), 100, seed=s + i) for i in range(n)]),
            ("CPG motion_data", ant_episodes(n, s)),
            ("Ant-v5 smoothed", [gym_clip("Ant-v5", "ant", s + i, True, 100) for i in range(n)]),
            ("Ant-v5 uniform", [gym_clip("Ant-v5", "ant", s + i, False, 100) for i in range(n)]),
        ],
        "humanoid": [
            ("smooth random 67 fps", hum),
            ("smooth random 33 fps", [subsample(c, 2) for c in hum]),
            ("Humanoid-v5 smoothed", [gym_clip("Humanoid-v5", "humanoid", s + i, True, 1000) for i in range(n)]),
            ("Humanoid-v5 uniform", [gym_clip("Humanoid-v5", "humanoid", s + i, False, 1000) for i in range(n)]),
        ],
        "pusher": [("scripted push", [simulate("pusher", PusherScript(), 100, seed=s + i) for i in range(n)])],
    }


SEPARATION = {  # experiments/separation.py's groups (same controllers, frames and seeds) -> its corruptions
    ("ant", "smooth random 0.6"): ["float", "sink", "levitate", "skate", "teleport", "jitter", "bend_joint"],
    ("ant", "CPG AntGait"): ["float", "sink", "levitate", "skate", "teleport", "jitter", "bend_joint"],
    ("ant", "uniform random"): ["float", "skate", "teleport"],
    ("humanoid", "smooth random 67 fps"): ["float", "sink", "levitate", "teleport", "jitter", "bend_joint"],
    ("pusher", "scripted push"): ["move_object", "jitter", "bend_joint"],
}


def load_fit(rev: str):
    """``_solve_contacts`` of rewards/analysis.py at git revision ``rev``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = subprocess.run(["git", "show", f"{rev}:rewards/analysis.py"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "analysis_before.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("analysis_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod._solve_contacts


def auc(pos, neg):
    """P(a valid clip's score > a corrupted one's), ties counted half."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def score(clips, world, cfg):
    for c in clips:
        c.cache.clear()
    return score_clips(clips, world, cfg)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--before", default=None, help="git revision whose contact fit to compare against")
    args = ap.parse_args()
    cfg = ScoreConfig()
    rng = np.random.default_rng(args.seed)
    groups = valid_groups(args.n, args.seed)
    corrupted = {w: [] for w in groups}
    for world, gs in groups.items():
        for label, clips in gs:
            if world == "humanoid":
                corrupted[world].append((f"glide 0.8 m/s ({label})", [glide(c, GLIDE_SPEED, rng) for c in clips]))
                corrupted[world].append((f"skate 0.6 m/s ({label})", [corrupt.skate(c) for c in clips]))
            for k in SEPARATION.get((world, label), []):
                corrupted[world].append((f"{k} ({label})", [corrupt.CORRUPTIONS[k](c) for c in clips]))

    fits = [("after", analysis._solve_contacts)]
    if args.before:
        fits.insert(0, (f"before ({args.before})", load_fit(args.before)))
    results, walls = {}, {}
    for name, fit in fits:
        analysis._solve_contacts = fit
        wall = 0.0
        for world in groups:
            for kind, gs in (("valid", groups[world]), ("corrupt", corrupted[world])):
                for label, clips in gs:
                    t0 = time.perf_counter()
                    rep = score(clips, world, cfg)
                    wall += time.perf_counter() - t0
                    results[name, world, kind, label] = rep
        walls[name] = wall

    names = [n for n, _ in fits]
    print(f"{'world':9s} {'group':50s} " + " ".join(f"{n[:18]:>18s}" for n in names) + "   (flagged rate)")
    for world in groups:
        for kind, gs in (("valid", groups[world]), ("corrupt", corrupted[world])):
            for label, clips in gs:
                cells = []
                for n in names:
                    rep = results[n, world, kind, label]
                    cells.append(f"{np.mean([not e['plausible'] for e in rep]):18.0%}")
                print(f"{world:9s} {kind[0]} {label:48s} " + " ".join(cells))
    print()
    print("per world: valid flagged / corrupted flagged / AUC of the total score (valid vs corrupted)")
    for world in groups:
        cells = []
        for n in names:
            v = [e for (m, w, k, _), rep in results.items() if m == n and w == world and k == "valid" for e in rep]
            c = [e for (m, w, k, _), rep in results.items() if m == n and w == world and k == "corrupt" for e in rep]
            cells.append(f"{n}: {np.mean([not e['plausible'] for e in v]):.0%} / "
                         f"{np.mean([not e['plausible'] for e in c]):.0%} / "
                         f"{auc([e['score'] for e in v], [e['score'] for e in c]):.3f}")
        print(f"{world:9s} " + "   ".join(cells))
    for n in names:
        g = [e for (m, w, k, lab), rep in results.items() if m == n and w == "humanoid" and lab.startswith("glide") for e in rep]
        s = [e for (m, w, k, lab), rep in results.items() if m == n and w == "humanoid" and lab.startswith("skate 0.6 m/s (") for e in rep]
        v = [e for (m, w, k, _), rep in results.items() if m == n and w == "humanoid" and k == "valid" for e in rep]
        print(f"humanoid {n}: glide flagged {np.mean([not e['plausible'] for e in g]):.0%}, skate flagged "
              f"{np.mean([not e['plausible'] for e in s]):.0%}, valid flagged {np.mean([not e['plausible'] for e in v]):.0%}")
    print("scoring wall time, all groups: " + ", ".join(f"{n} {walls[n]:.1f} s" for n in names)
          + (f" (after / before = {walls['after'] / walls[names[0]]:.2f})" if len(names) > 1 else ""))


if __name__ == "__main__":
    main()
