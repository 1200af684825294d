"""The learned tracker: an SB3 PPO policy trained on ``rlpf/MotionTracking-v0`` over a motion library.

The RLPF paper's tracker is a PHC/DeepMimic-style policy trained with RL to follow a library of real
motions, then frozen: a generated clip it cannot follow is physically implausible. Here the library
is the world's clean simulated clips (``rlpf.data.motion_data.make_dataset``, cached under ``runs/data``
like pretraining's) or any directory of clips.

    cfg = load_config(TrackerTrainConfig, "experiments/configs/tracker_ant.yaml")
    train_tracker(cfg, "runs/tracker_ant")                  # or: rlpf train-tracker --config ... --out RUN
    tracker = LearnedTracker.load("runs/tracker_ant", world="ant")
    results = tracker.track(clips)                          # rlpf.judge.tracking.TrackResult per clip

A run directory holds:

    RUN/config.yaml              the full config (another config into RUN is refused, except a larger
                                 total_timesteps: training goes on from the newest checkpoint)
    RUN/heldout.npz              library clips held out of training (the evaluation reference)
    RUN/tb/ppo_1/                TensorBoard: SB3's rollout/ and train/ tags, rewards/<term>/mean (the
                                 weighted terms; rewards/total/mean is what PPO optimizes),
                                 tracking/body_error_m and tracking/early_termination_rate
    RUN/tb/eval/                 eval/<valid|levitate>_<metric>: the held-out evaluation after training
    RUN/checkpoints/             tracker_<N>_steps.zip + tracker_vecnormalize_<N>_steps.json
    RUN/tracker.zip, RUN/vecnormalize.json  the final policy and its observation statistics
    RUN/tracker_summary.json     timings, throughput and the held-out evaluation

Running the same command again resumes from the newest checkpoint: policy, optimizer, VecNormalize
statistics and the step counter (TensorBoard continues in the same run); on a finished run it returns
the stored summary at once. With a larger ``total_timesteps`` (``rlpf train-tracker ... --out RUN
total_timesteps=800000``) a finished run trains on from its last checkpoint to the new total. The environments restart
their episodes, so a resumed run is close to, not bit-identical with, an uninterrupted one.
Ctrl-C saves a checkpoint before it stops.

Nothing in a run directory is unpickled (``rlpf.core.safe_load``): the VecNormalize statistics are JSON
written by rlpf, and the SB3 zips are read with every cloudpickled entry rebuilt from its readable
fields. Runs written by older rlpf hold ``vecnormalize.pkl`` pickles instead; loading one refuses with
the file's name and the way out: retrain, or convert a trusted run once with
``python -m rlpf.core.safe_load --trust-and-convert RUN``.

``LearnedTracker`` runs the policy as numpy arrays (``PolicyArrays``: the VecNormalize statistics and
the actor MLP, equal to SB3's deterministic ``predict``), so ``Tracker.track``'s forked workers never
run torch: a torch op in a process forked from one whose torch thread pool has started can spin forever
(seen here with the SB3 policy in the workers).

Measured (shared 2-core box; other people's jobs used 0-1.5 of the cores, so read as rough):

    env.step, one env, random actions, resets included       2.9k steps/s quiet; 1.3-1.8k loaded
    SB3 VecEnv + VecNormalize stepping, random actions       dummy x1 2.3k, x2 2.5k; subproc x2 2.4k, x4 2.6k
    PPO.learn (n_steps 4096 total, 5 epochs, batch 256,      dummy x1 1.0k, x2 1.3k; subproc x2 1.2k, x4 1.3-1.5k;
      [256, 256])                                            load avg 4-6: dummy x2 0.7-1.3k, subproc x2 0.8-1.0k
    experiments/configs/tracker_ant.yaml, 401k steps          5.5 min (1.25k steps/s) nearly alone; 10.7 min at
                                                             load average ~7 (624 steps/s)

PPO's update and SB3's per-step overhead dominate, so subprocess environments hardly pay on 2 cores
(the default is dummy). Same config and seed with dummy environments gave bit-identical policies in
two runs under different load.

Tracking, 200 held-out library clips and copies corrupted by ``rlpf.data.corrupt``'s defaults (ant success
threshold 0.3 m; ``experiments/tracker_eval.py RUN`` reproduces it):

    tracker                                   valid: success, mean body error   levitate / skate / teleport success
    learned, tracker_ant.yaml (401k steps)    0.965, 4.0 cm                     0.00 / 0.00 / 0.00
    the same PD loop, residual fixed at 0     0.98, 3.5 cm                      0.00 / 0.00 / 0.00
    PD + inverse dynamics (--tracker pd)      0.99, 3.0 cm                      0.00 / 0.00 / 0.00

The policy still does **not** beat its own starting point, the zero-residual PD loop, whose error is
almost all root drift. The ant's drift is chaotic in the residual: random residuals of 5 mrad per step
raise the PD loop's mean error from 3.6 to 4.7 cm, 25 mrad to 8 cm (60 clips). With PPO's defaults
(lr 3e-4, clip 0.2, exploration ~0.07 rad) the policy's updates are noise-dominated at this budget: it
wandered off the zero residual within 50k steps and tracked worse on its own reward (0.85-0.90
success, also with kp 3 or smaller actions); lr 1e-4 with clip 0.1 and 12 mrad exploration gave
0.935-0.96 over its checkpoints. The config keeps PPO conservative (lr 5e-5, clip 0.1, exploration
12 mrad), steers the reward to the root (what drifts), and uses a stiffer PD loop (kp 3: 3.5 cm
zero-residual error vs 5.6 cm at kp 1); it then stays at 0.96-0.965 through training (checkpoints
at 150k, 250k and 400k steps, 200 held-out clips). Learning to correct the drift
needs a larger budget: ``total_timesteps=N`` on a finished run trains it further.
"""
from __future__ import annotations

from rlpf.core.errors import RLPFError

import dataclasses
import glob
import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rlpf.core.clips import Clip, clip_files, load_clips, save_clips
from rlpf.core.config import ConfigError, load_config
from rlpf.envs.motion_tracking import MotionTrackingEnv, REWARD_TERMS, TrackingReward, resample
from rlpf.envs.worlds import get_world
from rlpf.core.run_dir import claim_run_dir, locks_run_dir, read_json, write_json
from rlpf.core.safe_load import (StatsFileError, UnsafeFileError, legacy_pickle_error, load_sb3_model, read_vecnormalize,
                            save_vecnormalize, vecnormalize_from_stats)
from rlpf.core.threads import configure_threads
from rlpf.judge.tracking import LEARNED_RUN_DIR, Tracker, TrackerError, TrackResult, success_threshold

NORM_FILE = "vecnormalize.json"
LEGACY_NORM_FILE = "vecnormalize.pkl"


@dataclass
class TrackerTrainConfig:
    """Everything that decides a learned-tracker training run."""

    world: str = "ant"
    """Built-in world to track in (a floating-root world: ant, humanoid)."""
    data: str = ""
    """Directory (or file) of library clips. Empty: runs/data/<world>-<data_n>x<frames>-seed<data_seed>,
    simulated by rlpf.data.motion_data.make_dataset the first time (shared with `rlpf pretrain`'s cache)."""
    data_n: int = 2000
    """Clips to simulate when the default data directory is empty."""
    data_seed: int = 0
    """Seed of the simulated library."""
    frames: int = 64
    """Frames per simulated clip (a positive multiple of 4)."""
    val_fraction: float = 0.1
    """Fraction of the library held out of training (RUN/heldout.npz), for evaluation."""
    total_timesteps: int = 300_000
    """Environment steps (frames) to train for, over all environments."""
    n_envs: int = 2
    """Parallel environments."""
    vec_env: str = "dummy"
    """dummy (all environments in this process) or subproc (one process each). On the shared 2-core box
    dummy was as fast or faster (measured, see the module docstring); subproc pays off on free cores."""
    learning_rate: float = 3e-4
    """Adam learning rate of PPO."""
    n_steps: int = 1024
    """Steps per environment per PPO rollout."""
    batch_size: int = 256
    """PPO minibatch size."""
    n_epochs: int = 5
    """PPO epochs over each rollout."""
    gamma: float = 0.95
    """Discount (0.95, DeepMimic's: a ~1 s horizon at 20 fps)."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO clip range."""
    ent_coef: float = 0.0
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Value-loss weight."""
    max_grad_norm: float = 0.5
    """Gradient clipping."""
    log_std_init: float = -2.0
    """Initial log std of the Gaussian policy (actions are residuals: start close to the reference)."""
    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layers of the policy and value MLPs."""
    seed: int = 0
    """Seed of the split, the environments, the policy initialisation and PPO's sampling."""
    threads: int = 1
    """torch threads in the training process (1: leave the cores to the environments)."""
    checkpoint_every: int = 50_000
    """Environment steps between resumable checkpoints."""
    eval_clips: int = 100
    """Held-out clips tracked after training (plus a levitated copy of each) for tracker_summary.json."""
    future_frames: int = 2
    """Next reference frames in the observation."""
    termination_distance: float = 0.3
    """Early termination when the mean body-position error exceeds this (m)."""
    action_scale: float = 0.5
    """Radians of PD-target residual at action +-1."""
    kp: float = 1.0
    """PD stiffness in actuator-control units per rad (Ant-v5: x150 N m)."""
    kd: float = 0.1
    """PD damping in actuator-control units per rad/s."""
    reward: TrackingReward = field(default_factory=TrackingReward)
    """DeepMimic reward weights and scales (reward.pose_weight=..., see rlpf.envs.motion_tracking)."""

    def __post_init__(self):
        from rlpf.core.config import check

        check(self, self.vec_env in ("subproc", "dummy"), "vec_env", self.vec_env, "'subproc' or 'dummy'")
        check(self, 0 < self.val_fraction < 1, "val_fraction", self.val_fraction, "in (0, 1)")
        for name in ("data_n", "total_timesteps", "n_envs", "n_steps", "batch_size", "n_epochs",
                     "checkpoint_every", "future_frames", "threads"):
            check(self, getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        check(self, self.frames >= 4 and self.frames % 4 == 0, "frames", self.frames, "a positive multiple of 4")
        check(self, self.eval_clips >= 0, "eval_clips", self.eval_clips, ">= 0")
        for name in ("learning_rate", "clip_range", "termination_distance", "action_scale", "max_grad_norm"):
            check(self, getattr(self, name) > 0, name, getattr(self, name), "> 0")
        for name in ("gamma", "gae_lambda"):
            check(self, 0 < getattr(self, name) <= 1, name, getattr(self, name), "in (0, 1]")
        for name in ("ent_coef", "vf_coef", "kp", "kd"):
            check(self, getattr(self, name) >= 0, name, getattr(self, name), ">= 0")
        check(self, bool(self.net_arch) and all(n >= 1 for n in self.net_arch), "net_arch", self.net_arch,
              "a non-empty list of layer widths >= 1")

    @property
    def data_dir(self) -> str:
        return self.data or os.path.join("runs", "data", f"{self.world}-{self.data_n}x{self.frames}-seed{self.data_seed}")

    def env_kwargs(self) -> dict:
        """Keyword arguments of MotionTrackingEnv (besides world and clips) this config sets."""
        return dict(future_frames=self.future_frames, termination_distance=self.termination_distance,
                    action_scale=self.action_scale, kp=self.kp, kd=self.kd, **dataclasses.asdict(self.reward))


class TrackerLoadError(RLPFError, ValueError):
    """A tracker run directory that cannot be loaded; the message names the path and the problem."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


# ----------------------------------------------------------------------------------------------
# training


@locks_run_dir
def train_tracker(cfg: TrackerTrainConfig, run_dir: str, progress: bool = True) -> dict:
    """Train, resume or extend the tracker in ``run_dir``; returns the summary (RUN/tracker_summary.json).

    * a fresh ``run_dir``: train from scratch;
    * an interrupted run, same config: resume from the newest checkpoint;
    * a finished run, same config: nothing to do - the stored summary comes back at once with
      ``"cached": True`` (no data, no torch, no evaluation), so a pipeline can call this as a cached step;
    * a finished (or interrupted) run with a larger ``total_timesteps``, everything else the same:
      train on from the newest checkpoint up to the new total, then evaluate again. Fewer steps than
      already trained, or any other changed field, is refused (ConfigError).
    """
    summary_path = os.path.join(run_dir, "tracker_summary.json")
    final_model, final_norm = os.path.join(run_dir, "tracker.zip"), os.path.join(run_dir, NORM_FILE)
    claim_run_dir(cfg, run_dir, may_change=("total_timesteps",), check=partial(_check_extension, run_dir))
    previous = read_json(summary_path)
    # a finished run of an older rlpf (vecnormalize.pkl) still answers from its summary; loading it refuses
    finished = previous.get("finished") and os.path.exists(final_model) and (
        os.path.exists(final_norm) or os.path.exists(os.path.join(run_dir, LEGACY_NORM_FILE)))
    if finished and "eval" in previous and trained_steps(run_dir) >= cfg.total_timesteps:
        return {**previous, "cached": True}

    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.vec_env import VecNormalize

    from rlpf.worldmodel.pretrain import split

    configure_threads(cfg.threads)
    t0 = time.perf_counter()
    clips = load_library(cfg, progress)
    train, heldout = split(clips, cfg.val_fraction, cfg.seed)
    heldout_path = os.path.join(run_dir, "heldout.npz")
    if not os.path.exists(heldout_path):
        save_clips(heldout_path, heldout, world=cfg.world)
    data_s = time.perf_counter() - t0

    done = finished and trained_steps(run_dir) >= cfg.total_timesteps
    timings = {"data_s": round(data_s, 1)}
    if not done:
        venv = make_vec_env(cfg, train)
        ckpt = latest_checkpoint(run_dir)
        if ckpt:
            venv = vecnormalize_from_stats(_read_stats(ckpt[1]), venv, training=True)
            model = _load_ppo(ckpt[0], env=venv)
        else:
            venv = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=10.0, gamma=cfg.gamma)
            model = PPO("MlpPolicy", venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps,
                        batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
                        clip_range=cfg.clip_range, ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef,
                        max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, device="cpu",
                        tensorboard_log=os.path.join(run_dir, "tb"),
                        policy_kwargs=dict(net_arch=list(cfg.net_arch), log_std_init=cfg.log_std_init))
        model.tensorboard_log = os.path.join(run_dir, "tb")
        start = model.num_timesteps
        remaining = cfg.total_timesteps - start
        callbacks = CallbackList([
            CheckpointEvery(max(cfg.checkpoint_every // cfg.n_envs, 1), run_dir),
            RewardTermLogger(),
        ])
        t0 = time.perf_counter()
        try:
            if remaining > 0:
                model.learn(remaining, callback=callbacks, tb_log_name="ppo", reset_num_timesteps=start == 0,
                            progress_bar=progress)
        except KeyboardInterrupt:
            path = save_checkpoint(model, run_dir)
            venv.close()
            print(f"\ninterrupted: tracker checkpoint saved at step {model.num_timesteps} ({path}); "
                  "run the same command again to resume", file=sys.stderr)
            raise
        train_s = time.perf_counter() - t0
        save_checkpoint(model, run_dir)
        save_vecnormalize(model.get_vec_normalize_env(), final_norm)
        model.save(final_model)
        venv.close()
        steps = model.num_timesteps - start
        timings.update(train_s=round(train_s, 1), steps=int(steps),
                       steps_per_s=round(steps / train_s, 1) if train_s > 0 else None)
        if start:  # resumed or extended: the time of every session so far
            timings["train_s_total"] = round(previous.get("timings", {}).get("train_s_total",
                                                previous.get("timings", {}).get("train_s", 0.0)) + train_s, 1)
    summary = {"world": cfg.world, "n_train": len(train), "n_heldout": len(heldout), "finished": True,
               "num_timesteps": trained_steps(run_dir),
               "timings": {**previous.get("timings", {}), **timings}}
    t0 = time.perf_counter()
    summary["eval"] = evaluate_tracker(LearnedTracker(run_dir), heldout[:cfg.eval_clips])
    summary["timings"]["eval_s"] = round(time.perf_counter() - t0, 1)
    _log_eval(run_dir, summary["eval"], cfg.total_timesteps)
    write_json(summary_path, summary)
    return summary


def load_library(cfg: TrackerTrainConfig, progress: bool = False) -> list[Clip]:
    """The library clips: from cfg.data, or the simulated cache at cfg.data_dir (filled when empty)."""
    from rlpf.data.motion_data import make_dataset, save_dataset

    directory = cfg.data_dir
    if cfg.data and not os.path.exists(cfg.data):
        raise ConfigError(f"data {cfg.data}: no such file or directory")
    files = list(clip_files([directory])) if os.path.exists(directory) else []
    if not files:
        if cfg.data:
            raise ConfigError(f"data {cfg.data}: no .npz clips in it")
        from tqdm import tqdm

        with tqdm(total=cfg.data_n, desc=f"simulating {cfg.world} library", unit="clip", disable=not progress,
                  file=sys.stderr) as bar:
            clips = make_dataset(cfg.world, cfg.data_n, seed=cfg.data_seed, frames=cfg.frames, progress=bar.update)
        save_dataset(clips, directory)
        files = list(clip_files([directory]))  # read back: one clip order (hence one split) on every run
    clips = [c for f in files for c in load_clips(f)]
    for c in clips:
        if c.world not in (None, cfg.world):
            raise ConfigError(f"data {c.source}: a clip of world {c.world!r}, but this run tracks {cfg.world!r}")
    return clips


def _make_env(world: str, clips: list[Clip], kwargs: dict) -> MotionTrackingEnv:
    return MotionTrackingEnv(world, clips=clips, **kwargs)


def make_vec_env(cfg: TrackerTrainConfig, clips: list[Clip]):
    """``cfg.n_envs`` tracking environments over ``clips`` in a VecMonitor (episode returns in TensorBoard)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    import multiprocessing

    fns = [partial(_make_env, cfg.world, clips, cfg.env_kwargs()) for _ in range(cfg.n_envs)]
    if cfg.vec_env == "subproc" and cfg.n_envs > 1:
        # fork where there is one: starts fast and does not re-import the caller's __main__ (SB3's
        # default forkserver does, which breaks scripts without a main guard); the workers never use torch
        fork = "fork" in multiprocessing.get_all_start_methods()
        venv = SubprocVecEnv(fns, start_method="fork" if fork else None)
    else:
        venv = DummyVecEnv(fns)
    venv.seed(cfg.seed)
    return VecMonitor(venv)


class RewardTermLogger(BaseCallback):
    """Logs every reward term's mean over a rollout (``rewards/<term>/mean``, the weighted terms whose
    sum is the optimized reward), the mean body error and the early-termination rate."""

    def _on_rollout_start(self) -> None:
        self._sums = dict.fromkeys(REWARD_TERMS, 0.0)
        self._error, self._n, self._n_error, self._ends, self._falls = 0.0, 0, 0, 0, 0

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"]):
            for k in REWARD_TERMS:
                self._sums[k] += info[f"reward_{k}"]
            self._n += 1
            if np.isfinite(info["body_error_m"]):
                self._error += info["body_error_m"]
                self._n_error += 1
            if done:
                self._ends += 1
                self._falls += not info.get("TimeLimit.truncated", False)
        return True

    def _on_rollout_end(self) -> None:
        n = max(self._n, 1)
        for k, v in self._sums.items():
            self.logger.record(f"rewards/{k}/mean", v / n)
        self.logger.record("rewards/total/mean", sum(self._sums.values()) / n)
        self.logger.record("tracking/body_error_m", self._error / max(self._n_error, 1))
        self.logger.record("tracking/early_termination_rate", self._falls / max(self._ends, 1))


def trained_steps(run_dir: str) -> int:
    """Environment steps the newest checkpoint in RUN/checkpoints holds (0: none yet). Training always
    ends with a checkpoint, so for a finished run this is the final policy's step count."""
    ckpt = latest_checkpoint(run_dir)
    return int(re.fullmatch(r"tracker_(\d+)_steps\.zip", os.path.basename(ckpt[0])).group(1)) if ckpt else 0


def _check_extension(run_dir: str, changes: dict) -> None:
    """claim_run_dir's check: total_timesteps may grow beyond what RUN has trained, never shrink below it."""
    if "total_timesteps" in changes:
        old, new = changes["total_timesteps"]
        done = trained_steps(run_dir)
        if new < done:
            raise ConfigError(f"{run_dir} has already trained {done} steps (total_timesteps was {old}); "
                              f"total_timesteps={new} is fewer: give more to train further, or choose a new --out")


def latest_checkpoint(run_dir: str) -> tuple[str, str] | None:
    """(policy .zip, VecNormalize statistics .json) of the newest complete checkpoint in RUN/checkpoints,
    or None. A checkpoint of an older rlpf comes back with its ``.pkl`` statistics, which loading refuses
    (with the way out) rather than skipping it and silently training from an earlier point."""
    found = []
    for path in glob.glob(os.path.join(run_dir, "checkpoints", "tracker_*_steps.zip")):
        m = re.fullmatch(r"tracker_(\d+)_steps\.zip", os.path.basename(path))
        if not m:
            continue
        stem = os.path.join(run_dir, "checkpoints", f"tracker_vecnormalize_{m.group(1)}_steps")
        norm = next((stem + ext for ext in (".json", ".pkl") if os.path.exists(stem + ext)), None)
        if norm:
            found.append((int(m.group(1)), path, norm))
    if not found:
        return None
    _, path, norm = max(found)
    return path, norm


def save_checkpoint(model, run_dir: str) -> str:
    """Save the policy and its VecNormalize statistics as RUN/checkpoints/tracker_<N>_steps.*"""
    directory = os.path.join(run_dir, "checkpoints")
    os.makedirs(directory, exist_ok=True)
    n = model.num_timesteps
    path = os.path.join(directory, f"tracker_{n}_steps.zip")
    save_vecnormalize(model.get_vec_normalize_env(), os.path.join(directory, f"tracker_vecnormalize_{n}_steps.json"))
    model.save(path)  # the .zip last: latest_checkpoint needs both files
    return path


class CheckpointEvery(BaseCallback):
    """SB3's CheckpointCallback (same cadence: every ``every`` calls, i.e. n_envs steps each) writing
    ``save_checkpoint``'s files, so the statistics are rlpf's JSON and never a pickle."""

    def __init__(self, every: int, run_dir: str):
        super().__init__()
        self.every, self.run_dir = int(every), run_dir

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0:
            save_checkpoint(self.model, self.run_dir)
        return True


def _retrain_hint(norm_path: str) -> str:
    run = os.path.dirname(os.path.dirname(norm_path)) if os.path.basename(os.path.dirname(norm_path)) == "checkpoints" \
        else os.path.dirname(norm_path)
    return f"rlpf train-tracker --config {os.path.join(run or '.', 'config.yaml')} --out NEW_RUN"


def _read_stats(norm_path: str) -> dict:
    """The VecNormalize statistics at ``norm_path`` (rlpf's JSON). Raises TrackerLoadError, also for a
    pickle of an older rlpf, which is never opened."""
    if norm_path.endswith(".pkl"):
        e = legacy_pickle_error(norm_path, _retrain_hint(norm_path))
        raise TrackerLoadError(e.path, e.problem)
    try:
        return read_vecnormalize(norm_path)
    except (StatsFileError, UnsafeFileError) as e:
        raise TrackerLoadError(norm_path, e.problem) from None


def _load_ppo(model_path: str, env=None):
    """SB3 PPO from ``model_path`` with no cloudpickle payload decoded (rlpf.core.safe_load). Raises
    TrackerLoadError naming the file."""
    from stable_baselines3 import PPO

    try:
        return load_sb3_model(PPO, model_path, env=env, device="cpu")
    except UnsafeFileError as e:
        raise TrackerLoadError(model_path, e.problem) from None
    except Exception as e:  # noqa: BLE001 - zipfile, json, torch and KeyError failures all mean a damaged file
        raise TrackerLoadError(model_path, f"unreadable policy ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------------------------
# the tracker


@dataclass
class PolicyArrays:
    """A trained policy's deterministic action as plain numpy: the VecNormalize observation statistics
    and the actor MLP. Cheap to pickle to tracking workers, and free of torch there (a torch op in a
    process forked from one whose torch thread pool is running can spin forever)."""

    source: str
    """The policy file these arrays came from."""
    obs_mean: np.ndarray
    obs_var: np.ndarray
    obs_epsilon: float
    clip_obs: float
    layers: list
    """[(W [out, in], b [out], activation name or None), ...]: the actor network, last = action mean."""
    action_low: np.ndarray
    action_high: np.ndarray

    @property
    def obs_dim(self) -> int:
        return int(self.obs_mean.shape[0])

    def __repr__(self) -> str:  # short, and distinct for distinct weights (Tracker.cache_key uses it)
        h = hashlib.sha1()
        for a in (self.obs_mean, self.obs_var, *(x for w, b, _ in self.layers for x in (w, b))):
            h.update(np.ascontiguousarray(a).tobytes())
        return f"PolicyArrays({self.source!r}, sha1={h.hexdigest()[:16]})"

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.clip((obs - self.obs_mean) / np.sqrt(self.obs_var + self.obs_epsilon), -self.clip_obs, self.clip_obs)
        for w, b, activation in self.layers:
            x = w @ x + b
            if activation == "tanh":
                x = np.tanh(x)
            elif activation == "relu":
                x = np.maximum(x, 0.0)
        return np.clip(x, self.action_low, self.action_high)


def load_policy(model_path: str, norm_path: str) -> PolicyArrays:
    """PolicyArrays from an SB3 PPO .zip and its VecNormalize statistics (.json), nothing unpickled.
    Raises TrackerLoadError naming the file."""
    import torch

    stats = _read_stats(norm_path)  # first: a legacy pickle is refused before anything else is read
    model = _load_ppo(model_path)
    norm = stats["obs_rms"]
    mean, var = np.asarray(norm.mean, np.float64), np.asarray(norm.var, np.float64)
    eps, clip_obs = stats["epsilon"], stats["clip_obs"]
    if not stats["norm_obs"]:
        mean, var, eps, clip_obs = np.zeros_like(mean), np.ones_like(var), 0.0, np.inf
    want = model.observation_space.shape
    if mean.shape != want:
        raise TrackerLoadError(norm_path, f"statistics for observations {mean.shape}, the policy takes {want}")
    policy = model.policy
    activations = {torch.nn.Tanh: "tanh", torch.nn.ReLU: "relu"}
    layers, pending = [], None
    for module in list(policy.mlp_extractor.policy_net) + [policy.action_net]:
        if isinstance(module, torch.nn.Linear):
            if pending is not None:
                layers.append(pending)
            pending = [module.weight.detach().numpy().astype(np.float64), module.bias.detach().numpy().astype(np.float64), None]
        elif type(module) in activations and pending is not None:
            pending[2] = activations[type(module)]
        else:
            raise TrackerLoadError(model_path, f"unsupported layer {module!r} in the policy network (Linear, Tanh, ReLU)")
    layers.append(pending)
    return PolicyArrays(source=model_path, obs_mean=mean, obs_var=var, obs_epsilon=eps, clip_obs=clip_obs,
                        layers=[tuple(layer) for layer in layers], action_low=model.action_space.low.astype(np.float64),
                        action_high=model.action_space.high.astype(np.float64))


class LearnedTracker(Tracker):
    """Replays clips with a trained tracking policy (deterministic actions, no early termination)."""

    name = "learned"

    def __init__(self, run_dir: str, world: str | None = None, policy: PolicyArrays | None = None):
        from rlpf.envs.worlds import UnknownWorldError, compile_world

        self.run_dir = run_dir
        if not os.path.isdir(run_dir):
            raise TrackerLoadError(run_dir, "no such tracker run directory (train one with `rlpf train-tracker --out RUN`)")
        cfg_path = os.path.join(run_dir, "config.yaml")
        if not os.path.isfile(cfg_path):
            raise TrackerLoadError(run_dir, "not a tracker run: no config.yaml")
        try:
            self.cfg = load_config(TrackerTrainConfig, cfg_path)
        except ConfigError as e:
            raise TrackerLoadError(cfg_path, f"not a tracker config ({e})") from None
        if world is not None:
            try:
                name = compile_world(world).name
            except UnknownWorldError as e:
                raise TrackerLoadError(run_dir, str(e)) from None
            if name != self.cfg.world:
                raise TrackerLoadError(run_dir, f"tracker trained for world {self.cfg.world!r}, asked to track {name!r}")
        self.world = self.cfg.world
        if policy is None:
            model_path, norm_path = os.path.join(run_dir, "tracker.zip"), os.path.join(run_dir, NORM_FILE)
            if os.path.isfile(model_path) and not os.path.isfile(norm_path) and \
                    os.path.isfile(os.path.join(run_dir, LEGACY_NORM_FILE)):
                norm_path = os.path.join(run_dir, LEGACY_NORM_FILE)  # an older rlpf's run: refused by name
            if not (os.path.isfile(model_path) and os.path.isfile(norm_path)):
                ckpt = latest_checkpoint(run_dir)
                if ckpt is None:
                    raise TrackerLoadError(run_dir, f"no trained policy: neither tracker.zip + {NORM_FILE} "
                                                    "nor a checkpoint")
                model_path, norm_path = ckpt
            policy = load_policy(model_path, norm_path)
        self.policy = policy
        self._env_kwargs = {**self.cfg.env_kwargs(), "termination_distance": float("inf")}

    @classmethod
    def load(cls, run_dir: str, world: str | None = None) -> "LearnedTracker":
        """The tracker trained in ``run_dir`` (its final policy, else its newest checkpoint);
        ``world`` given: refuse a tracker trained for another world. Raises TrackerLoadError."""
        return cls(run_dir, world)

    def spec(self) -> tuple:
        return type(self), {"run_dir": self.run_dir, "world": self.world, "policy": self.policy}

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The policy's deterministic action for one raw (unnormalized) observation."""
        return self.policy(obs)

    def track_one(self, clip: Clip) -> TrackResult:
        env = MotionTrackingEnv(self.world, clips=[clip], **self._env_kwargs)
        if env.observation_space.shape != (self.policy.obs_dim,):
            raise TrackerLoadError(self.policy.source, f"policy observes {self.policy.obs_dim} values, "
                                                       f"the env gives {env.observation_space.shape[0]}")
        obs, _ = env.reset(options={"clip": 0, "frame": 0})
        ref = env.reference(0)
        T, m = ref.n_frames, env.model
        qpos = np.full((T, m.nq), np.nan)
        err = np.full(T, np.nan)
        torques = np.zeros((T, m.nu))
        qpos[0], err[0] = env.data.qpos, env.body_error(0)
        fell = diverged = False
        rewards = []
        for t in range(1, T):
            obs, reward, _, _, info = env.step(self.act(obs))
            torques[t - 1] = env.last_torques
            if info["diverged"]:
                diverged = True
                break
            qpos[t], err[t] = env.data.qpos, info["body_error_m"]
            fell |= info["fell"]
            rewards.append(reward)
        torques[T - 1] = torques[T - 2]  # the last frame holds the last step's torques
        if abs(clip.fps - env.fps) > 1e-6 * env.fps:  # report at the clip's own frames
            n = clip.n_frames
            qpos = resample(qpos, env.fps, clip.fps, env._quat_adrs)[:n]
            err = np.interp(np.arange(n) / clip.fps, np.arange(T) / env.fps, err)
            torques = resample(torques, env.fps, clip.fps)[:n]
        env.close()
        return TrackResult(source=clip.source, qpos=qpos, body_error_m=err, torques=torques, fell=bool(fell),
                           diverged=diverged, threshold_m=success_threshold(self.world),
                           info={"tracker": self.name, "run_dir": self.run_dir,
                                 "mean_reward": float(np.mean(rewards)) if rewards else float("nan")})


# ----------------------------------------------------------------------------------------------
# evaluation


def evaluate_tracker(tracker: Tracker, clips: list[Clip], workers: int | None = None,
                     corruptions: tuple = ("levitate",)) -> dict:
    """Success rate and body error of ``tracker`` on valid clips and on copies of them corrupted by
    each of ``corruptions`` (names in ``rlpf.data.corrupt.CORRUPTIONS``, default amounts)."""
    from rlpf.data.corrupt import CORRUPTIONS

    if not clips:
        return {}
    out = {}
    groups = [("valid", clips)] + [(k, [CORRUPTIONS[k](c) for c in clips]) for k in corruptions]
    for name, batch in groups:
        results = tracker.track(batch, workers=workers)
        out[name] = {
            "n": len(results),
            "success_rate": float(np.mean([r.success for r in results])),
            "mean_body_error_m": float(np.mean([r.mean_error_m for r in results])),
            "mean_max_body_error_m": float(np.mean([np.nanmax(r.body_error_m) for r in results])),
            "fell": int(sum(r.fell for r in results)),
            "diverged": int(sum(r.diverged for r in results)),
        }
    return out


def _log_eval(run_dir: str, report: dict, step: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(os.path.join(run_dir, "tb", "eval")) as w:
        for kind, values in report.items():
            for k, v in values.items():
                w.add_scalar(f"eval/{kind}_{k}", v, step)


def default_tracker(world) -> "LearnedTracker":
    """The tracker ``--tracker learned`` means: the one trained in ``rlpf.judge.tracking.LEARNED_RUN_DIR``
    for this world (registered by that name in ``rlpf.judge.tracking``)."""
    name = get_world(world).name
    path = LEARNED_RUN_DIR.format(world=name)
    if not os.path.isdir(path):
        raise TrackerError(f"tracker 'learned': no trained tracker for world {name!r} in {path}; train one with "
                           f"`rlpf train-tracker --out {path}` or give its run directory")
    return load_run_tracker("learned", path, world)


def load_run_tracker(spec: str, path: str, world) -> "LearnedTracker":
    """The tracker trained in run directory ``path`` (``--tracker RUN_DIR``), for ``world``; a
    TrackerError naming ``spec`` when it cannot be loaded."""
    try:
        return LearnedTracker.load(path, world)
    except (OSError, ValueError, KeyError) as e:
        raise TrackerError(f"tracker {spec!r}: cannot load a learned tracker for world {get_world(world).name!r}: "
                           f"{e}") from None
