"""`rlpf control`: does a world model make a better robot controller? One table on gymnasium tasks.

    rlpf control --config experiments/configs/control_pusher.yaml --out runs/control

For every task in ``envs`` (Pusher-v5, Reacher-v5) it fills rows ``{method, env, success_rate,
return_mean, env_steps, ...}``:

| method | what | env_steps (training interactions) |
|---|---|---|
| ``expert`` | the scripted expert (``rlpf.policies.gym_experts``) | 0 |
| ``mlp-bc`` | an MLP on the raw observation, behaviour-cloned on the expert's demonstrations | demo steps |
| ``<algo>-scratch`` | SB3 PPO (or SAC) from scratch, ``sb3_steps[env]`` env steps | that budget |
| ``head-<backbone>`` | the control head on each world model in ``backbones`` (``rlpf.control.head``), same demos | demo steps |

``backbones`` maps a name to a world model: ``{path, train, config, overrides}``. A missing ``path``
is trained first when ``train`` is ``pretrain`` (``rlpf pretrain``) or ``rlpf`` (``rlpf train``:
``rlpf.finetune.pipeline.train_rlpf``, the RLPF loop); when that is impossible (no trainer, its config or
its code missing) the backbone's rows are skipped with the reason, printed and recorded under
``skipped`` in report.json.

``benchmark: metaworld`` (``experiments/configs/control_metaworld.yaml``) runs the same rows on
Meta-World's MT10 instead (``run_metaworld``; ``rlpf.control.mt10``): ``expert`` (Meta-World's scripted
experts), ``mlp-bc`` (ONE multi-task MLP on observation + one-hot task, once per ``seeds`` entry),
``<algo>-scratch`` (one SB3 model per task, ``sb3_steps[task]`` env steps, once per ``sb3_seeds``
entry), ``head-<backbone>`` (ONE multi-task control head on a multi-world Meta-World world model,
``rlpf.control.mt10_head``, once per ``seeds`` entry), rows per task and the MT10 mean with a standard
error; a backbone that cannot carry the head is refused before any work (``check_head_backbones``).

Everything lands in the run directory and is reused when the same command runs again:
``config.yaml``, ``demos/<env>.npz``, ``policies/<method>/<env>/`` (``policy.pt`` or SB3
``model.zip``; TensorBoard logs in ``tb/``), ``rows/<method>__<env>.json``, ``videos/`` and
``report.json`` (``table``, ``skipped``, ``timings``, the success rules). Evaluation episodes use
seeds ``eval_seed``.. (disjoint from the demonstration seeds ``demo_seed``..).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from rlpf.core.config import ConfigError, check, decode_section, register_decoder
from rlpf.core.errors import RLPFError
from rlpf.control.head import BCSpec, ControlHeadConfig
from rlpf.control.mt10 import MT10
from rlpf.core.run_dir import locks_run_dir
from rlpf.core.threads import configure_threads


@dataclass
class Backbone:
    """A world model for the control head, and how to make it when it is missing."""

    path: str
    """Its run directory (or model directory)."""
    train: str = "none"
    """How a missing path is made: pretrain (`rlpf pretrain`), rlpf (`rlpf train`) or none (skipped)."""
    config: str = ""
    """That trainer's config file (empty: its defaults)."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides of that config."""

    def __post_init__(self):
        check(self, bool(self.path), "path", self.path, "a directory")
        check(self, self.train in ("pretrain", "rlpf", "none"), "train", self.train, "pretrain, rlpf or none")


# a backbone may be given as just its path: `backbones: {base: runs/pusher}`
register_decoder(Backbone, lambda raw, path: Backbone(path=raw) if isinstance(raw, str)
                 else decode_section(Backbone, raw, path))


def _base_backbone() -> dict[str, Backbone]:
    return {"base": Backbone("runs/pusher", "pretrain", "experiments/configs/pusher.yaml", ["threads=1"])}


@dataclass
class ControlConfig:
    """Everything that decides an `rlpf control` comparison."""

    benchmark: str = "gym"
    """gym: per-env rows on ``envs`` (Pusher-v5, Reacher-v5); metaworld: Meta-World ``tasks`` (MT10), one
    multi-task policy per learned row and seed, success = the env's info["success"] at any step."""
    envs: list[str] = field(default_factory=lambda: ["Pusher-v5", "Reacher-v5"])
    """gymnasium tasks to compare on (benchmark gym; see rlpf.control.tasks.TASKS)."""
    tasks: list[str] = field(default_factory=lambda: list(MT10))
    """Meta-World tasks (benchmark metaworld; rlpf.control.mt10.MT10)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """benchmark metaworld: training seeds of the MLP BC (and head) rows; mean +- standard error over them."""
    sb3_seeds: list[int] = field(default_factory=lambda: [0])
    """benchmark metaworld: training seeds of the from-scratch RL row."""
    eval_envs: int = 10
    """benchmark metaworld: envs per task in the evaluation's SyncVectorEnv (the policy acts on that batch)."""
    demo_noise_range: list[float] = field(default_factory=lambda: [0.0, 0.3])
    """benchmark metaworld: DART noise std drawn per demonstration episode from this range (action units;
    rlpf.data.metaworld_data.NOISE_STD's convention). benchmark gym uses demo_noise."""
    bc_hidden: int = 256
    """benchmark metaworld: width of the multi-task MLP's two hidden layers."""
    backbones: dict[str, Backbone] = field(default_factory=_base_backbone)  # on one line: draccus reads the docstring below it
    """World models to put the control head on: name -> {path, train (pretrain | rlpf | none), config, overrides}
    (or name -> path). A missing path is trained with its trainer, or the backbone is skipped with the reason."""
    methods: list[str] = field(default_factory=lambda: ["expert", "mlp-bc", "sb3-scratch", "head"])
    """Rows to run: expert, mlp-bc, sb3-scratch, head (one row per backbone)."""
    demo_episodes: int = 200
    """Expert episodes recorded per task for behaviour cloning (seeds demo_seed..)."""
    demo_seed: int = 0
    """Seed of the first demonstration episode."""
    demo_noise: float = 0.1
    """Gaussian noise added to the executed expert actions, as a fraction of the control half-range (DART)."""
    head: ControlHeadConfig = field(default_factory=ControlHeadConfig)
    """Control head architecture (n_queries, history, chunk, head: mlp | flow, finetune_backbone ...)."""
    head_steps: int = 1500
    """Behaviour-cloning steps of the control head."""
    bc_steps: int = 1500
    """Behaviour-cloning steps of the raw-state MLP."""
    bc_batch: int = 64
    """Samples per behaviour-cloning batch (both)."""
    bc_lr: float = 1e-3
    """Peak learning rate of behaviour cloning (cosine decay)."""
    sb3_algo: str = "ppo"
    """From-scratch RL algorithm: ppo or sac (SB3 defaults, VecNormalize for PPO)."""
    sb3_steps: dict[str, int] = field(default_factory=lambda: {"Pusher-v5": 200_000, "Reacher-v5": 100_000})
    """Environment-step budget of the from-scratch RL row, per task."""
    sb3_envs: int = 4
    """Parallel (in-process) envs of the from-scratch RL row."""
    eval_episodes: int = 50
    """Evaluation episodes per row (seeds eval_seed..)."""
    eval_seed: int = 1000
    """Seed of the first evaluation episode (demonstrations use demo_seed.., keep them apart)."""
    video_episodes: int = 1
    """Episodes per row rendered to mp4 under RUN/videos (0: none)."""
    video_size: int = 192
    """Video frame size in pixels."""
    seed: int = 0
    """Seed of network initialisation, batch order and RL."""
    threads: int = 1
    """torch threads (0: the usable cores that are free, see rlpf/core/threads.py; $RLPF_THREADS overrides)."""

    def __post_init__(self):
        from rlpf.control.tasks import get_task

        from rlpf.control.tasks import UnknownEnvError

        check(self, self.benchmark in ("gym", "metaworld"), "benchmark", self.benchmark, "gym or metaworld")
        if self.benchmark == "gym":
            for i, env_id in enumerate(self.envs):
                try:
                    get_task(env_id)
                except UnknownEnvError as e:
                    raise ConfigError(str(e), f"envs.{i}", ControlConfig) from None
        else:
            for i, task in enumerate(self.tasks):
                check(self, task in MT10, f"tasks.{i}", task, f"a Meta-World MT10 task ({', '.join(MT10)})")
            check(self, len(self.tasks) >= 1, "tasks", self.tasks, "at least one MT10 task")
            check(self, len(self.seeds) >= 1, "seeds", self.seeds, "at least one training seed")
            check(self, len(self.sb3_seeds) >= 1, "sb3_seeds", self.sb3_seeds, "at least one training seed")
            check(self, self.eval_envs >= 1, "eval_envs", self.eval_envs, ">= 1")
            check(self, self.bc_hidden >= 1, "bc_hidden", self.bc_hidden, ">= 1")
            lo_hi = self.demo_noise_range
            check(self, len(lo_hi) == 2 and 0 <= lo_hi[0] <= lo_hi[1], "demo_noise_range", lo_hi, "[low, high], 0 <= low <= high")
        # demonstration and evaluation scenes come from their seeds: the two ranges must not overlap
        demo_end, eval_end = self.demo_seed + self.demo_episodes, self.eval_seed + self.eval_episodes
        check(self, demo_end <= self.eval_seed or eval_end <= self.demo_seed, "eval_seed", self.eval_seed,
              f"outside the demonstration seeds {self.demo_seed}..{demo_end - 1} "
              f"(evaluation uses {self.eval_seed}..{eval_end - 1})")
        methods = ("expert", "mlp-bc", "sb3-scratch", "head")
        for m in self.methods:
            check(self, m in methods, "methods", self.methods, f"a list of {', '.join(methods)}")
        check(self, self.sb3_algo in ("ppo", "sac"), "sb3_algo", self.sb3_algo, "ppo or sac")
        for name in ("demo_episodes", "head_steps", "bc_steps", "bc_batch", "eval_episodes", "sb3_envs", "video_size"):
            check(self, getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        for name in ("video_episodes", "threads"):
            check(self, getattr(self, name) >= 0, name, getattr(self, name), ">= 0")
        check(self, 0 <= self.demo_noise, "demo_noise", self.demo_noise, ">= 0")
        check(self, self.bc_lr > 0, "bc_lr", self.bc_lr, "> 0")
        for env_id, steps in self.sb3_steps.items():
            check(self, steps >= 1, f"sb3_steps.{env_id}", steps, ">= 1")
        if "sb3-scratch" in self.methods:
            missing = [e for e in (self.envs if self.benchmark == "gym" else self.tasks) if e not in self.sb3_steps]
            check(self, not missing, "sb3_steps", self.sb3_steps, f"a budget for every env (missing {missing})")


# ---------------------------------------------------------------------------------------------------
# backbones


def prepare_backbone(name: str, spec: Backbone | dict, progress: bool = True) -> tuple[str | None, str]:
    """(world model path, note) — trained when missing and possible — or (None, why it is skipped)."""
    from rlpf.worldmodel.model import META_FILE

    if isinstance(spec, dict):
        spec = Backbone(**spec)
    path = spec.path
    done = os.path.isfile(os.path.join(path, "model", META_FILE)) or os.path.isfile(os.path.join(path, META_FILE))
    if done:
        return path, "cached"
    if spec.train == "none":
        return None, f"backbone {name}: {path} holds no world model and no trainer is configured (train: none)"
    from rlpf.core.config import load_config

    if spec.train == "pretrain":
        from rlpf.worldmodel.pretrain import PretrainConfig, pretrain

        print(f"backbone {name}: {path} missing, pretraining it ({spec.config or 'defaults'})", file=sys.stderr)
        pretrain(load_config(PretrainConfig, spec.config or None, spec.overrides), path, progress=progress)
        return path, "pretrained in this run"
    try:
        from rlpf.finetune.pipeline import RLPFConfig, train_rlpf
    except ImportError as e:
        return None, (f"backbone {name}: {path} does not exist and the RLPF trainer is not available "
                      f"(rlpf.finetune.pipeline: {e}); run `rlpf train` to make it, then run this command again")
    if spec.config and not os.path.isfile(spec.config):
        return None, f"backbone {name}: {path} does not exist and its RLPF config {spec.config} is missing"
    print(f"backbone {name}: {path} missing, running RLPF into it (rlpf train --config {spec.config})",
          file=sys.stderr)
    train_rlpf(load_config(RLPFConfig, spec.config or None, spec.overrides), path, progress=progress)
    return path, "RLPF-trained in this run"


# ---------------------------------------------------------------------------------------------------
# from-scratch RL


def train_sb3(env_id: str, algo: str, steps: int, n_envs: int, seed: int, out_dir: str, progress: bool = True):
    """SB3 PPO (VecNormalize) or SAC from scratch; ``out_dir/model.zip`` (reused when present)."""
    from stable_baselines3.common.env_util import make_vec_env

    from rlpf.control.evaluate import learn_sb3, load_sb3

    if os.path.isfile(os.path.join(out_dir, "model.zip")):
        return load_sb3(out_dir)
    venv = make_vec_env(env_id, n_envs=n_envs if algo == "ppo" else 1, seed=seed)
    return learn_sb3(venv, algo, steps, seed, out_dir, env_id, progress)


# ---------------------------------------------------------------------------------------------------
# the comparison


@locks_run_dir
def run_control(cfg: ControlConfig, run_dir: str, progress: bool = True) -> dict:
    from rlpf.control.demos import load_or_collect
    from rlpf.control.evaluate import evaluate
    from rlpf.control.tasks import TASKS, expert_policy
    from rlpf.control.head import train_control_head, train_mlp_bc
    from rlpf.core.run_dir import claim_run_dir, read_json, write_json

    configure_threads(cfg.threads)
    if cfg.benchmark == "metaworld":
        check_head_backbones(cfg)   # before anything is written: a missing backbone fails the command at once
        claim_run_dir(cfg, run_dir)
        return run_metaworld(cfg, run_dir, progress)
    claim_run_dir(cfg, run_dir)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    rows, skipped = [], []
    video_dir = os.path.join(run_dir, "videos") if cfg.video_episodes else None
    spec_bc = BCSpec(steps=cfg.bc_steps, batch=cfg.bc_batch, lr=cfg.bc_lr, seed=cfg.seed)
    spec_head = dataclasses.replace(spec_bc, steps=cfg.head_steps)

    def timed(key, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - t0, 1)
        return out

    backbones = {}
    if "head" in cfg.methods:
        for name, spec in cfg.backbones.items():
            path, note = timed(f"backbone/{name}", lambda: prepare_backbone(name, spec, progress))
            backbones[name] = path
            if path is None:
                print(f"skipping head-{name}: {note}", file=sys.stderr)
                skipped += [{"method": f"head-{name}", "env": e, "reason": note} for e in cfg.envs]

    def row(method, env_id, make_policy, env_steps, notes=""):
        path = os.path.join(run_dir, "rows", f"{method}__{env_id}.json")
        cached = read_json(path)
        if cached:
            rows.append(cached)
            return
        policy = timed(f"train/{method}/{env_id}", make_policy)
        r = timed(f"eval/{method}/{env_id}", lambda: evaluate(
            policy, env_id, cfg.eval_episodes, cfg.eval_seed, video_dir, cfg.video_episodes, cfg.video_size,
            label=method, progress=progress))
        out = {"method": method, "env": env_id, "success_rate": r["success_rate"], "return_mean": r["return_mean"],
               "env_steps": int(env_steps), "return_std": r["return_std"],
               "final_distance_mean": r["final_distance_mean"], "episodes": r["episodes"], "videos": r["videos"],
               # a video that could not be made (no GL, unwritable videos/): recorded, the row stands
               "video_errors": r.get("video_errors", []),
               "train_seconds": timings.get(f"train/{method}/{env_id}", 0.0), "notes": notes}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, out)
        rows.append(out)

    for env_id in cfg.envs:
        demos = None
        if {"mlp-bc", "head"} & set(cfg.methods):
            demos = timed(f"demos/{env_id}", lambda: load_or_collect(
                os.path.join(run_dir, "demos", f"{env_id}.npz"), env_id, cfg.demo_episodes, cfg.demo_seed,
                cfg.demo_noise, progress))
            demo_steps = int(np.prod(demos["obs"].shape[:2]))
        pol_dir = os.path.join(run_dir, "policies")
        if "expert" in cfg.methods:
            row("expert", env_id, lambda: expert_policy(env_id), 0, "scripted (rlpf.policies.gym_experts)")
        if "mlp-bc" in cfg.methods:
            row("mlp-bc", env_id, lambda: train_mlp_bc(demos, os.path.join(pol_dir, "mlp-bc", env_id), spec_bc,
                                                      progress=progress),
                demo_steps, f"{cfg.demo_episodes} expert episodes, noise {cfg.demo_noise}")
        if "sb3-scratch" in cfg.methods:
            budget = int(cfg.sb3_steps[env_id])
            row(f"{cfg.sb3_algo}-scratch", env_id, lambda: train_sb3(
                env_id, cfg.sb3_algo, budget, cfg.sb3_envs, cfg.seed,
                os.path.join(pol_dir, f"{cfg.sb3_algo}-scratch", env_id), progress), budget,
                f"SB3 {cfg.sb3_algo.upper()} defaults, {budget} env steps")
        for name, path in backbones.items():
            if path is None:
                continue
            codes = cfg.head.history > 0 and TASKS[env_id].world is not None
            row(f"head-{name}", env_id, lambda: train_control_head(
                path, demos, cfg.head, os.path.join(pol_dir, f"head-{name}", env_id), spec_head, progress),
                demo_steps, f"backbone {path} ({'motion codes + ' if codes else ''}observation tokens)")

    report = {"table": rows, "skipped": skipped,
              "video_errors": [{"method": r["method"], "env": r["env"], **e} for r in rows for e in r.get("video_errors", [])],
              "success_rules": {e: TASKS[e].success_rule for e in cfg.envs},
              "timings": {**timings, "total_s": round(time.perf_counter() - t_start, 1)},
              "config": dataclasses.asdict(cfg)}
    write_json(os.path.join(run_dir, "report.json"), report)
    return report


def format_table(report: dict) -> str:
    if report.get("benchmark") == "metaworld":
        return format_mt_table(report)
    lines = [f"{'method':<16} {'env':<11} {'success':>8} {'return':>9} {'final dist':>10} {'env steps':>10}"]
    for r in report["table"]:
        lines.append(f"{r['method']:<16} {r['env']:<11} {r['success_rate']:>8.2f} {r['return_mean']:>9.2f} "
                     f"{r['final_distance_mean']:>9.3f}m {r['env_steps']:>10,}")
    for s in report["skipped"]:
        lines.append(f"{s['method']:<16} {s['env']:<11} skipped: {s['reason']}")
    for v in report.get("video_errors", []):
        lines.append(f"{v['method']:<16} {v['env']:<11} no video: {v['error']}")
    rules = "; ".join(f"{e}: {rule}" for e, rule in report["success_rules"].items())
    return "\n".join(lines) + f"\nsuccess — {rules}"


# ---------------------------------------------------------------------------------------------------
# Meta-World MT10 (benchmark: metaworld)


class ControlBackboneError(RLPFError, ValueError):
    """A control-head row whose world-model backbone is missing or cannot be used yet."""


def _holds_world_model(path: str) -> bool:
    from rlpf.worldmodel.model import META_FILE

    return os.path.isfile(os.path.join(path, "model", META_FILE)) or os.path.isfile(os.path.join(path, META_FILE))


def check_head_backbones(cfg: ControlConfig) -> None:
    """The ``head-<name>`` rows of MT10: a backbone that cannot carry them is refused, with the reason,
    before any work is done.

    The MT10 head (``rlpf.control.mt10_head``) needs a multi-world Meta-World world model whose worlds
    include every task of ``tasks`` (``rlpf pretrain --config experiments/configs/metaworld_mt10.yaml``).
    A missing path is accepted when its backbone has a trainer (``train: pretrain`` / ``rlpf``): it is
    made first, then checked again (``run_metaworld``); with ``train: none`` it is an error naming it."""
    from rlpf.control.mt10_head import MT10BackboneError, check_backbone

    if "head" not in cfg.methods:
        return
    for name, spec in cfg.backbones.items():
        if not _holds_world_model(spec.path):
            if spec.train != "none":
                continue
            raise ControlBackboneError(
                f"head-{name}: backbone {name!r} at {spec.path} holds no Meta-World world model (no "
                f"{spec.path}/model) and has no trainer (train: none); make it with `rlpf pretrain --config "
                "experiments/configs/metaworld_mt10.yaml --out PATH` (or set train: pretrain and its config), "
                "or drop `head` from `methods` to run the other rows")
        try:
            check_backbone(spec.path, cfg.tasks)
        except MT10BackboneError as e:
            raise ControlBackboneError(f"head-{name}: {e}") from None


def _se(values) -> float:
    """Standard error of the mean over training seeds (0 for one seed)."""
    v = np.asarray(values, float)
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def _mt_rows(method: str, evals: list[dict], tasks: list[str], env_steps: dict[str, int], notes: str) -> list[dict]:
    """Table rows of one method: per task and the MT10 mean, over its seeds' evaluations.

    With several training seeds ``success_se`` is the standard error over seeds (of the per-seed success
    rate); with one (the expert, a single RL seed) it is the binomial standard error over the episodes."""
    rows = []
    n_ep = evals[0]["episodes"]
    for task in tasks:
        rates = [e["tasks"][task]["success_rate"] for e in evals]
        p = float(np.mean(rates))
        se = _se(rates) if len(evals) > 1 else float(np.sqrt(p * (1 - p) / n_ep))
        rows.append({"method": method, "env": task, "success_rate": p, "success_se": se,
                     "se_over": "seeds" if len(evals) > 1 else "episodes", "per_seed": rates,
                     "return_mean": float(np.mean([e["tasks"][task]["return_mean"] for e in evals])),
                     "episode_steps_mean": float(np.mean([e["tasks"][task]["steps_mean"] for e in evals])),
                     "env_steps": int(env_steps.get(task, 0)), "episodes": n_ep, "seeds": len(evals), "notes": notes})
    means = [float(np.mean([e["tasks"][t]["success_rate"] for t in tasks])) for e in evals]
    if len(evals) > 1:
        se = _se(means)
    else:   # the mean of independent binomial rates
        se = float(np.sqrt(sum(r["success_rate"] * (1 - r["success_rate"]) / n_ep for r in rows)) / len(tasks))
    speed = [e["steps_per_s"] for e in evals]
    rows.append({"method": method, "env": "MT10" if list(tasks) == list(MT10) else "mean", "success_rate": float(np.mean(means)),
                 "success_se": se, "se_over": "seeds" if len(evals) > 1 else "episodes", "per_seed": means,
                 "return_mean": float(np.mean([r["return_mean"] for r in rows])),
                 "env_steps": int(sum(env_steps.get(t, 0) for t in tasks)), "episodes": n_ep * len(tasks),
                 "seeds": len(evals), "eval_steps_per_s": float(np.mean(speed)),
                 "eval_steps": int(sum(e["eval_steps"] for e in evals)),
                 "videos": [v for e in evals for v in e.get("videos", [])], "notes": notes})
    return rows


@locks_run_dir
def run_metaworld(cfg: ControlConfig, run_dir: str, progress: bool = True) -> dict:
    """The MT10 table: expert, one multi-task MLP BC per seed, SB3 RL per task and seed (see module doc).

    Cached under RUN: ``demos/mt10.npz``, ``policies/mlp-bc/seed<k>/policy.pt``,
    ``policies/<algo>-scratch/<task>/seed<k>/model.zip``, ``rows/<method>__seed<k>.json`` (each seed's
    evaluation on every task; ``rows/<method>__seed<k>/<task>.json`` per task while it runs), so an
    interrupted run resumes from the last finished piece."""
    from rlpf.control.mt10 import ExpertPolicy, close_envs, evaluate_mt, load_or_collect_mt
    from rlpf.control.mt10_head import train_mt_head
    from rlpf.control.mt10_policies import MTBCSpec, SB3MTPolicy, train_mt_bc, train_sb3_task
    from rlpf.core.run_dir import read_json, write_json

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    tasks = list(cfg.tasks)
    video_dir = os.path.join(run_dir, "videos") if cfg.video_episodes else None
    pol_dir = os.path.join(run_dir, "policies")

    def timed(key, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - t0, 1)
        return out

    def evaluation(method: str, seed: int | None, make_policy, first: bool) -> dict:
        path = os.path.join(run_dir, "rows", f"{method}__seed{seed if seed is not None else 'none'}.json")
        cached = read_json(path)
        if cached:
            return cached
        key = f"{method}/seed{seed if seed is not None else 'none'}"
        policy = timed(f"train/{key}", make_policy)
        parts = []
        for task in tasks:   # each task's evaluation is cached too: a run stopped mid-row resumes at its task
            part_path = os.path.join(path[:-len(".json")], f"{task}.json")
            part = read_json(part_path)
            if not part:
                part = timed(f"eval/{key}", lambda: evaluate_mt(
                    policy, [task], cfg.eval_episodes, cfg.eval_seed, cfg.eval_envs, video_dir if first else None,
                    cfg.video_episodes, cfg.video_size, label=method, progress=progress))
                os.makedirs(os.path.dirname(part_path), exist_ok=True)
                write_json(part_path, part)
            parts.append(part)
        r = merge_evaluations(parts)
        r["train_seconds"] = timings.get(f"train/{key}", 0.0)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, r)
        video_errors.extend({"method": method, **e} for e in r.get("video_errors", []))
        return r

    rows, video_errors = [], []
    try:
        demos = None
        if {"mlp-bc", "head"} & set(cfg.methods):
            demos = timed("demos", lambda: load_or_collect_mt(
                os.path.join(run_dir, "demos", "mt10.npz"), tasks, cfg.demo_episodes, cfg.demo_seed,
                tuple(cfg.demo_noise_range), cfg.eval_envs, progress))
            demo_steps = {t: int(np.sum(demos["task"] == MT10.index(t))) for t in tasks}
            expert_ok = float(np.mean(demos["ep_success"]))
        if "expert" in cfg.methods:
            ev = evaluation("expert", None, ExpertPolicy, True)
            rows += _mt_rows("expert", [ev], tasks, {}, "Meta-World's scripted experts (metaworld.policies), no noise")
        if "mlp-bc" in cfg.methods:
            evals = [evaluation("mlp-bc", s, lambda s=s: train_mt_bc(
                demos, os.path.join(pol_dir, "mlp-bc", f"seed{s}"),
                MTBCSpec(cfg.bc_steps, cfg.bc_batch, cfg.bc_lr, cfg.bc_hidden, s), progress), i == 0)
                for i, s in enumerate(cfg.seeds)]
            rows += _mt_rows("mlp-bc", evals, tasks, demo_steps,
                             f"one multi-task MLP (obs + one-hot task), {cfg.demo_episodes} expert episodes per task "
                             f"(DART noise std U{tuple(cfg.demo_noise_range)}, {expert_ok:.0%} of them successful), "
                             f"{cfg.bc_steps} steps of batch {cfg.bc_batch}")
        if "sb3-scratch" in cfg.methods:
            algo = cfg.sb3_algo
            evals = [evaluation(f"{algo}-scratch", s, lambda s=s: SB3MTPolicy({
                t: timed(f"train/{algo}-scratch/{t}", lambda t=t: train_sb3_task(
                    t, algo, int(cfg.sb3_steps[t]), s, os.path.join(pol_dir, f"{algo}-scratch", t, f"seed{s}"), progress))
                for t in tasks}), i == 0) for i, s in enumerate(cfg.sb3_seeds)]
            rows += _mt_rows(f"{algo}-scratch", evals, tasks, {t: int(cfg.sb3_steps[t]) for t in tasks},
                             f"SB3 {algo.upper()} defaults, one model per task, "
                             f"{', '.join(sorted({str(cfg.sb3_steps[t]) for t in tasks}))} env steps per task")
        if "head" in cfg.methods:
            for name, spec in cfg.backbones.items():
                path, note = timed(f"backbone/{name}", lambda: prepare_backbone(name, spec, progress))
                if path is None:
                    raise ControlBackboneError(f"head-{name}: {note}")
                check_head_backbones(dataclasses.replace(cfg, backbones={name: spec}))   # a freshly made one too
                evals = [evaluation(f"head-{name}", s, lambda s=s: train_mt_head(
                    path, demos, cfg.head, os.path.join(pol_dir, f"head-{name}", f"seed{s}"),
                    BCSpec(steps=cfg.head_steps, batch=cfg.bc_batch, lr=cfg.bc_lr, seed=s), progress),
                    i == 0) for i, s in enumerate(cfg.seeds)]
                codes = f"{cfg.head.history} frames as motion codes + " if cfg.head.history else ""
                rows += _mt_rows(f"head-{name}", evals, tasks, demo_steps,
                                 f"ONE multi-task control head ({cfg.head.head}, {cfg.head.n_queries} queries, chunk "
                                 f"{cfg.head.chunk} / execute {cfg.head.execute}) on backbone {path} (prompt = the "
                                 f"world's task prompt; {codes}{cfg.head.obs_tokens} observation token(s)); "
                                 f"{'fine-tuned' if cfg.head.finetune_backbone else 'frozen'} backbone, "
                                 f"{cfg.head_steps} steps of batch {cfg.bc_batch}, same demonstrations as mlp-bc")
    finally:
        close_envs()
    report = {"benchmark": "metaworld", "table": rows, "skipped": [], "video_errors": video_errors, "success_rules": {t: "info['success'] at any step of 500" for t in tasks},
              "eval_speed": {r["method"]: r["eval_steps_per_s"] for r in rows if "eval_steps_per_s" in r},
              "timings": {**timings, "total_s": round(time.perf_counter() - t_start, 1)},
              "config": dataclasses.asdict(cfg)}
    write_json(os.path.join(run_dir, "report.json"), report)
    return report


def merge_evaluations(parts: list[dict]) -> dict:
    """``evaluate_mt`` reports of disjoint task lists (same policy, episodes, seeds) as one report."""
    out = {k: parts[0][k] for k in ("policy", "episodes", "seed", "n_envs", "success_rule")}
    out["tasks"] = {t: v for p in parts for t, v in p["tasks"].items()}
    out["success_mean"] = float(np.mean([v["success_rate"] for v in out["tasks"].values()]))
    for k in ("eval_steps", "seconds", "env_make_seconds"):
        out[k] = round(sum(p[k] for p in parts), 2) if k != "eval_steps" else int(sum(p[k] for p in parts))
    out["steps_per_s"] = round(out["eval_steps"] / max(out["seconds"], 1e-9), 1)
    out["videos"] = [v for p in parts for v in p["videos"]]
    out["video_errors"] = [e for p in parts for e in p["video_errors"]]
    return out


def format_mt_table(report: dict) -> str:
    rows = report["table"]
    tasks = list(dict.fromkeys(r["env"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["env"]): r for r in rows}
    short = [t.replace("-v3", "") for t in tasks]
    lines = [f"{'method':<14} " + " ".join(f"{s[:9]:>9}" for s in short) + f" {'env steps':>10} {'eval st/s':>9}"]
    for m in methods:
        cells = []
        for t in tasks:
            r = by.get((m, t))
            cells.append(f"{r['success_rate']:>4.2f}±{r['success_se']:.2f}" if r else f"{'-':>9}")
        mean = by.get((m, tasks[-1]), {})
        lines.append(f"{m:<14} " + " ".join(f"{c:>9}" for c in cells)
                     + f" {mean.get('env_steps', 0):>10,} {mean.get('eval_steps_per_s', 0):>9.0f}")
    return "\n".join(lines) + "\nsuccess — Meta-World's info['success'] at any step of a 500-step episode; ± standard " \
                              "error over training seeds (one seed: binomial over episodes)"
