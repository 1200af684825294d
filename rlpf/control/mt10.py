"""Meta-World MT10 for the control head: tasks, seeded scenes, batched evaluation, expert demonstrations.

    from rlpf.control.mt10 import MT10, ExpertPolicy, evaluate_mt, collect_mt_demos
    report = evaluate_mt(ExpertPolicy(), ["push-v3"], episodes=50, seed=1000)
    report["tasks"]["push-v3"]["success_rate"], report["success_mean"], report["steps_per_s"]

**Tasks.** The ten MT10 tasks, each ``gym.make("Meta-World/MT1", env_name=TASK)`` (metaworld 3.1.1's
gymnasium registration: ``make_mt_envs`` -> ``_init_each_env``: the task class, TimeLimit at its
``max_path_length`` = 500 steps, ``AutoTerminateOnSuccessWrapper`` left off, ``RandomTaskSelectWrapper``
over MT1's 50 goals), with the goal in the observation (MT's ``partially_observable=False``). A task's
prompt is its description in words (``PROMPTS``, after the Meta-World paper's task list); ``one_hot``
is its index in ``MT10``.

**Success** is the benchmark's rule: the env's own ``info["success"]`` at *any* step of the episode
(``metaworld.evaluation.evaluation`` turns on terminate-on-success and counts an episode that ended
successfully). An episode here ends at its first success, as there, or after 500 steps.

**Seeded scenes.** MT1's env ignores ``reset(seed=...)`` (``SawyerXYZEnv.reset``: "Ignored, use
``seed()`` instead") and draws each reset's scene from 50 goals fixed at construction. ``SeededScenes``
makes the seed decide the episode: ``reset(seed=s)`` seeds the env (``SawyerXYZEnv.seed(s)``) and lets
its own reset draw the scene (object, goal, fixture placement) from the task's ``_random_reset_space``
with that generator (``seeded_rand_vec``: the draw MT1 uses to make its 50 goals, including each task's
own redraw rules, e.g. push's goal >= 0.15 m from the puck). Episode ``i`` of an evaluation uses seed
``seed + i`` on every task; demonstrations use their own seed range, which ``rlpf control`` requires to
be disjoint. ``reset()`` without a seed continues the seeded stream (SB3's training episodes).

**Batched evaluation** (``evaluate_mt``): per task a ``gymnasium.vector.SyncVectorEnv`` of ``n_envs``
envs (autoreset disabled; a finished slot is reset with the next episode's seed through
``options["reset_mask"]``), so a policy acts on a batch of observations per step (one LM forward for
``n_envs`` envs for the control head). A batched policy has ``reset(task, mask, seeds)`` and
``act(obs [n, 39], task) -> actions [n, 4]`` (and, optionally, ``observe(venv)``, called before each
``act`` with the vector env, for a policy that reads the simulator's state); actions are clipped to the action box [-1, 1] (the
mocap's 1 cm per step and the gripper's effort: the env clips the xyz part itself). ``steps_per_s`` is
counted over the episodes' own steps only (slots idle at the end, stepped and ignored, are not counted).

**Demonstrations** (``collect_mt_demos``): Meta-World's scripted experts (``metaworld.policies.
ENV_POLICY_MAP``) with DART noise as ``rlpf.data.metaworld_data`` records them: per episode a standard
deviation drawn uniformly from ``noise`` (default ``NOISE_STD`` = 0-0.3 action units), Gaussian noise
added to the executed action, clipped to the box; the dataset keeps the expert's *clean* (clipped)
action at each visited state, the observation vector, the task (index, one-hot, prompt) and qpos.
"""
from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np

from rlpf.core.errors import RLPFError

MT10: tuple[str, ...] = ("reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
                         "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3")
"""metaworld.env_dict.MT10_V3's tasks, in its order (the one-hot index)."""

PROMPTS: dict[str, str] = {
    "reach-v3": "reach a goal position",
    "push-v3": "push the puck to a goal",
    "pick-place-v3": "pick and place a puck to a goal",
    "door-open-v3": "open a door with a revolving joint",
    "drawer-open-v3": "open a drawer",
    "drawer-close-v3": "push and close a drawer",
    "button-press-topdown-v3": "press a button from the top",
    "peg-insert-side-v3": "insert a peg sideways",
    "window-open-v3": "push and open a window",
    "window-close-v3": "push and close a window",
}
"""Each task in words (the Meta-World paper's task descriptions): the prompt a language-conditioned head reads."""

EPISODE_STEPS = 500
"""Meta-World's ``max_path_length``: the TimeLimit of every MT1 env."""
NOISE_STD = (0.0, 0.3)
"""DART noise range of the demonstrations (= ``rlpf.data.metaworld_data.NOISE_STD``, action units: 1 = 1 cm
of mocap motion per step); kept here so the control layer does not import the data layer's recorder."""
VIDEO_STRIDE = 4
"""Env steps per video frame: 20 fps of an 80 Hz env, real time."""
CAMERA = "corner"
"""Meta-World's camera of the videos (a view of the table from its front corner). Its MJCF pose
(``xyz_base.xml``: ``xyaxes="-1 1 0 -0.2 -0.2 -1"``) points the image's up axis down, so its frames
are turned 180 degrees (``upright``) before they are written."""


def upright(frame: np.ndarray) -> np.ndarray:
    """A ``CAMERA`` frame the right way up: the camera is rolled 180 degrees, so rows and columns both
    reverse (a rotation; flipping rows alone would mirror the scene)."""
    return np.ascontiguousarray(frame[::-1, ::-1])


class MetaWorldTaskError(RLPFError, ValueError):
    """A Meta-World task rlpf's control suite does not know, or metaworld that is not installed."""


def check_tasks(tasks) -> list[str]:
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in MT10]
    if unknown:
        raise MetaWorldTaskError(f"unknown Meta-World task(s) {unknown}: the control suite is MT10, {list(MT10)}")
    if not tasks:
        raise MetaWorldTaskError("no Meta-World tasks given (choose from MT10: {list(MT10)})")
    return tasks


def one_hot(task: str, n: int = 1) -> np.ndarray:
    v = np.zeros((n, len(MT10)), np.float32)
    v[:, MT10.index(task)] = 1.0
    return v


# ---------------------------------------------------------------------------------------------------
# envs


def _gym():
    try:
        import gymnasium as gym
        import metaworld  # noqa: F401  (registers the Meta-World/* gym ids)
    except ImportError as e:
        raise MetaWorldTaskError(f"the Meta-World control suite needs metaworld (pip install metaworld==3.1.1): {e}") from None
    return gym


def _seeded_scenes_class():
    gym = _gym()

    class SeededScenes(gym.Wrapper):
        """``reset(seed=s)``: the scene drawn by the env's own reset from its generator seeded with ``s``."""

        def __init__(self, env):
            super().__init__(env)
            # the first reset sets one of MT1's tasks: the MT observability (goal in the observation) and
            # the "task is set" flag step() asserts; later resets draw their own scenes instead
            env.reset()
            env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)

        def reset(self, *, seed=None, options=None):
            u = self.env.unwrapped
            if seed is not None:
                u.seed(int(seed))
            u._freeze_rand_vec, u.seeded_rand_vec = False, True
            return self.env.reset(options=options)

    return SeededScenes


def make_task_env(task: str, render_size: int | None = None):
    """One MT1 env of ``task`` with seeded scenes (``render_size``: rgb_array frames of that many pixels)."""
    check_tasks([task])
    gym = _gym()
    kwargs = {}
    if render_size:
        os.environ.setdefault("MUJOCO_GL", "egl")
        kwargs = dict(render_mode="rgb_array", width=render_size, height=render_size, camera_name=CAMERA)
    # the env checker only warns that Meta-World's first observation leaves its declared box
    env = gym.make("Meta-World/MT1", env_name=task, seed=0, disable_env_checker=True, **kwargs)
    return _seeded_scenes_class()(env)


def make_vector_env(task: str, n_envs: int, render_first: int | None = None):
    """``n_envs`` envs of ``task`` as a SyncVectorEnv with autoreset disabled (``render_first``: env 0 renders)."""
    gym = _gym()
    fns = [(lambda i=i: make_task_env(task, render_first if i == 0 else None)) for i in range(n_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.DISABLED)


_POOL: dict[tuple, object] = {}


def vector_env(task: str, n_envs: int, render_first: int | None = None):
    """A cached ``make_vector_env``: making an MT1 env costs ~0.6 s (MT1 draws its 50 goals with 50 resets),
    more than 50 expert episodes of stepping, so every evaluation and demonstration run of this process
    reuses one vector env per (task, size, renderer). Scenes do not depend on the history: each reset
    is seeded. ``close_envs()`` releases them."""
    key = (task, n_envs, render_first)
    if key not in _POOL:
        _POOL[key] = make_vector_env(task, n_envs, render_first)
    return _POOL[key]


def close_envs() -> None:
    while _POOL:
        _, venv = _POOL.popitem()
        try:
            venv.close()
        except Exception:  # noqa: BLE001 - a renderer that never got its GL context may fail to close
            pass


# ---------------------------------------------------------------------------------------------------
# policies


class ExpertPolicy:
    """Meta-World's scripted expert of each task (stateless: a function of the observation), batched.

    ``noise`` (low, high): DART noise, a standard deviation drawn per episode from this range with the
    episode's seed; ``act`` then returns the executed (noisy) action and ``clean`` holds the expert's own."""

    tasks = None   # acts in any MT10 task

    def __init__(self, noise: tuple[float, float] | None = None):
        from metaworld.policies import ENV_POLICY_MAP

        self._experts = {t: ENV_POLICY_MAP[t]() for t in MT10}
        self.noise = noise
        self.rngs: list = []
        self.sigma = np.zeros(0)
        self.clean = np.zeros((0, 4), np.float32)

    def reset(self, task: str, mask: np.ndarray, seeds) -> None:
        n = len(mask)
        if len(self.rngs) != n:
            self.rngs, self.sigma = [None] * n, np.zeros(n)
        for i in np.flatnonzero(mask):
            rng = np.random.default_rng([int(seeds[i]), MT10.index(task), 7])   # its own stream per task and episode
            self.rngs[i] = rng
            self.sigma[i] = rng.uniform(*self.noise) if self.noise else 0.0

    def act(self, obs: np.ndarray, task: str) -> np.ndarray:
        expert = self._experts[task]
        with warnings.catch_warnings():   # the experts' gains exceed the action box on purpose
            warnings.simplefilter("ignore")
            a = np.clip(np.stack([expert.get_action(o) for o in obs]), -1.0, 1.0).astype(np.float32)
        self.clean = a
        if not self.noise:
            return a
        noisy = [a[i] + self.rngs[i].normal(0.0, self.sigma[i], a.shape[1]) for i in range(len(a))]
        return np.clip(np.stack(noisy), -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# the batched episode loop


def _rollout(policy, task: str, seeds: list[int], n_envs: int, on_step=None, video: dict | None = None):
    """Run one episode per seed of ``task`` with ``policy`` on a vector env; per-episode results.

    ``on_step(slots, episodes, obs, actions, venv)`` sees every active slot's step before it is taken.
    ``video``: {"size", "episodes"} -> frames of env 0's first episodes in ``video["frames"]``."""
    from rlpf.viz.render import video_failures

    n = max(1, min(n_envs, len(seeds)))
    render = video.get("size") if video else None
    venv = vector_env(task, n, render_first=render)
    slot_ep = np.arange(n)                  # the episode each slot plays (-1: idle)
    nxt = n
    obs, _ = venv.reset(seed=[int(seeds[i]) for i in range(n)])
    policy.reset(task, np.ones(n, bool), [int(seeds[i]) for i in range(n)])
    ret, length = np.zeros(n), np.zeros(n, int)
    results: list[dict | None] = [None] * len(seeds)
    useful = 0
    frames_of: dict[int, list] = {}

    def grab(ep):
        # every VIDEO_STRIDE-th step (software GL renders ~15 frames/s here; a failed episode is 500 steps)
        if video is not None and ep < video.get("episodes", 0) and video.get("ok", True) \
                and (length[0] % VIDEO_STRIDE == 0 or ep not in frames_of):
            try:
                frames_of.setdefault(ep, []).append((upright(venv.envs[0].render()), int(length[0]), float(ret[0])))
            except video_failures() as e:   # no GL backend etc.: the episode goes on without frames
                video["ok"], video["error"] = False, e
    if slot_ep[0] >= 0:
        grab(int(slot_ep[0]))
    observe = getattr(policy, "observe", None)   # policies that read the simulator's state (the MT10 head)
    while (slot_ep >= 0).any():
        if observe is not None:
            observe(venv)
        actions = np.asarray(policy.act(obs, task), dtype=np.float32).reshape(n, -1)
        if not np.isfinite(actions).all():
            raise ValueError(f"policy returned non-finite actions in {task}: {actions}")
        actions = np.clip(actions, -1.0, 1.0)
        active = slot_ep >= 0
        if on_step is not None:
            on_step(np.flatnonzero(active), slot_ep[active], obs[active], actions[active], venv)
        obs, reward, terminated, truncated, info = venv.step(actions)
        success = np.asarray(info.get("success", np.zeros(n)), dtype=float) > 0.5
        ret += np.where(active, reward, 0.0)
        length += 1
        useful += int(active.sum())
        if active[0]:
            grab(int(slot_ep[0]))
        ended = success | terminated | truncated
        for i in np.flatnonzero(ended & active):
            ep = int(slot_ep[i])
            results[ep] = {"seed": int(seeds[ep]), "success": bool(success[i]), "return": float(ret[i]),
                           "steps": int(length[i]), "first_success_step": int(length[i]) if success[i] else None}
            if nxt < len(seeds):
                slot_ep[i], nxt = nxt, nxt + 1
            else:
                slot_ep[i] = -1
        if ended.any():
            # idle slots are reset too (a finished Meta-World env refuses to step past 500 steps)
            new_seeds = [int(seeds[slot_ep[i]]) if ended[i] and slot_ep[i] >= 0 else None for i in range(n)]
            obs, _ = venv.reset(seed=new_seeds, options={"reset_mask": ended.copy()})
            fresh = ended & (slot_ep >= 0)
            if fresh.any():
                policy.reset(task, fresh, [s if s is not None else 0 for s in new_seeds])
            ret[ended], length[ended] = 0.0, 0
            if fresh[0]:
                grab(int(slot_ep[0]))
    if video is not None:
        video["frames"] = frames_of
    return results, useful


def evaluate_mt(policy, tasks, episodes: int = 50, seed: int = 1000, n_envs: int = 10, video_dir: str | None = None,
                video_episodes: int = 1, video_size: int = 192, label: str = "policy", progress: bool = True) -> dict:
    """``episodes`` seeded episodes of every task; per-task success (any step), returns, lengths, videos."""
    from tqdm import tqdm

    tasks = check_tasks(tasks)
    if episodes < 1:
        raise RLPFError(f"episodes must be >= 1, got {episodes}")
    trained = getattr(policy, "tasks", None)
    if trained is not None and any(t not in trained for t in tasks):
        from rlpf.control.tasks import PolicyMismatchError

        raise PolicyMismatchError(f"policy {label} was trained for {list(trained)}, "
                                  f"not for {[t for t in tasks if t not in trained]}")
    out, total_steps, total_s, make_s, videos, video_errors = {}, 0, 0.0, 0.0, [], []
    for task in tqdm(tasks, desc=f"eval {label}", unit="task", disable=not progress, file=sys.stderr, dynamic_ncols=True):
        n = max(1, min(n_envs, episodes))
        t_make = time.perf_counter()
        vector_env(task, n)   # made (or reused) outside the timed loop
        make_s += time.perf_counter() - t_make
        t0 = time.perf_counter()
        results, useful = _rollout(policy, task, [seed + i for i in range(episodes)], n_envs)
        dt = time.perf_counter() - t0
        total_steps, total_s = total_steps + useful, total_s + dt
        succ = np.array([r["success"] for r in results], float)
        p = float(succ.mean())
        out[task] = {"success_rate": p, "success_se": float(np.sqrt(p * (1 - p) / len(succ))),
                     "return_mean": float(np.mean([r["return"] for r in results])),
                     "steps_mean": float(np.mean([r["steps"] for r in results])), "eval_steps": useful,
                     "seconds": round(dt, 2), "per_episode": results}
        if video_dir and video_episodes > 0:
            v, errs = record_videos(policy, task, seed, min(video_episodes, episodes), video_dir, video_size, label)
            videos += v
            video_errors += errs
    for e in video_errors:
        print(f"warning: {label}: no video ({e['video']}: {e['error']}); evaluation went on without", file=sys.stderr)
    return {"policy": label, "episodes": episodes, "seed": seed, "n_envs": n_envs,
            "success_rule": "the env's info['success'] at any step of a 500-step episode (Meta-World's rule)",
            "tasks": out, "success_mean": float(np.mean([out[t]["success_rate"] for t in tasks])),
            "eval_steps": total_steps, "seconds": round(total_s, 2), "env_make_seconds": round(make_s, 2),
            "steps_per_s": round(total_steps / max(total_s, 1e-9), 1), "videos": videos, "video_errors": video_errors}


def record_videos(policy, task: str, seed: int, episodes: int, video_dir: str, size: int = 192,
                  label: str = "policy") -> tuple[list[str], list[dict]]:
    """Episodes ``seed``.. of ``task`` again in one rendering env, as labelled mp4s (SUCCESS / FAIL from
    that run: the same episode as the evaluation's for a deterministic policy, as every row's is).
    Rendering is kept out of the evaluation, so its speed is the policy's and the simulator's.
    A frame or file that cannot be made (no OpenGL backend, an unwritable directory) is an entry of
    the returned errors, never an exception: the numbers stand without videos."""
    from rlpf.viz.render import describe_failure, video_failures

    fails = video_failures()
    videos, errors = [], []
    for ep in range(episodes):
        video = {"size": size, "episodes": 1}
        try:
            results, _ = _rollout(policy, task, [seed + ep], 1, video=video)
        except fails as e:
            errors.append({"video": f"{label} {task}", "error": describe_failure(e)})
            break
        if not video.get("ok", True):
            errors.append({"video": f"{label} {task}", "error": describe_failure(video["error"])})
            break
        path = os.path.join(video_dir, f"{_slug(label)}_{task}_seed{seed + ep}.mp4")
        try:
            videos.append(_write_video(path, video["frames"][0], label, task, results[0]["success"]))
        except fails as e:
            errors.append({"video": path, "error": describe_failure(e)})
            break
    return videos, errors


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _write_video(path, frames, label, task, ok) -> str:
    from rlpf.viz.render import GREEN, RED, draw_text, text_height, write_mp4

    fps = 80.0 / VIDEO_STRIDE   # real time: the env steps at 80 Hz (timestep 2.5 ms x frame_skip 5)
    out = []
    for k, (frame, step, ret) in enumerate(frames):
        img = np.ascontiguousarray(frame)
        draw_text(img, f"{label} {task} step {step} return {ret:.0f}", 4, 4)
        if k >= len(frames) - int(fps):   # the last second: the verdict
            draw_text(img, "SUCCESS" if ok else "FAIL", 4, 6 + text_height(1), color=GREEN if ok else RED, scale=2)
        out.append(img)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return write_mp4(path, np.stack(out), fps)


# ---------------------------------------------------------------------------------------------------
# demonstrations


def collect_mt_demos(tasks, episodes: int, seed: int = 0, noise: tuple[float, float] = NOISE_STD,
                     n_envs: int = 10, progress: bool = True) -> dict:
    """``episodes`` noisy expert episodes per task (seeds ``seed``..); a flat multi-task dataset.

    Per step: ``obs`` [N, 39], ``actions`` [N, 4] (the expert's clean action), ``task`` [N] (index in
    MT10), ``task_onehot`` [N, 10], ``episode`` [N], ``step`` [N]; ``qpos__<task>`` [N_task, nq] the
    simulator state of that task's steps (their own nq). Per episode: ``ep_task``, ``ep_seed``,
    ``ep_sigma``, ``ep_success``, ``ep_steps``. ``prompts`` [10]: MT10's prompts by index."""
    from tqdm import tqdm

    tasks = check_tasks(tasks)
    if episodes < 1:
        raise RLPFError(f"episodes must be >= 1, got {episodes}")
    lo, hi = float(noise[0]), float(noise[1])
    if not 0 <= lo <= hi:
        raise RLPFError(f"noise must be a range 0 <= low <= high, got {noise}")
    expert = ExpertPolicy(noise=(lo, hi))
    cols = {k: [] for k in ("obs", "actions", "task", "episode", "step")}
    per_ep = {k: [] for k in ("ep_task", "ep_seed", "ep_sigma", "ep_success", "ep_steps")}
    qpos: dict[str, np.ndarray] = {}
    for task in tqdm(tasks, desc="demos MT10", unit="task", disable=not progress, file=sys.stderr, dynamic_ncols=True):
        k = MT10.index(task)
        base = len(per_ep["ep_task"])
        rows = {c: [] for c in ("obs", "actions", "episode", "step", "qpos")}
        sigmas = {}
        steps_in = np.zeros(episodes, int)

        def on_step(slots, eps, obs, actions, venv):
            rows["obs"].append(obs.astype(np.float32))
            rows["actions"].append(expert.clean[slots])
            rows["episode"].append((base + eps).astype(np.int32))
            rows["step"].append(steps_in[eps].astype(np.int16))
            rows["qpos"].append(np.stack([venv.envs[i].unwrapped.data.qpos.copy() for i in slots]))
            steps_in[eps] += 1
            for i, e in zip(slots, eps):
                sigmas[int(e)] = float(expert.sigma[i])

        results, _ = _rollout(expert, task, [seed + i for i in range(episodes)], n_envs, on_step=on_step)
        rows = {c: np.concatenate(v) for c, v in rows.items()}
        # slots interleave their episodes: sort by (episode, step) so each episode is contiguous
        order = np.lexsort((rows["step"], rows["episode"]))
        for c in ("obs", "actions", "episode", "step"):
            cols[c].append(rows[c][order])
        cols["task"].append(np.full(len(order), k, np.int16))
        qpos[task] = rows["qpos"][order]
        for i, r in enumerate(results):
            per_ep["ep_task"].append(k)
            per_ep["ep_seed"].append(r["seed"])
            per_ep["ep_sigma"].append(sigmas[i])
            per_ep["ep_success"].append(r["success"])
            per_ep["ep_steps"].append(r["steps"])
    d = {c: np.concatenate(v) for c, v in cols.items()}
    d.update({f"qpos__{t}": q for t, q in qpos.items()})
    d["task_onehot"] = np.eye(len(MT10), dtype=np.uint8)[d["task"]]
    d.update({k: np.array(v) for k, v in per_ep.items()})
    d.update({"tasks": np.array(tasks), "prompts": np.array([PROMPTS[t] for t in MT10]),
              "episodes_per_task": episodes, "seed": seed, "noise": np.array([lo, hi])})
    return d


def load_or_collect_mt(path: str, tasks, episodes: int, seed: int, noise=NOISE_STD, n_envs: int = 10,
                       progress: bool = True) -> dict:
    """Demonstrations cached at ``path`` (.npz) when they match the arguments; collected and saved otherwise."""
    tasks = check_tasks(tasks)
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        if (list(d["tasks"]) == tasks and int(d["episodes_per_task"]) == episodes and int(d["seed"]) == seed
                and np.allclose(d["noise"], noise)):
            return d
    d = collect_mt_demos(tasks, episodes, seed, noise, n_envs, progress)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **d)
    os.replace(tmp, path)
    return d
