"""The built-in physics terms; importing this module registers them."""
from rlpf.rewards import (  # noqa: F401
    floating,
    joint_limits,
    object_motion,
    penetration,
    root_impulse,
    root_residual,
    skating,
    torques,
)
