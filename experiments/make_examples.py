"""Regenerate the example clips bundled in rlpf/examples (valid simulations and corrupted copies).

    python experiments/make_examples.py
"""
import os

from rlpf.data import corrupt
from rlpf.core.clips import save_clips
from rlpf.policies.scripted import AntGait, PusherScript, SmoothRandom
from rlpf.data.simulate import simulate

OUT = os.path.join(os.path.dirname(__file__), "..", "rlpf", "examples")

PLAN = {
    "ant": (AntGait, 100, ["float", "sink", "skate", "teleport"]),
    "humanoid": (lambda: SmoothRandom(0.5), 150, ["float", "levitate", "skate", "bend_joint"]),
    "pusher": (PusherScript, 100, ["move_object", "bend_joint"]),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for world, (make, frames, kinds) in PLAN.items():
        clip = simulate(world, make(), frames, seed=2)
        save_clips(os.path.join(OUT, f"{world}_valid.npz"), clip)
        for kind in kinds:
            save_clips(os.path.join(OUT, f"{world}_{kind}.npz"), corrupt.CORRUPTIONS[kind](clip))
    print("wrote", sorted(os.listdir(OUT)))
