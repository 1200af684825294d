"""PD + inverse-dynamics feedforward tracker: replay a clip in MuJoCo with joint torques only.

The root of a floating robot is unactuated and objects are not actuated (they move only when the arm
pushes them), so a clip that needs a force nothing in the scene can apply - levitation, skating,
teleporting, an object sliding untouched - drifts away from its reference in simulation, while a
physically valid clip can be followed.

Per simulator step, on every actuated hinge/slide joint j::

    tau_j = clip( ff_j(t) + I_j * (kp * (q*_j(t) - q_j) + kd * (v*_j(t) - v_j)),  +-torque_scale * limit_j )

* ``q*``, ``v*``: the reference after the scorer's light [1, 2, 1] smoothing, interpolated between
  frames by cubic Hermite splines through the frame velocities (targets are C1 in time);
* ``ff``: contact-free inverse dynamics of the smoothed reference (``mj_inverse`` with contacts and
  joint limits disabled, as ``rewards/analysis.py`` does) on the actuated joints, linear between
  frames: the torques the motion needs if something held the root. Contacts and the PD loop supply
  the rest (a standing body's legs carry it, which contact-free dynamics cannot know);
* ``I_j``: the joint's effective inertia 1 / (M^-1)_jj, averaged over the reference (``joint_inertia``
  says why not M_jj), so one ``kp`` (1/s^2) and ``kd`` (1/s) suit light arm links and heavy hips
  alike: each joint's loop has natural frequency ~sqrt(kp) and damping ratio kd / (2 sqrt(kp)). The
  loop is explicit (torques are held over a step), stable while kd * timestep < 2;
* ``limit``: the actuator's torque limit (gear x ctrl range); ``torque_scale=None`` leaves torques
  unclipped.

Torques go through ``qfrc_applied`` at the model's own timestep and integrator; ``ctrl`` stays 0.
The simulation starts at the reference's first frame, positions and velocities (a clip that starts
moving keeps that momentum). Dofs that are neither actuated nor the root (Pusher-v5's goal marker)
are left to the simulator.

Outcomes (``TrackResult``):

* ``body_error_m[t]``: mean over the robot's bodies (the floating root's subtree; for a fixed-base
  arm the bodies its actuated joints move) of |xpos_sim - xpos_ref| at frame t, reference taken as
  given (unsmoothed);
* ``fell``: ``rlpf.judge.tracking.fell_frames`` at some frame - the one rule all trackers share: the root
  sank more than ``fall_drop_m`` below the reference's root (the world's declared ``fall_drop_m``:
  ant 0.2 m, humanoid 0.35 m, about a quarter of the standing root height) or flipped over while the
  reference is upright; fixed-base robots never fall. The reference may fall itself - that is
  tracked, not a fall; a reference that rises where the body cannot follow (levitation) reads as one;
* ``diverged``: the simulation blew up (``mjWARN_BADQACC``, non-finite state, a speed above
  ``MAX_SPEED``) or the first frame puts a robot geom more than ``START_PENETRATION_M`` inside the
  floor (MuJoCo would eject it violently). The qpos and errors are NaN from the failing frame on.

Neither is ever an exception; MuJoCo's own warning print-outs are silenced during the rollout.
"""
from __future__ import annotations

import contextlib
import time

import mujoco
import numpy as np

from rlpf.core.clips import Clip
from rlpf.envs.worlds import CompiledWorld, World, _is_descendant, compile_world, get_world, portable_world
from rlpf.rewards.analysis import _inverse_model, smoothed_kinematics
from rlpf.judge.tracking import Tracker, TrackResult, fall_drop_m as world_fall_drop_m, fell_frames, success_threshold

DEFAULT_GAINS = {"kp": 900.0, "kd": 60.0}
"""Gains of a world that declares no ``World.pd_gains`` (stable for simulator timesteps up to ~0.03 s);
kp in 1/s^2 and kd in 1/s, both multiplied by each joint's effective inertia."""


def world_gains(world) -> dict[str, float]:
    """``{"kp", "kd"}`` of ``world`` (name, path, World or CompiledWorld): its declared ``World.pd_gains``
    (the built-ins' are in ``rlpf.envs.worlds.BUILTIN_WORLDS``), else ``DEFAULT_GAINS``."""
    gains = get_world(world).pd_gains
    return dict(DEFAULT_GAINS) if gains is None else {"kp": float(gains[0]), "kd": float(gains[1])}


def world_pd_tracker(world: str | World) -> Tracker:
    """``--tracker pd`` for ``world``: its declared ``World.pd_tracker`` class (Meta-World's mocap arm:
    ``rlpf.policies.mocap_tracker.MocapTracker``), else ``PDTracker``, built as ``cls(world)``."""
    from rlpf.envs.worlds import resolve

    declared = get_world(world).pd_tracker
    cls = PDTracker if declared is None else resolve(declared, f"world {get_world(world).name!r}: pd_tracker")
    return cls(world)


START_PENETRATION_M = 0.05
"""m: a first frame with a robot geom deeper than this in the floor starts inside it (a failed track)."""
MAX_SPEED = 1e3
"""A generalized velocity beyond this (m/s or rad/s) means the simulation blew up."""


class PDTracker(Tracker):
    """Track clips of one world with PD + inverse-dynamics feedforward (see the module docstring).

    ``world``: a world name, an MJCF path or a ``World``; ``kp``/``kd`` default to the world's declared
    ``pd_gains`` (``world_gains``); ``fall_drop_m`` to ``rlpf.judge.tracking.fall_drop_m(world)``; ``threshold_m``
    (largest mean body error at any frame) to ``rlpf.judge.tracking.success_threshold(world)``.
    """

    name = "pd"

    def __init__(self, world: str | World, kp: float | None = None, kd: float | None = None,
                 torque_scale: float | None = 1.0, fall_drop_m: float | None = None,
                 threshold_m: float | None = None):
        self.world = world
        self.cw: CompiledWorld = compile_world(world)
        # what spec() ships: a world registered in this process reaches the workers as its declaration
        self._spec_world = portable_world(world)
        cw, m = self.cw, self.cw.model
        self.kp, self.kd, self.torque_scale, self.fall_drop_m, self.threshold_m, self._root_qadr = \
            tracker_settings(cw, kp, kd, torque_scale, fall_drop_m, threshold_m, "PDTracker")

        # actuated hinge/slide joints: dof, qpos address, torque limit, actuator index
        slide_hinge = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
        keep = [i for i, v in enumerate(cw.actuated_dofs) if int(m.jnt_type[m.dof_jntid[v]]) in slide_hinge]
        self._dofs = np.asarray(cw.actuated_dofs, int)[keep]
        self._qadr = np.array([m.jnt_qposadr[m.dof_jntid[v]] for v in self._dofs], int)
        self._limit = None if self.torque_scale is None else self.torque_scale * np.asarray(cw.torque_limit, float)[keep]
        self._actuator = np.array([_actuator_of_joint(m, m.dof_jntid[v]) for v in self._dofs], int)
        self._bodies = robot_bodies(cw)
        self._plant = m            # the model simulated; the controller's reference uses cw.model
        self._data = mujoco.MjData(m)
        self._scratch = mujoco.MjData(m)

    def set_plant(self, model: mujoco.MjModel) -> None:
        """Simulate ``model`` (the world's model under other physics: rlpf.data.dynamics) while the
        controller keeps computing its feedforward and gains from the world's own model - a
        controller tuned on one physics run on another, as in a second simulator."""
        m = self.cw.model
        if (model.nq, model.nv, model.nbody, model.ngeom) != (m.nq, m.nv, m.nbody, m.ngeom):
            raise ValueError(f"set_plant: the plant must be world {self.cw.name!r}'s model with other parameters")
        self._plant = model
        self._data = mujoco.MjData(model)

    def spec(self) -> tuple:
        return PDTracker, {"world": self._spec_world, "kp": self.kp, "kd": self.kd, "torque_scale": self.torque_scale,
                           "fall_drop_m": self.fall_drop_m, "threshold_m": self.threshold_m}

    def __repr__(self) -> str:
        return (f"PDTracker({self.cw.name!r}, kp={self.kp:g}, kd={self.kd:g}, torque_scale={self.torque_scale}, "
                f"fall_drop_m={self.fall_drop_m:g}, threshold_m={self.threshold_m:g})")

    # ------------------------------------------------------------------------------------------
    def track_one(self, clip: Clip) -> TrackResult:
        t0 = time.perf_counter()
        cw, m = self.cw, self.cw.model
        raw = np.asarray(clip.qpos, dtype=np.float64)
        T = len(raw) if raw.ndim == 2 else 0
        if raw.ndim != 2 or raw.shape[1] != m.nq or T < 2 or not np.isfinite(raw).all() \
                or not (np.isfinite(clip.fps) and clip.fps > 0):
            return self._failed(clip, max(T, 1), f"not a finite [T >= 2, nq={m.nq}] clip of world {cw.name!r}")
        with _quiet_mujoco():
            ref = reference_dynamics(clip, cw, self._dofs)
            d, plant = self._data, self._plant
            mujoco.mj_resetData(plant, d)
            d.qpos[:] = ref.qpos[0]
            d.qvel[:] = ref.qvel[0]
            mujoco.mj_forward(plant, d)
            depth = start_depth(cw, d)
            if depth > START_PENETRATION_M:
                return self._failed(clip, T, f"the first frame is {depth:.3f} m inside the floor", start_depth_m=depth)
            qpos, torques, why = self._rollout(ref, clip.fps, T)
        body_sim, obj_sim = self._positions(qpos)
        body_ref, obj_ref = self._positions(raw)
        body_err = np.linalg.norm(body_sim - body_ref, axis=-1).mean(axis=1)
        obj_err = np.linalg.norm(obj_sim - obj_ref, axis=-1).mean(axis=1) if len(cw.object_bodies) else None
        drop, fell = 0.0, False
        if cw.floating:
            root = slice(self._root_qadr, self._root_qadr + 7)
            sank = raw[:, self._root_qadr + 2] - qpos[:, self._root_qadr + 2]
            drop = float(np.nanmax(sank)) if np.isfinite(sank).any() else 0.0
            fell = bool(fell_frames(qpos[:, root], raw[:, root], self.fall_drop_m).any())
        info = {"tracker": self.name, "kp": self.kp, "kd": self.kd, "root_drop_m": drop, "start_depth_m": depth,
                "sim_seconds": (T - 1) / clip.fps, "wall_seconds": time.perf_counter() - t0}
        if why:
            info["why"] = why
        return TrackResult(source=clip.source, qpos=qpos, body_error_m=body_err, torques=torques,
                           fell=fell, diverged=bool(why),
                           threshold_m=self.threshold_m, object_error_m=obj_err, info=info)

    def _rollout(self, ref: "Reference", fps: float, T: int):
        """Simulate from the state already in ``self._data``; qpos and mean torque per frame, and why it failed."""
        m, d = self._plant, self._data
        q_t, v_t, ff_t, step_of_frame = self._targets(ref, fps)
        kp_i, kd_i = self.kp * ref.inertia, self.kd * ref.inertia
        qpos = np.full((T, m.nq), np.nan)
        torques = np.zeros((T, m.nu))
        frame, since = 0, 0
        while frame < T and step_of_frame[frame] == 0:
            qpos[frame] = d.qpos
            frame += 1
        bad_acc = d.warning[mujoco.mjtWarning.mjWARN_BADQACC]
        # the loop runs ~300 times per clip: MjData's arrays and the buffers are bound once, and
        # contiguous joints (every built-in robot) are sliced, not copied; the arithmetic is unchanged
        q_sim, v_sim, qfrc = d.qpos, d.qvel, d.qfrc_applied
        qsel, vsel = _as_slice(self._qadr), _as_slice(self._dofs)
        lo, hi = (None, None) if self._limit is None else (-self._limit, self._limit)
        n = len(self._dofs)
        tau, e_v, tau_sum = np.empty(n), np.empty(n), np.zeros(n)
        for i in range(len(q_t)):
            np.subtract(q_t[i], q_sim[qsel], out=tau)
            tau *= kp_i
            np.add(ff_t[i], tau, out=tau)
            np.subtract(v_t[i], v_sim[vsel], out=e_v)
            e_v *= kd_i
            tau += e_v
            if lo is not None:
                np.maximum(tau, lo, out=tau)
                np.minimum(tau, hi, out=tau)
            qfrc[vsel] = tau
            mujoco.mj_step(m, d)
            tau_sum += tau
            since += 1
            if step_of_frame[frame] != i + 1:
                continue
            if bad_acc.number or not np.isfinite(d.qpos).all() or np.abs(d.qvel).max() > MAX_SPEED:
                return qpos, torques, f"simulation diverged before frame {frame}"
            torques[frame - 1, self._actuator] = tau_sum / since
            tau_sum[:], since = 0.0, 0
            while frame < T and step_of_frame[frame] == i + 1:
                qpos[frame] = d.qpos
                frame += 1
        torques[-1] = torques[-2]
        return qpos, torques, ""

    def _targets(self, ref: "Reference", fps: float):
        """Per simulator step: joint position and velocity targets and feedforward torques, and each frame's step."""
        h = self._plant.opt.timestep
        T = len(ref.qpos)
        step_of_frame = np.round(np.arange(T) / (fps * h)).astype(int)   # frame k is recorded after this many steps
        n_steps = int(step_of_frame[-1])
        t = np.arange(n_steps) * h * fps                                  # each step's start, in frames
        k = np.minimum(t.astype(int), T - 2)
        u = (t - k)[:, None]
        q0, q1 = ref.qpos[k][:, self._qadr], ref.qpos[k + 1][:, self._qadr]
        m0, m1 = ref.qvel[k][:, self._dofs] / fps, ref.qvel[k + 1][:, self._dofs] / fps
        u2, u3 = u * u, u * u * u
        q = (2 * u3 - 3 * u2 + 1) * q0 + (u3 - 2 * u2 + u) * m0 + (3 * u2 - 2 * u3) * q1 + (u3 - u2) * m1
        v = ((6 * u2 - 6 * u) * (q0 - q1) + (3 * u2 - 4 * u + 1) * m0 + (3 * u2 - 2 * u) * m1) * fps
        ff = (1 - u) * ref.qfrc[k][:, self._dofs] + u * ref.qfrc[k + 1][:, self._dofs]
        return q, v, ff, np.r_[step_of_frame, -1]   # sentinel: no frame after the last

    def _positions(self, qpos: np.ndarray):
        """[T, B, 3] robot body and [T, O, 3] object positions of each frame's qpos (NaN rows stay NaN)."""
        m, d = self.cw.model, self._scratch
        T = len(qpos)
        body = np.full((T, len(self._bodies), 3), np.nan)
        obj = np.full((T, len(self.cw.object_bodies), 3), np.nan)
        for t in range(T):
            if np.isfinite(qpos[t]).all():
                d.qpos[:] = qpos[t]
                mujoco.mj_kinematics(m, d)
                body[t] = d.xpos[self._bodies]
                obj[t] = d.xpos[self.cw.object_bodies]
        return body, obj

    def _failed(self, clip: Clip, T: int, why: str, **info) -> TrackResult:
        m = self.cw.model
        return TrackResult(
            source=clip.source, qpos=np.full((T, m.nq), np.nan), body_error_m=np.full(T, np.nan),
            torques=np.zeros((T, m.nu)), fell=False, diverged=True, threshold_m=self.threshold_m,
            object_error_m=np.full(T, np.nan) if len(self.cw.object_bodies) else None,
            info={"tracker": self.name, "why": why, **info},
        )


def _as_slice(index: np.ndarray):
    """``index`` as a slice when it is a contiguous run (indexing then gives a view), else unchanged."""
    if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
        return slice(int(index[0]), int(index[0]) + len(index))
    return index


class Reference:
    """The smoothed reference at its frames: qpos, qvel, contact-free inverse dynamics, joint inertia."""

    def __init__(self, qpos: np.ndarray, qvel: np.ndarray, qfrc: np.ndarray, inertia: np.ndarray):
        self.qpos, self.qvel, self.qfrc, self.inertia = qpos, qvel, qfrc, inertia


def reference_dynamics(clip: Clip, cw: CompiledWorld, dofs: np.ndarray) -> Reference:
    """Smooth the clip like the physics pass, differentiate it, and run contact-free ``mj_inverse`` per frame.

    Reuses the physics scorer's pass when it is already cached on the clip (same smoothing, same model).
    """
    m = cw.model
    cached = clip.cache.get(("physics", cw.name))
    mi = _inverse_model(cw)
    d = mujoco.MjData(mi)
    if cached is not None:
        qpos, qvel, qfrc = cached.qpos, cached.qvel, cached.qfrc
    else:
        qpos, _, qvel, qacc = smoothed_kinematics(m, clip.qpos, clip.dt)
        T = len(qpos)
        qfrc = np.empty((T, m.nv))
        for t in range(T):
            d.qpos[:] = qpos[t]
            d.qvel[:] = qvel[t]
            d.qacc[:] = qacc[t]
            mujoco.mj_inverse(mi, d)
            qfrc[t] = d.qfrc_inverse
    return Reference(qpos, qvel, qfrc, joint_inertia(mi, d, qpos, dofs))


def joint_inertia(m: mujoco.MjModel, d: mujoco.MjData, qpos: np.ndarray, dofs: np.ndarray, frames: int = 8) -> np.ndarray:
    """Effective inertia 1 / (M^-1)_jj of each dof in ``dofs``, averaged over up to ``frames`` frames of ``qpos``.

    Not the diagonal M_jj: that is the inertia with every other joint locked. A joint next to a
    floating root (the humanoid's abdomen, 6 kg m^2 locked, 0.1 free) moves far less when the rest
    of the body is free to counter-rotate, so gains scaled by M_jj are tens of times too stiff there
    and the explicit loop explodes. 1 / (M^-1)_jj is the inertia a torque meets with the rest of the
    body free, the one that sets the loop's stability.
    """
    nv = m.nv
    unit, col = np.zeros(nv), np.zeros(nv)
    M = np.empty((nv, nv))
    picks = np.unique(np.linspace(0, len(qpos) - 1, min(len(qpos), frames)).astype(int))
    total = np.zeros(len(dofs))
    for t in picks:
        d.qpos[:] = qpos[t]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_crb(m, d)
        for v in range(nv):
            unit[:] = 0.0
            unit[v] = 1.0
            mujoco.mj_mulM(m, d, col, unit)
            M[:, v] = col
        total += 1.0 / np.diag(np.linalg.inv(M))[dofs]
    return total / len(picks)


def tracker_settings(cw: CompiledWorld, kp, kd, torque_scale, fall_drop_m, threshold_m, who: str) -> tuple:
    """(kp, kd, torque_scale, fall_drop_m, threshold_m, root qpos address or -1): the given values,
    else the world's declared ones - one rule for every PD-style tracker (MuJoCo's, Bullet's)."""
    m = cw.model
    gains = world_gains(cw.world)
    kp = float(gains["kp"] if kp is None else kp)
    kd = float(gains["kd"] if kd is None else kd)
    if kp < 0 or kd < 0:
        raise ValueError(f"{who}: gains must be non-negative, got kp={kp}, kd={kd}")
    root_qadr = int(m.jnt_qposadr[m.body_jntadr[cw.root_body]]) if cw.floating else -1
    if fall_drop_m is None:
        fall_drop_m = world_fall_drop_m(cw.world, m, root_qadr) if cw.floating else 0.0
    threshold_m = success_threshold(cw.world) if threshold_m is None else threshold_m
    return (kp, kd, None if torque_scale is None else float(torque_scale), float(fall_drop_m), float(threshold_m),
            root_qadr)


def robot_bodies(cw: CompiledWorld) -> np.ndarray:
    """Bodies of the robot: the floating root's subtree (root first), or the bodies actuated joints move."""
    m = cw.model
    if cw.floating:
        rest = [b for b in range(1, m.nbody) if b != cw.root_body and _is_descendant(m, b, cw.root_body)]
        return np.array([cw.root_body] + rest, int)
    return np.flatnonzero(cw.dof_ancestor[:, cw.actuated_dofs].any(axis=1))


def start_depth(cw: CompiledWorld, d: mujoco.MjData) -> float:
    """Deepest penetration (m) of a robot geom into the floor in the current contacts (0 if none)."""
    n = d.ncon
    if cw.floor_geom is None or not n:
        return 0.0
    geom = np.asarray(d.contact.geom[:n]).reshape(n, 2)
    hit = (geom == cw.floor_geom).any(axis=1) & np.isin(geom, cw.robot_geoms).any(axis=1)
    dist = np.asarray(d.contact.dist[:n]).reshape(n)
    return float(max(0.0, -dist[hit].min())) if hit.any() else 0.0


def _actuator_of_joint(m: mujoco.MjModel, joint: int) -> int:
    for a in range(m.nu):
        if m.actuator_trntype[a] == int(mujoco.mjtTrn.mjTRN_JOINT) and m.actuator_trnid[a, 0] == joint:
            return a
    raise ValueError(f"joint {joint} has no actuator")


@contextlib.contextmanager
def _quiet_mujoco():
    """Silence MuJoCo's 'simulation is unstable' print-outs (divergence is read from ``d.warning``)."""
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda msg: None)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)
