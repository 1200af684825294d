"""Real motion in: joint positions (BVH files, HumanML3D / SMPL 22-joint arrays) retargeted onto a
world's robot with mink (differential IK on the MuJoCo model), and robot clips out as BVH.

**The correspondence** is the world's ``World.keypoints``: for each of the 22 SMPL joints the body
of the robot it sits on and its position in that body's frame (``HUMANOID_KEYPOINTS`` below, the
table for gymnasium's humanoid). Each keypoint becomes a mink site, so IK, the export and the tests
use the same points.

**Retargeting**, per clip:

1. Axes: the source is turned z-up (``up="y"``: SMPL / HumanML3D / BVH's y-up, x to the subject's
   left, z forward, becomes MuJoCo's x forward, y left, z up: a rotation, so handedness is kept).
2. Scale: source positions are multiplied by ``robot leg length / source leg length`` (``SCALE_BY``;
   or by height: legs plus the pelvis-spine-neck-head chain), lengths summed along the chains over the
   joints the source has, median over frames: bone lengths, so any pose (a crouch, a fall) gives the
   same scale, and file units (cm, inches) cancel. The source's floor is its up-coordinate 0 (as in
   HumanML3D and most mocap); a source whose ankles sit lower over it than the robot's ankle
   keypoints can is lifted (``FEET_ON_FLOOR``).
3. Root: the first frame's free-joint orientation is set from the source's pelvis frame (left = left
   hip - right hip, up = pelvis -> spine), its position so the pelvis keypoints coincide; IK starts there.
4. IK (``mink.solve_ik``, QP solver daqp): a position task per keypoint the source has (weight
   ``Keypoint.weight``), a pelvis orientation task from the source's pelvis frame (``ROOT_ORIENTATION_COST``),
   the model's joint limits as hard constraints (``mink.ConfigurationLimit``), Levenberg-Marquardt
   damping ``DAMPING``. Each frame starts from the previous frame's solution (temporal smoothness:
   the solver moves no joint the targets do not ask for).

The retargeted clip's keypoint error (cm, mean over keypoints and frames) says how well the robot
could follow: ~0 for motion the robot itself made, a few cm for a human skeleton of other proportions.
"""
from __future__ import annotations

import functools
import os
import stat
import zipfile
from dataclasses import dataclass

import mujoco
import numpy as np

from rlpf.core.clips import MAX_FPS, MAX_FRAMES, MAX_SECONDS, MIN_FPS, Clip, ClipError, validate
from rlpf.core.errors import RLPFError

SMPL22 = ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
          "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
          "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")
"""The 22 body joints of SMPL in HumanML3D's order (its ``new_joints`` arrays are [T, 22, 3])."""
SMPL22_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
"""SMPL's kinematic tree over ``SMPL22`` (index of each joint's parent)."""
REQUIRED = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
            "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")
"""Joints a source must have: without them the limbs' pose (and the height) is undetermined."""
_LEGS = (("left_hip", "left_knee", "left_ankle"), ("right_hip", "right_knee", "right_ankle"))
_SPINE = ("pelvis", "spine1", "spine2", "spine3", "neck", "head")

ROOT_ORIENTATION_COST = 0.3
"""Weight of the pelvis orientation task relative to a keypoint position task of weight 1 (an
orientation error of 1 rad costs like 0.3 m of keypoint error): enough to fix the yaw / roll the
hips alone leave loose, small enough that the keypoints decide the pose."""
DAMPING = 1e-3
"""Levenberg-Marquardt damping of every dof (per rad^2 / m^2 of step): keeps the QP well posed where
keypoints leave a dof undetermined (a straight knee's twist) without slowing convergence."""
ITERATIONS_FIRST, ITERATIONS = 200, 30
"""Most IK steps on the first frame (from the rest pose) and on later ones (from the previous frame)."""
SCALE_BY = "legs"
"""Scale by leg length (hip-knee-ankle chains), not whole height: the legs set how high the pelvis
stands over the feet, so a skeleton with other leg / torso proportions keeps its feet on the floor
(scaling by height left a hand-written CMU-like skeleton's feet 4 cm in the air: flagged float_m).
"height": legs plus spine, for sources whose feet do not matter."""
FEET_ON_FLOOR = True
"""Lift a source whose ankles sit lower than the robot's can (see ``retarget``)."""
SUPPORT_PERCENTILE = 10.0
STEP_TOL = 1e-5
"""Stop a frame's IK when a step moves the configuration less than this (rad / m)."""


class MotionFormatError(RLPFError, ValueError):
    """A motion file (joint array) or retargeting input that cannot be used; the message names it."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source, self.problem = source, problem


@dataclass(frozen=True)
class Keypoint:
    """Where one SMPL joint sits on the robot: a point fixed in one of its bodies."""

    joint: str
    """One of ``SMPL22``."""
    body: str
    """Body name in the world's MJCF."""
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """m, in the body's frame."""
    weight: float = 1.0
    """IK position-task weight: 1 where the point is the same anatomical joint on both skeletons,
    less where the robot has no such joint and the point is an approximation (collars, neck, toes)."""


HUMANOID_KEYPOINTS: tuple[Keypoint, ...] = (
    # gymnasium's humanoid.xml (torso is the free root; body frames are world-aligned at qpos0).
    # Joint centres where the robot has the joint: the hinge anchors of the MJCF.
    Keypoint("pelvis", "pelvis", (0.0, 0.0, -0.04)),           # mid-hip: the thighs hang at pelvis -0.04
    Keypoint("left_hip", "left_thigh"),                         # hip_x/y/z anchor (body origin)
    Keypoint("right_hip", "right_thigh"),
    Keypoint("spine1", "pelvis", (0.0, 0.0, 0.1)),             # abdomen_x anchor
    Keypoint("left_knee", "left_shin", (0.0, 0.0, 0.02)),      # knee anchor
    Keypoint("right_knee", "right_shin", (0.0, 0.0, 0.02)),
    Keypoint("spine2", "lwaist", (0.0, 0.0, 0.065)),           # abdomen_z / abdomen_y anchor
    Keypoint("left_ankle", "left_foot", (0.0, 0.0, 0.1)),      # no ankle joint: the foot sphere's centre
    Keypoint("right_ankle", "right_foot", (0.0, 0.0, 0.1)),
    Keypoint("spine3", "torso", (0.0, 0.0, -0.06), 0.5),       # chest, 12 cm under the shoulder line
    Keypoint("left_foot", "left_foot", (0.07, 0.0, 0.07), 0.3),   # toes: the front-bottom of the sphere
    Keypoint("right_foot", "right_foot", (0.07, 0.0, 0.07), 0.3),
    Keypoint("neck", "torso", (0.0, 0.0, 0.1), 0.5),           # between the shoulder line and the head
    Keypoint("left_collar", "torso", (0.0, 0.08, 0.06), 0.3),  # no collar bones: halfway to the shoulder
    Keypoint("right_collar", "torso", (0.0, -0.08, 0.06), 0.3),
    Keypoint("head", "torso", (0.0, 0.0, 0.19)),               # the head sphere's centre
    Keypoint("left_shoulder", "left_upper_arm"),               # shoulder1/2 anchor
    Keypoint("right_shoulder", "right_upper_arm"),
    Keypoint("left_elbow", "left_lower_arm"),                  # elbow anchor
    Keypoint("right_elbow", "right_lower_arm"),
    Keypoint("left_wrist", "left_lower_arm", (0.18, -0.18, 0.18)),   # the hand sphere's centre
    Keypoint("right_wrist", "right_lower_arm", (0.18, 0.18, 0.18)),
)
"""The SMPL-22 -> gymnasium humanoid correspondence (``World.keypoints`` of the ``humanoid`` world)."""

# BVH joint names -> SMPL joints. Names are compared normalised (lower case, without '_', '-', '.',
# spaces and any 'prefix:' such as Mixamo's 'mixamorig:'). Two naming schemes disagree on 'Spine1',
# 'LeftShoulder' and 'LeftFoot', so a file is read with the scheme that matches more of its joints.
BVH_SCHEMES: dict[str, dict[str, tuple[str, ...]]] = {
    "smpl": {  # SMPL's own names (also rlpf export's) and their L_/R_ forms
        **{j: (j.replace("_", ""), j.replace("left_", "l").replace("right_", "r").replace("_", "")) for j in SMPL22},
        "pelvis": ("pelvis", "root"),
    },
    "mocap": {  # CMU / Mixamo / MotionBuilder names
        "pelvis": ("hips", "hip", "pelvis"),
        "left_hip": ("leftupleg", "leftthigh", "lthigh"), "right_hip": ("rightupleg", "rightthigh", "rthigh"),
        "left_knee": ("leftleg", "leftshin", "lshin"), "right_knee": ("rightleg", "rightshin", "rshin"),
        "left_ankle": ("leftfoot",), "right_ankle": ("rightfoot",),
        "left_foot": ("lefttoebase", "lefttoe"), "right_foot": ("righttoebase", "righttoe"),
        "spine1": ("spine", "lowerback"), "spine2": ("spine1",), "spine3": ("spine2", "chest"),
        "neck": ("neck",), "head": ("head",),
        "left_collar": ("leftshoulder",), "right_collar": ("rightshoulder",),
        "left_shoulder": ("leftarm", "leftupperarm"), "right_shoulder": ("rightarm", "rightupperarm"),
        "left_elbow": ("leftforearm", "leftlowerarm"), "right_elbow": ("rightforearm", "rightlowerarm"),
        "left_wrist": ("lefthand",), "right_wrist": ("righthand",),
    },
}
"""Which BVH joint (by name) is which SMPL joint, per naming scheme."""

UP_AXES = ("y", "z")
_Y_TO_Z = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
"""p_yup = _Y_TO_Z @ p_zup: z-up (x forward, y left, z up) -> y-up (x left, y up, z forward)."""


def to_z_up(points: np.ndarray, up: str, source: str = "<memory>") -> np.ndarray:
    """Points [..., 3] in a y-up or z-up frame, returned z-up."""
    if up not in UP_AXES:
        raise MotionFormatError(source, f"unknown up axis {up!r}; choose one of {', '.join(UP_AXES)}")
    return points @ _Y_TO_Z if up == "y" else np.array(points, dtype=np.float64)


def from_z_up(points: np.ndarray, up: str) -> np.ndarray:
    return points @ _Y_TO_Z.T if up == "y" else np.array(points, dtype=np.float64)


# ---------------------------------------------------------------------------------------- sources

def _normalise(name: str) -> str:
    return "".join(c for c in name.rsplit(":", 1)[-1].lower() if c not in "_-. ")


def bvh_joint_positions(bvh, source: str | None = None) -> tuple[np.ndarray, dict[str, str]]:
    """[T, 22, 3] SMPL joint positions of a parsed BVH (file units and axes; NaN where the file has no
    such joint) and which BVH joint each came from."""
    from rlpf.data.bvh import forward_kinematics

    source = source or bvh.source
    names = {_normalise(n): i for i, n in enumerate(bvh.names)}
    best: dict[str, int] = {}
    for scheme in BVH_SCHEMES.values():
        found = {}
        for joint, aliases in scheme.items():
            hit = next((names[a] for a in aliases if a in names), None)
            if hit is not None:
                found[joint] = hit
        if len(found) > len(best):
            best = found
    missing = [j for j in REQUIRED if j not in best]
    if missing:
        raise MotionFormatError(source, f"no BVH joint for {', '.join(missing)} (joints in the file: "
                                f"{', '.join(bvh.names[:40])}); names understood: SMPL's (rlpf.data.retarget.SMPL22) "
                                "or CMU / Mixamo's (Hips, LeftUpLeg, LeftLeg, LeftFoot, LeftArm, LeftForeArm, LeftHand, ...)")
    pos, _ = forward_kinematics(bvh)
    out = np.full((bvh.n_frames, len(SMPL22), 3), np.nan)
    for joint, i in best.items():
        out[:, SMPL22.index(joint)] = pos[:, i]
    return out, {j: bvh.names[i] for j, i in best.items()}


JOINT_KEYS = ("joints", "positions", "joint_positions")
"""Keys of a .npz joint file tried in order (else its only array)."""
MAX_JOINT_BYTES = 1 << 30


def _npy_header(f, source: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except (ValueError, OSError, EOFError) as e:
        raise MotionFormatError(source, f"not a .npy array ({e})") from None
    return shape, dtype


def load_joint_file(path: str) -> tuple[np.ndarray, float | None]:
    """A [T, 22, 3] joint-position array from a .npy or .npz file (never unpickled; its size is checked
    from the header before it is read) and the file's fps if it stores one (a .npz ``fps`` key)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise MotionFormatError(path, e.strerror or str(e)) from None
    if not stat.S_ISREG(mode):
        raise MotionFormatError(path, "not a regular file")
    fps = None
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                members = {n[:-4]: n for n in z.namelist() if n.endswith(".npy")}
                key = next((k for k in JOINT_KEYS if k in members), None)
                arrays = [k for k in members if k != "fps"]
                if key is None and len(arrays) == 1:
                    key = arrays[0]
                if key is None:
                    raise MotionFormatError(path, f"no joint array: name it one of {list(JOINT_KEYS)} (keys: {sorted(members)})")
                with z.open(members[key]) as f:
                    shape, dtype = _npy_header(f, f"{path}[{key}]")
                _check_joint_header(f"{path}[{key}]", shape, dtype)
                with z.open(members[key]) as f:
                    arr = np.lib.format.read_array(f, allow_pickle=False)
                if "fps" in members:
                    with z.open(members["fps"]) as f:
                        fps_arr = np.lib.format.read_array(f, allow_pickle=False)
                    if fps_arr.size != 1 or not np.issubdtype(fps_arr.dtype, np.number):
                        raise MotionFormatError(path, f"'fps' must be one number, got {fps_arr!r}")
                    fps = float(fps_arr.reshape(()))
        else:
            with open(path, "rb") as f:
                shape, dtype = _npy_header(f, path)
                _check_joint_header(path, shape, dtype)
                f.seek(0)
                arr = np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise MotionFormatError(path, f"unreadable ({type(e).__name__}: {e})") from None
    except ValueError as e:  # read_array refusing an object array, a short file
        raise MotionFormatError(path, f"unreadable array ({e})") from None
    arr = np.asarray(arr, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        t, j, _ = np.argwhere(bad)[0]
        raise MotionFormatError(path, f"{bad.sum()} non-finite values (first at frame {t}, joint {j} {SMPL22[j]})")
    return arr, fps


def _check_joint_header(source: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if dtype.hasobject or not np.issubdtype(dtype, np.number):
        raise MotionFormatError(source, f"joint positions must be numbers, got dtype {dtype}")
    if len(shape) != 3 or shape[1:] != (22, 3):
        raise MotionFormatError(source, f"joint positions must be [T, 22, 3] (SMPL / HumanML3D joints in metres), got {shape}")
    if shape[0] > MAX_FRAMES:
        raise MotionFormatError(source, f"{shape[0]} frames; at most {MAX_FRAMES} are accepted (rlpf.core.clips.MAX_FRAMES; split the motion)")
    if int(np.prod(shape)) * dtype.itemsize > MAX_JOINT_BYTES:
        raise MotionFormatError(source, f"array over {MAX_JOINT_BYTES >> 20} MiB")


def check_rate(source: str, fps: float, frames: int) -> None:
    """The clip limits (rlpf.core.clips) on a motion before it is retargeted."""
    if not (np.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        raise ClipError(source, f"fps {fps:g} is outside the accepted {MIN_FPS:g}-{MAX_FPS:g}")
    if frames > MAX_FRAMES:
        raise ClipError(source, f"{frames} frames; at most {MAX_FRAMES} are accepted (split the motion)")
    if frames < 2:
        raise ClipError(source, f"{frames} frame(s); a clip needs at least 2")
    if (frames - 1) / fps > MAX_SECONDS:
        raise ClipError(source, f"{(frames - 1) / fps:.0f} s long; at most {MAX_SECONDS:g} s are accepted")


def resampled_length(frames: int, fps_in: float, fps_out: float) -> int:
    """Frames of a motion of ``frames`` frames at ``fps_in`` resampled to ``fps_out`` (a thousandth of a
    frame of slack for rates printed with few digits, e.g. 0.0333333 s)."""
    return int(np.floor((frames - 1) * fps_out / fps_in + 1e-3)) + 1


def resample(positions: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Joint positions [T, J, 3] linearly resampled from ``fps_in`` to ``fps_out`` (same duration)."""
    if abs(fps_out - fps_in) <= 1e-4 * fps_in:  # BVH frame times are printed to ~7 digits: same rate
        return positions
    T = positions.shape[0]
    n = resampled_length(T, fps_in, fps_out)
    t = np.arange(n) * fps_in / fps_out
    i0 = np.minimum(np.floor(t).astype(int), T - 1)
    i1 = np.minimum(i0 + 1, T - 1)
    w = (t - i0)[:, None, None]
    return (1 - w) * positions[i0] + w * positions[i1]


# ---------------------------------------------------------------------------------------- the robot

@functools.lru_cache(maxsize=8)
def keypoint_model(world) -> tuple[mujoco.MjModel, tuple[Keypoint, ...]]:
    """The world's model with one site per keypoint (``rlpf_kp_<joint>``; same qpos layout) and its
    keypoints in ``SMPL22`` order. Raises MotionFormatError for a world that declares none."""
    from rlpf.envs.worlds import get_world, model_path, resolve

    w = get_world(world)
    declared = getattr(w, "keypoints", None)
    if declared is None:
        raise MotionFormatError(f"world {w.name!r}", "declares no keypoints (World.keypoints: where the 22 SMPL "
                                "joints sit on its bodies), so motion cannot be retargeted onto it")
    kps = resolve(declared, f"world {w.name!r}: keypoints") if isinstance(declared, str) else declared
    by_joint = {k.joint: k for k in kps}
    if set(by_joint) != set(SMPL22) or len(kps) != len(SMPL22):
        raise MotionFormatError(f"world {w.name!r}", f"World.keypoints must place each of the 22 SMPL joints once "
                                f"(missing {sorted(set(SMPL22) - set(by_joint))})")
    spec = mujoco.MjSpec.from_file(model_path(w))
    for k in kps:
        body = spec.body(k.body)
        if body is None:
            raise MotionFormatError(f"world {w.name!r}", f"keypoint {k.joint}: no body {k.body!r} in {model_path(w)}")
        body.add_site(name=f"rlpf_kp_{k.joint}", pos=list(k.offset))
    return spec.compile(), tuple(by_joint[j] for j in SMPL22)


def robot_keypoints(world, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint positions [T, 22, 3] and their bodies' rotations [T, 22, 3, 3] along a clip's qpos."""
    m, _ = keypoint_model(world)
    d = mujoco.MjData(m)
    sites = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, f"rlpf_kp_{j}") for j in SMPL22]
    qpos = np.atleast_2d(qpos)
    pos = np.empty((len(qpos), len(SMPL22), 3))
    rot = np.empty((len(qpos), len(SMPL22), 3, 3))
    for t, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        pos[t] = d.site_xpos[sites]
        rot[t] = d.site_xmat[sites].reshape(-1, 3, 3)
    return pos, rot


def skeleton_height(positions: np.ndarray, present: np.ndarray, legs_only: bool = False) -> float:
    """Legs (mean of both hip-knee-ankle chains) plus the pelvis-spine-neck-head chain, over the
    joints present, median over frames: a sum of bone lengths, the same in any pose. ``legs_only``:
    the legs' part alone."""
    def chain(names):
        idx = [SMPL22.index(n) for n in names if present[SMPL22.index(n)]]
        return np.linalg.norm(np.diff(positions[:, idx], axis=1), axis=-1).sum(axis=1) if len(idx) > 1 else 0.0

    h = 0.5 * (chain(_LEGS[0]) + chain(_LEGS[1])) + (0.0 if legs_only else chain(_SPINE))
    return float(np.median(h))


def pelvis_frame(positions: np.ndarray, present: np.ndarray) -> np.ndarray:
    """[T, 3, 3] frame of the pelvis (columns: forward, left, up) from the hips and the spine."""
    J = SMPL22.index
    left = positions[:, J("left_hip")] - positions[:, J("right_hip")]
    above = next(n for n in ("spine1", "spine2", "spine3", "neck", "head") if present[J(n)])
    up = positions[:, J(above)] - positions[:, J("pelvis")]
    y = left / np.linalg.norm(left, axis=-1, keepdims=True).clip(1e-9)
    z = up - np.sum(up * y, axis=-1, keepdims=True) * y
    z /= np.linalg.norm(z, axis=-1, keepdims=True).clip(1e-9)
    return np.stack([np.cross(y, z), y, z], axis=-1)


def _ankle_over_sole(cw, rest_ankles: np.ndarray) -> float:
    """m from the robot's lowest foot point up to its ankle keypoints, in the rest pose (qpos0)."""
    d = mujoco.MjData(cw.model)
    mujoco.mj_kinematics(cw.model, d)
    g = cw.foot_geoms
    sphere = cw.model.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE
    # a sphere's lowest point is its radius down; other shapes: their bounding sphere (conservative)
    r = np.where(sphere, cw.model.geom_size[g, 0], cw.model.geom_rbound[g])
    return float(rest_ankles[:, 2].mean() - (d.geom_xpos[g, 2] - r).min())


@dataclass
class Retargeted:
    clip: Clip
    scale: float
    """Source positions were multiplied by this (robot height / source height)."""
    error_m: np.ndarray
    """[T] mean distance (m) of the used keypoints from their (scaled) targets per frame."""
    joints: tuple[str, ...]
    """The SMPL joints the source had (the IK tasks)."""


def retarget(positions: np.ndarray, fps: float, world="humanoid", source: str = "<memory>",
             prompt: str | None = None) -> Retargeted:
    """Retarget z-up joint positions [T, 22, 3] (NaN rows: joints the source lacks) onto ``world``."""
    import mink

    from rlpf.envs.worlds import compile_world

    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (22, 3):
        raise MotionFormatError(source, f"joint positions must be [T, 22, 3], got {positions.shape}")
    check_rate(source, float(fps), positions.shape[0])
    present = np.isfinite(positions).all(axis=(0, 2))
    partial = np.isfinite(positions).all(axis=2).any(axis=0) & ~present
    if partial.any():
        j = int(np.argmax(partial))
        t = int(np.argmin(np.isfinite(positions[:, j]).all(axis=1)))
        raise MotionFormatError(source, f"joint {SMPL22[j]} is not finite at frame {t}")
    missing = [j for j in REQUIRED if not present[SMPL22.index(j)]]
    if missing:
        raise MotionFormatError(source, f"no positions for {', '.join(missing)}")
    cw = compile_world(world)
    m, kps = keypoint_model(cw.world)
    rest, _ = robot_keypoints(cw.world, m.qpos0)
    h_src = skeleton_height(positions, present)
    if not h_src > 1e-6:
        raise MotionFormatError(source, "skeleton of zero height (all joints at one point?)")
    scale = skeleton_height(rest, present) / h_src
    if SCALE_BY == "legs":
        scale = skeleton_height(rest, present, legs_only=True) / skeleton_height(positions, present, legs_only=True)
    target = positions * scale
    if FEET_ON_FLOOR and cw.foot_geoms.size:
        # the ankle joint sits higher over the sole on the robot than on most skeletons (the humanoid's
        # "ankle" is its foot sphere's centre, 7.5 cm up). Real motion never goes through the floor,
        # so an ankle lower than the robot's sole allows is a difference of skeletons: lift the motion
        # until the supporting ankle's height is the robot's rest ankle height over its lowest foot
        # point. "Supporting": the 10th percentile over frames of the lower ankle, so a few impact
        # frames (a simulated foot sinks ~1 cm into MuJoCo's soft floor as it lands) do not lift a
        # whole clip, while any motion with a foot down a tenth of the time is measured on it.
        # Never lowered: feet higher than that may be a jump, a fall, or a clip that starts in the air.
        ank = [SMPL22.index("left_ankle"), SMPL22.index("right_ankle")]
        support = float(np.percentile(target[:, ank, 2].min(axis=1), SUPPORT_PERCENTILE))
        target[..., 2] += max(0.0, _ankle_over_sole(cw, rest[0, ank]) - support)

    cfg = mink.Configuration(m)
    used = [i for i in range(len(SMPL22)) if present[i]]
    tasks = {i: mink.FrameTask(f"rlpf_kp_{SMPL22[i]}", "site", position_cost=kps[i].weight, orientation_cost=0.0)
             for i in used}
    ip = SMPL22.index("pelvis")
    root_task = mink.FrameTask("rlpf_kp_pelvis", "site", position_cost=0.0, orientation_cost=ROOT_ORIENTATION_COST)
    limits = [mink.ConfigurationLimit(m)]
    # the source pelvis frame, expressed as the rotation the robot's pelvis keypoint frame should have:
    # R_site(t) = F_src(t) F_robot(rest)^T R_site(rest) (the two frames are built the same way)
    f_src = pelvis_frame(target, present)
    f_rest = pelvis_frame(rest, present)[0]
    d0 = mujoco.MjData(m)
    mujoco.mj_kinematics(m, d0)
    site_p = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "rlpf_kp_pelvis")
    r_site_rest = d0.site_xmat[site_p].reshape(3, 3)
    root_adr = int(m.jnt_qposadr[cw.model.body_jntadr[cw.root_body]]) if cw.floating else None

    q = m.qpos0.copy()
    if root_adr is not None:  # root orientation and position from the source's first frame
        r0 = f_src[0] @ f_rest.T  # rotation taking the robot's rest pelvis frame onto the source's
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, (r0 @ d0.xmat[cw.root_body].reshape(3, 3)).ravel())
        q[root_adr + 3:root_adr + 7] = quat
        cfg.update(q)
        q[root_adr:root_adr + 3] += target[0, ip] - cfg.data.site_xpos[site_p]
    cfg.update(q)
    T = positions.shape[0]
    qpos = np.empty((T, m.nq))
    err = np.empty(T)
    sites = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, f"rlpf_kp_{SMPL22[i]}") for i in used]
    for t in range(T):
        for i, task in tasks.items():
            task.set_target(mink.SE3.from_translation(target[t, i]))
        root_task.set_target(mink.SE3.from_rotation(mink.SO3.from_matrix(f_src[t] @ f_rest.T @ r_site_rest)))
        for _ in range(ITERATIONS_FIRST if t == 0 else ITERATIONS):
            try:
                v = mink.solve_ik(cfg, [*tasks.values(), root_task], 1.0, "daqp", damping=DAMPING, limits=limits)
            except mink.NoSolutionFound:  # the QP infeasible: cannot happen within limits, say where it did
                raise MotionFormatError(source, f"IK found no solution at frame {t} (joint limits cannot be met)") from None
            cfg.integrate_inplace(v, 1.0)
            if np.abs(v).max() < STEP_TOL:
                break
        qpos[t] = cfg.q
        err[t] = np.linalg.norm(cfg.data.site_xpos[sites] - target[t, used], axis=-1).mean()
    clip = validate(Clip(qpos=qpos, fps=float(fps), world=cw.name, prompt=prompt, source=source), cw.model, cw.name)
    return Retargeted(clip, scale, err, tuple(SMPL22[i] for i in used))


def import_motion(path: str, world="humanoid", fmt: str = "auto", up: str = "y", fps: float | None = None,
                  source_fps: float | None = None) -> Retargeted:
    """A BVH file or a joint-position file (.npy / .npz [T, 22, 3], metres) retargeted onto ``world``.

    ``fmt``: bvh, joints or auto (by extension). ``up``: the source's up axis (y or z). ``fps``: the
    clip's frame rate (the motion is resampled to it; default the source's). ``source_fps``: the rate
    of a joint file that stores none (default 20, HumanML3D's)."""
    from rlpf.data.bvh import load_bvh

    if up not in UP_AXES:
        raise MotionFormatError(path, f"unknown up axis {up!r}; choose one of {', '.join(UP_AXES)}")
    if fmt == "auto":
        fmt = "bvh" if path.lower().endswith(".bvh") else "joints" if path.lower().endswith((".npy", ".npz")) else None
        if fmt is None:
            raise MotionFormatError(path, "unknown format: name a .bvh, .npy or .npz file, or pass --format bvh|joints")
    if fmt == "bvh":
        bvh = load_bvh(path)
        pos, _ = bvh_joint_positions(bvh, path)
        rate = bvh.fps
    elif fmt == "joints":
        pos, rate = load_joint_file(path)
        rate = rate if source_fps is None and rate is not None else (source_fps or 20.0)
    else:
        raise MotionFormatError(path, f"unknown format {fmt!r}; choose bvh or joints")
    check_rate(path, rate, pos.shape[0])
    out_fps = float(fps) if fps is not None else float(rate)
    if fps is not None:
        check_rate(path, out_fps, resampled_length(pos.shape[0], rate, out_fps))
    pos = resample(to_z_up(pos, up, path), rate, out_fps)
    return retarget(pos, out_fps, world=world, source=path)


# ---------------------------------------------------------------------------------------- export

EXPORT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
"""Every exported joint has its position and a ZXY rotation: the robot's keypoints are not all a
fixed distance apart (a keypoint and its SMPL parent may sit on bodies joined by several hinges), so
rotations alone could not place them exactly."""


def _dfs_order(parents) -> list[int]:
    children: dict[int, list[int]] = {}
    for j, p in enumerate(parents):
        children.setdefault(p, []).append(j)
    order, stack = [], [children[-1][0]]
    while stack:
        j = stack.pop()
        order.append(j)
        stack += reversed(children.get(j, []))
    return order


def clip_to_bvh(clip: Clip, world=None, up: str = "y"):
    """A robot clip as a BVH of its 22 SMPL keypoints (names ``SMPL22``, metres, ``up`` axis y by
    default, as viewers expect), each joint rotating with the body it sits on."""
    from scipy.spatial.transform import Rotation

    from rlpf.data.bvh import BVH, BVHJoint
    from rlpf.envs.worlds import compile_world

    cw = compile_world(world or clip.world or "humanoid")
    validate(clip, cw.model, cw.name)
    m, _ = keypoint_model(cw.world)
    a = _Y_TO_Z if up == "y" else np.eye(3)
    if up not in UP_AXES:
        raise MotionFormatError(clip.source, f"unknown up axis {up!r}; choose one of {', '.join(UP_AXES)}")

    def local(qpos):
        p, r = robot_keypoints(cw.world, qpos)
        p, r = p @ a.T, a @ r @ a.T
        lt, lr = np.empty_like(p), np.empty_like(r)
        for j, par in enumerate(SMPL22_PARENTS):
            if par < 0:
                lt[:, j], lr[:, j] = p[:, j], r[:, j]
            else:
                rp = np.swapaxes(r[:, par], 1, 2)
                lt[:, j] = np.einsum("tij,tj->ti", rp, p[:, j] - p[:, par])
                lr[:, j] = rp @ r[:, j]
        return lt, lr

    rest_t, _ = local(m.qpos0)
    lt, lr = local(clip.qpos)
    leaves = set(range(22)) - set(SMPL22_PARENTS)
    joints, cols = [], []
    for j in _dfs_order(SMPL22_PARENTS):
        par = SMPL22_PARENTS[j]
        new_parent = -1 if par < 0 else next(k for k, jj in enumerate(joints) if jj.name == SMPL22[par])
        end = 0.5 * rest_t[0, j] if j in leaves else None  # a bone tip so viewers draw the last bone
        joints.append(BVHJoint(SMPL22[j], new_parent, rest_t[0, j], EXPORT_CHANNELS, end))
        euler = Rotation.from_matrix(lr[:, j]).as_euler("ZXY", degrees=True)
        cols.append(np.concatenate([lt[:, j], euler], axis=1))
    return BVH(joints, np.concatenate(cols, axis=1), 1.0 / clip.fps, source=clip.source)
