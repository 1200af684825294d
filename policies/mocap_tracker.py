"""Mocap tracker: replay a manipulation clip's robot motion in MuJoCo, simulate everything else.

The RLPF check for manipulation: given what the robot does, can physics reproduce what the clip
shows the objects doing? The robot is driven as Meta-World drives its Sawyer, and nothing else is:

* **the hand** follows the world's mocap body through the mocap weld (``World.mocap``, ``World.hand``;
  Meta-World's ``SawyerXYZEnv.set_xyz_action`` moves ``data.mocap_pos`` and the weld equality pulls
  the hand after it). The mocap target per simulator step is the clip's hand pose (forward kinematics
  of its qpos, interpolated between frames: cubic Hermite for the position, normalised lerp for the
  orientation) plus a lead that cancels the weld's lag and a PI correction on the hand-position error::

      mocap_pos = x*(t) + WELD_LEAD_S * v*(t) + HAND_KP * e + HAND_KI * integral(e dt),   e = x*(t) - x_hand
      mocap_quat = the clip hand's orientation at t

  The weld (solref 0.02 s, critically damped) behaves like a spring-damper whose rest length is the
  mocap pose, so a hand moving at v lags ~2 time constants x v behind it (WELD_LEAD_S), the arm's
  unsupported weight sags it by a few mm and a push against a fixture stretches it (the PI terms). The feedback acts on the hand only: what the
  robot itself does, never on an object.
* **the gripper** through its position actuators (``World.gripper``, ``CompiledWorld.gripper_actuators``)::

      ctrl = clip( q*_f + GRIP_KP * (q*_f - q_f) + GRIP_KD * (v*_f - v_f),  ctrlrange )

  A finger held closed in the clip is held by the actuator squeezing something between the pads (a
  contact only ever pushes a finger open), so the servo squeezes as long as the simulated finger is
  less closed than the clip's: the grasp's force comes from the same actuator, bounded by its range.
  The clip's ``actions`` are not used: generated clips have none, and the command is read from the
  motion the same way for every clip.
* **objects and articulations** (``World.objects``, ``World.articulations``) start at the clip's
  first frame (positions and velocities, every other dof too) and are then simulated, never set:
  an object moves only if the simulated hand, fingers or other bodies push it.

Targets are interpolated at the simulator's timestep, so clips at any frame rate track (Meta-World
records 80 fps; a 20 fps copy is interpolated between its frames).

Outcomes (``TrackResult``):

* ``body_error_m[t]``: mean over the robot's moving bodies of |xpos_sim - xpos_ref|;
  ``threshold_m`` its bound: the world's declared ``success_threshold_m``, else ``ARM_THRESHOLD_M``;
  ``info["hand_error_m"]`` the hand's own error per frame;
* ``object_error_m[t]``: the worst object or articulation at frame t, each in metres: a free
  object's body position error; an articulation's largest geom-centre error (a slide's travel, a
  hinge's arc at its geoms). Items have thresholds of their own, so the series is the one of the item
  closest to failing (peak error / its threshold); every item's peak, threshold and verdict are in
  ``info["objects"]``, and ``objects_tracked`` says whether all were within their thresholds;
* success: no divergence, arm within ``threshold_m`` at every frame, every object within
  ``OBJECT_THRESHOLD_M`` and every articulation within ``articulation_threshold_m`` at every frame.
"""
from __future__ import annotations

import time

import mujoco
import numpy as np

from rlpf.core.clips import Clip
from rlpf.core.errors import RLPFError
from rlpf.envs.worlds import CompiledWorld, UnknownWorldError, World, compile_world, get_world, portable_world
from rlpf.judge.tracking import Tracker, TrackResult
from rlpf.policies.pd_tracker import _quiet_mujoco

OBJECT_THRESHOLD_M = 0.05
"""m: a free object the simulation leaves farther than this from where the clip puts it did not move
as the clip shows. Meta-World's own success distance (``SawyerXYZEnv.TARGET_RADIUS``, 0.05 m: "an
object within this of its target is there"), and ``rlpf.rewards.tracking.OBJECT_DIVERGENCE_M``."""
ARTICULATION_TRAVEL_FRACTION = 0.25
"""An articulation (drawer, door, button) that the simulation leaves more than this fraction of its
travel away from the clip's is in a different state: ``articulation_threshold_m`` = this x the joint's
range measured at its geoms (a slide's range; a hinge's range x its farthest geom's distance from
the axis), capped at ``OBJECT_THRESHOLD_M``. Meta-World's button (6 cm travel) -> 1.5 cm, drawer
(16 cm) -> 4 cm, door (2 rad at ~0.3 m) -> 5 cm."""
ARM_THRESHOLD_M = 0.05
"""m: largest mean robot-body error at any frame in a world that declares no ``success_threshold_m``:
the same task resolution (Meta-World's reach success is the hand within 0.05 m of its goal)."""

WELD_LEAD_S = 0.04
"""s: the mocap leads the reference hand by this x its velocity: the weld's time constant (0.02 s,
Meta-World's ``solref``) twice, the lag of a critically damped spring-damper following a ramp."""
HAND_KP = 5.0
"""Proportional gain (dimensionless) of the hand-position correction: the weld's pull on an error is
6x its own. Where the hand pushes a fixture (the door) the clip's weld was stretched by a force its
qpos cannot show; the stiffer loop holds the hand on the clip's path against it. Measured on 12
recordings per task (seeds 1000-1005, noise 0 and 0.3; none of the experiment's corruptions):
door success 0.67 / 0.75 / 0.92 at gains (1, 20) / (3, 60) / (5, 100), pick-place, push and drawer
unchanged within one clip; (8, 100) and (5, 200) were worse again (0.75 door)."""
HAND_KI = 100.0
"""1/s: integral gain of the hand correction (with HAND_KP a 0.05 s time constant, slower than the
weld's 0.02 s so the loop stays stable); it cancels the steady sag of the unsupported arm and a
steady push against a fixture."""
GRIP_KP = 1000.0
"""1/1 (ctrl metres per metre of finger error): 1 mm of finger error commands the whole ctrl range,
so a finger the clip holds on an object squeezes it (Meta-World's fingers: kp 400 N/m position
actuators, ctrl +-1, armature 100 kg, damping 1000 N s/m; loop ~63 rad/s, well inside the 0.0025 s step)."""
GRIP_KD = 30.0
"""s: finger velocity gain; with the joint's own damping it makes the 63 rad/s finger loop about critically damped."""
MAX_SPEED = 1e3
"""A generalized velocity beyond this (m/s or rad/s) means the simulation blew up."""


class MocapTrackerError(RLPFError, ValueError):
    """A world the mocap tracker cannot drive, or a clip that is not of its world."""


class MocapTracker(Tracker):
    """Track manipulation clips: hand through the mocap weld, gripper through its actuators, objects simulated.

    ``world``: a name, an MJCF path or a ``World`` declaring ``hand``, ``mocap`` and ``gripper``
    (the ``metaworld/<task>`` worlds). ``threshold_m``: the arm's bound (default: the world's declared
    ``success_threshold_m``, else ``ARM_THRESHOLD_M``); ``object_threshold_m``: a free object's bound
    (default ``OBJECT_THRESHOLD_M``); articulations get ``articulation_threshold_m``.
    """

    name = "mocap"

    def __init__(self, world: str | World, threshold_m: float | None = None, object_threshold_m: float | None = None):
        self.world = world
        self.cw: CompiledWorld = compile_world(world)
        self._spec_world = portable_world(world)
        cw, m = self.cw, self.cw.model
        missing = [f for f, v in (("hand", cw.hand_body), ("mocap", cw.mocap_body)) if v is None]
        if missing or not len(cw.gripper_actuators):
            missing += [] if len(cw.gripper_actuators) else ["gripper"]
            raise MocapTrackerError(f"world {cw.name!r} declares no {', '.join(missing)}: the mocap tracker drives "
                                    "the hand through a mocap weld and the fingers through their actuators "
                                    "(World.hand, World.mocap, World.gripper); use the PD tracker for joint-actuated robots")
        declared = get_world(cw.world).success_threshold_m
        self.threshold_m = float(threshold_m if threshold_m is not None else
                                 declared if declared is not None else ARM_THRESHOLD_M)
        self.object_threshold_m = float(OBJECT_THRESHOLD_M if object_threshold_m is None else object_threshold_m)
        if not (self.threshold_m > 0 and self.object_threshold_m > 0):
            raise MocapTrackerError(f"MocapTracker: thresholds must be > 0, got threshold_m={self.threshold_m}, "
                                    f"object_threshold_m={self.object_threshold_m}")
        self._mocap_id = int(m.body_mocapid[cw.mocap_body])
        self._grip_act = np.asarray(cw.gripper_actuators, int)
        self._grip_qadr = np.array([m.jnt_qposadr[j] for j in cw.gripper_joints], int)
        self._grip_dof = np.array([m.jnt_dofadr[j] for j in cw.gripper_joints], int)
        self._grip_range = m.actuator_ctrlrange[self._grip_act].copy()
        unlimited = ~m.actuator_ctrllimited[self._grip_act].astype(bool)
        self._grip_range[unlimited] = (-np.inf, np.inf)
        # robot bodies: those carrying the robot's collidable geoms, and the hand, that some dof moves
        bodies = set(int(b) for b in m.geom_bodyid[cw.robot_geoms]) | {int(cw.hand_body)}
        self._bodies = np.array(sorted(b for b in bodies if cw.dof_ancestor[b].any()), int)
        self._items = self._tracked_items()
        self._data = mujoco.MjData(m)
        self._scratch = mujoco.MjData(m)

    # ------------------------------------------------------------------------------------------
    def _tracked_items(self) -> list[tuple[str, str, np.ndarray, float]]:
        """(name, kind, ids, threshold m) per free object (its body) and articulation (its geoms)."""
        cw, m = self.cw, self.cw.model
        items = [(cw.world.objects[i], "object", np.array([b]), self.object_threshold_m)
                 for i, b in enumerate(cw.object_bodies)]
        for k, j in enumerate(cw.articulation_joints):
            body = int(cw.articulation_bodies[k])
            geoms = np.array([g for g in cw.articulation_geoms if _descends(m, int(m.geom_bodyid[g]), body)], int)
            if not len(geoms):
                continue
            items.append((cw.world.articulations[k], "articulation", geoms, self.articulation_threshold_m(k, geoms)))
        return items

    def articulation_threshold_m(self, k: int, geoms: np.ndarray) -> float:
        """m: ``ARTICULATION_TRAVEL_FRACTION`` of articulation ``k``'s travel at its geoms, capped at the object threshold."""
        m, j = self.cw.model, int(self.cw.articulation_joints[k])
        span = float(np.ptp(m.jnt_range[j])) if m.jnt_limited[j] else np.inf
        if int(m.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_HINGE):
            d = mujoco.MjData(m)
            mujoco.mj_forward(m, d)
            axis, anchor = d.xaxis[j], d.xanchor[j]
            rel = d.geom_xpos[geoms] - anchor
            radius = np.linalg.norm(rel - np.outer(rel @ axis, axis), axis=1).max()
            span *= float(radius)
        return float(min(self.object_threshold_m, ARTICULATION_TRAVEL_FRACTION * span))

    def spec(self) -> tuple:
        return MocapTracker, {"world": self._spec_world, "threshold_m": self.threshold_m,
                              "object_threshold_m": self.object_threshold_m}

    def __repr__(self) -> str:
        return (f"MocapTracker({self.cw.name!r}, threshold_m={self.threshold_m:g}, "
                f"object_threshold_m={self.object_threshold_m:g})")

    # ------------------------------------------------------------------------------------------
    def _check(self, clip: Clip) -> np.ndarray:
        """The clip's qpos as float [T, nq]; MocapTrackerError naming the clip for a clip of another world."""
        cw = self.cw
        if clip.world is not None:
            try:
                other = get_world(clip.world).name
            except UnknownWorldError:
                other = str(clip.world)
            if other != cw.name:
                raise MocapTrackerError(f"{clip.source}: a clip of world {other!r} given to the mocap tracker of "
                                        f"world {cw.name!r}")
        raw = np.asarray(clip.qpos, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != cw.model.nq:
            raise MocapTrackerError(f"{clip.source}: qpos has shape {raw.shape} but world {cw.name!r} needs "
                                    f"[T, nq={cw.model.nq}]")
        return raw

    def track_one(self, clip: Clip) -> TrackResult:
        t0 = time.perf_counter()
        raw = self._check(clip)
        T = len(raw)
        if T < 2 or not np.isfinite(raw).all() or not (np.isfinite(clip.fps) and clip.fps > 0):
            return self._failed(clip, max(T, 1), "not a finite [T >= 2] clip at a positive fps")
        with _quiet_mujoco():
            qpos, why = self._rollout(raw, float(clip.fps))
        body_sim, hand_sim, items_sim = self._measure(qpos)
        body_ref, hand_ref, items_ref = self._measure(raw)
        body_err = np.linalg.norm(body_sim - body_ref, axis=-1).mean(axis=1)
        hand_err = np.linalg.norm(hand_sim - hand_ref, axis=-1)
        objects, per_item = {}, []
        for (name, kind, _, thr), s, r in zip(self._items, items_sim, items_ref):
            e = np.linalg.norm(s - r, axis=-1).max(axis=1)          # [T]: the item's worst point
            per_item.append(e)
            peak = float(np.nanmax(e)) if np.isfinite(e).any() else float("nan")
            objects[name] = {"kind": kind, "max_error_m": peak, "threshold_m": thr,
                             "tracked": bool(np.isfinite(e).all() and peak <= thr)}
        obj_err = None
        if per_item:
            # the [T] series of the item closest to failing (largest peak error over its own threshold);
            # success needs every item within its own threshold (objects_tracked)
            stacked = np.stack(per_item)                              # [items, T]
            with np.errstate(invalid="ignore"):
                ratio = np.array([np.nanmax(e) if np.isfinite(e).any() else np.inf for e in per_item]) \
                    / np.array([it[3] for it in self._items])
            obj_err = stacked[int(np.argmax(ratio))]
        info = {"tracker": self.name, "hand_error_m": hand_err, "objects": objects,
                "objects_tracked": all(o["tracked"] for o in objects.values()),
                "sim_seconds": (T - 1) / clip.fps, "wall_seconds": time.perf_counter() - t0}
        if why:
            info["why"] = why
        return TrackResult(source=clip.source, qpos=qpos, body_error_m=body_err, torques=np.zeros((T, 0)),
                           fell=False, diverged=bool(why), threshold_m=self.threshold_m,
                           object_error_m=obj_err, objects_tracked=info["objects_tracked"] if per_item else None,
                           info=info)

    # ------------------------------------------------------------------------------------------
    def _reference(self, raw: np.ndarray, fps: float):
        """Per frame: hand position [T, 3] and quaternion [T, 4], finger qpos [T, F]; velocities by central differences."""
        m, d = self.cw.model, self._scratch
        T = len(raw)
        pos, quat = np.empty((T, 3)), np.empty((T, 4))
        for t in range(T):
            d.qpos[:] = raw[t]
            mujoco.mj_kinematics(m, d)
            pos[t] = d.xpos[self.cw.hand_body]
            quat[t] = d.xquat[self.cw.hand_body]
        for t in range(1, T):   # q and -q are one rotation: keep neighbours in one hemisphere to interpolate
            if quat[t] @ quat[t - 1] < 0:
                quat[t] *= -1
        fingers = raw[:, self._grip_qadr]
        return pos, np.gradient(pos, axis=0) * fps, quat, fingers, np.gradient(fingers, axis=0) * fps

    def _rollout(self, raw: np.ndarray, fps: float):
        """Simulate from the clip's first frame; qpos at each frame (NaN after a divergence) and why it failed."""
        cw, m, d = self.cw, self.cw.model, self._data
        T = len(raw)
        h = m.opt.timestep
        pos, vel, quat, fq, fv = self._reference(raw, fps)
        mujoco.mj_resetData(m, d)
        d.qpos[:] = raw[0]
        # the first frame's velocity: a second-order one-sided difference (exact for constant acceleration)
        q2 = raw[2] if T > 2 else 2 * raw[1] - raw[0]
        v01, v12 = np.empty(m.nv), np.empty(m.nv)
        mujoco.mj_differentiatePos(m, v01, 1.0 / fps, raw[0], raw[1])
        mujoco.mj_differentiatePos(m, v12, 1.0 / fps, raw[1], q2)
        d.qvel[:] = 1.5 * v01 - 0.5 * v12
        d.mocap_pos[self._mocap_id] = pos[0]
        d.mocap_quat[self._mocap_id] = quat[0]
        mujoco.mj_forward(m, d)

        step_of_frame = np.round(np.arange(T) / (fps * h)).astype(int)   # frame k is read after this many steps
        n_steps = int(step_of_frame[-1])
        out = np.full((T, m.nq), np.nan)
        out[0] = d.qpos
        frame = 1
        while frame < T and step_of_frame[frame] == 0:
            out[frame] = d.qpos
            frame += 1
        integral = np.zeros(3)
        hand = d.xpos[cw.hand_body]
        bad_acc = d.warning[mujoco.mjtWarning.mjWARN_BADQACC]
        lo, hi = self._grip_range[:, 0], self._grip_range[:, 1]
        for i in range(n_steps):
            s = (i + 1) * h * fps                       # the step's end, in frames: where the hand should be
            k = min(int(s), T - 2)
            u = s - k
            x_t, v_t = _hermite(pos[k], pos[k + 1], vel[k] / fps, vel[k + 1] / fps, u, fps)
            f_t, fv_t = _hermite(fq[k], fq[k + 1], fv[k] / fps, fv[k + 1] / fps, u, fps)
            q_t = (1 - u) * quat[k] + u * quat[k + 1]
            e = x_t - hand
            integral += e * h
            d.mocap_pos[self._mocap_id] = x_t + WELD_LEAD_S * v_t + HAND_KP * e + HAND_KI * integral
            d.mocap_quat[self._mocap_id] = q_t / np.linalg.norm(q_t)
            f_sim, fv_sim = d.qpos[self._grip_qadr], d.qvel[self._grip_dof]
            d.ctrl[self._grip_act] = np.clip(f_t + GRIP_KP * (f_t - f_sim) + GRIP_KD * (fv_t - fv_sim), lo, hi)
            mujoco.mj_step(m, d)
            if step_of_frame[frame] != i + 1:
                continue
            if bad_acc.number or not np.isfinite(d.qpos).all() or np.abs(d.qvel).max() > MAX_SPEED:
                return out, f"simulation diverged before frame {frame}"
            while frame < T and step_of_frame[frame] == i + 1:
                out[frame] = d.qpos
                frame += 1
        return out, ""

    def _measure(self, qpos: np.ndarray):
        """[T, B, 3] robot bodies, [T, 3] hand, and per tracked item [T, n, 3] points (NaN rows stay NaN)."""
        m, d = self.cw.model, self._scratch
        T = len(qpos)
        body = np.full((T, len(self._bodies), 3), np.nan)
        hand = np.full((T, 3), np.nan)
        items = [np.full((T, len(ids), 3), np.nan) for _, _, ids, _ in self._items]
        for t in range(T):
            if not np.isfinite(qpos[t]).all():
                continue
            d.qpos[:] = qpos[t]
            mujoco.mj_kinematics(m, d)
            body[t] = d.xpos[self._bodies]
            hand[t] = d.xpos[self.cw.hand_body]
            for (_, kind, ids, _), arr in zip(self._items, items):
                arr[t] = d.xpos[ids] if kind == "object" else d.geom_xpos[ids]
        return body, hand, items

    def _failed(self, clip: Clip, T: int, why: str) -> TrackResult:
        return TrackResult(source=clip.source, qpos=np.full((T, self.cw.model.nq), np.nan),
                           body_error_m=np.full(T, np.nan), torques=np.zeros((T, 0)), fell=False, diverged=True,
                           threshold_m=self.threshold_m,
                           object_error_m=np.full(T, np.nan) if self._items else None,
                           info={"tracker": self.name, "why": why})


def _hermite(p0, p1, m0, m1, u: float, fps: float):
    """Cubic Hermite value and time derivative (per second) at fraction ``u`` between frames (tangents per frame)."""
    u2, u3 = u * u, u * u * u
    p = (2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * m0 + (3 * u2 - 2 * u3) * p1 + (u3 - u2) * m1
    v = ((6 * u2 - 6 * u) * (p0 - p1) + (3 * u2 - 4 * u + 1) * m0 + (3 * u2 - 2 * u) * m1) * fps
    return p, v


def _descends(m: mujoco.MjModel, body: int, ancestor: int) -> bool:
    while body > 0:
        if body == ancestor:
            return True
        body = m.body_parentid[body]
    return ancestor == 0
