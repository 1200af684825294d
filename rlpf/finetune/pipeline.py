"""``rlpf train``: one experiment, from nothing to a before/after report, every step cached.

    data -> pretraining (the base world model)   rlpf.worldmodel.pretrain, cached in base_run
         -> trackers (the learned one trained)    rlpf.policies.learned_tracker, cached in tracker_run
         -> fine-tuning by `method`               rlpf (rlpf.finetune.grpo, TRL GRPOTrainer) | sft_filter | base
         -> evaluation of base and fine-tuned     rlpf.finetune.report: report.json, report.md, samples, videos

The run directory holds config.yaml, model/ (the fine-tuned world model), grpo/ (TRL checkpoints),
tb/ (TensorBoard), samples/*.npz, videos/*.mp4, report.json and report.md. Running the same command
again resumes where it stopped; a different config for the same directory is refused.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from rlpf.core.config import check, check_weights
from rlpf.core.run_dir import run_lock
from rlpf.finetune.grpo import GRPOSettings
from rlpf.finetune.sft_filter import SFTFilterSettings
from rlpf.core.threads import configure_threads

METHODS = ("rlpf", "sft_filter", "base")
EVALUATION_FIELDS = ("eval_trackers", "eval_per_prompt", "eval_seed", "videos", "workers")
"""Fields that only change the evaluation: a finished run given new values is re-evaluated, not retrained."""
INTRODUCED_FIELDS = {"grpo.overlap_scoring": False, "backend": "local", "backend_address": None, "worlds": []}
"""Fields added after runs were made, with what those runs did (they scored each batch in turn)."""


@dataclass
class RLPFConfig:
    """One fine-tuning experiment and its evaluation."""

    method: str = "rlpf"
    """rlpf (GRPO on physical feedback), sft_filter (fine-tune on own samples that track) or base (no
    fine-tuning: the base model's report)."""
    world: str = "ant"
    """World of the base model (a one-world model; see ``worlds``)."""
    worlds: list[str] = field(default_factory=list)
    """Several worlds: the base is a multi-world model over them (``rlpf pretrain`` with ``worlds``, e.g.
    experiments/configs/metaworld_mt10.yaml), fine-tuned on all their prompts at once, each clip scored
    in its own world with that world's tracker, evaluated per world (report.json ``worlds``) and
    averaged over worlds (``before`` / ``after``); ``world`` is then unused. Method rlpf or base, trackers
    by name (a trained tracker is one world's)."""
    pretrain_config: str = "experiments/configs/ant.yaml"
    """Pretraining config of the base model (run when base_run holds no finished model)."""
    base_run: str = "runs/ant"
    """Pretraining run directory of the base model (data, model/, evaluator/, heldout.npz)."""
    tracker: str = "pd"
    """Tracker whose success is rewarded (rlpf) or filtered on (sft_filter): pd, learned (the one in
    tracker_run, trained there if missing) or a trained tracker's run directory."""
    eval_trackers: list[str] = field(default_factory=lambda: ["pd", "learned"])
    """Trackers the report measures success with (pd, learned or run directories); the reward tracker
    is always measured and comes first."""
    tracker_config: str = "experiments/configs/tracker_ant.yaml"
    """Training config of the learned tracker (trained when tracker_run holds none)."""
    tracker_run: str = "runs/tracker-ant"
    """Run directory of the learned tracker."""
    weights: dict[str, float] = field(default_factory=lambda: {"tracking_success": 10.0, "alignment": 2.0})
    """Reward term -> weight: the RLPF paper's 10 x tracking success + 2 x alignment by default. Any
    reward plugin may be weighted (physics terms, e.g. skate_mps: -1); every term is logged. The reward
    is exactly the listed terms: weights={...} replaces the dict, weights.NAME=W sets one entry."""
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    """The GRPO update (method rlpf)."""
    sft: SFTFilterSettings = field(default_factory=SFTFilterSettings)
    """The SFT-Filter baseline (method sft_filter)."""
    eval_per_prompt: int = 32
    """Clips sampled per prompt for the before/after evaluation."""
    eval_seed: int = 1234
    """Sampling seed of the evaluation (the same for base and fine-tuned)."""
    videos: int = 3
    """Prompts rendered as generated-vs-tracked mp4s, before and after (0: none)."""
    workers: int = 2
    """Processes that score and track clips in parallel."""
    backend: str = "local"
    """Where the reward's scoring workers run: local (processes of this machine) or ray (one Ray actor
    per worker, rlpf.core.backend); the rewards do not depend on it."""
    backend_address: str | None = None
    """Ray cluster of the ray backend (host:port, auto, ray://host:port); default RAY_ADDRESS, else a
    local Ray is started."""
    seed: int = 0
    """Seed of fine-tuning."""
    threads: int = 1
    """torch threads in the main process (1 leaves the other core to the scoring workers)."""

    def __post_init__(self):
        check(self, self.method in METHODS, "method", self.method, f"one of {', '.join(METHODS)}")
        if isinstance(self.eval_trackers, str):
            self.eval_trackers = [self.eval_trackers]
        check(self, len(set(self.worlds)) == len(self.worlds), "worlds", self.worlds, "a list of distinct worlds")
        if self.worlds:
            check(self, self.method in ("rlpf", "base"), "method", self.method,
                  "rlpf or base with several worlds (SFT-Filter fine-tunes one world's model)")
            for name, specs in (("tracker", [self.tracker]), ("eval_trackers", self.eval_trackers)):
                for spec in specs:
                    check(self, spec != "learned" and not (isinstance(spec, str) and os.path.isdir(spec)), name, spec,
                          "a tracker by name (pd) with several worlds: a learned tracker is one world's")
        for name, specs in (("tracker", [self.tracker]), ("eval_trackers", self.eval_trackers)):
            for spec in specs:
                for world in self.worlds or [self.world]:
                    _check_tracker(name, spec, world)
        check_weights(self, self.weights)
        check(self, self.eval_per_prompt >= 1, "eval_per_prompt", self.eval_per_prompt, ">= 1")
        check(self, self.workers >= 0, "workers", self.workers, ">= 0 (0: in this process)")
        from rlpf.core.backend import BACKENDS

        check(self, self.backend in BACKENDS, "backend", self.backend, f"one of {', '.join(BACKENDS)}")
        check(self, self.backend_address is None or self.backend == "ray", "backend_address", self.backend_address,
              "null unless backend is ray (the local backend runs on this machine)")
        check(self, self.videos >= 0, "videos", self.videos, ">= 0")
        check(self, self.threads >= 0, "threads", self.threads, ">= 0")

    def trackers(self) -> list[str]:
        """Evaluation trackers, the reward tracker first."""
        return list(dict.fromkeys([self.tracker, *self.eval_trackers]))

    def tracker_spec(self, name: str) -> str:
        return self.tracker_run if name == "learned" else name


def _check_tracker(field_name: str, spec, world: str) -> None:
    """A registered tracker's name (``pd``, ``learned`` - trained into tracker_run when missing - or one
    of ``rlpf.register_tracker`` / an ``rlpf.trackers`` entry point) or a trained tracker's run
    directory, which is loaded here exactly as ``rlpf score --tracker RUN_DIR`` loads it: a directory
    that holds no tracker, or one for another world, is refused before any work. Raises TrackerError."""
    from rlpf.judge.tracking import TrackerError, check_tracker_spec, load_tracker

    try:
        check_tracker_spec(spec)
    except TrackerError as e:
        raise TrackerError(f"{field_name}: {e}") from None
    if not (isinstance(spec, str) and os.path.isdir(spec)):
        return  # a registered name: its factory runs when the tracker is needed
    try:
        load_tracker(spec, world)
    except TrackerError as e:
        raise TrackerError(f"{field_name}: {e}") from None


def _say(msg: str) -> None:
    print(f"[rlpf] {msg}", file=sys.stderr, flush=True)


def ensure_base(cfg: RLPFConfig, progress: bool) -> str:
    """The base model's pretraining run (pretrained now if unfinished); returns its directory."""
    from rlpf.core.config import load_config
    from rlpf.worldmodel.pretrain import PretrainConfig, pretrain

    evaluators = "evaluators" if cfg.worlds else "evaluator"   # a multi-world run has one per world
    if os.path.isfile(os.path.join(cfg.base_run, "model", "world_model.json")) and \
            os.path.isdir(os.path.join(cfg.base_run, evaluators)):
        return cfg.base_run
    _say(f"pretraining the base model into {cfg.base_run} ({cfg.pretrain_config})")
    pcfg = load_config(PretrainConfig, cfg.pretrain_config)
    if (pcfg.worlds or pcfg.world) != (cfg.worlds or cfg.world):
        raise ValueError(f"pretrain_config {cfg.pretrain_config} is for {pcfg.worlds or pcfg.world}, this experiment "
                         f"for {cfg.worlds or cfg.world}")
    pretrain(pcfg, cfg.base_run, progress=progress)
    return cfg.base_run


def ensure_trackers(cfg: RLPFConfig, progress: bool) -> dict:
    """{name: Tracker} for every tracker the experiment uses (training the learned one if needed);
    with several worlds {world: {name: Tracker}}."""
    from rlpf.judge.tracking import load_tracker

    if cfg.worlds:  # trackers by name only (RLPFConfig): each world's own
        return {w: {name: load_tracker(name, w) for name in cfg.trackers()} for w in cfg.worlds}

    if "learned" in cfg.trackers():
        from rlpf.core.config import load_config
        from rlpf.policies.learned_tracker import TrackerTrainConfig, train_tracker

        tcfg = load_config(TrackerTrainConfig, cfg.tracker_config)
        if tcfg.world != cfg.world:
            raise ValueError(f"tracker_config {cfg.tracker_config} is for world {tcfg.world!r}, not {cfg.world!r}")
        if not os.path.isfile(os.path.join(cfg.tracker_run, "tracker_summary.json")):
            _say(f"training the learned tracker into {cfg.tracker_run} ({cfg.tracker_config})")
        train_tracker(tcfg, cfg.tracker_run, progress=progress)
    return {name: load_tracker(cfg.tracker_spec(name), cfg.world) for name in cfg.trackers()}


def check_worlds(cfg: RLPFConfig) -> None:
    """Before any work: the base model, the pretraining and tracker configs and the trained tracker
    all belong to ``cfg.world``. A mismatch would otherwise train on clips decoded into the wrong
    body (every sample excluded, exit 0) - refused here with ConfigError naming the part."""
    import yaml

    from rlpf.core.config import ConfigError, load_config
    from rlpf.envs.worlds import get_world
    from rlpf.worldmodel.pretrain import PretrainConfig

    if cfg.worlds:
        return _check_multiworld(cfg)
    get_world(cfg.world)  # a known world, or UnknownWorldError listing them

    def refuse(what: str, world) -> None:
        raise ConfigError(f"{what} is for world {world!r}, but this experiment is for world {cfg.world!r} "
                          f"(world={cfg.world}); use a {cfg.world} one or set world=")

    def saved_world(path: str, key: str = "world"):
        try:
            with open(path) as f:
                data = yaml.safe_load(f)  # JSON is YAML
        except (OSError, yaml.YAMLError):
            return None
        return data.get(key) if isinstance(data, dict) else None

    meta = os.path.join(cfg.base_run, "model", "world_model.json")
    for path in (meta, os.path.join(cfg.base_run, "config.yaml")):
        world = saved_world(path)
        if world is not None and world != cfg.world:
            refuse(f"base_run {cfg.base_run} ({path})", world)
    pcfg = load_config(PretrainConfig, cfg.pretrain_config)
    if pcfg.world != cfg.world:
        refuse(f"pretrain_config {cfg.pretrain_config}", pcfg.world)
    if "learned" in cfg.trackers():
        from rlpf.policies.learned_tracker import TrackerTrainConfig

        tcfg = load_config(TrackerTrainConfig, cfg.tracker_config)
        if tcfg.world != cfg.world:
            refuse(f"tracker_config {cfg.tracker_config}", tcfg.world)
        world = saved_world(os.path.join(cfg.tracker_run, "config.yaml"))
        if world is not None and world != cfg.world:
            refuse(f"tracker_run {cfg.tracker_run}", world)


def _check_multiworld(cfg: RLPFConfig) -> None:
    """check_worlds for several worlds: every world known, the pretraining config and the base model
    over exactly these worlds (ConfigError naming the part otherwise)."""
    from rlpf.core.config import ConfigError, load_config
    from rlpf.envs.worlds import get_world
    from rlpf.worldmodel.multiworld import KIND, read_meta
    from rlpf.worldmodel.pretrain import PretrainConfig

    for w in cfg.worlds:
        get_world(w)
    pcfg = load_config(PretrainConfig, cfg.pretrain_config)
    if list(pcfg.worlds) != list(cfg.worlds):
        raise ConfigError(f"pretrain_config {cfg.pretrain_config} pretrains {pcfg.worlds or [pcfg.world]}, but this "
                          f"experiment is for the worlds {cfg.worlds}; use its worlds (worlds=) or another config")
    if os.path.isfile(os.path.join(cfg.base_run, "model", "world_model.json")):
        meta = read_meta(os.path.join(cfg.base_run, "model"))
        if meta.get("kind") != KIND or list(meta.get("worlds") or []) != list(cfg.worlds):
            raise ConfigError(f"base_run {cfg.base_run} holds a model of {meta.get('worlds') or meta.get('world')}, "
                              f"but this experiment is for the worlds {cfg.worlds}")


def train_rlpf(cfg: RLPFConfig, run_dir: str, progress: bool = True) -> dict | None:
    """Run the experiment into ``run_dir`` (resuming what is there, holding its run lock); returns
    the report dict.

    Launched on several processes (``accelerate launch``, ``rlpf.finetune.distributed``): the main
    process holds the lock, prepares the base model and trackers, writes every file and evaluates;
    every process steps the same model in GRPO; the others return None once training is done."""
    from rlpf.finetune import distributed

    distributed.setup()
    if distributed.world_size() > 1 and cfg.method != "rlpf":
        from rlpf.core.config import ConfigError

        raise ConfigError(f"only method rlpf (TRL's GRPOTrainer) trains across processes; run method "
                          f"{cfg.method} as one process (without accelerate launch)", "method", RLPFConfig)
    if not distributed.is_main():
        return _train_rlpf(cfg, run_dir, progress=False)
    with run_lock(run_dir):
        return _train_rlpf(cfg, run_dir, progress)


def _train_rlpf(cfg: RLPFConfig, run_dir: str, progress: bool = True) -> dict | None:
    from rlpf.core.clips import load_clips
    from rlpf.finetune import distributed
    from rlpf.worldmodel.evaluator import MotionTextEvaluator
    from rlpf.finetune.feedback import PhysicalFeedback
    from rlpf.finetune.report import compare, measure, render_videos, save_samples, write_report
    from rlpf.core.run_dir import claim_run_dir, read_json
    from rlpf.worldmodel.multiworld import load_world_model

    stored = finished_report(cfg, run_dir)
    if stored is not None:  # the same experiment, trained and evaluated already: nothing to do or write
        return stored
    claim = dict(may_change=EVALUATION_FIELDS, introduced=INTRODUCED_FIELDS)
    claim_run_dir(cfg, run_dir, write=False, **claim)  # a different config is refused before any work
    check_worlds(cfg)
    main = distributed.is_main()
    if not main:  # the main process pretrains / trains the trackers; the others then only load them
        distributed.barrier()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    base_run = ensure_base(cfg, progress)  # with the pretraining config's own thread count
    timings["pretrain_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    trackers = ensure_trackers(cfg, progress)
    timings["trackers_s"] = time.perf_counter() - t0
    # the run starts here: base model and trackers exist, so a failed start above left no config behind
    if main:
        claim_run_dir(cfg, run_dir, **claim)
        distributed.barrier()
    configure_threads(cfg.threads)
    base_model = os.path.join(base_run, "model")

    t0 = time.perf_counter()
    training: dict = {}
    if cfg.method == "rlpf":
        from rlpf.finetune.grpo import finetune, log_history

        _say(f"RLPF: GRPO for {cfg.grpo.steps} steps, reward {cfg.weights} with tracker {cfg.tracker!r}")
        with PhysicalFeedback(cfg.worlds or cfg.world, cfg.weights, cfg.tracker_spec(cfg.tracker), workers=cfg.workers,
                              backend=cfg.backend, address=cfg.backend_address) as fb:
            tuned, training = finetune(base_model, fb, cfg.grpo, run_dir, seed=cfg.seed, progress=progress)
        if not main:  # trained; the evaluation and the report are the main process's
            return None
        training.update(step_time_breakdown(log_history(run_dir)))
    elif cfg.method == "sft_filter":
        from rlpf.finetune.sft_filter import sft_filter

        _say(f"SFT-Filter: {cfg.sft.samples_per_prompt} samples per prompt, kept if tracker {cfg.tracker!r} succeeds")
        tuned, training = sft_filter(base_model, trackers[cfg.tracker], cfg.sft, run_dir, seed=cfg.seed,
                                     workers=cfg.workers, progress=progress)
    else:
        tuned = load_world_model(base_model)
    timings["finetune_s"] = time.perf_counter() - t0
    if training.get("resumed") == "finished":
        training = {**read_json(os.path.join(run_dir, "report.json")).get("training", {}), **training}

    t0 = time.perf_counter()
    _say(f"evaluating base and {cfg.method} ({cfg.eval_per_prompt} clips per prompt, trackers {cfg.trackers()})")
    base = load_world_model(base_model)
    samples, videos, video_errors = {}, [], []  # a video that cannot be made is an entry here, never a lost run
    per_world = {}
    for world, label, evaluator_dir, heldout_file in _evaluation_parts(cfg, base_run):
        evaluator = MotionTextEvaluator.load(evaluator_dir)
        heldout = load_clips(heldout_file)
        world_trackers = trackers[world] if cfg.worlds else trackers
        models = {"base": base, cfg.method: tuned}
        if cfg.worlds:
            models = {k: m.view(world) for k, m in models.items()}
        measured = {}
        for name, model in models.items():
            measured[name] = measure(model, evaluator, heldout, world_trackers, cfg.eval_per_prompt, cfg.eval_seed,
                                     workers=cfg.workers or None)
            samples[f"{name}{label}"] = save_samples(run_dir, f"{name}{label}", measured[name][1])
            if cfg.videos and (name == "base" or cfg.method != "base") and not video_errors:
                videos += render_videos(run_dir, f"{name}{label}", measured[name][1], world_trackers[cfg.tracker],
                                        cfg.videos, errors=video_errors)
        per_world[world] = {"before": measured["base"][0], "after": measured[cfg.method][0]}
        per_world[world]["change"] = compare(per_world[world]["before"], per_world[world]["after"])
    timings["evaluate_s"] = time.perf_counter() - t0
    if cfg.worlds:
        before, after = (mean_over_worlds([r[k] for r in per_world.values()]) for k in ("before", "after"))
    else:
        before, after = per_world[cfg.world]["before"], per_world[cfg.world]["after"]

    report = {"method": cfg.method, "world": cfg.world if not cfg.worlds else "several", "reward_tracker": cfg.tracker,
              "eval_trackers": cfg.trackers(),
              "weights": cfg.weights, "n_per_prompt": cfg.eval_per_prompt, "seed": cfg.eval_seed,
              "evaluation": evaluation_settings(cfg),
              "before": before, "after": after, "change": compare(before, after), "training": training,
              "timings": {k: round(v, 1) for k, v in timings.items()},
              "samples": {k: os.path.relpath(v, run_dir) for k, v in samples.items()}, "videos": videos,
              "video_errors": video_errors}
    if cfg.worlds:
        report["worlds"] = per_world
    write_report(run_dir, report)
    return report


def _evaluation_parts(cfg: RLPFConfig, base_run: str) -> list[tuple[str, str, str, str]]:
    """(world, sample / video label suffix, evaluator directory, held-out clips) per evaluated world:
    the one world's RUN/evaluator and RUN/heldout.npz, or each world's RUN/evaluators/<stem> and
    RUN/heldout/<stem>.npz of a multi-world pretraining run."""
    if not cfg.worlds:
        return [(cfg.world, "", os.path.join(base_run, "evaluator"), os.path.join(base_run, "heldout.npz"))]
    from rlpf.envs.worlds import file_stem

    return [(w, f"-{file_stem(w)}", os.path.join(base_run, "evaluators", file_stem(w)),
             os.path.join(base_run, "heldout", f"{file_stem(w)}.npz")) for w in cfg.worlds]


def mean_over_worlds(metrics: list[dict]) -> dict:
    """Every number the worlds' metrics all have, averaged over the worlds (each world counts once,
    whatever its prompt count); ``n_clips`` summed."""
    import numpy as np

    keys = [k for k, v in metrics[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and all(isinstance(m.get(k), (int, float)) for m in metrics)]
    out = {k: round(float(np.mean([m[k] for m in metrics])), 4) for k in keys}
    out["n_clips"] = int(sum(m.get("n_clips", 0) for m in metrics))
    return out


def evaluation_settings(cfg: RLPFConfig) -> dict:
    """The EVALUATION_FIELDS of ``cfg`` as JSON has them: report.json records what it was made with."""
    import json

    return json.loads(json.dumps({name: getattr(cfg, name) for name in EVALUATION_FIELDS}))


def finished_report(cfg: RLPFConfig, run_dir: str) -> dict | None:
    """RUN's report when RUN holds this very experiment (the same RUN/config.yaml), trained and
    evaluated with ``cfg``'s evaluation fields; None when anything is left to do (or the config
    differs: refused by the caller). A report that does not record its evaluation fields is redone."""
    from rlpf.core.run_dir import config_changes, read_json

    if not os.path.isfile(os.path.join(run_dir, "config.yaml")) or config_changes(cfg, run_dir, INTRODUCED_FIELDS):
        return None
    report = read_json(os.path.join(run_dir, "report.json"))
    trained = cfg.method == "base" or os.path.isfile(os.path.join(run_dir, "model", "world_model.json"))
    if trained and report.get("method") == cfg.method and report.get("evaluation") == evaluation_settings(cfg):
        return report
    return None


def step_time_breakdown(history: list[dict]) -> dict:
    """Mean seconds per optimizer step spent generating, scoring (decode + physics + tracking: the time
    the step waits for rewards; scored ahead, only what the workers have not finished during the
    previous update) and updating (over every logged step: generation and scoring happen once per
    generated batch, updates every step)."""
    import numpy as np

    keys = ("time/step_s", "time/generation_s", "time/scoring_s", "time/update_s")
    rows = [h for h in history if all(k in h for k in keys)]
    if not rows:
        return {}
    mean = {k: float(np.mean([float(h[k]) for h in rows])) for k in keys}
    total = mean["time/step_s"] or float("nan")
    return {"step_s": round(total, 3), "generation_s": round(mean["time/generation_s"], 3),
            "scoring_s": round(mean["time/scoring_s"], 3), "update_s": round(mean["time/update_s"], 3),
            "scoring_fraction": round(mean["time/scoring_s"] / total, 3)}
