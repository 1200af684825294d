"""Meta-World's Sawyer tasks as rlpf worlds (``metaworld/<task>``), and the bridge to their gym envs.

The declarations themselves are built-ins in ``rlpf.envs.worlds`` (``METAWORLD_TASKS``); this module
holds what they reference and what needs metaworld imported: the model edit the env's constructor
makes (``prepare_model``), making an env for a world (``make_env``), reading the env's per-episode
placements (``placements_of``, ``placed``).

Why a clip recorded from ``gym.make("Meta-World/MT1", env_name=TASK)`` scores as it is: the world
compiles the env's MJCF (the task class's ``model_name``) and applies the constructor's one change
(``SawyerMocapBase.reset_mocap_welds``: the mocap weld's ``eq_data``); nothing else in the model
differs (checked array by array in tests/envs/test_metaworld_worlds.py). The env's reset then changes
two things qpos does not hold: the goal site (no physics) and, for fixture tasks, the fixture's body
position (``World.placements``). A clip recorded at the declared placement scores exactly; one at
another placement scores exactly under ``placed(world, env)``.

``import metaworld`` takes ~1.5 s and registers its gym envs, so only ``make_env`` imports it.
"""
from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

from rlpf.core.errors import RLPFError
from rlpf.envs.worlds import METAWORLD_TASKS, World, get_world

WELD_EQ_DATA = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0])
"""What ``SawyerMocapBase.reset_mocap_welds`` (metaworld 3.1.1) writes into every weld's ``eq_data``
row at construction: anchor 0, relative pose 0 with quaternion (-1, 0, 0, 0) (= identity up to
sign), torque scale 5. mujoco 3.3.0's weld row is 11 wide (4.0.0's 12 is why metaworld needs 3.3.0)."""


class MetaWorldError(RLPFError, ValueError):
    """A Meta-World world that cannot be used as asked (not a Meta-World world, metaworld missing)."""


def prepare_model(model: mujoco.MjModel) -> None:
    """Apply the Meta-World env constructor's model edit: every weld's ``eq_data`` (the mocap weld)."""
    for i in range(model.neq):
        if model.eq_type[i] == int(mujoco.mjtEq.mjEQ_WELD):
            model.eq_data[i, : len(WELD_EQ_DATA)] = WELD_EQ_DATA


def task_of(world) -> str:
    """The Meta-World task name (``env_name``) of a ``metaworld/<task>`` world; MetaWorldError otherwise."""
    w = get_world(world)
    kwargs = dict(w.gym_kwargs)
    if w.gym_id != "Meta-World/MT1" or "env_name" not in kwargs:
        raise MetaWorldError(f"world {w.name!r} is not a Meta-World world; those are "
                             f"{['metaworld/' + t for t in METAWORLD_TASKS]}")
    return str(kwargs["env_name"])


def make_env(world, seed: int | None = None, **kwargs):
    """``gym.make("Meta-World/MT1", env_name=TASK, seed=seed, **kwargs)`` for a ``metaworld/<task>`` world."""
    task = task_of(world)
    try:
        import gymnasium as gym
        import metaworld  # noqa: F401  (registers the Meta-World/* gym ids)
    except ImportError as e:
        raise MetaWorldError(f"world {get_world(world).name!r} needs metaworld (pip install metaworld==3.1.1): {e}") from None
    return gym.make(get_world(world).gym_id, env_name=task, seed=seed, **kwargs)


def placements_of(world, env) -> tuple[tuple[str, tuple[float, float, float]], ...]:
    """The env's current positions of the world's placed bodies (after its reset), as ``World.placements``."""
    w = get_world(world)
    m = env.unwrapped.model
    return tuple((name, tuple(float(x) for x in m.body(name).pos)) for name, _ in w.placements)


def placed(world, env) -> World:
    """The world as the env's current episode has it: its placements read from the env's model. The
    name stays the same, so clips and reports still say ``metaworld/<task>``."""
    w = get_world(world)
    return dataclasses.replace(w, placements=placements_of(w, env)) if w.placements else w
