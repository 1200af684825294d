"""Labelled Meta-World clips: Meta-World's scripted experts, DART-style action noise, labels from qpos.

Recording. An episode runs ``gym.make("Meta-World/MT1", env_name=TASK)``'s env (``rlpf.envs.metaworld.
make_env``, one per task and process) with the task's own scripted expert (``metaworld.policies.
ENV_POLICY_MAP[TASK]``). The executed action is the expert's plus Gaussian noise of a standard
deviation drawn per episode from ``NOISE_STD`` (DART, Laskey et al. 2017: the expert's corrections
from the perturbed states it then visits make the data diverse), clipped to the action box
[-1, 1]. The noisy action is what ran, so the clip stays physically valid. The scene is drawn
per seed: the free object's start and the goal from the task's reset range (``_random_reset_space``,
as MT1's tasks are, with reset's 0.15 m object-goal rule); a fixture (drawer cabinet, door frame,
button box) stays at the world's declared placement (``World.placements``), a model position qpos
cannot carry, so that the clip scores exactly under its world.

Clip. Frame 0 is the state after the env's reset, then qpos after every ``SUBSAMPLE``-th
``env.step``: ``CLIP_FPS`` = 80 / 2 = 40 fps. Why not 80 or 20: the experts move the hand and a held
puck at up to 0.9-1.3 m/s (the door's handle swing 2.6 m/s; measured, 3 seeds per task), 3.3 cm per
frame at 40 fps - under the puck's 4 cm diameter - but 6.5 cm at 20 fps, more than the object's
size; 80 fps doubles every clip for motion that 40 fps already resolves. A 64-frame clip is 1.6 s,
126 env steps: the experts succeed after 48-90 steps without noise. ``actions`` are the gripper's two
actuator controls (the world's ``nu`` = 2) of the env step after each frame; the arm is driven by the
mocap weld (the env action's xyz), which the clip format has no key for.

Prompts, measured from qpos only (``measure`` / ``label``), one scalar progress per task and three
classes, done / partway / not at all, with thresholds taken from Meta-World's own success rule:

    push-v3        p = horizontal puck displacement, m: >= 0.10 "push the puck to a new spot"; >= 0.02
                   "move the puck a little"; else "move the arm without moving the puck". The goal is
                   >= 0.15 m from the puck (reset's rule) and success is within 0.05 m of it, so a
                   success moves it >= 0.10 m; 0.02 m = the puck's radius. (The push expert grips and
                   drags the puck, lifting it up to 7 cm; Meta-World calls that a push.)
    pick-place-v3  lift = highest puck z above its first frame, d = horizontal displacement, m:
                   lift >= 0.02 and d >= 0.08 "pick up the puck and move it"; lift >= 0.02
                   "pick up the puck"; else "move the arm without lifting the puck". 0.02 m is half
                   the 4 cm puck's height, clear of the table (a resting puck's z varies < 1 mm),
                   and below the 0.029-0.035 m lift of an expert placing at the lowest goals
                   (z 0.05-0.09, measured); success is within 0.07 m of a goal >= 0.15 m away, so
                   it moves the puck >= 0.08 m.
    drawer-open-v3 p = slide opened (-(q - q0), m): >= 0.16 "open the drawer"; >= 0.02 "open the
                   drawer partway"; else "move the arm without opening the drawer". Meta-World's
                   success (handle within 3 cm of a target 0.2 m out) first holds at 0.160-0.165 m.
    door-open-v3   p = hinge opened (-(q - q0), rad): >= 1.38 "open the door"; >= 0.1 "open the door
                   partway"; else "move the arm without opening the door". Success (handle within
                   8 cm of its target) first holds at 1.386-1.399 rad; 0.1 rad moves the handle ~2 cm.
    button-press-topdown-v3  p = button pressed (-(q - q0), m): >= 0.07 "press the button"; >= 0.01
                   "press the button partway"; else "move the arm without pressing the button".
                   Success (within 2.4 cm of the bottom) first holds at 0.0706-0.0715 m.
    drawer-close-v3 p = slide closed (q - q0, m; the env pulls the drawer 0.15 m out at reset):
                   >= 0.115 "close the drawer"; >= 0.02 "close the drawer partway". Success (within
                   5.5 cm of closed) first holds at 0.119-0.121 m (3 seeds).
    window-open-v3 p = window slid open (q - q0, m): >= 0.19 "slide the window open"; >= 0.02 partway.
                   Success (handle within 5 cm of its target 0.2 m away) first holds at 0.195-0.196 m.
    window-close-v3 p = window slid closed (-(q - q0), m, from 0.2 at reset): >= 0.16 "slide the window
                   closed"; >= 0.02 partway. Success first holds at 0.161-0.163 m.
    peg-insert-side-v3 lift as pick-place (>= 0.02 m, else "move the arm without lifting the peg");
                   lifted and the peg head within Meta-World's success distance of the hole (its
                   ``obj_to_target``: distance to box + (0.03, 0, 0.13) with y, z weighted 2, <= 0.07 m;
                   progress = minus that distance) "insert the peg into the hole", else "pick up the peg".
    The window's slide and the closing drawer have no damping: once the expert's ~1 m/s push starts
    them they coast to their end even when the expert stops at 2 cm (measured, 3 seeds), so their
    "partway" prompt is rarely what the measured label says (0 of 6 episodes asked for it; of 40 asked
    for it, clear partway clips: drawer-close 0, window-open 0, window-close 0, against drawer-open 15).
    Their datasets (``_Task.coasts``) hold "done" and "not at all" only: equal quotas over three
    prompts made ``make_dataset`` reject for ever on the third. A clip measured partway still gets
    the partway label when scored.

``MARGINS`` bands around each threshold are ambiguous (rejected from datasets). To produce each class
the expert runs for all of the episode (done) or for a drawn number of steps around (partway) or
well before (not at all) the task's typical success step, then holds the hand still under the same
noise; the measured label decides, as for the ant.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import warnings

import mujoco
import numpy as np

from rlpf.core.clips import Clip
from rlpf.data.motion_data import DataSource
from rlpf.envs.worlds import METAWORLD_TASKS, compile_world, get_world

CLIP_FPS = 40.0
"""Frame rate of recorded Meta-World clips: every ``SUBSAMPLE``-th env step (80 fps / 2)."""
SUBSAMPLE = 2
"""Env steps per recorded frame."""
NOISE_STD = (0.0, 0.3)
"""Range (action units; the action box is [-1, 1], 1 = 1 cm of mocap motion per step) from which an
episode's DART noise standard deviation is drawn uniformly."""
MAX_STEPS = 500
"""Meta-World's max_path_length: no episode runs longer."""


@dataclasses.dataclass(frozen=True)
class _Task:
    kind: str                       # "object": free-object displacement / lift; "articulation": joint opening;
                                    # "insert": lift, then the peg head's distance to the hole (progress = -distance)
    phrases: tuple[str, str, str]   # done, partway, not at all
    done: float                     # progress threshold of "done" (m or rad)
    partway: float                  # progress threshold of "partway"
    margin_done: float              # ambiguity half-band around done
    margin_partway: float           # ... around partway
    success_step: int               # typical first success step of the noiseless expert (measured)
    sign: float = -1.0              # an articulation opens toward this sign of its coordinate
    lift: float | None = None       # pick-place: the lift that counts as picked up (m)
    margin_lift: float = 0.0
    coasts: bool = False            # the joint coasts to its end once pushed (no damping): "partway" is not
                                    # recordable, so the world's data has only "done" and "not at all"

    @property
    def data_prompts(self) -> tuple[str, ...]:
        """The prompts a dataset of the task holds (quotas are equal over them)."""
        return (self.phrases[0], self.phrases[2]) if self.coasts else self.phrases


TASKS: dict[str, _Task] = {
    "push-v3": _Task("object", ("push the puck to a new spot", "move the puck a little",
                                "move the arm without moving the puck"), 0.10, 0.02, 0.02, 0.008, 60),
    "pick-place-v3": _Task("object", ("pick up the puck and move it", "pick up the puck",
                                      "move the arm without lifting the puck"), 0.08, 0.0, 0.02, 0.0, 52,
                           lift=0.02, margin_lift=0.006),
    "drawer-open-v3": _Task("articulation", ("open the drawer", "open the drawer partway",
                                             "move the arm without opening the drawer"), 0.16, 0.02, 0.015, 0.008, 87),
    "door-open-v3": _Task("articulation", ("open the door", "open the door partway",
                                           "move the arm without opening the door"), 1.38, 0.1, 0.1, 0.04, 82),
    "button-press-topdown-v3": _Task("articulation", ("press the button", "press the button partway",
                                                      "move the arm without pressing the button"), 0.07, 0.01, 0.006, 0.004, 62),
    "drawer-close-v3": _Task("articulation", ("close the drawer", "close the drawer partway",
                                              "move the arm without closing the drawer"), 0.115, 0.02, 0.01, 0.008, 77,
                             sign=1.0, coasts=True),
    "window-open-v3": _Task("articulation", ("slide the window open", "slide the window partway open",
                                             "move the arm without moving the window"), 0.19, 0.02, 0.005, 0.008, 78,
                            sign=1.0, coasts=True),
    "window-close-v3": _Task("articulation", ("slide the window closed", "slide the window partway closed",
                                              "move the arm without moving the window"), 0.16, 0.02, 0.01, 0.008, 75,
                             coasts=True),
    "peg-insert-side-v3": _Task("insert", ("insert the peg into the hole", "pick up the peg",
                                           "move the arm without lifting the peg"), -0.07, 0.0, 0.01, 0.0, 78,
                                lift=0.02, margin_lift=0.006),
}
"""The labelled tasks (see the module docstring); every key is also in ``METAWORLD_TASKS``."""

MARGINS = {task: (t.margin_done, t.margin_partway, t.margin_lift) for task, t in TASKS.items()}
"""Per task: half-widths of the ambiguity bands around the done, partway and lift thresholds."""


class MetaWorldDataError(ValueError):
    """A Meta-World data request that cannot be served (unknown task, unlabelled world)."""


def _task(world) -> tuple[str, _Task]:
    from rlpf.envs.metaworld import task_of

    task = task_of(world)
    if task not in TASKS:
        raise MetaWorldDataError(f"world {get_world(world).name!r}: no labelled data for Meta-World task {task!r}; "
                                 f"labelled tasks are {sorted(TASKS)}")
    return task, TASKS[task]


# ----------------------------------------------------------------------------------------------
# labeller (qpos only)


def measure(world: str, q: np.ndarray, fps: float) -> dict[str, float]:
    """The task's progress (and, with objects, lift and displacement) measured from qpos."""
    _, spec = _task(world)
    cw = compile_world(world)
    if q.shape[1] != cw.nq:
        raise ValueError(f"label_motion: {world} qpos has {cw.nq} columns, got {q.shape[1]}")
    if spec.kind in ("object", "insert"):
        m = cw.model
        j = int(m.body_jntadr[cw.object_bodies[0]])
        pos = q[:, m.jnt_qposadr[j]: m.jnt_qposadr[j] + 3]
        d = float(np.linalg.norm(pos[-1, :2] - pos[0, :2]))
        lift = float(pos[:, 2].max() - pos[0, 2])
        if spec.kind == "insert":
            return {"progress": -_peg_goal_distance(cw, q[-1]), "displacement_m": d, "lift_m": lift}
        return {"progress": d, "displacement_m": d, "lift_m": lift}
    a = q[:, int(cw.articulation_qpos[0])]
    return {"progress": float(spec.sign * (a[-1] - a[0]))}


PEG_TARGET_OFFSET = np.array([0.03, 0.0, 0.13])
"""peg-insert-side-v3's goal relative to the box body (``reset_model``: ``pos_box + [0.03, 0, 0.13]``)."""
PEG_DISTANCE_SCALE = np.array([1.0, 2.0, 2.0])
"""... and the axis scale of its ``obj_to_target`` (success: scaled distance <= 0.07 m)."""


def _peg_goal_distance(cw, qpos: np.ndarray) -> float:
    """Meta-World's ``obj_to_target`` for peg-insert-side: the pegHead site's scaled distance to the
    hole's target, from one frame's qpos (forward kinematics in the world's model, box at its placement)."""
    d = mujoco.MjData(cw.model)
    d.qpos[:] = qpos
    mujoco.mj_kinematics(cw.model, d)
    target = d.xpos[cw.model.body("box").id] + PEG_TARGET_OFFSET
    return float(np.linalg.norm((d.site("pegHead").xpos - target) * PEG_DISTANCE_SCALE))


def label(world: str, meas: dict) -> str:
    """The task's done / partway / not-at-all prompt for the measurements."""
    _, s = _task(world)
    done, partway, nothing = s.phrases
    p = meas["progress"]
    if s.lift is not None:  # picked up (lifted) first, then moved
        if meas["lift_m"] < s.lift:
            return nothing
        return done if p >= s.done else partway
    return done if p >= s.done else (partway if p >= s.partway else nothing)


def is_clear(world: str, meas: dict) -> bool:
    """Outside the ambiguity bands of the thresholds that decide the label."""
    _, s = _task(world)
    p = meas["progress"]
    if s.lift is not None:
        if abs(meas["lift_m"] - s.lift) < s.margin_lift:
            return False
        return meas["lift_m"] < s.lift or abs(p - s.done) >= s.margin_done
    return abs(p - s.done) >= s.margin_done and abs(p - s.partway) >= s.margin_partway


# ----------------------------------------------------------------------------------------------
# recording


@functools.lru_cache(maxsize=8)
def _env_and_expert(task: str):
    """One env and expert per task and process (making the env costs ~0.8 s, importing metaworld ~1.5 s)."""
    from rlpf.envs.metaworld import make_env
    from metaworld.policies import ENV_POLICY_MAP

    with warnings.catch_warnings():   # gymnasium's checker: Meta-World's first observation leaves its declared box
        warnings.simplefilter("ignore")
        env = make_env(f"metaworld/{task}", seed=0)
        env.reset(seed=0)  # sets one of MT1's tasks: fully observable (the goal in the observation, which the experts read)
    return env, ENV_POLICY_MAP[task]()


def _reset(world, env, rng: np.random.Generator, fixed_start: bool = False) -> np.ndarray:
    """Reset ``env`` to a scene drawn with ``rng`` (see the module docstring); returns the observation.
    ``fixed_start``: the free object starts at the middle of its reset range (only the goal is drawn)."""
    w = get_world(world)
    u = env.unwrapped
    space = u._random_reset_space
    if w.placements and not w.objects:   # the fixture at the world's placement: Meta-World's rand_vec is its position
        (_, pos), = w.placements
        vec = np.asarray(pos, dtype=np.float64)
    else:              # object (and goal) from the reset range, goal >= 0.15 m from the object
        for _ in range(1000):
            vec = rng.uniform(space.low, space.high)
            if fixed_start:
                vec[:3] = (space.low[:3] + space.high[:3]) / 2
            if w.placements:   # peg-insert-side: rand_vec is (peg, box); the box stays at its placement
                (_, pos), = w.placements
                vec[3:6] = pos
            if len(vec) < 6 or np.linalg.norm(vec[:2] - vec[3:5]) >= 0.15:
                break
    u._last_rand_vec, u._freeze_rand_vec, u._set_task_called = vec, True, True
    obs, _ = u.reset()
    return obs


def record_episode(world, seed: int, frames: int, expert_steps: int | None = None,
                   noise_std: float | None = None, stop_progress: float | None = None,
                   stop_lift: float | None = None, fixed_start: bool = False) -> Clip:
    """One clip of ``frames`` frames: the task's expert with DART noise until it stops - after
    ``expert_steps`` env steps, or once the measured progress reaches ``stop_progress`` or the object's
    lift ``stop_lift`` (None: never) - then the hand held still (gripper as it was) under the same
    noise. Unlabelled (``prompt`` None); ``clip.cache["metaworld"]`` holds the noise, the env's first
    success step and where the expert stopped.

    Deterministic in its arguments; ``noise_std`` None draws it from ``NOISE_STD`` with the seed.
    ``fixed_start``: a free object starts at the middle of its reset range (the goal is still drawn).
    Raises ValueError for a clip longer than Meta-World's 500 steps.
    """
    task, _ = _task(world)
    w = get_world(world)
    if frames < 2 or (frames - 1) * SUBSAMPLE > MAX_STEPS:
        raise ValueError(f"record_episode: frames must be 2..{MAX_STEPS // SUBSAMPLE + 1} "
                         f"(Meta-World episodes end after {MAX_STEPS} steps), got {frames}")
    env, expert = _env_and_expert(task)
    rng = np.random.default_rng(seed)
    sigma = float(rng.uniform(*NOISE_STD)) if noise_std is None else float(noise_std)
    obs = _reset(w, env, rng, fixed_start)
    u = env.unwrapped
    nq, nu = u.model.nq, u.model.nu
    qpos, actions = np.empty((frames, nq)), np.empty((frames, nu))
    qpos[0] = u.data.qpos
    grip = -1.0
    success_step, stopped = None, None
    watch = stop_progress is not None or stop_lift is not None
    first = u.data.qpos.copy()
    for step in range((frames - 1) * SUBSAMPLE):
        if stopped is None and expert_steps is not None and step >= expert_steps:
            stopped = step
        if stopped is None and watch:
            meas = measure(w.name, np.stack([first, u.data.qpos]), CLIP_FPS)
            if (stop_progress is not None and meas["progress"] >= stop_progress) or \
                    (stop_lift is not None and meas.get("lift_m", 0.0) >= stop_lift):
                stopped = step
        if stopped is None:
            with warnings.catch_warnings():   # the experts' gains exceed the action box on purpose
                warnings.simplefilter("ignore")
                a = np.asarray(expert.get_action(obs), dtype=np.float64)
            grip = float(a[3])
        else:
            a = np.array([0.0, 0.0, 0.0, grip])
        a = np.clip(a + rng.normal(0.0, sigma, 4), -1.0, 1.0)
        obs, _, _, _, info = u.step(a.astype(np.float32))
        if success_step is None and info.get("success"):
            success_step = step
        if step % SUBSAMPLE == 0:
            actions[step // SUBSAMPLE] = u.data.ctrl
        if (step + 1) % SUBSAMPLE == 0:
            qpos[(step + 1) // SUBSAMPLE] = u.data.qpos
    actions[-1] = u.data.ctrl
    if not np.isfinite(qpos).all():
        raise RuntimeError(f"simulation of {w.name} diverged (seed {seed})")
    clip = Clip(qpos=qpos, fps=CLIP_FPS, world=w.name, actions=actions, source=f"data:{w.name}:{seed}")
    clip.cache["metaworld"] = {"noise_std": sigma, "success_step": success_step, "expert_stopped": stopped}
    return clip


def episode(world, prompt: str, seed: int, frames: int = 64) -> Clip:
    """A clip recorded for ``prompt`` (``DataSource.episode``): the expert's run length drawn for it;
    ``clip.prompt`` is the *measured* label.

    The world model's data: a free object always starts at the middle of its reset range (the goal,
    the noise and the expert's run vary), as a fixture stays at its placement. A text-to-motion model
    decodes a scene from one start pose (``rlpf.worldmodel.features``: objects are anchored at the
    start as the root is), and its generated arm can only reach an object whose start it knows;
    conditioning generation on a drawn first frame is the way to varied starts."""
    task, spec = _task(world)
    rng = np.random.default_rng([seed, 1])
    done, partway, _ = spec.phrases
    if prompt == done:
        kw = {}
    elif prompt == partway and spec.lift is not None:   # lifted, then held before carrying it far
        # the held puck keeps moving ~4-5 cm after the expert stops (measured), so it stops early
        # (the peg: held once lifted, before it is carried to the hole)
        kw = {"stop_lift": spec.lift + 2 * spec.margin_lift,
              "stop_progress": spec.done / 4 if spec.kind == "object" else None}
    elif prompt == partway:   # stopped once the joint is a drawn way between the two thresholds
        lo, hi = spec.partway + 2 * spec.margin_partway, spec.done - 2 * spec.margin_done
        kw = {"stop_progress": float(rng.uniform(lo, hi))}
    else:   # stopped well before the typical first contact
        kw = {"expert_steps": int(rng.uniform(0.0, 0.5) * spec.success_step)}
    clip = record_episode(world, seed, frames, fixed_start=True, **kw)
    clip.prompt = label(get_world(world).name, measure(get_world(world).name, clip.qpos, clip.fps))
    return clip


def record_expert_clip(world, n_frames: int, seed: int = 0) -> Clip:
    """``World.recorder``: an expert clip for ``rlpf simulate`` (the expert throughout, DART noise), labelled."""
    return episode(world, TASKS[_task(world)[0]].phrases[0], seed, n_frames)


def _no_controller(prompt, rng):
    raise MetaWorldDataError("Meta-World data is recorded through its gym env (DataSource.episode), "
                             "not by a MuJoCo-loop controller")


def _no_warmup(frames: int) -> int:
    return 0


ARTIFACT_KINDS = {
    "object": ("levitate_object", "sink_object", "slide_object", "teleport_object", "pass_through_gripper", "jitter"),
    "articulation": ("move_articulation", "teleport_object", "jitter"),
}
ARTIFACT_KINDS["insert"] = ARTIFACT_KINDS["object"]
"""``rlpf.data.corrupt`` kinds drawn for the web-like artifacts of a free-object / an articulated task."""


def _source(task: str) -> DataSource:
    name = f"metaworld/{task}"
    return DataSource(
        prompts=TASKS[task].data_prompts,
        measure=functools.partial(measure, name),
        label=functools.partial(label, name),
        is_clear=functools.partial(is_clear, name),
        controller=_no_controller,
        warmup=_no_warmup,
        episode=functools.partial(episode, name),
        artifact_kinds=ARTIFACT_KINDS[TASKS[task].kind],
        task_prompts=TASKS[task].phrases[:1],   # "done": Meta-World's own success distance reached
    )


SOURCES = types.SimpleNamespace(**{task.replace("-", "_"): _source(task) for task in TASKS if task in METAWORLD_TASKS})
"""The DataSource of each labelled task, as ``SOURCES.drawer_open_v3`` (``World.data`` names them)."""
