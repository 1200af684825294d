"""Randomized dynamics: a world's MuJoCo model with its contact model, friction and masses redrawn.

Motion recorded elsewhere comes from the same robot under another contact model (softer or stiffer
contacts let feet sink millimetres to centimetres, other friction lets them slip, other masses sit
differently); data generators that only ever simulate the MJCF's defaults teach a downstream model
one resting pose. ``randomized_model`` draws one variant per clip.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import mujoco
import numpy as np


@dataclass(frozen=True)
class DynamicsRandomization:
    """Ranges of the per-clip draw (each uniform; a range (1, 1) / (x, x) switches a term off)."""

    solref_timeconst: tuple[float, float] = (0.005, 0.04)
    """Contact time constant in seconds (MJCF default 0.02; smaller is stiffer), floored at 2 timesteps
    as MuJoCo itself does."""
    solref_dampratio: tuple[float, float] = (0.7, 1.3)
    """Contact damping ratio (default 1: critically damped)."""
    friction_scale: tuple[float, float] = (0.5, 2.0)
    """Factor on every geom's sliding friction (log-uniform)."""
    mass_scale: tuple[float, float] = (0.8, 1.2)
    """Factor on each body's mass and inertia, drawn per body."""
    timestep_divisor: tuple[int, int] = (1, 5)
    """The simulator timestep is the model's divided by a whole number drawn from this range (both
    ends included): the frame rate stays, and contacts stiffer than 2 of the model's timesteps exist."""

    def __post_init__(self):
        for name in ("solref_timeconst", "solref_dampratio", "friction_scale", "mass_scale", "timestep_divisor"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi and np.isfinite(hi)):
                raise ValueError(f"DynamicsRandomization.{name} must be a range 0 < lo <= hi, got {(lo, hi)}")
        if any(int(x) != x for x in self.timestep_divisor):
            raise ValueError(f"DynamicsRandomization.timestep_divisor must be whole numbers, got {self.timestep_divisor}")


def randomized_model(model: mujoco.MjModel, rng: np.random.Generator,
                     ranges: DynamicsRandomization = DynamicsRandomization()) -> tuple[mujoco.MjModel, dict]:
    """A copy of ``model`` with one draw of ``ranges`` (the input is not changed) and the draw as a dict."""
    m = copy.deepcopy(model)
    m.opt.timestep = model.opt.timestep / int(rng.integers(ranges.timestep_divisor[0], ranges.timestep_divisor[1] + 1))
    tc = max(float(rng.uniform(*ranges.solref_timeconst)), 2 * m.opt.timestep)
    damp = float(rng.uniform(*ranges.solref_dampratio))
    lo, hi = ranges.friction_scale
    friction = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    mass = rng.uniform(*ranges.mass_scale, m.nbody)
    mass[0] = 1.0                                           # the world body has no mass
    m.geom_solref[:] = (tc, damp)
    m.geom_friction[:, 0] *= friction
    m.body_mass[:] *= mass
    m.body_inertia[:] *= mass[:, None]
    return m, {"timestep": float(m.opt.timestep), "solref_timeconst": tc, "dampratio": damp, "friction_x": friction,
               "mass_x": [float(mass[1:].min()), float(mass[1:].max())]}
