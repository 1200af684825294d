"""Scripted controllers that drive a world in MuJoCo to make physically valid clips.

A controller is ``controller(model, data, rng) -> ctrl`` called once per recorded frame; its
``reset(model, data, rng)`` draws the episode's random parameters.
"""
from __future__ import annotations

import mujoco
import numpy as np


class SmoothRandom:
    """Low-pass filtered random actions (an Ornstein-Uhlenbeck-like walk inside the control range)."""

    def __init__(self, scale: float = 0.6, smoothing: float = 0.85):
        self.scale, self.smoothing = scale, smoothing

    def reset(self, m, d, rng):
        self.u = np.zeros(m.nu)

    def __call__(self, m, d, rng):
        lo, hi = m.actuator_ctrlrange.T
        target = rng.uniform(lo, hi) * self.scale
        self.u = self.smoothing * self.u + (1 - self.smoothing) * target
        return self.u


class AntGait:
    """Open-loop central pattern generator for the ant: hips and ankles follow phase-shifted sines.

    Frequency, amplitude, turning bias and gait phase offsets are drawn per episode, so the same
    controller gives walking, turning and standing clips.
    """

    def __init__(self, freq=(0.5, 1.5), amplitude=(0.0, 0.6), turn=(-0.3, 0.3)):
        self.freq_range, self.amp_range, self.turn_range = freq, amplitude, turn

    def reset(self, m, d, rng):
        self.freq = rng.uniform(*self.freq_range)
        self.amp = rng.uniform(*self.amp_range)
        self.turn = rng.uniform(*self.turn_range)
        self.phase = rng.choice([0.0, np.pi]) + rng.uniform(-0.3, 0.3, 4)

    def __call__(self, m, d, rng):
        w = 2 * np.pi * self.freq * d.time
        u = np.zeros(m.nu)
        # actuator order in ant.xml: hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3
        for leg in range(4):
            ph = self.phase[leg] + (np.pi if leg % 2 else 0.0)
            u[2 * leg] = self.amp * np.sin(w + ph) + self.turn
            u[2 * leg + 1] = self.amp * np.cos(w + ph) * (1 if leg in (0, 2) else -1)
        return np.clip(u, -1, 1)


class PusherScript:
    """Pushes the object toward a target: the fingertip goes behind the object, then drives through it.

    Task-space PD through the fingertip Jacobian (torque = J^T f - damping); phases switch on distance.
    """

    def __init__(self, kp: float = 8.0, kd: float = 1.0):
        self.kp, self.kd = kp, kd

    def reset(self, m, d, rng):
        self.tip = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "tips_arm")
        self.obj = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "object")
        self.target = d.xpos[self.obj, :2] + rng.uniform(-0.25, 0.25, 2)
        self.phase = 0

    def __call__(self, m, d, rng):
        tip, obj = d.xpos[self.tip], d.xpos[self.obj]
        push = self.target - obj[:2]
        dist = np.linalg.norm(push)
        direction = push / max(dist, 1e-6)
        behind = np.r_[obj[:2] - 0.12 * direction, obj[2]]
        if self.phase == 0 and np.linalg.norm(tip - behind) < 0.04:
            self.phase = 1
        goal = behind if self.phase == 0 else np.r_[self.target + 0.05 * direction, obj[2]]
        if self.phase == 0:  # approach from above the table so the object is not knocked early
            goal = goal + np.array([0, 0, 0.08 * min(1.0, np.linalg.norm(tip[:2] - behind[:2]) / 0.1)])
        jacp = np.zeros((3, m.nv))
        mujoco.mj_jacBody(m, d, jacp, None, self.tip)
        force = self.kp * (goal - tip)
        u = jacp.T @ force - self.kd * d.qvel
        return np.clip(u[: m.nu], *m.actuator_ctrlrange.T)
