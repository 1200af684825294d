"""Scripted experts for gymnasium's own robot tasks: the demonstrators and the "scripted expert" row.

An expert reads the simulator of the env it drives (``env.unwrapped.model`` / ``.data``), like the
scripted controllers in ``scripted.py``; ``reset(env, rng)`` at each episode start, then
``act(obs, env) -> action`` once per ``env.step``.

Pusher-v5 (``PusherGoalExpert``): issue 3's ``DirectedPush`` (the controller that made the pusher
world's data) aimed from the object at Pusher-v5's goal, asked to push the full distance. Pusher-v5's
object weighs 8e-6 kg on damped slides, so soft contact moves it at ~3-4 cm/s at most and the arm
needs ~1.5 s to get behind it: in a 100-step (5 s) episode this expert moves the object ~0.14 m when
its gripper bar engages, and hardly at all (0-4 cm) when it loses the object on the approach.

Reacher-v5 (``ReacherExpert``): damped-least-squares inverse kinematics of the fingertip
(dq = J^T (J J^T + lambda^2 I)^-1 (target - tip)) turned into a PD torque
``ctrl = 0.01 (kp dq - kd qdot)`` (the motors have gear 200). Gains picked by a sweep over 30
seeded episodes: kp 60, kd 6, lambda 0.05 ends within 2 cm of the target in 100 % of them
(mean 2.9 mm); lower kd oscillates, lower kp is too slow for the 1 s episode.
"""
from __future__ import annotations

import mujoco
import numpy as np


class PusherGoalExpert:
    """Push Pusher-v5's object to its goal with ``DirectedPush`` aimed along object -> goal."""

    env_id = "Pusher-v5"

    def reset(self, env, rng: np.random.Generator) -> None:
        from rlpf.data.motion_data import DirectedPush

        u = env.unwrapped
        vec = u.get_body_com("goal")[:2] - u.get_body_com("object")[:2]
        self.ctl = DirectedPush(float(np.arctan2(vec[1], vec[0])), distance=float(np.linalg.norm(vec)) + 0.05)
        self.rng = rng
        self.ctl.reset(u.model, u.data, rng)

    def act(self, obs: np.ndarray, env) -> np.ndarray:
        u = env.unwrapped
        return np.asarray(self.ctl(u.model, u.data, self.rng), dtype=np.float32)


class ReacherExpert:
    """Damped-least-squares IK + PD torque to Reacher-v5's target (gains in the module docstring)."""

    env_id = "Reacher-v5"

    def __init__(self, kp: float = 60.0, kd: float = 6.0, damping: float = 0.05):
        self.kp, self.kd, self.damping = kp, kd, damping

    def reset(self, env, rng: np.random.Generator) -> None:
        m = env.unwrapped.model
        self.tip = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "fingertip")
        self.jacp = np.zeros((3, m.nv))

    def act(self, obs: np.ndarray, env) -> np.ndarray:
        u = env.unwrapped
        m, d = u.model, u.data
        mujoco.mj_jacBody(m, d, self.jacp, None, self.tip)
        J = self.jacp[:2, :2]
        err = (u.get_body_com("target") - u.get_body_com("fingertip"))[:2]
        dq = J.T @ np.linalg.solve(J @ J.T + self.damping ** 2 * np.eye(2), err)
        ctrl = 0.01 * (self.kp * dq - self.kd * d.qvel[:2])
        return np.clip(ctrl, -1.0, 1.0).astype(np.float32)


EXPERTS = {"Pusher-v5": PusherGoalExpert, "Reacher-v5": ReacherExpert}
"""The scripted expert of each supported gymnasium task."""
