"""Objects inside things: a free object sunk into its support (the table), and the robot's gripper
passing through a free object. Depths are MuJoCo's own signed distances (``mj_geomDistance``,
negative = penetration) on the clip's frames."""
import numpy as np

from rlpf.rewards.object_analysis import object_geometry
from rlpf.rewards.registry import per_clip, register

SUPPORT_TOLERANCE = 0.005
"""m: MuJoCo's soft contacts let a resting object sink a few millimetres (PhysDiff's 5 mm, as
penetration.py allows the robot's feet); valid Meta-World clips measure at most ~3 mm."""
ROBOT_TOLERANCE = 0.01
"""m: a gripper squeezing an object sinks its pads into it through the soft contact - up to 7.5 mm
measured on valid Meta-World expert clips (the pads' kp = 400 position actuators against the
object's solimp 0.99); 1 cm is above that and well below a pass-through, which buries a pad a whole
object radius (2 cm for Meta-World's puck) deep."""
PERSIST_FRAMES = 3
"""A penetration counts where it lasts this many consecutive frames (its depth: the shallowest of
them). A sunk or passed-through object stays inside for many frames; a single frame's depth can be
an artifact of the distance query itself (mj_geomDistance once reported a puck resting on Meta-World's
table 0.32 m deep in the box, on one frame between two at 0 mm, while MuJoCo's collision pipeline
found no contact at all)."""


def persistent_depth(depth: np.ndarray, frames: int = PERSIST_FRAMES) -> np.ndarray:
    """[T, k] -> [T - frames + 1, k]: the smallest depth in each run of ``frames`` consecutive frames."""
    if len(depth) < frames:
        return np.zeros((0,) + depth.shape[1:])
    return np.min(np.stack([depth[i:len(depth) - frames + 1 + i] for i in range(frames)]), axis=0)


RESISTING_MASS_KG = 1e-3
"""kg: objects lighter than this are not judged for robot penetration. MuJoCo's soft contact force
scales with the mass it moves, so an object this light cannot push back on the arm: in valid
simulation MuJoCo itself sinks the Pusher-v5 arm 5.6 cm into that world's 7.9e-6 kg object. Meta-World's
puck weighs 0.75 kg."""


@register("object_in_support_m", threshold=0.01, unit="m", physics=True, needs=("objects", "supports"))
@per_clip
def object_in_support(clip, world):
    """Deepest penetration of a free object into a support surface lasting 3 frames, beyond a 5 mm tolerance (m)."""
    if not len(world.object_bodies) or not len(world.support_geoms):
        return None
    geo = object_geometry(clip, world)
    return float(np.maximum(persistent_depth(-geo.obj_support) - SUPPORT_TOLERANCE, 0.0).max(initial=0.0))


@register("robot_object_penetration_m", threshold=0.005, unit="m", physics=True, needs=("objects",))
@per_clip
def robot_object_penetration(clip, world):
    """Deepest penetration of the robot into a free object lasting 3 frames, beyond a 1 cm soft-contact tolerance (m)."""
    if not len(world.object_bodies) or not len(world.robot_geoms):
        return None
    judged = world.model.body_mass[world.object_bodies] >= RESISTING_MASS_KG
    if not judged.any():
        return None
    geo = object_geometry(clip, world)
    return float(np.maximum(persistent_depth(-geo.obj_robot[:, judged]) - ROBOT_TOLERANCE, 0.0).max(initial=0.0))
