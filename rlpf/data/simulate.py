"""Record physically valid clips by running a controller in a world's MuJoCo model.

Frames are recorded every ``world.frame_skip`` simulator steps, as the matching gymnasium env does,
so the clips have the env's frame rate and qpos layout.
"""
from __future__ import annotations

import mujoco
import numpy as np

from rlpf.core.clips import Clip
from rlpf.envs.worlds import compile_world, get_world, resolve


def reset_state(world, m: mujoco.MjModel, d: mujoco.MjData, rng: np.random.Generator, noise: float) -> None:
    """Initial state like the gymnasium env's reset: qpos0 plus small noise, then the world's own
    ``World.reset`` where it declares one (``pusher_reset``). ``world``: a name, World or CompiledWorld."""
    mujoco.mj_resetData(m, d)
    d.qpos[:] = m.qpos0 + rng.uniform(-noise, noise, m.nq)
    d.qvel[:] = rng.normal(0, noise, m.nv)
    w = get_world(world)
    if w.reset is not None:
        resolve(w.reset, f"world {w.name!r}: reset")(m, d, rng)
    mujoco.mj_forward(m, d)


def pusher_reset(m: mujoco.MjModel, d: mujoco.MjData, rng: np.random.Generator) -> None:
    """Pusher-v5's reset: the object within reach, away from the goal at the origin; both at rest."""
    while True:
        cyl = np.r_[rng.uniform(-0.3, 0), rng.uniform(-0.2, 0.2)]
        if np.linalg.norm(cyl) > 0.17:
            break
    d.qpos[-4:-2] = cyl
    d.qpos[-2:] = 0.0
    d.qvel[-4:] = 0.0


def simulate(world: str, controller, n_frames: int, seed: int = 0, noise: float = 0.05,
             prompt: str | None = None, model: mujoco.MjModel | None = None) -> Clip:
    """Run ``controller`` for ``n_frames`` recorded frames; returns the clip with its actions.
    ``model``: a variant of the world's compiled model to simulate instead (``rlpf.data.dynamics``)."""
    cw = compile_world(world)
    m = cw.model if model is None else model
    d = mujoco.MjData(m)
    rng = np.random.default_rng(seed)
    reset_state(cw.world, m, d, rng, noise)
    controller.reset(m, d, rng)
    qpos = np.empty((n_frames, m.nq))
    actions = np.zeros((n_frames, m.nu))
    # a variant with a finer timestep takes proportionally more steps per frame: the frame rate stays
    steps = cw.world.frame_skip * max(1, round(cw.model.opt.timestep / m.opt.timestep))
    for t in range(n_frames):
        qpos[t] = d.qpos
        actions[t] = controller(m, d, rng)
        d.ctrl[:] = actions[t]
        for _ in range(steps):
            mujoco.mj_step(m, d)
        if d.warning[mujoco.mjtWarning.mjWARN_BADQACC].number:
            raise RuntimeError(f"simulation of {world} diverged at frame {t} (seed {seed})")
    return Clip(qpos=qpos, fps=cw.world.fps, world=cw.name, prompt=prompt, actions=actions,
                source=f"simulated:{cw.name}:{seed}")
