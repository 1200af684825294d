"""Reward plugins: physics-feedback terms and the registry (installed as rlpf.rewards).

Import the registry API from here::

    from rlpf.rewards import register, get_reward, evaluate_rewards
"""
from rlpf.rewards.registry import (  # noqa: F401
    ENTRY_POINT_GROUP,
    RewardError,
    RewardInfo,
    RewardTable,
    call_reward,
    evaluate_rewards,
    per_clip,
    get_reward,
    physics_terms,
    register,
    registered,
    unregister,
)
