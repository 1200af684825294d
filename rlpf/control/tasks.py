"""The control tasks: gymnasium robot tasks rlpf evaluates on, their success rules and scripted experts.

The shared base of ``rlpf.control.demos`` (demonstrations), ``rlpf.control.head`` (policies that
read the task) and ``rlpf.control.evaluate`` (evaluation): each imports this, none of them each other's
task facts, so the three have no import cycle.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from rlpf.core.errors import RLPFError


class UnknownEnvError(RLPFError, ValueError):
    """An env id rlpf has no task definition (success rule, expert) for."""


class PolicyLoadError(RLPFError, ValueError):
    """A policy file or directory that is missing, unreadable, or not a policy."""


class PolicyMismatchError(RLPFError, ValueError):
    """A policy trained for another task, observation size or action size."""


@dataclass(frozen=True)
class Task:
    env_id: str
    world: str | None
    """The rlpf world with this task's MJCF (its world model can read the task's qpos), or None."""
    success_rule: str
    distance: Callable
    """distance(env) -> metres (object-goal or fingertip-target)."""
    success: Callable
    """success(start_distance, final_distance) -> bool."""


PUSHER_PROGRESS_M = 0.10
REACHER_TOLERANCE_M = 0.02


def _xy_distance(a: str, b: str):
    def distance(env) -> float:
        u = env.unwrapped
        return float(np.linalg.norm(u.get_body_com(a)[:2] - u.get_body_com(b)[:2]))
    return distance


TASKS: dict[str, Task] = {
    "Pusher-v5": Task("Pusher-v5", "pusher",
                      f"object ends >= {PUSHER_PROGRESS_M:.2f} m closer to the goal than it started",
                      _xy_distance("object", "goal"), lambda d0, d: d0 - d >= PUSHER_PROGRESS_M),
    "Reacher-v5": Task("Reacher-v5", None,
                       f"fingertip ends within {REACHER_TOLERANCE_M:.2f} m of the target",
                       _xy_distance("fingertip", "target"), lambda d0, d: d < REACHER_TOLERANCE_M),
}


def get_task(env_id: str) -> Task:
    if env_id not in TASKS:
        raise UnknownEnvError(f"unknown env id {env_id!r}: rlpf evaluates {sorted(TASKS)} "
                              "(each needs a success rule and a scripted expert in rlpf.control.tasks.TASKS)")
    return TASKS[env_id]


def make_env(env_id: str, render_size: int | None = None):
    """A gymnasium env for a supported task (``render_size``: rgb_array frames of that many pixels)."""
    import gymnasium as gym

    get_task(env_id)
    if render_size:
        os.environ.setdefault("MUJOCO_GL", "egl")
        return gym.make(env_id, render_mode="rgb_array", width=render_size, height=render_size)
    return gym.make(env_id)


def env_sizes(env_id: str) -> tuple[int, int]:
    """(observation size, action size) of a supported task."""
    env = make_env(env_id)
    try:
        return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------------
# policies


class Policy(Protocol):
    env_id: str | None

    def reset(self, env, seed: int) -> None: ...

    def act(self, obs: np.ndarray, env) -> np.ndarray: ...


class ScriptedPolicy:
    """A scripted expert (``rlpf.policies.gym_experts``) as a policy."""

    def __init__(self, expert):
        self.expert, self.env_id = expert, expert.env_id
        self.obs_size, self.act_size = env_sizes(self.env_id)

    def reset(self, env, seed: int) -> None:
        self.expert.reset(env, np.random.default_rng(seed))

    def act(self, obs, env):
        return self.expert.act(obs, env)


def expert_policy(env_id: str) -> ScriptedPolicy:
    from rlpf.policies.gym_experts import EXPERTS

    get_task(env_id)
    return ScriptedPolicy(EXPERTS[env_id]())
