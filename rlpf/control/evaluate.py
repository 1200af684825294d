"""Evaluate any policy on gymnasium's own robot tasks: success rate, mean return, episode videos.

    from rlpf.control.evaluate import evaluate, load_policy
    report = evaluate(load_policy("expert", "Pusher-v5"), "Pusher-v5", episodes=20, video_dir="videos/")
    report["success_rate"], report["return_mean"]

A policy is anything with ``reset(env, seed)`` (at each episode start) and ``act(obs, env) -> action``
(once per step); ``env_id`` names the task it was trained for (None: any). Adapters here wrap an SB3
model (``SB3Policy``, deterministic actions, its VecNormalize statistics applied) and a scripted expert
(``ScriptedPolicy``); ``rlpf.control.head`` adds the control head and the MLP behaviour-cloning policy.
``load_policy(spec, env_id)`` turns a CLI argument into one: ``expert`` (or ``scripted``), a directory
or file written by ``rlpf control`` / ``save_policy`` (``policy.pt``: control head or MLP), or an SB3
``.zip`` (or a directory holding ``model.zip``).

Determinism: episode ``i`` resets the env with ``seed + i`` and the policy with the same seed (a
flow-matching head draws its noise from it); the env is built fresh for each evaluation, so a report
repeats exactly for a seed. ``rlpf control`` evaluates with seeds from 1000, demonstrations use 0-999.

Success (decided on the state at the episode's last step, from the simulator, not from the reward):

| task | episode | success |
|---|---|---|
| Pusher-v5 | 100 steps (5 s) | the object ends >= 0.10 m closer to the goal than it started |
| Reacher-v5 | 50 steps (1 s) | the fingertip ends within 0.02 m of the target |

Pusher-v5 starts the object 0.17-0.36 m from the goal, and its 8e-6 kg object on damped slides moves
at <= 3-4 cm/s under soft contact, so 0.10 m takes ~3 s of sustained pushing toward the goal; an
absolute "within x m" rule would be decided mostly by where the reset put the object. The report also
carries ``final_distance_mean`` (object-goal or fingertip-target, metres). 0.02 m on Reacher-v5 is
contact between the 1 cm fingertip and the 9 mm target spheres.

Videos are ``env.render()`` frames (gymnasium's MuJoCo renderer, headless with ``MUJOCO_GL=egl`` or
``osmesa``) written with ``rlpf.viz.render.write_mp4``; gymnasium's ``RecordVideo`` needs moviepy, which
rlpf does not install. Each frame carries the policy's label, the step, the return so far and, on the
last frames, SUCCESS / FAIL.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from rlpf.core.errors import RLPFError

from rlpf.control.tasks import (Policy, PolicyLoadError, PolicyMismatchError, UnknownEnvError, env_sizes,
                                expert_policy, get_task, make_env)

__all__ = ["evaluate", "load_policy", "load_sb3", "save_sb3", "check_policy", "SB3Policy",
           # the task layer (rlpf.control.tasks), importable from here too
           "PolicyLoadError", "PolicyMismatchError", "UnknownEnvError", "expert_policy", "get_task", "make_env"]


class SB3Policy:
    """An SB3 model acting deterministically; ``vecnormalize``: anything with VecNormalize's
    ``normalize_obs`` (a VecNormalize, or ``rlpf.core.safe_load.ObsNormalizer`` from saved statistics)."""

    def __init__(self, model, vecnormalize=None, env_id: str | None = None):
        self.model, self.vecnormalize, self.env_id = model, vecnormalize, env_id
        self.obs_size = int(np.prod(model.observation_space.shape))
        self.act_size = int(np.prod(model.action_space.shape))

    def reset(self, env, seed: int) -> None:
        pass

    def act(self, obs, env):
        if self.vecnormalize is not None:
            obs = self.vecnormalize.normalize_obs(obs)
        return self.model.predict(obs, deterministic=True)[0]


def save_sb3(model, vecnormalize, path: str, env_id: str, algo: str) -> None:
    """``path/model.zip`` + ``vecnormalize.json`` + ``sb3.json`` (algorithm, task): loadable by ``load_policy``.

    The statistics are rlpf's JSON (``rlpf.core.safe_load``), not SB3's pickle, so loading never unpickles."""
    import json

    from rlpf.core.safe_load import save_vecnormalize

    os.makedirs(path, exist_ok=True)
    if vecnormalize is not None:
        save_vecnormalize(vecnormalize, os.path.join(path, "vecnormalize.json"))
    model.save(os.path.join(path, "model.zip"))
    with open(os.path.join(path, "sb3.json"), "w") as f:
        json.dump({"algo": algo, "env_id": env_id}, f)


def learn_sb3(venv, algo: str, steps: int, seed: int, out_dir: str, task: str, progress: bool = True) -> SB3Policy:
    """SB3 PPO (wrapped in VecNormalize) or SAC with default hyperparameters trained from scratch on
    ``venv`` for ``steps`` env steps (TensorBoard in ``out_dir/tb``), saved with ``save_sb3`` and read back."""
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.vec_env import VecNormalize

    vn = None
    tb = os.path.join(out_dir, "tb")
    if algo == "ppo":
        venv = vn = VecNormalize(venv, gamma=0.99)
        model = PPO("MlpPolicy", venv, seed=seed, device="cpu", tensorboard_log=tb, verbose=0)
    else:
        model = SAC("MlpPolicy", venv, seed=seed, device="cpu", tensorboard_log=tb, verbose=0)
    model.learn(total_timesteps=steps, progress_bar=progress, tb_log_name=algo)
    save_sb3(model, vn, out_dir, task, algo)
    venv.close()
    return load_sb3(out_dir)


def load_sb3(path: str) -> SB3Policy:
    """An SB3 ``.zip`` (and the ``vecnormalize.json`` beside it), read without unpickling anything:
    cloudpickled model entries are rebuilt by ``rlpf.core.safe_load.load_sb3_model``. A ``vecnormalize.pkl``
    of an older rlpf is refused with how to convert or retrain (PolicyLoadError names the file)."""
    import json

    import stable_baselines3 as sb3

    from rlpf.core.safe_load import (ObsNormalizer, StatsFileError, UnsafeFileError, legacy_pickle_error, load_sb3_model,
                                read_vecnormalize)

    folder, zip_path = (path, os.path.join(path, "model.zip")) if os.path.isdir(path) else (os.path.dirname(path), path)
    vn = None
    vn_path, legacy = os.path.join(folder, "vecnormalize.json"), os.path.join(folder, "vecnormalize.pkl")
    if not os.path.isfile(vn_path) and os.path.isfile(legacy):
        e = legacy_pickle_error(legacy, f"delete {folder} and run `rlpf control` again")
        raise PolicyLoadError(f"policy {e.path}: {e.problem}")
    if os.path.isfile(vn_path):
        try:
            vn = ObsNormalizer(read_vecnormalize(vn_path))
        except (StatsFileError, UnsafeFileError) as e:
            raise PolicyLoadError(f"policy {e.path}: {e.problem}") from None
    meta = {}
    if os.path.isfile(os.path.join(folder, "sb3.json")):
        try:
            with open(os.path.join(folder, "sb3.json")) as f:
                meta = json.load(f)
            algos = [str(meta["algo"]).upper()] if meta.get("algo") else []
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise PolicyLoadError(f"policy {os.path.join(folder, 'sb3.json')}: unreadable ({type(e).__name__}: {e})") from None
        if algos and not hasattr(sb3, algos[0]):
            raise PolicyLoadError(f"policy {os.path.join(folder, 'sb3.json')}: unknown SB3 algorithm {meta['algo']!r}")
    else:
        algos = []
    errors = []
    for name in algos or ["PPO", "SAC", "TD3", "A2C", "DDPG"]:
        try:
            model = load_sb3_model(getattr(sb3, name), zip_path, device="cpu")
            break
        except UnsafeFileError as e:
            if "'policy_class'" not in e.problem:  # the same refusal for every algorithm: say it once
                raise PolicyLoadError(f"policy {e.path}: {e.problem}") from None
            errors.append(f"{name}: {e.problem}")
        except Exception as e:  # noqa: BLE001 - SB3 raises many types for a mismatched or damaged zip
            errors.append(f"{name}: {type(e).__name__}: {e}")
    else:
        raise PolicyLoadError(f"policy {zip_path}: not a loadable SB3 model ({'; '.join(errors)})")
    return SB3Policy(model, vn, meta.get("env_id"))


def load_policy(spec: str, env_id: str) -> Policy:
    """``expert`` / ``scripted``, a ``policy.pt`` (or its directory), or an SB3 ``.zip`` (or its directory)."""
    get_task(env_id)
    if spec in ("expert", "scripted"):
        return expert_policy(env_id)
    if not os.path.exists(spec):
        raise PolicyLoadError(f"policy {spec}: no such file or directory (give a policy directory from "
                              "`rlpf control`, a policy.pt, an SB3 .zip, or `expert`)")
    if os.path.isdir(spec):
        for name, kind in (("policy.pt", "torch"), ("model.zip", "sb3")):
            if os.path.isfile(os.path.join(spec, name)):
                return _load_file(os.path.join(spec, name), kind)
        inner = sorted(os.path.relpath(os.path.dirname(p), spec) for p in _policy_files(spec))
        hint = f"; policies inside: {', '.join(inner)}" if inner else ""
        raise PolicyLoadError(f"policy {spec}: no policy.pt or model.zip in this directory{hint}")
    kind = "sb3" if spec.endswith(".zip") else "torch"
    return _load_file(spec, kind)


def _policy_files(root: str) -> list[str]:
    found = []
    for dirpath, _, files in os.walk(root):
        found += [os.path.join(dirpath, f) for f in files if f in ("policy.pt", "model.zip")]
    return found


def _load_file(path: str, kind: str) -> Policy:
    if kind == "sb3":
        return load_sb3(path)
    from rlpf.control.head import load_policy_file

    return load_policy_file(path)


def check_policy(policy, env_id: str) -> None:
    """Refuse a policy trained for another task or with other observation / action sizes."""
    obs_size, act_size = env_sizes(env_id)
    trained_for = getattr(policy, "env_id", None)
    sizes = (getattr(policy, "obs_size", obs_size), getattr(policy, "act_size", act_size))
    if (trained_for and trained_for != env_id) or sizes != (obs_size, act_size):
        raise PolicyMismatchError(
            f"policy trained for {trained_for or 'an unnamed task'} (observations {sizes[0]}, actions {sizes[1]}) "
            f"cannot act in {env_id} (observations {obs_size}, actions {act_size})")


# ---------------------------------------------------------------------------------------------------
# evaluation


def evaluate(policy, env_id: str, episodes: int = 20, seed: int = 1000, video_dir: str | None = None,
             video_episodes: int = 1, video_size: int = 240, label: str = "policy", progress: bool = True) -> dict:
    """Run ``episodes`` seeded episodes; returns success rate, returns, final distances, videos written.

    Videos never cost the evaluation: a frame or file that cannot be made (no OpenGL backend, an
    unwritable ``video_dir``: ``rlpf.viz.render.video_failures``) stops the recording with a warning and an
    entry in ``video_errors``; rendering does not touch the simulation, so the numbers are the same."""
    from tqdm import tqdm

    from rlpf.viz.render import describe_failure, video_failures

    task = get_task(env_id)
    if episodes < 1:
        raise RLPFError(f"episodes must be >= 1, got {episodes}")
    check_policy(policy, env_id)
    recording = bool(video_dir) and video_episodes > 0
    results, videos, video_errors = [], [], []

    def video_failed(e, what):
        nonlocal recording
        recording = False
        video_errors.append({"video": what, "error": describe_failure(e)})
        print(f"warning: {label} {env_id}: no video ({what}: {describe_failure(e)}); evaluation goes on without",
              file=sys.stderr)

    try:
        env = make_env(env_id, render_size=video_size if recording else None)
    except video_failures() as e:
        video_failed(e, "renderer")
        env = make_env(env_id)
    fps = 1.0 / env.unwrapped.dt

    def frame(frames):
        if not recording:
            return
        try:
            frames.append(env.render())
        except video_failures() as e:
            video_failed(e, "env.render()")
    t0 = time.perf_counter()
    try:
        for i in tqdm(range(episodes), desc=f"eval {label} {env_id}", unit="ep", disable=not progress,
                      file=sys.stderr, dynamic_ncols=True):
            record = i < video_episodes
            obs, _ = env.reset(seed=seed + i)
            policy.reset(env, seed + i)
            d0 = task.distance(env)
            ret, steps, frames, overlay = 0.0, 0, [], []
            if record:
                frame(frames)
                overlay.append((0, 0.0))
            while True:
                action = np.asarray(policy.act(obs, env), dtype=np.float32).reshape(env.action_space.shape)
                if not np.isfinite(action).all():
                    raise ValueError(f"policy {label} returned a non-finite action {action} in {env_id}")
                obs, reward, terminated, truncated, _ = env.step(action)
                ret += float(reward)
                steps += 1
                if record:
                    frame(frames)
                    overlay.append((steps, ret))
                if terminated or truncated:
                    break
            d = task.distance(env)
            ok = bool(task.success(d0, d))
            results.append({"seed": seed + i, "return": ret, "success": ok, "start_distance": d0,
                            "final_distance": d, "steps": steps})
            if record and recording:
                path = os.path.join(video_dir, f"{_slug(label)}_{env_id}_seed{seed + i}.mp4")
                try:
                    videos.append(_write_video(path, frames, overlay, fps, label, ok))
                except video_failures() as e:
                    video_failed(e, path)
    finally:
        try:
            env.close()
        except video_failures():  # a renderer that never got its GL context may fail to close
            if not video_errors:
                raise
    returns = np.array([r["return"] for r in results])
    return {
        "env": env_id, "policy": label, "episodes": episodes, "seed": seed,
        "success_rule": task.success_rule,
        "success_rate": float(np.mean([r["success"] for r in results])),
        "return_mean": float(returns.mean()), "return_std": float(returns.std()),
        "final_distance_mean": float(np.mean([r["final_distance"] for r in results])),
        "eval_steps": int(sum(r["steps"] for r in results)),
        "seconds": round(time.perf_counter() - t0, 2),
        "videos": videos, "video_errors": video_errors, "per_episode": results,
    }


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _write_video(path, frames, overlay, fps, label, ok) -> str:
    from rlpf.viz.render import GREEN, RED, draw_text, text_height, write_mp4

    out = []
    for k, (frame, (step, ret)) in enumerate(zip(frames, overlay)):
        img = np.ascontiguousarray(frame)
        draw_text(img, f"{label}  step {step}  return {ret:.1f}", 4, 4)
        if k >= len(frames) - max(1, int(fps)):  # the last second: the verdict, under the first line
            draw_text(img, "SUCCESS" if ok else "FAIL", 4, 6 + text_height(1), color=GREEN if ok else RED, scale=2)
        out.append(img)
    return write_mp4(path, np.stack(out), fps)
