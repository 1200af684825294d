"""The built-in physics terms; importing this module registers them."""
from rlpf.rewards import (  # noqa: F401
    articulation_motion,
    floating,
    joint_limits,
    object_levitation,
    object_motion,
    object_penetration,
    object_teleport,
    penetration,
    root_impulse,
    root_residual,
    skating,
    torques,
)
