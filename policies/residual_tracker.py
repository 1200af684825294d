"""Residual-force tracker (UHC / RFC style): PD + inverse dynamics, plus a root wrench it must pay for.

``PDTracker`` replays a clip with joint torques only, in the world's nominal MuJoCo model. Valid
motion recorded under another contact model (stiffer or softer contacts, other friction, masses or
timestep: every real recording) then drifts: a falling humanoid is chaotic, so a slightly different
contact sends it 0.4-1.4 m elsewhere and the clip fails although nothing about it is unphysical
(``experiments/humanoid_heldout.py``: 83 % of valid held-out humanoid clips tracked, 17-50 % of ones
whose servo-driven limbs chatter at the frame rate).

Residual force control (Yuan & Kitani, RFC, 2020; Luo et al., UHC, 2021) adds an external wrench at
the root that stands in for what the simulator's contact model gets wrong, and charges for it. Here,
per simulator step, on top of ``PDTracker``'s joint torques::

    w_root = I_root * (kp_r * (x*_root (-) x_root) + kd_r * (v*_root - v_root))      (qfrc_applied, root dofs)

* ``x*``, ``v*``: the smoothed reference's root pose and velocity (position by the same cubic Hermite
  interpolation as the joints, orientation by normalised linear interpolation of the quaternions);
  ``(-)`` is MuJoCo's pose difference (world-frame position, body-frame rotation vector, as the free
  joint's qvel); no feedforward: support and propulsion must come from the contacts.
* ``I_root``: the root dofs' *composite* inertias M_jj (``composite_inertia``: the whole body's mass and
  rotational inertia about the root). The joints' PD loops (80 rad/s humanoid) are ~15x faster than
  this loop and hold the body rigid on its time scale; the effective inertia 1 / (M^-1)_jj the joints
  use (the torso alone, the limbs free) made the root loop too weak to keep the torso's orientation
  (body errors 0.3-0.5 m on toppling bodies, halved with M_jj).
* joint feedforward: the joint torques the motion needs *with* the contacts the reference's
  kinematics imply (``rlpf.rewards.analysis.contact_solution``'s friction-cone fit, the scorer's own),
  not contact-free inverse dynamics: a body standing on its legs must carry its weight through them
  (``contact_feedforward=False`` gives ``PDTracker``'s contact-free feedforward).
* gains: ``kp_r = (2 lam)^2``, ``kd_r = 2 (2 lam)`` (critically damped at twice ``lam``), with
  ``lam = sqrt(g / h0)``, ``h0`` the root's height above the floor in ``qpos0`` (humanoid 1.4 m,
  ant 0.75 m): lam is the rate at which an inverted pendulum of the body's height topples, the
  fastest drift joint torques alone cannot stop, so a residual loop twice as fast catches it while
  staying far below the contact and joint time scales (a stiffer loop would fight every contact
  transient; humanoid kp_r 28 /s^2, ant 52 /s^2, against the joints' 6400 and 900).

**The charge.** The residual of each frame in body weights is ``|(F / W, tau / (W L))|`` - the
convention of the kinematic scorer's ``root_residual_bw`` (``W`` = weight, ``L`` = the world's
``char_length``). A clip fails when the residual's mean over any ``window_s`` = 0.5 s - the norm of the mean
world-frame wrench, i.e. the net impulse over the window divided by its length - exceeds ``limit_bw``
= 0.5 body weights (``RESIDUAL_LIMIT_BW`` says why that value), or over the whole clip when it is
shorter than the window. Why an impulse: a contact model that is merely different redistributes
forces over its transients (solref time constants of 5-40 ms, impacts of ~0.1 s) and pushes back
and forth, but the net impulse over half a second is the same; a motion that needs sustained
one-sided external force - hovering (1 body weight), sliding against friction (mu N: humanoid and
ant mu = 1), a jump of the root (m dv) - is not physical whatever the contact model. ``TrackResult.info`` reports ``residual_peak_bw`` (the worst
window), ``residual_mean_bw``, ``residual_limit_bw``, ``residual_window_s`` and ``residual_failed``;
``ResidualTrackResult.residual_bw`` is the per-frame series. The loop is soft on purpose, so a body
whose whole clip is shifted up by less than ~g / kp_r (humanoid 0.35 m, ant 0.19 m) sags onto the
floor and pays only kp_r x shift (a +10 cm float: ~0.3 body weight, under the limit): small floats
are the kinematic ``float`` term's, as they are for ``pd`` (which tracks 98-100 % of them).

**Success** (``ResidualTrackResult.success``): not diverged, not fallen, mean body error within the
world's ``success_threshold_m`` at every frame (the PHC/UHC rule, as every tracker), and the
windowed residual within ``limit_bw``. For a body that falls: a reference that falls or lies down is
followed (the residual steers the simulated fall onto the reference's, and a fall under gravity needs
little of it); the fall rule is ``rlpf.judge.tracking.fell_frames``, as for every tracker: the
simulated root more than the world's ``fall_drop_m`` below the reference's, or flipped while the
reference is upright. A reference that stands where the body would fall is held up by the residual
and fails on its price when balancing it needs more than ``limit_bw`` - the joints, not an
external hand, must keep a body up.

``--tracker pd-residual`` (ant, humanoid and any floating-root world); fixed-base worlds have no root
to push and are refused (use ``pd``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import mujoco
import numpy as np

from rlpf.core.clips import Clip
from rlpf.envs.worlds import World
from rlpf.judge.tracking import TrackerError, TrackResult
from rlpf.rewards.analysis import contact_solution
from rlpf.policies.pd_tracker import MAX_SPEED, PDTracker, Reference, _as_slice

RESIDUAL_LIMIT_BW = 0.5
"""Body weights: the largest mean root residual over any ``RESIDUAL_WINDOW_S`` of a successful track.
Half of what the cheapest corruption physically needs: hovering takes 1 body weight, sliding a body
against the floor's friction mu W = 1 body weight (ant and humanoid: mu = 1), a jump of the root far
more; valid motion needs none, but this PD controller's joint torques are not the recording's, and
falling bodies then need up to ~0.3-0.9 body weight of it (measured: ``experiments/humanoid_heldout.py``). The scorer's 0.25 (``root_residual_bw``) was the first choice
and fails those; the README gives success at 0.25, 0.5, 0.75 and 1.0 from the same rollouts."""
RESIDUAL_WINDOW_S = 0.5
"""s: the window the residual is averaged over - longer than contact transients (solref time constants
5-40 ms, impacts ~0.1 s), whose impulse a different contact model redistributes but does not change."""
PENDULUM_FACTOR = 2.0
"""The residual loop's natural frequency in units of the body's toppling rate sqrt(g / root height)."""


@dataclass
class ResidualTrackResult(TrackResult):
    """A ``TrackResult`` whose success also charges the root residual the track needed."""

    residual_bw: np.ndarray | None = None
    """[T, 6] root residual wrench of each frame (mean over its simulator steps) in the world frame,
    body weights: force / W, then torque / (W L)."""
    residual_limit_bw: float = RESIDUAL_LIMIT_BW
    residual_window_s: float = RESIDUAL_WINDOW_S

    @property
    def residual_peak_bw(self) -> float:
        """The largest mean residual over any window (the whole clip when it is shorter)."""
        return float(self.info.get("residual_peak_bw", np.inf))

    @property
    def success(self) -> bool:
        return bool(TrackResult.success.fget(self) and self.residual_peak_bw <= self.residual_limit_bw)


def windowed_peak(residual: np.ndarray, fps: float, window_s: float) -> float:
    """Largest norm of the mean residual wrench over ``window_s`` seconds of frames (the whole clip if
    shorter). ``residual``: [T, 6] world-frame wrenches in body weights (or [T] magnitudes); inf when
    any value is non-finite. The mean of the vector is the net impulse over the window divided by its
    length: pushes back and forth (a contact transient resolved differently) cancel, a sustained or
    one-sided force does not."""
    r = np.asarray(residual, float)
    r = r[:, None] if r.ndim == 1 else r
    if not len(r) or not np.isfinite(r).all():
        return float("inf")
    k = max(1, int(round(window_s * fps)))
    if len(r) <= k:
        return float(np.linalg.norm(r.mean(axis=0)))
    c = np.concatenate([np.zeros((1, r.shape[1])), np.cumsum(r, axis=0)])
    return float(np.linalg.norm((c[k:] - c[:-k]) / k, axis=1).max())


def composite_inertia(m: mujoco.MjModel, qpos: np.ndarray, dofs: np.ndarray, frames: int = 8) -> np.ndarray:
    """The diagonal M_jj of the mass matrix at ``dofs``, averaged over up to ``frames`` frames of ``qpos``:
    the inertia with every other joint locked. For the root that is the whole body's mass and
    rotational inertia about the root - what the residual loop, ~15x slower than the joints' PD
    loops (which hold the body rigid on its time scale), accelerates."""
    d = mujoco.MjData(m)
    dense = np.empty((m.nv, m.nv))
    picks = np.unique(np.linspace(0, len(qpos) - 1, min(len(qpos), frames)).astype(int))
    total = np.zeros(len(dofs))
    for t in picks:
        d.qpos[:] = qpos[t]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_crb(m, d)
        mujoco.mj_fullM(m, dense, d.qM)
        total += np.diag(dense)[dofs]
    return total / len(picks)


class ResidualTracker(PDTracker):
    """``PDTracker`` plus a charged root residual wrench (see the module docstring).

    ``world``: a floating-root world (name, MJCF path or World). ``kp_root`` (1/s^2) / ``kd_root`` (1/s):
    the residual loop's gains, times each root dof's composite inertia; default from the toppling
    rate (``PENDULUM_FACTOR``). ``limit_bw``, ``window_s``: the charge. The other arguments are
    ``PDTracker``'s.
    """

    name = "pd-residual"

    def __init__(self, world: str | World, kp: float | None = None, kd: float | None = None,
                 torque_scale: float | None = 1.0, fall_drop_m: float | None = None,
                 threshold_m: float | None = None, kp_root: float | None = None, kd_root: float | None = None,
                 limit_bw: float = RESIDUAL_LIMIT_BW, window_s: float = RESIDUAL_WINDOW_S,
                 contact_feedforward: bool = True):
        super().__init__(world, kp=kp, kd=kd, torque_scale=torque_scale, fall_drop_m=fall_drop_m,
                         threshold_m=threshold_m)
        cw, m = self.cw, self.cw.model
        if not cw.floating:
            raise TrackerError(f"pd-residual: world {cw.name!r} has no floating root for a residual wrench to act "
                               "on; use --tracker pd")
        for label, v in (("limit_bw", limit_bw), ("window_s", window_s)):
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise TrackerError(f"pd-residual: {label} must be a finite number > 0, got {v!r}")
        height = float(m.qpos0[self._root_qadr + 2] - cw.floor_z)
        if kp_root is None or kd_root is None:
            if not height > 0:
                raise TrackerError(f"pd-residual: world {cw.name!r}: the root is not above the floor in qpos0 "
                                   f"({height:.3f} m), so no toppling rate sets the residual gains; pass kp_root and kd_root")
            omega = PENDULUM_FACTOR * np.sqrt(cw.gravity / height)
            kp_root = omega ** 2 if kp_root is None else kp_root
            kd_root = 2.0 * omega if kd_root is None else kd_root
        for label, v in (("kp_root", kp_root), ("kd_root", kd_root)):
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise TrackerError(f"pd-residual: {label} must be a finite number >= 0, got {v!r}")
        self.kp_root, self.kd_root = float(kp_root), float(kd_root)
        self.limit_bw, self.window_s = float(limit_bw), float(window_s)
        self.contact_feedforward = bool(contact_feedforward)
        self._root_dofs = np.asarray(cw.root_dofs, int)
        weight = cw.mass * max(cw.gravity, 1e-9)
        self._bw_scale = np.r_[np.full(3, 1.0 / weight), np.full(3, 1.0 / (weight * cw.world.char_length))]

    def spec(self) -> tuple:
        cls, kwargs = super().spec()
        return ResidualTracker, {**kwargs, "kp_root": self.kp_root, "kd_root": self.kd_root,
                                 "limit_bw": self.limit_bw, "window_s": self.window_s,
                                 "contact_feedforward": self.contact_feedforward}

    def __repr__(self) -> str:
        return (f"ResidualTracker({self.cw.name!r}, kp={self.kp:g}, kd={self.kd:g}, kp_root={self.kp_root:g}, "
                f"kd_root={self.kd_root:g}, limit_bw={self.limit_bw:g}, window_s={self.window_s:g})")

    def track_one(self, clip: Clip) -> TrackResult:
        self._last_residual, self._clip = None, clip
        try:
            base = super().track_one(clip)
        finally:
            self._clip = None
        if self._last_residual is None:   # refused before simulating (bad input, start inside the floor)
            return base
        res = self._last_residual
        peak = windowed_peak(res, clip.fps, self.window_s)
        info = dict(base.info, tracker=self.name, residual_peak_bw=peak,
                    residual_mean_bw=float(np.nanmean(np.linalg.norm(res, axis=1))) if np.isfinite(res).any()
                    else float("inf"),
                    residual_limit_bw=self.limit_bw, residual_window_s=self.window_s,
                    residual_failed=bool(peak > self.limit_bw))
        fields = {f: getattr(base, f) for f in ("source", "qpos", "body_error_m", "torques", "fell", "diverged",
                                                  "threshold_m", "object_error_m", "objects_tracked")}
        return ResidualTrackResult(**fields, info=info, residual_bw=res, residual_limit_bw=self.limit_bw,
                                   residual_window_s=self.window_s)

    def _failed(self, clip: Clip, T: int, why: str, **info) -> TrackResult:
        out = super()._failed(clip, T, why, **info)
        out.info["tracker"] = self.name
        return out

    def _rollout(self, ref: Reference, fps: float, T: int):
        """``PDTracker._rollout`` with the root residual; also leaves the per-frame residual (BW) in
        ``self._last_residual`` (NaN after a divergence)."""
        m, d = self.cw.model, self._data
        if self.contact_feedforward:
            # the joint torques the motion needs with the contacts the reference's kinematics imply
            # (the scorer's friction-cone fit), not contact-free: a standing body's legs must carry it
            qfrc = ref.qfrc.copy()
            qfrc[:, self._dofs] = contact_solution(self._clip, self.cw).remainder[:, self._dofs]
            ref = Reference(ref.qpos, ref.qvel, qfrc, ref.inertia)
        q_t, v_t, ff_t, step_of_frame = self._targets(ref, fps)
        root_p, root_q, root_v = self._root_targets(ref, fps, len(q_t))
        kp_i, kd_i = self.kp * ref.inertia, self.kd * ref.inertia
        inertia_root = composite_inertia(m, ref.qpos, self._root_dofs)
        kp_r, kd_r = self.kp_root * inertia_root, self.kd_root * inertia_root
        qpos = np.full((T, m.nq), np.nan)
        torques = np.zeros((T, m.nu))
        residual = np.full((T, 6), np.nan)
        self._last_residual = residual
        frame, since = 0, 0
        while frame < T and step_of_frame[frame] == 0:
            qpos[frame] = d.qpos
            residual[frame] = 0.0
            frame += 1
        bad_acc = d.warning[mujoco.mjtWarning.mjWARN_BADQACC]
        q_sim, v_sim, qfrc = d.qpos, d.qvel, d.qfrc_applied
        qsel, vsel = _as_slice(self._qadr), _as_slice(self._dofs)
        ra, rd = self._root_qadr, _as_slice(self._root_dofs)
        lo, hi = (None, None) if self._limit is None else (-self._limit, self._limit)
        n = len(self._dofs)
        tau, e_v, tau_sum = np.empty(n), np.empty(n), np.zeros(n)
        e_root, wrench, res_sum = np.empty(6), np.empty(6), np.zeros(6)
        rot = np.empty(3)
        xmat = d.xmat[self.cw.root_body].reshape(3, 3)   # a view: the root's orientation after each step
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
            # the root residual: world-frame position error, body-frame rotation vector (free joint's qvel)
            e_root[:3] = root_p[i] - q_sim[ra:ra + 3]
            mujoco.mju_subQuat(rot, root_q[i], q_sim[ra + 3:ra + 7])
            e_root[3:] = rot
            np.multiply(kp_r, e_root, out=wrench)
            wrench += kd_r * (root_v[i] - v_sim[rd])
            qfrc[rd] = wrench
            # summed as a world-frame wrench (torque rotated out of the body frame it was applied in)
            res_sum[:3] += wrench[:3]
            res_sum[3:] += xmat @ wrench[3:]
            mujoco.mj_step(m, d)
            tau_sum += tau
            since += 1
            if step_of_frame[frame] != i + 1:
                continue
            if bad_acc.number or not np.isfinite(d.qpos).all() or np.abs(d.qvel).max() > MAX_SPEED:
                return qpos, torques, f"simulation diverged before frame {frame}"
            torques[frame - 1, self._actuator] = tau_sum / since
            r = res_sum * self._bw_scale / since
            tau_sum[:], since, res_sum[:] = 0.0, 0, 0.0
            while frame < T and step_of_frame[frame] == i + 1:
                qpos[frame] = d.qpos
                residual[frame] = r
                frame += 1
        torques[-1] = torques[-2]
        return qpos, torques, ""

    def _root_targets(self, ref: Reference, fps: float, n_steps: int):
        """Per simulator step: the reference root position (cubic Hermite), quaternion (normalised
        linear interpolation, sign-continuous) and root velocity (linear), as ``_targets`` steps them."""
        h = self.cw.model.opt.timestep
        T, ra = len(ref.qpos), self._root_qadr
        t = np.arange(n_steps) * h * fps
        k = np.minimum(t.astype(int), T - 2)
        u = (t - k)[:, None]
        vr = ref.qvel[:, self._root_dofs]
        p0, p1 = ref.qpos[k, ra:ra + 3], ref.qpos[k + 1, ra:ra + 3]
        m0, m1 = vr[k, :3] / fps, vr[k + 1, :3] / fps
        u2, u3 = u * u, u * u * u
        p = (2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * m0 + (3 * u2 - 2 * u3) * p1 + (u3 - u2) * m1
        q0, q1 = ref.qpos[k, ra + 3:ra + 7], ref.qpos[k + 1, ra + 3:ra + 7]
        q1 = np.where((q0 * q1).sum(axis=1, keepdims=True) < 0, -q1, q1)
        q = (1 - u) * q0 + u * q1
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        v = (1 - u) * vr[k] + u * vr[k + 1]
        return np.ascontiguousarray(p), np.ascontiguousarray(q), np.ascontiguousarray(v)
