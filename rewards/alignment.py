"""Prompt alignment: does the clip do what its prompt says, measured from the motion itself.

The label comes from ``rlpf.data.motion_data.label_motion`` (root velocity and yaw rate in the heading of
frame 0 for the ant, object displacement for the pusher) - the same measurement as command accuracy.
RLPF needs it beside the physics terms: without it the cheapest physically perfect clip is standing
still, whatever the prompt asked (the RLPF paper's FID 1.8 -> 32-42 without its alignment reward).
"""
from rlpf.rewards.registry import register


@register("alignment", threshold=None, unit="1 = does what the prompt says")
def alignment(clips, **_):
    """1.0 when the motion's measured label equals its prompt, else 0.0 (None: no prompt or no labeller)."""
    from rlpf.data.motion_data import PROMPTS, command_matches

    out = []
    for clip in clips:
        if clip.prompt is None or str(clip.world) not in PROMPTS:
            out.append(None)
            continue
        out.append(1.0 if command_matches([clip])[0] else 0.0)
    return out
