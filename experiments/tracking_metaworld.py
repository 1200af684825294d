"""Measure the mocap tracker on Meta-World: valid expert clips track, object-corrupted copies do not.

Records clips from ``gym.make("Meta-World/MT1", env_name=TASK)`` with Meta-World's own scripted
expert (``metaworld.policies.ENV_POLICY_MAP``), clean and with DART-style Gaussian action noise,
``qpos = env.unwrapped.data.qpos`` after each step at the env's 80 fps, tracked at 80, 40 and 20 fps
(every 1st, 2nd, 4th frame), then corrupts copies of them in ways a generator gets objects wrong - independently of the
tracker's thresholds: magnitudes are a visible 10 cm / half an articulation's travel:

* ``levitate``: the free object rises 0.10 m over 0.5 s from the start (nothing lifts it) and stays up;
* ``teleport``: halfway through, the object jumps 0.10 m sideways and stays there;
* ``slide``: the object slides 0.10 m along the table over the first half, untouched;
* ``self_move``: an articulation (drawer, door, button) moves half its range over the first 40 %
  of the clip on top of its own motion, before and whether or not the hand touches it;
* ``art_teleport``: halfway through, the articulation jumps by half its range (toward its far end from there).

A corruption of ``rlpf.data.corrupt`` of these kinds is used instead where it exists (``--use-corrupt``).
Prints success rates per task and kind, and seconds per tracked clip. Fixture tasks are tracked in
the world as the episode placed them (``rlpf.envs.metaworld.placed``), registered under its name.

    flock /tmp/rlpf-cpu.lock .venv/bin/python experiments/tracking_metaworld.py --seeds 4 --frames 200
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from rlpf.core.clips import Clip
from rlpf.envs.worlds import compile_world

TASKS = ("pick-place-v3", "push-v3", "drawer-open-v3", "door-open-v3", "button-press-topdown-v3")


def record(task: str, seed: int, frames: int, noise: float):
    """One expert episode: (qpos [frames+1, nq], placed World, expert success)."""
    from metaworld.policies import ENV_POLICY_MAP

    from rlpf.envs.metaworld import make_env, placed

    world = f"metaworld/{task}"
    env = make_env(world, seed=seed)
    obs, _ = env.reset(seed=seed)
    u = env.unwrapped
    policy = ENV_POLICY_MAP[task]()
    rng = np.random.default_rng(seed)
    qpos, success = [u.data.qpos.copy()], False
    for _ in range(frames):
        a = policy.get_action(obs)
        if noise:
            a = np.clip(a + rng.normal(0.0, noise, size=a.shape), -1.0, 1.0)
        obs, _, _, _, info = env.step(a)
        qpos.append(u.data.qpos.copy())
        success |= bool(info["success"])
    w = placed(world, env)
    env.close()
    return np.array(qpos), w, success


def smooth_step(s):
    s = np.clip(s, 0.0, 1.0)
    return 3 * s ** 2 - 2 * s ** 3


def corruptions(clip: Clip, cw) -> dict[str, Clip]:
    """The corrupted copies that apply to the clip's world (see the module docstring)."""
    m = cw.model
    T, fps = clip.n_frames, clip.fps
    t = np.arange(T) / fps
    out = {}

    def copy(kind):
        return dataclasses.replace(clip, qpos=clip.qpos.copy(), cache={}, source=f"{clip.source}+{kind}")

    for b in cw.object_bodies:
        adr = int(m.jnt_qposadr[m.body_jntadr[b]])     # the free joint: x y z qw qx qy qz
        c = copy("levitate")
        c.qpos[:, adr + 2] += 0.10 * smooth_step(t / 0.5)
        out["levitate"] = c
        c = copy("teleport")
        c.qpos[T // 2:, adr] += 0.10
        out["teleport"] = c
        c = copy("slide")
        c.qpos[:, adr] += 0.10 * smooth_step(np.arange(T) / (T / 2))
        out["slide"] = c
        break
    for k, j in enumerate(cw.articulation_joints):
        adr = int(cw.articulation_qpos[k])
        lo, hi = m.jnt_range[j]
        q0 = clip.qpos[0, adr]
        delta = 0.5 * (hi - lo) * (1 if hi - q0 >= q0 - lo else -1)   # toward the far end of its range
        c = copy("self_move")
        c.qpos[:, adr] = np.clip(c.qpos[:, adr] + delta * smooth_step(np.arange(T) / (0.4 * T)), lo, hi)
        out["self_move"] = c
        c = copy("art_teleport")
        # toward the far end from where the joint is at the jump (a closing drawer or a window slid
        # all the way is at the end its start pointed to by then, and a jump that way is no jump)
        qm = clip.qpos[T // 2, adr]
        jump = 0.5 * (hi - lo) * (1 if hi - qm >= qm - lo else -1)
        c.qpos[T // 2:, adr] = np.clip(c.qpos[T // 2:, adr] + jump, lo, hi)
        out["art_teleport"] = c
        break
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--seeds", type=int, default=3, help="seeds per task (each clean and noisy)")
    p.add_argument("--frames", type=int, default=200, help="env steps per clip (80 fps)")
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.1, 0.3],
                   help="DART action-noise stds, each a recording per seed (actions are in [-1, 1]; "
                        "rlpf.data.metaworld_data draws 0-0.3)")
    p.add_argument("--subsample", type=int, nargs="+", default=[1, 2, 4],
                   help="track every k-th frame copies: 80, 40 (rlpf.data.metaworld_data's rate), 20 fps")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--held-out", type=int, default=0, metavar="N",
                   help="instead: N clips per task from rlpf.data.metaworld_data.record_episode (40 fps, 64 "
                        "frames, seeds from 2000, noise drawn 0-0.3) and rlpf.data.corrupt.OBJECT_CORRUPTIONS")
    args = p.parse_args()
    if args.held_out:
        return held_out(args)

    import rlpf
    from rlpf.policies.mocap_tracker import MocapTracker

    rows: dict[tuple[str, str], list[bool]] = {}
    seconds, margins = [], {}
    for task in args.tasks:
        for seed in range(args.seeds):
            for noise in args.noise:
                qpos, world, expert_ok = record(task, 1000 + seed, args.frames, noise)
                name = f"metaworld/{task}"
                rlpf.register_world(name, world, replace=True)    # this episode's fixture placement
                cw = compile_world(world)
                tracker = MocapTracker(world)
                for k in args.subsample:
                    fps = 80.0 / k
                    clip = Clip(qpos=qpos[::k].copy(), fps=fps, world=name, source=f"{task}/s{seed}/n{noise}/{fps:g}fps")
                    for kind, c in {"valid": clip, **corruptions(clip, cw)}.items():
                        t0 = time.perf_counter()
                        r = tracker.track_one(c)
                        seconds.append((time.perf_counter() - t0, c.duration))
                        rows.setdefault((task, kind), []).append(r.success)
                        if kind == "valid":   # worst error / threshold: how close valid clips come to failing
                            ratios = [o["max_error_m"] / o["threshold_m"] for o in r.info["objects"].values()]
                            ratios.append(np.nanmax(r.body_error_m) / r.threshold_m)
                            margins.setdefault(task, []).append(max(ratios))
                        if args.verbose:
                            objs = {o: round(v["max_error_m"], 4) for o, v in r.info["objects"].items()}
                            print(f"{c.source:44s} {kind:13s} success={r.success} expert={expert_ok} "
                                  f"arm_max={np.nanmax(r.body_error_m):.4f} hand_max={np.nanmax(r.info['hand_error_m']):.4f} "
                                  f"objects={objs} {r.info.get('why', '')}", flush=True)
    print(f"\n{'task':26s} {'kind':13s} success")
    valid, corrupt = [], []
    for (task, kind), ok in rows.items():
        print(f"{task:26s} {kind:13s} {np.mean(ok):.2f} ({sum(ok)}/{len(ok)})")
        (valid if kind == "valid" else corrupt).extend(ok)
    print(f"\nvalid clips: success {np.mean(valid):.3f} ({sum(valid)}/{len(valid)})")
    print(f"object-corrupted clips: success {np.mean(corrupt):.3f} ({sum(corrupt)}/{len(corrupt)})")
    wall = np.array(seconds)
    for task, ms in margins.items():
        print(f"{task:26s} valid clips' worst error / threshold: median {np.median(ms):.2f}, max {np.max(ms):.2f}")
    print(f"seconds per clip: {wall[:, 0].mean():.3f} (clips of {wall[:, 1].mean():.2f} s simulated)")


def held_out(args):
    """Clips and corruptions made by the project's data and corruption code (written independently of the tracker)."""
    from rlpf.data.corrupt import OBJECT_CORRUPTIONS, CorruptionError
    from rlpf.data.metaworld_data import record_episode
    from rlpf.policies.mocap_tracker import MocapTracker

    rows: dict[tuple[str, str], list[bool]] = {}
    for task in args.tasks:
        name = f"metaworld/{task}"
        tracker = MocapTracker(name)     # record_episode places fixtures at the declared placement
        for i in range(args.held_out):
            clip = record_episode(name, 2000 + i, 64)
            variants = {"valid": clip}
            for kind, fn in OBJECT_CORRUPTIONS.items():
                try:
                    variants[kind] = fn(clip)
                except CorruptionError:
                    pass
            for kind, c in variants.items():
                r = tracker.track_one(c)
                rows.setdefault((task, kind), []).append(r.success)
                if args.verbose:
                    print(f"{task} {i} {kind:22s} {r.success} "
                          f"{ {k: round(v['max_error_m'], 4) for k, v in r.info['objects'].items()} }", flush=True)
    print(f"\n{'task':26s} {'kind':22s} success")
    for (task, kind), ok in rows.items():
        print(f"{task:26s} {kind:22s} {np.mean(ok):.2f} ({sum(ok)}/{len(ok)})")
    valid = [x for (t, k), ok in rows.items() if k == "valid" for x in ok]
    bad = [x for (t, k), ok in rows.items() if k != "valid" for x in ok]
    print(f"\nheld-out valid: {np.mean(valid):.3f} ({sum(valid)}/{len(valid)}); "
          f"corrupted: {np.mean(bad):.3f} ({sum(bad)}/{len(bad)})")


if __name__ == "__main__":
    main()
