"""Held-out tracking check: clips made independently of the trackers' settings, tracked by each tracker.

    python experiments/humanoid_heldout.py make   --out runs/heldout [--n 12] [--seed 50000] [--servo-rate step|frame]
    python experiments/humanoid_heldout.py track  runs/heldout --trackers pd bullet pd-residual [--groups ...]

``make`` simulates and saves (one ``.npz`` per group under ``--out``); ``track`` tracks a saved set with
each tracker and prints success per group (run it in pieces with ``--groups``: each group is a few
seconds to a minute). Nothing here reads a tracker's gains, thresholds or rules.

Groups (each ``--n`` clips, seeds from ``--seed``; the tests use seeds < 10000):

* ``humanoid perturbed {20,30,60} fps``: gymnasium's own ``humanoid.xml`` (the world's MJCF) loaded
  directly with its contact model changed per clip - every geom's ``solref`` time constant drawn
  log-uniformly in 0.005..0.04 s (the model's default is 0.02: stiffer and softer contacts), damping
  ratio 0.7..1.3, floor and body friction x0.5..x2, every body's mass and inertia x0.8..x1.2
  independently, and the simulator timestep 2..5 ms (1/fps divided into whole steps) - driven for
  3 s from the standing reset pose (qpos0 + U(+-0.01) as gymnasium resets) by one of three drivers
  drawn per clip: smoothed random actions (scale 0.3..1, it falls), a PD servo through the motors to
  smoothly wandering random joint targets (it crouches, kneels, falls), or a PD servo holding the
  standing pose with small random target wobble (it stands, sways, topples late or not at all).
  The servo law runs every simulator step (its set points move once per frame); ``--servo-rate
  frame`` holds its command for a whole frame instead, as sets made before 2026-12-04 did: the limbs
  then chatter at the frame rate (``Driver`` says why). Recorded at exactly 20, 30 or 60 fps.
* ``ant perturbed 20 fps``: the same for gymnasium's ``ant.xml`` (5 s), the ant's unchanged target.
* ``Humanoid-v5 / Ant-v5 smoothed / uniform``: recorded from gymnasium's env exactly as a user would:
  ``env.unwrapped.data.qpos.copy()`` after each ``env.step``, ``fps = 1 / env.unwrapped.dt``; smoothed
  random actions (``u = 0.85 u + 0.15 a``) or uniform random actions; Humanoid-v5 until the env
  terminates (it falls: 0.3-1 s), Ant-v5 100 frames (5 s) or until it terminates.
* corruptions of ``rlpf.data.corrupt`` at their default amounts on every ``perturbed`` group:
  levitate (+0.5 m), skate (0.6 m/s), teleport (0.5 m).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import mujoco
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rlpf.core.clips import Clip, load_clips, save_clips  # noqa: E402
from rlpf.data import corrupt  # noqa: E402
from rlpf.envs.worlds import gymnasium_asset  # noqa: E402

CORRUPTIONS = ("levitate", "skate", "teleport")
ROBOTS = {"humanoid": ("humanoid.xml", 3.0), "ant": ("ant.xml", 5.0)}   # MJCF, clip seconds


def perturbed_model(xml: str, rng: np.random.Generator, fps: float) -> tuple[mujoco.MjModel, int, dict]:
    """The MJCF with its contact model, masses and timestep changed; (model, steps per frame, what changed)."""
    m = mujoco.MjModel.from_xml_path(gymnasium_asset(xml))
    timeconst = float(np.exp(rng.uniform(np.log(0.005), np.log(0.04))))
    dampratio = float(rng.uniform(0.7, 1.3))
    m.geom_solref[:, 0] = timeconst
    m.geom_solref[:, 1] = dampratio
    fric = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    m.geom_friction[:, 0] *= fric
    scale = rng.uniform(0.8, 1.2, m.nbody)
    scale[0] = 1.0
    m.body_mass[:] *= scale
    m.body_inertia[:] *= scale[:, None]
    lo, hi = int(np.ceil(1.0 / (fps * 0.005))), int(np.floor(1.0 / (fps * 0.002)))
    steps = int(rng.integers(lo, hi + 1))
    m.opt.timestep = 1.0 / (fps * steps)
    # solref time constants below 2 timesteps are raised to that by MuJoCo (refsafe); record what it uses
    info = {"solref_timeconst": max(timeconst, 2 * m.opt.timestep), "dampratio": dampratio, "friction_x": fric,
            "mass_x": [float(scale[1:].min()), float(scale[1:].max())], "timestep": float(m.opt.timestep)}
    return m, steps, info


class Driver:
    """Ctrl of one of three kinds (drawn in ``reset``): smoothed random actions, a PD servo to
    wandering random joint targets, or a PD servo holding the rest pose with small wobble.

    ``new_frame`` moves the random parts once per recorded frame; ``ctrl`` is the motor command. The
    servo law runs every simulator step when ``servo_rate="step"`` (as a real servo does, far faster
    than a camera), or only once per frame, held in between, with ``"frame"``: a 200-800 N m/rad servo
    held for a whole 17-50 ms frame is an unstable sampled loop, and the limbs chatter at exactly the
    frame rate (the recorded joints alternate frame to frame: motion above the clip's Nyquist rate)."""

    def __init__(self, servo_rate: str = "step"):
        if servo_rate not in ("step", "frame"):
            raise ValueError(f"servo_rate must be 'step' or 'frame', got {servo_rate!r}")
        self.servo_rate = servo_rate

    def reset(self, m, d, rng):
        self.kind = str(rng.choice(["smooth", "servo", "stand"]))
        self.scale = rng.uniform(0.3, 1.0)
        self.u = np.zeros(m.nu)
        self.jnt = m.actuator_trnid[:, 0]
        self.qadr = m.jnt_qposadr[self.jnt]
        self.dadr = m.jnt_dofadr[self.jnt]
        self.rest = m.qpos0[self.qadr].copy()
        self.target = self.rest.copy()
        lo, hi = m.jnt_range[self.jnt].T
        self.lo, self.hi = lo, hi
        self.wobble = rng.uniform(0.05, 0.5) if self.kind == "servo" else rng.uniform(0.0, 0.08)
        # servo gains in ctrl units per rad: ctrl 1 = gear N m
        self.kp, self.kd = rng.uniform(2.0, 8.0), rng.uniform(0.1, 0.4)
        return self

    def new_frame(self, m, d, rng):
        lo_c, hi_c = m.actuator_ctrlrange.T
        if self.kind == "smooth":
            self.u = 0.85 * self.u + 0.15 * rng.uniform(lo_c, hi_c) * self.scale
            return
        goal = np.clip(self.rest + rng.uniform(-1, 1, len(self.rest)) * self.wobble * (self.hi - self.lo),
                       self.lo, self.hi)
        self.target = 0.95 * self.target + 0.05 * goal
        self.u = self._servo(m, d)

    def ctrl(self, m, d):
        if self.kind == "smooth" or self.servo_rate == "frame":
            return self.u
        return self._servo(m, d)

    def _servo(self, m, d):
        lo_c, hi_c = m.actuator_ctrlrange.T
        q, v = d.qpos[self.qadr], d.qvel[self.dadr]
        return np.clip(self.kp * (self.target - q) - self.kd * v, lo_c, hi_c)


def perturbed_clip(robot: str, fps: float, seed: int, servo_rate: str = "step") -> Clip:
    xml, seconds = ROBOTS[robot]
    rng = np.random.default_rng(seed)
    m, steps, info = perturbed_model(xml, rng, fps)
    d = mujoco.MjData(m)
    mujoco.mj_resetData(m, d)
    d.qpos[:] = m.qpos0 + rng.uniform(-0.01, 0.01, m.nq)
    d.qvel[:] = rng.uniform(-0.01, 0.01, m.nv)
    mujoco.mj_forward(m, d)
    driver = Driver(servo_rate).reset(m, d, rng)
    n = int(round(seconds * fps)) + 1
    qpos = np.empty((n, m.nq))
    for t in range(n):
        qpos[t] = d.qpos
        driver.new_frame(m, d, rng)
        for _ in range(steps):
            d.ctrl[:] = driver.ctrl(m, d)
            mujoco.mj_step(m, d)
    if not np.isfinite(qpos).all():
        raise RuntimeError(f"perturbed {robot} clip seed {seed} diverged")
    info["driver"] = driver.kind
    info["servo_rate"] = servo_rate
    return Clip(qpos=qpos, fps=fps, world=robot, source=f"perturbed:{robot}:{fps:g}fps:{seed}:{json.dumps(info)}")


def gym_clip(env_id: str, world: str, seed: int, smooth: bool, max_frames: int) -> Clip:
    """A clip recorded from gymnasium's own env the way the README tells a user to."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    u = np.zeros(env.action_space.shape)
    frames = [env.unwrapped.data.qpos.copy()]
    for _ in range(max_frames - 1):
        a = env.action_space.sample()
        u = 0.85 * u + 0.15 * a if smooth else a
        _, _, terminated, truncated, _ = env.step(u)
        frames.append(env.unwrapped.data.qpos.copy())
        if terminated or truncated:
            break
    fps = 1.0 / env.unwrapped.dt
    env.close()
    return Clip(qpos=np.array(frames), fps=fps, world=world,
                source=f"{env_id}:{seed}:{'smooth' if smooth else 'uniform'}")


def make_groups(n: int, seed: int, servo_rate: str = "step") -> dict[str, list[Clip]]:
    groups: dict[str, list[Clip]] = {}
    for k, fps in enumerate((20.0, 30.0, 60.0)):
        groups[f"humanoid perturbed {fps:g} fps"] = [perturbed_clip("humanoid", fps, seed + 1000 * k + i, servo_rate) for i in range(n)]
    groups["ant perturbed 20 fps"] = [perturbed_clip("ant", 20.0, seed + 5000 + i, servo_rate) for i in range(n)]
    for env_id, world, frames in (("Humanoid-v5", "humanoid", 1000), ("Ant-v5", "ant", 100)):
        for smooth in (True, False):
            groups[f"{env_id} {'smoothed' if smooth else 'uniform'}"] = [
                gym_clip(env_id, world, seed + 7000 + i, smooth, frames) for i in range(n)]
    for name in [g for g in groups if "perturbed" in g]:
        for c in CORRUPTIONS:
            groups[f"{name} + {c}"] = [corrupt.CORRUPTIONS[c](clip) for clip in groups[name]]
    return groups


def slug(group: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in group).strip("_")


def cmd_make(args) -> None:
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    groups = make_groups(args.n, args.seed, args.servo_rate)
    index = {}
    for name, clips in groups.items():
        # one file per clip: gym episodes end when the env terminates, so lengths differ
        files = []
        for i, c in enumerate(clips):
            files.append(os.path.join(slug(name), f"{i:03d}.npz"))
            save_clips(os.path.join(args.out, files[-1]), c)
        index[name] = {"files": files, "sources": [c.source for c in clips]}
    with open(os.path.join(args.out, "groups.json"), "w") as f:
        json.dump(index, f, indent=1)
    drivers = {g: [json.loads(c.source.split(":", 4)[4])["driver"] for c in cs] for g, cs in groups.items()
               if g.endswith("fps") and "perturbed" in g}
    print(json.dumps({"groups": {g: len(c) for g, c in groups.items()}, "drivers": drivers,
                      "seconds": round(time.perf_counter() - t0, 1)}, indent=1))


def outcome(r) -> str:
    if r.diverged:
        return "diverged"
    if r.fell:
        return "fell"
    if r.info.get("residual_failed"):
        return "residual"
    if not r.success:
        return "error"
    return "ok"


def cmd_track(args) -> None:
    from rlpf.judge.tracking import load_tracker

    with open(os.path.join(args.dir, "groups.json")) as f:
        index = json.load(f)
    names = [g for g in index if not args.groups or any(s in g for s in args.groups)]
    rows = []
    trackers: dict = {}
    for name in names:
        clips = [c for f in index[name]["files"] for c in load_clips(os.path.join(args.dir, f))]
        for c, src in zip(clips, index[name]["sources"]):
            c.source = src
        world = clips[0].world
        for tname in args.trackers:
            key = (tname, world)
            if key not in trackers:
                trackers[key] = load_tracker(tname, world)
            t0 = time.perf_counter()
            res = trackers[key].track(clips, workers=args.workers)
            why = {}
            for r in res:
                why[outcome(r)] = why.get(outcome(r), 0) + 1
            resid = [r.info["residual_peak_bw"] for r in res if "residual_peak_bw" in r.info]
            row = {"group": name, "tracker": tname, "n": len(res), "success": float(np.mean([r.success for r in res])),
                   "outcomes": why, "mean_error_m": float(np.nanmean([r.mean_error_m for r in res])),
                   "s_per_clip": round((time.perf_counter() - t0) / len(res), 3)}
            if resid:
                row["residual_peak_bw_median"] = float(np.median(resid))
                row["residual_peak_bw_max"] = float(np.max(resid))
                # success had the charge been another limit (same rollouts): the whole trade-off, not one point
                kin = [not r.diverged and not r.fell and np.isfinite(r.body_error_m).all()
                       and r.body_error_m.max() <= r.threshold_m for r in res]
                row["success_at_limit_bw"] = {str(lim): float(np.mean([k and r.info.get("residual_peak_bw", np.inf) <= lim
                                                                       for k, r in zip(kin, res)]))
                                              for lim in (0.25, 0.5, 0.75, 1.0)}
                row["success_error_only"] = float(np.mean(kin))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print("| group | " + " | ".join(args.trackers) + " |")
    print("|---|" + "---|" * len(args.trackers))
    for name in names:
        cells = [f"{r['success']:.2f}" for t in args.trackers for r in rows if r["group"] == name and r["tracker"] == t]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("--out", required=True)
    mk.add_argument("--n", type=int, default=12)
    mk.add_argument("--seed", type=int, default=50000)
    mk.add_argument("--servo-rate", choices=["step", "frame"], default="step",
                    help="how often the servo drivers update their motor command: every simulator step "
                         "(default, as a real servo) or once per recorded frame (the limbs chatter at the frame rate)")
    tr = sub.add_parser("track")
    tr.add_argument("dir")
    tr.add_argument("--trackers", nargs="+", default=["pd"])
    tr.add_argument("--groups", nargs="*", default=[], help="substrings of group names to track (default all)")
    tr.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    cmd_make(args) if args.cmd == "make" else cmd_track(args)


if __name__ == "__main__":
    main()
