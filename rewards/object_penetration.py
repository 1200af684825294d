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
RESISTING_MASS_KG = 1e-3
"""kg: objects lighter than this are not judged for robot penetration. MuJoCo's soft contact force
scales with the mass it moves, so an object this light cannot push back on the arm: in valid
simulation MuJoCo itself sinks the Pusher-v5 arm 5.6 cm into that world's 7.9e-6 kg object. Meta-World's
puck weighs 0.75 kg."""


@register("object_in_support_m", threshold=0.01, unit="m", physics=True, needs=("objects", "supports"))
@per_clip
def object_in_support(clip, world):
    """Deepest penetration of a free object into a support surface, beyond a 5 mm tolerance (m)."""
    if not len(world.object_bodies) or not len(world.support_geoms):
        return None
    geo = object_geometry(clip, world)
    return float(np.maximum(-geo.obj_support - SUPPORT_TOLERANCE, 0.0).max())


@register("robot_object_penetration_m", threshold=0.005, unit="m", physics=True, needs=("objects",))
@per_clip
def robot_object_penetration(clip, world):
    """Deepest penetration of the robot into a free object, beyond a 1 cm soft-contact tolerance (m)."""
    if not len(world.object_bodies) or not len(world.robot_geoms):
        return None
    judged = world.model.body_mass[world.object_bodies] >= RESISTING_MASS_KG
    if not judged.any():
        return None
    geo = object_geometry(clip, world)
    return float(np.maximum(-geo.obj_robot[:, judged] - ROBOT_TOLERANCE, 0.0).max())
