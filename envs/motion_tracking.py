"""``rlpf/MotionTracking-v0``: follow reference clips in MuJoCo, DeepMimic-style (a gymnasium env).

A policy sees the simulated body and the next reference frames and outputs PD targets; it is
rewarded for staying close to the reference. Trained with PPO over a library of valid clips, it is
the learned tracker of RLPF (``rlpf.policies.learned_tracker``): a clip it cannot follow is one
that physics does not allow.

    import gymnasium as gym, rlpf.envs
    env = gym.make("rlpf/MotionTracking-v0", world="ant", library="runs/data/ant-2000x64-seed0")

Worlds need a floating root (a free joint at ``qpos[0:7]``: ant, humanoid, or an MJCF like them)
and actuators on joints. The env steps at the world's frame rate (``world.frame_skip`` simulator
steps per frame, as the matching gymnasium env); clips at another frame rate are resampled to it.

**Episodes** (reference state initialization + early termination). ``reset`` draws a clip and a
start frame uniformly (``options={"clip": i, "frame": t}`` picks them) and puts the body in the
reference state there: qpos of the frame, qvel from central differences of the clip. Each step
advances one frame. The episode *terminates* when the body falls (``fell``: the trackers' one rule,
``rlpf.judge.tracking.fell_frames`` - root more than ``rlpf.judge.tracking.fall_drop_m(world)`` below the
reference's root, or flipped while the reference is upright), the simulation diverges, or the mean
body-position error exceeds ``termination_distance``; it is *truncated* at the clip's last frame.

**Action**: ``a`` in [-1, 1]^nu, one per actuator, a residual around the reference: the PD target
of actuator i's joint is ``q_ref[t+1] + action_scale * a_i`` (radians). The PD law runs at every
simulator step through the world's own actuators (Ant-v5: torque motors, gear 150):
``ctrl = clip(kp (q* - q) - kd qdot, ctrlrange)``, ``kp``/``kd`` in control units per rad
(per rad/s), so the model's torque limits hold. ``env.last_torques`` is the mean joint torque
(gear x actuator force, N m) of each actuator over the last step's simulator steps.

**Observation** (float32, everything horizontal in the *heading frame*: the root's yaw removed):

    root height                                       1
    root x and z axes in the heading frame            6   (tangent-normal orientation)
    joint positions qpos[7:], velocities qvel[6:]     nq-7 + nv-6
    root linear and angular velocity (heading frame)  6
    then for each of the next ``future_frames`` reference frames (the last frame repeats):
      reference root position - root position         3   (heading frame)
      reference root x and z axes (heading frame)     6
      reference joint positions                       nq-7

**Reward** (MimicKit's DeepMimic reward, weights and scales as constructor arguments; the global
root is tracked, since drifting off the reference is what fails a track):

| term (``info`` key)    | weight | scale | error (sim vs reference frame t+1)                         |
|------------------------|--------|-------|------------------------------------------------------------|
| ``reward_pose``        | 0.5    | 0.25  | sum of squared joint-angle differences (mj_differentiatePos)|
| ``reward_joint_vel``   | 0.1    | 0.01  | sum of squared joint-velocity differences                  |
| ``reward_root_pose``   | 0.15   | 5     | root position diff^2 + 0.1 root rotation angle^2            |
| ``reward_root_vel``    | 0.1    | 1     | root linear vel diff^2 + 0.1 angular vel diff^2 (world)     |
| ``reward_key_body``    | 0.15   | 10    | sum over key bodies (the world's feet) of the squared diff |
|                        |        |       | of their position relative to the root                     |

Each term is ``weight * exp(-scale * error)``; ``info`` holds every weighted term and the reward is
exactly their sum. ``info["body_error_m"]`` is the tracking metric (mean over the robot's bodies of
|xpos_sim - xpos_ref|), as in ``rlpf.judge.tracking.TrackResult``.

Measured on the ant (2-core box): ~2.9k steps/s for one env on a quiet core (the five RK4 ``mj_step``
calls are ~55 % of it). With zero action (targets = the next reference frame) the PD loop alone
follows valid library clips to 5.6 cm mean body error, nearly all of it the root drifting.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Sequence

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from rlpf.core.clips import Clip, ClipError, clip_files, load_clips, quaternion_addresses, validate
from rlpf.envs.worlds import CompiledWorld, compile_world
from rlpf.judge.tracking import fall_drop_m, fell_frames


@dataclass
class TrackingReward:
    """Weights and scales of the DeepMimic tracking reward (MimicKit's defaults): w * exp(-scale * err)."""

    pose_weight: float = 0.5
    """Weight of the joint-pose term."""
    pose_scale: float = 0.25
    """Scale of the joint-pose error (sum of squared joint-angle differences, rad^2)."""
    joint_vel_weight: float = 0.1
    """Weight of the joint-velocity term."""
    joint_vel_scale: float = 0.01
    """Scale of the joint-velocity error (sum of squared differences, (rad/s)^2)."""
    root_pose_weight: float = 0.15
    """Weight of the root-pose term."""
    root_pose_scale: float = 5.0
    """Scale of the root-pose error (position m^2 + 0.1 * rotation angle rad^2)."""
    root_vel_weight: float = 0.1
    """Weight of the root-velocity term."""
    root_vel_scale: float = 1.0
    """Scale of the root-velocity error (linear (m/s)^2 + 0.1 * angular (rad/s)^2)."""
    key_body_weight: float = 0.15
    """Weight of the key-body term (the world's feet)."""
    key_body_scale: float = 10.0
    """Scale of the key-body error (sum over key bodies of squared root-relative position error, m^2)."""

    def __post_init__(self):
        from rlpf.core.config import check, finite

        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            check(self, finite(v) and v >= 0, f.name, v, "finite and >= 0")


REWARD_TERMS = ("pose", "joint_vel", "root_pose", "root_vel", "key_body")
"""Reward terms in ``info`` as ``reward_<term>`` (weighted)."""


@dataclass
class Reference:
    """A clip prepared for tracking: per-frame qpos, qvel, body positions and root axes."""

    qpos: np.ndarray       # [T, nq]
    qvel: np.ndarray       # [T, nv] central differences (root angular velocity in the body frame, as qvel)
    xpos: np.ndarray       # [T, nbody, 3]
    axes: np.ndarray       # [T, 3, 3] root rotation matrix (columns: body axes in the world)
    ang_vel: np.ndarray    # [T, 3] root angular velocity in the world frame
    source: str

    @property
    def n_frames(self) -> int:
        return self.qpos.shape[0]


class MotionTrackingEnv(gym.Env):
    """Track reference clips with residual PD targets (see the module docstring for the full spec)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        world: str = "ant",
        clips: Sequence[Clip] | None = None,
        library: str | Sequence[str] | None = None,
        *,
        future_frames: int = 2,
        termination_distance: float = 0.3,
        action_scale: float = 0.5,
        kp: float = 1.0,
        kd: float = 0.1,
        pose_weight: float = TrackingReward.pose_weight,
        pose_scale: float = TrackingReward.pose_scale,
        joint_vel_weight: float = TrackingReward.joint_vel_weight,
        joint_vel_scale: float = TrackingReward.joint_vel_scale,
        root_pose_weight: float = TrackingReward.root_pose_weight,
        root_pose_scale: float = TrackingReward.root_pose_scale,
        root_vel_weight: float = TrackingReward.root_vel_weight,
        root_vel_scale: float = TrackingReward.root_vel_scale,
        key_body_weight: float = TrackingReward.key_body_weight,
        key_body_scale: float = TrackingReward.key_body_scale,
        render_mode: str | None = None,
        width: int = 320,
        height: int = 240,
    ):
        """
        Args:
            world: a floating-root world (built-in name or MJCF path).
            clips: reference clips (validated against the world, copied; resampled to its fps).
            library: instead of ``clips``: clip files or directories (searched for .npz).
            future_frames: how many next reference frames the observation holds (>= 1).
            termination_distance: end the episode when the mean body-position error exceeds this
                (m); ``inf`` never (used by ``LearnedTracker.track_one``).
            action_scale: radians of PD-target offset at action +-1.
            kp, kd: PD gains in actuator-control units per rad and per rad/s.
            pose_weight ... key_body_scale: the reward (``TrackingReward``; table in the module doc).
            render_mode: None or "rgb_array" (a camera following the root, ``width`` x ``height``).
        """
        if (clips is None) == (library is None):
            raise ValueError("MotionTrackingEnv: give exactly one of clips= or library=")
        if future_frames < 1:
            raise ValueError(f"future_frames must be >= 1, got {future_frames}")
        if not termination_distance > 0:
            raise ValueError(f"termination_distance must be > 0 (inf: never), got {termination_distance}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.cw: CompiledWorld = compile_world(world)
        self.world = self.cw.name
        m = self.model = self.cw.model
        self.data = mujoco.MjData(m)
        self._scratch = mujoco.MjData(m)
        self._layout(m)
        self.fps = float(self.cw.world.fps)
        self.frame_skip = int(self.cw.world.frame_skip)
        self.metadata = {**self.metadata, "render_fps": self.fps}

        if library is not None:
            paths = [library] if isinstance(library, (str, os.PathLike)) else list(library)
            clips = [c for p in clip_files(map(str, paths)) for c in load_clips(p)]
            if not clips:
                raise ValueError(f"MotionTrackingEnv: no .npz clips in {paths}")
        self.clips = [self._prepare_clip(c) for c in clips]
        if not self.clips:
            raise ValueError("MotionTrackingEnv: no clips to track")
        self._refs: dict[int, Reference] = {}

        self.fall_drop_m = fall_drop_m(self.world, m)
        self.future_frames = int(future_frames)
        self.termination_distance = float(termination_distance)
        self.action_scale = float(action_scale)
        self.kp, self.kd = float(kp), float(kd)
        self.reward_cfg = TrackingReward(pose_weight, pose_scale, joint_vel_weight, joint_vel_scale,
                                         root_pose_weight, root_pose_scale, root_vel_weight, root_vel_scale,
                                         key_body_weight, key_body_scale)
        nj, nvj = m.nq - 7, m.nv - 6
        obs_dim = 1 + 6 + nj + nvj + 6 + self.future_frames * (3 + 6 + nj)
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (len(self.act_qadr),), np.float32)

        self.render_mode = render_mode
        self._render_size = (height, width)
        self._renderer = None
        self._ref: Reference | None = None
        self.clip_index = 0
        self.frame = 0

    # ------------------------------------------------------------------------------------------
    # set-up

    def _layout(self, m: mujoco.MjModel) -> None:
        cw = self.cw
        if not cw.floating or int(m.jnt_qposadr[m.body_jntadr[cw.root_body]]) != 0:
            raise ValueError(f"MotionTrackingEnv: world {cw.name!r} needs a floating root (a free joint at qpos[0:7])")
        self.root = int(cw.root_body)
        robot = [b for b in range(1, m.nbody) if _descends(m, b, self.root)]
        self.robot_bodies = np.array(robot, int)
        feet = sorted({int(m.geom_bodyid[g]) for g in cw.foot_geoms})
        if not feet:  # the robot's leaves
            feet = [b for b in robot if not any(m.body_parentid[c] == b for c in range(m.nbody))]
        self.key_bodies = np.array(feet, int)
        qadr, vadr, lo, hi = [], [], [], []
        for a in range(m.nu):
            j = int(m.actuator_trnid[a, 0])
            if int(m.actuator_trntype[a]) != int(mujoco.mjtTrn.mjTRN_JOINT) or int(m.jnt_type[j]) not in (
                    int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                raise ValueError(f"MotionTrackingEnv: actuator {a} of world {cw.name!r} does not drive a hinge or "
                                 "slide joint; PD targets need one joint per actuator")
            qadr.append(int(m.jnt_qposadr[j]))
            vadr.append(int(m.jnt_dofadr[j]))
            limited = bool(m.actuator_ctrllimited[a])
            lo.append(m.actuator_ctrlrange[a, 0] if limited else -np.inf)
            hi.append(m.actuator_ctrlrange[a, 1] if limited else np.inf)
        self.act_qadr, self.act_vadr = np.array(qadr, int), np.array(vadr, int)
        self.gear = m.actuator_gear[:, 0].copy()
        self.ctrl_lo, self.ctrl_hi = np.array(lo), np.array(hi)
        self._quat_adrs = quaternion_addresses(m)

    def _prepare_clip(self, clip: Clip) -> Clip:
        if clip.world not in (None, self.world) and not os.path.isfile(str(clip.world)):
            raise ClipError(clip.source, f"clip of world {clip.world!r}, but this env tracks {self.world!r}")
        # a copy (validate normalises quaternions in place); recorded actions play no part in tracking
        clip = dataclasses.replace(clip, qpos=np.array(clip.qpos, np.float64), actions=None, cache={})
        clip = validate(clip, self.model, self.world)
        if abs(clip.fps - self.fps) > 1e-6 * self.fps:
            clip = dataclasses.replace(clip, qpos=resample(clip.qpos, clip.fps, self.fps, self._quat_adrs), fps=self.fps)
        return clip

    def reference(self, i: int) -> Reference:
        """Clip ``i`` prepared for tracking (computed on first use, then cached)."""
        ref = self._refs.get(i)
        if ref is None:
            ref = self._refs[i] = self._make_reference(self.clips[i])
        return ref

    def _make_reference(self, clip: Clip) -> Reference:
        m, d = self.model, self._scratch
        q = clip.qpos
        T = q.shape[0]
        qvel = np.zeros((T, m.nv))
        step = np.zeros(m.nv)
        for t in range(T):  # central differences (one-sided at the ends)
            a, b = max(t - 1, 0), min(t + 1, T - 1)
            mujoco.mj_differentiatePos(m, step, (b - a) / self.fps, q[a], q[b])
            qvel[t] = step
        xpos = np.empty((T, m.nbody, 3))
        axes = np.empty((T, 3, 3))
        for t in range(T):
            d.qpos[:] = q[t]
            mujoco.mj_kinematics(m, d)
            xpos[t] = d.xpos
            axes[t] = d.xmat[self.root].reshape(3, 3)
        ang_vel = np.einsum("tij,tj->ti", axes, qvel[:, 3:6])
        return Reference(q, qvel, xpos, axes, ang_vel, clip.source)

    # ------------------------------------------------------------------------------------------
    # gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        i = int(options["clip"]) if "clip" in options else int(self.np_random.integers(len(self.clips)))
        if not 0 <= i < len(self.clips):
            raise IndexError(f"clip {i} out of range: the env has {len(self.clips)} clips")
        ref = self.reference(i)
        T = ref.n_frames
        if "frame" in options:
            t = int(options["frame"])
            if not 0 <= t < T - 1:
                raise IndexError(f"start frame {t} out of range: clip {i} has {T} frames (start < {T - 1})")
        else:  # leave at least two steps where the clip has them
            t = int(self.np_random.integers(max(T - 2, 1)))
        self._ref, self.clip_index, self.frame = ref, i, t
        d = self.data
        mujoco.mj_resetData(self.model, d)
        d.qpos[:] = ref.qpos[t]
        d.qvel[:] = ref.qvel[t]
        mujoco.mj_forward(self.model, d)
        return self._observation(), {"clip": i, "frame": t}

    def step(self, action):
        ref, m, d = self._ref, self.model, self.data
        if ref is None:
            raise RuntimeError("MotionTrackingEnv: call reset() before step()")
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        t1 = self.frame + 1
        target = ref.qpos[t1, self.act_qadr] + self.action_scale * a
        force = np.zeros(m.nu)
        for _ in range(self.frame_skip):  # the PD law at every simulator step (zero-order hold within one)
            u = self.kp * (target - d.qpos[self.act_qadr]) - self.kd * d.qvel[self.act_vadr]
            d.ctrl[:] = np.minimum(np.maximum(u, self.ctrl_lo), self.ctrl_hi)
            mujoco.mj_step(m, d)
            force += d.actuator_force
        self.frame = t1
        self.last_torques = force / self.frame_skip * self.gear
        diverged = bool(d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number) or not np.isfinite(d.qpos).all() \
            or not np.isfinite(d.qvel).all()
        if diverged:
            terms = dict.fromkeys(REWARD_TERMS, 0.0)
            body_error, fell = float("nan"), False
        else:
            terms = self._reward_terms(t1)
            body_error = self.body_error(t1)
            fell = self.fell(t1)
        reward = float(sum(terms.values()))
        terminated = bool(diverged or fell or body_error > self.termination_distance)
        truncated = bool(not terminated and t1 >= ref.n_frames - 1)
        info = {f"reward_{k}": v for k, v in terms.items()}
        info.update(body_error_m=body_error, frame=t1, clip=self.clip_index, fell=fell, diverged=diverged)
        obs = self._observation()
        if diverged:
            obs = np.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0)
        return obs, reward, terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, *self._render_size)
            self._camera = mujoco.MjvCamera()
            self._camera.distance, self._camera.elevation, self._camera.azimuth = 3.0, -20.0, 135.0
        self._camera.lookat[:] = self.data.xpos[self.root]
        self._renderer.update_scene(self.data, self._camera)
        return self._renderer.render()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------------------------------
    # tracking quantities

    def body_error(self, t: int | None = None) -> float:
        """Mean over the robot's bodies of |xpos_sim - xpos_ref| at reference frame ``t`` (default: now)."""
        t = self.frame if t is None else t
        diff = self.data.xpos[self.robot_bodies] - self._ref.xpos[t, self.robot_bodies]
        return float(np.linalg.norm(diff, axis=1).mean())

    def fell(self, t: int | None = None) -> bool:
        """Whether the body has fallen against reference frame ``t`` (default: now): ``rlpf.judge.tracking.fell_frames``."""
        t = self.frame if t is None else t
        return bool(fell_frames(self.data.qpos[:7], self._ref.qpos[t, :7], self.fall_drop_m))

    def _reward_terms(self, t: int) -> dict[str, float]:
        m, d, ref, w = self.model, self.data, self._ref, self.reward_cfg
        dq = np.empty(m.nv)
        mujoco.mj_differentiatePos(m, dq, 1.0, ref.qpos[t], d.qpos)  # sim - reference, in velocity space
        pose_err = float(dq[6:] @ dq[6:])
        dv = d.qvel[6:] - ref.qvel[t, 6:]
        vel_err = float(dv @ dv)
        root_pose_err = float(dq[:3] @ dq[:3] + 0.1 * dq[3:6] @ dq[3:6])
        ang = d.xmat[self.root].reshape(3, 3) @ d.qvel[3:6]
        dl, da = d.qvel[:3] - ref.qvel[t, :3], ang - ref.ang_vel[t]
        root_vel_err = float(dl @ dl + 0.1 * da @ da)
        kb = self.key_bodies
        dk = (d.xpos[kb] - d.xpos[self.root]) - (ref.xpos[t, kb] - ref.xpos[t, self.root])
        key_err = float((dk * dk).sum())
        return {
            "pose": w.pose_weight * float(np.exp(-w.pose_scale * pose_err)),
            "joint_vel": w.joint_vel_weight * float(np.exp(-w.joint_vel_scale * vel_err)),
            "root_pose": w.root_pose_weight * float(np.exp(-w.root_pose_scale * root_pose_err)),
            "root_vel": w.root_vel_weight * float(np.exp(-w.root_vel_scale * root_vel_err)),
            "key_body": w.key_body_weight * float(np.exp(-w.key_body_scale * key_err)),
        }

    def _observation(self) -> np.ndarray:
        d, ref = self.data, self._ref
        R = d.xmat[self.root].reshape(3, 3)
        yaw = np.arctan2(R[1, 0], R[0, 0])   # heading of the body x axis
        c, s = np.cos(yaw), np.sin(yaw)
        H = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])   # world -> heading frame
        parts = [
            d.qpos[2:3],
            (H @ R[:, [0, 2]]).T.ravel(),
            d.qpos[7:],
            d.qvel[6:],
            H @ d.qvel[:3],
            H @ (R @ d.qvel[3:6]),
        ]
        last = ref.n_frames - 1
        for k in range(1, self.future_frames + 1):
            f = min(self.frame + k, last)
            parts += [H @ (ref.qpos[f, :3] - d.qpos[:3]), (H @ ref.axes[f][:, [0, 2]]).T.ravel(), ref.qpos[f, 7:]]
        return np.concatenate(parts).astype(np.float32)


def resample(qpos: np.ndarray, fps: float, new_fps: float, quat_adrs: Sequence[int] = ()) -> np.ndarray:
    """qpos [T, nq] at ``fps`` linearly interpolated to ``new_fps`` over the same duration
    (quaternions normalised after interpolation, on one hemisphere first)."""
    q = np.array(qpos, np.float64)
    for adr in quat_adrs:  # consecutive quaternions on one hemisphere, so the interpolation takes the short way
        quat = q[:, adr:adr + 4]
        flip = np.cumprod(np.where((quat[1:] * quat[:-1]).sum(1) < 0, -1.0, 1.0))
        quat[1:] *= flip[:, None]
    T = q.shape[0]
    duration = (T - 1) / fps
    n = max(2, int(np.floor(duration * new_fps + 1e-9)) + 1)
    t_new = np.arange(n) / new_fps
    t_old = np.arange(T) / fps
    out = np.stack([np.interp(t_new, t_old, q[:, j]) for j in range(q.shape[1])], axis=1)
    for adr in quat_adrs:
        out[:, adr:adr + 4] /= np.linalg.norm(out[:, adr:adr + 4], axis=1, keepdims=True)
    return out


def _descends(m: mujoco.MjModel, body: int, ancestor: int) -> bool:
    while body > 0:
        if body == ancestor:
            return True
        body = int(m.body_parentid[body])
    return False
