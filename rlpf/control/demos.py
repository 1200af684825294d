"""Demonstrations for behaviour cloning on gymnasium tasks: the scripted expert, recorded step by step.

    demos = collect_demos("Pusher-v5", episodes=200, seed=0, noise=0.3)
    demos["obs"] [E, T, obs], demos["qpos"] [E, T, nq], demos["actions"] [E, T, act], demos["prompt"] [E]

``actions`` are the expert's *clean* actions; the env is stepped with them plus Gaussian noise of
``noise`` x the control range's half-width (DART-style noise injection: the cloned policy then sees,
and learns to recover from, states slightly off the expert's path). ``qpos`` is the simulator state
before each step, in the world's qpos order (Pusher-v5's is the ``pusher`` world's), which the
control head turns into motion codes. ``prompt`` is the task's prompt for that episode
(``task_prompt``). Episode ``i`` is reset with ``seed + i``; the same arguments give the same arrays.
"""
from __future__ import annotations

import os
import sys

import numpy as np

# Pusher-v5's prompt names where the goal lies from the object, in the words of the pusher world's labeller
# (rlpf.data.motion_data: away = +y, closer = -y, right = +x, left = -x); Reacher-v5 (no object) reaches.
_PUSH_SECTORS = ("push the object right", "push the object away", "push the object left", "push the object closer")


def task_prompt(env_id: str, env) -> str:
    """The text prompt that conditions the control head in this episode (read at its start)."""
    if env_id == "Pusher-v5":
        u = env.unwrapped
        vec = u.get_body_com("goal")[:2] - u.get_body_com("object")[:2]
        sector = int(np.round(np.arctan2(vec[1], vec[0]) / (np.pi / 2))) % 4
        return _PUSH_SECTORS[sector]
    return "reach without pushing"


def collect_demos(env_id: str, episodes: int, seed: int = 0, noise: float = 0.3, progress: bool = True) -> dict:
    from tqdm import tqdm

    from rlpf.control.tasks import expert_policy, make_env

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(env_id)
    expert = expert_policy(env_id)
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng(seed)
    obs_l, qpos_l, act_l, prompts, returns = [], [], [], [], []
    for i in tqdm(range(episodes), desc=f"demos {env_id}", unit="ep", disable=not progress, file=sys.stderr,
                  dynamic_ncols=True):
        obs, _ = env.reset(seed=seed + i)
        expert.reset(env, seed + i)
        prompts.append(task_prompt(env_id, env))
        o_ep, q_ep, a_ep, ret = [], [], [], 0.0
        while True:
            a = np.asarray(expert.act(obs, env), dtype=np.float32)
            o_ep.append(obs)
            q_ep.append(env.unwrapped.data.qpos.copy())
            a_ep.append(a)
            executed = np.clip(a + noise * 0.5 * (high - low) * rng.standard_normal(a.shape), low, high)
            obs, r, terminated, truncated, _ = env.step(executed.astype(np.float32))
            ret += float(r)
            if terminated or truncated:
                break
        obs_l.append(np.array(o_ep, np.float32))
        qpos_l.append(np.array(q_ep))
        act_l.append(np.array(a_ep, np.float32))
        returns.append(ret)
    env.close()
    if len({len(o) for o in obs_l}) != 1:
        raise RuntimeError(f"{env_id}: demonstrations of different lengths; rlpf expects a fixed time limit")
    return {"env_id": env_id, "obs": np.stack(obs_l), "qpos": np.stack(qpos_l), "actions": np.stack(act_l),
            "prompt": np.array(prompts), "returns": np.array(returns), "seed": seed, "noise": noise}


def load_or_collect(path: str, env_id: str, episodes: int, seed: int, noise: float, progress: bool = True) -> dict:
    """Demonstrations cached at ``path`` (.npz) when they match the arguments; collected and saved otherwise."""
    if os.path.isfile(path):
        with np.load(path) as z:
            d = {k: z[k] for k in z.files}
        if (str(d["env_id"]) == env_id and len(d["obs"]) == episodes and int(d["seed"]) == seed
                and float(d["noise"]) == noise):
            d["env_id"] = env_id
            return d
    d = collect_demos(env_id, episodes, seed, noise, progress)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **d)
    os.replace(tmp, path)
    return d
