"""Residual root force: the part of the root wrench that no floor contact could have applied."""
from rlpf.rewards.analysis import contact_solution
from rlpf.rewards.registry import per_clip, register


@register("root_residual_bw", threshold=0.25, unit="body weights", physics=True, needs=("root",))
@per_clip
def root_residual(clip, world):
    """Mean norm of the root wrench left after the best friction-cone contact forces (body weights).

    Root torques are divided by the world's characteristic length, so they read in body weights too.
    """
    if not world.floating:
        return None
    return float(contact_solution(clip, world).root_residual.mean())
