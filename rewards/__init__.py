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

# tracking terms (tracking_success, tracking_error_m, object_divergence_m): registered on import,
# not physics terms, so the default score does not run them; the physics terms load with the registry
from rlpf.rewards import tracking  # noqa: E402,F401
from rlpf.rewards import alignment  # noqa: E402,F401
