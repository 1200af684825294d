"""Pretraining the world model: data -> motion tokenizer -> causal LM -> evaluator, in one run directory.

    RUN/config.yaml          the full config (a second run with another config into RUN is refused)
    RUN/tokenizer/           the trained motion tokenizer
    RUN/model/               the world model (LM + text tokenizer + motion tokenizer): --checkpoint RUN
    RUN/evaluator/           the motion-text evaluator for FID / R-precision (trained on clean data)
    RUN/heldout.npz          clean held-out clips (never trained on): the reference for evaluation
    RUN/checkpoints/*.pt     resumable stage checkpoints;  RUN/tb/<stage>/  TensorBoard logs
    RUN/pretrain_summary.json  timings and quality figures

A config with ``worlds`` (several worlds, e.g. Meta-World's MT10 tasks) makes one multi-world model
(``rlpf.worldmodel.multiworld``): data, held-out clips, motion tokenizer and evaluator per world
(``RUN/heldout/<world>.npz``, ``RUN/tokenizers/<world>/``, ``RUN/evaluators/<world>/``, world names as
file stems), then ONE causal LM over every world's sequences (``RUN/model/``).

Each finished stage leaves its directory, so running the same command again skips it; an
interrupted stage resumes exactly from its last checkpoint (rlpf.worldmodel.training).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from rlpf.core.clips import Clip, clip_files, load_clips, save_clips
from rlpf.core.config import ConfigError, check
from rlpf.worldmodel.evaluator import EvaluatorConfig
from rlpf.worldmodel.tokenizer import TokenizerConfig
from rlpf.core.run_dir import claim_run_dir, locks_run_dir, read_json, write_json
from rlpf.core.threads import configure_threads
from rlpf.worldmodel.model import LMConfig


@dataclass
class PretrainConfig:
    """Everything that decides a pretraining run."""

    world: str = "ant"
    """Built-in world whose motion the model learns (ant or pusher have prompt-labelled data); not used
    when ``worlds`` is set."""
    worlds: list[str] = field(default_factory=list)
    """Several worlds (e.g. the Meta-World tasks metaworld/<task>): one multi-world model - a motion
    tokenizer per world, one LM over all of them, each sequence marked with its world. Empty: one world."""
    data_dirs: dict[str, str] = field(default_factory=dict)
    """With ``worlds``: a data directory per world (as ``data``); a world not named gets the default
    runs/data/<world>-<data_n>x<frames>-seed<data_seed> (shared with that world's one-world runs)."""
    data: str = ""
    """Directory of prompt-labelled training clips (e.g. from `rlpf data`). Empty: runs/data/<world>-<data_n>x<frames>-seed<data_seed>.
    A directory without clips is filled by simulating data_n clips the first time and reused after that."""
    data_n: int = 2000
    """Clips to simulate when the data directory is empty."""
    data_seed: int = 0
    """Seed of the simulated data."""
    frames: int = 64
    """Frames per clip (a multiple of the tokenizer's downsample); longer clips are cut to this."""
    val_fraction: float = 0.1
    """Fraction of clips held out (clean) for validation and evaluation."""
    artifacts: float = 0.5
    """Fraction of training clips given a web-video-like physical artifact (float, sink, skate, jitter),
    so the base model makes physical errors for RLPF to remove (0.5: ~60% of its samples plausible).
    0 trains on clean simulation only."""
    artifact_kinds: list[str] = field(default_factory=lambda: ["float", "sink", "skate", "jitter"])
    """Artifact kinds drawn for the corrupted fraction (see rlpf.data.motion_data.add_artifacts); empty:
    each world's own (its DataSource's artifact_kinds: object kinds for a puck, articulation kinds for a drawer)."""
    seed: int = 0
    """Seed of the split, the artifacts, initialisation and batch order."""
    threads: int = 0
    """torch threads (0: the usable cores that are free, see rlpf/core/threads.py; $RLPF_THREADS overrides)."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Motion tokenizer architecture (FSQ levels, downsample, width)."""
    tokenizer_steps: int = 3000
    """Optimizer steps for the motion tokenizer."""
    tokenizer_batch: int = 32
    """Windows per tokenizer batch."""
    tokenizer_window: int = 32
    """Frames per random training window (a multiple of downsample; 0: whole clips). Windows at every
    offset generalize better than whole clips (experiments/tokenizer_sweep.py)."""
    tokenizer_lr: float = 2e-3
    """Peak learning rate of the tokenizer (cosine decay after warmup)."""
    tokenizer_norm: str = "mixed"
    """Clips the tokenizer's per-channel normalization is fit on: mixed (the training mix, artifacts
    included) or clean (the clean training clips only). clean keeps rare artifacts (a teleport's
    100x object velocity) from inflating a channel's scale, which coarsens what its codes resolve for
    every clip (Meta-World push, measured: held-out object error 1.5 cm with mixed, 1.2 cm with clean)."""
    lm: LMConfig = field(default_factory=LMConfig)
    """Causal LM size."""
    lm_steps: int = 2000
    """Optimizer steps for the causal LM."""
    lm_batch: int = 64
    """Sequences per LM batch."""
    lm_lr: float = 1e-3
    """Peak learning rate of the LM."""
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    """Motion-text evaluator (FID / R-precision features), trained on clean clips only."""
    log_every: int = 25
    """Steps between TensorBoard points."""
    ckpt_every: int = 250
    """Steps between resumable checkpoints."""

    def __post_init__(self):
        check(self, 0 <= self.artifacts <= 1, "artifacts", self.artifacts, "a fraction in [0, 1]")
        check(self, 0 < self.val_fraction < 1, "val_fraction", self.val_fraction, "in (0, 1)")
        check(self, self.frames >= 1 and self.frames % self.tokenizer.downsample == 0, "frames", self.frames,
              f"a positive multiple of tokenizer.downsample ({self.tokenizer.downsample})")
        check(self, self.tokenizer_window >= 0 and self.tokenizer_window % self.tokenizer.downsample == 0
              and self.tokenizer_window <= self.frames, "tokenizer_window", self.tokenizer_window,
              f"a multiple of tokenizer.downsample ({self.tokenizer.downsample}), at most frames ({self.frames}); 0 = whole clips")
        for name in ("data_n", "tokenizer_steps", "lm_steps", "tokenizer_batch", "lm_batch", "log_every", "ckpt_every"):
            check(self, getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        for name in ("tokenizer_lr", "lm_lr"):
            check(self, getattr(self, name) > 0, name, getattr(self, name), "> 0")
        check(self, self.threads >= 0, "threads", self.threads, ">= 0 (0: the free cores)")
        check(self, self.tokenizer_norm in ("mixed", "clean"), "tokenizer_norm", self.tokenizer_norm, "mixed or clean")
        check(self, len(set(self.worlds)) == len(self.worlds), "worlds", self.worlds, "a list of distinct worlds")
        extra = sorted(set(self.data_dirs) - set(self.worlds))
        check(self, not extra, "data_dirs", self.data_dirs, f"keyed by worlds of `worlds` (not {extra})")

    def for_world(self, world: str) -> "PretrainConfig":
        """The one-world view of a multi-world config: ``world``'s data directory, no ``worlds``."""
        return dataclasses.replace(self, world=world, worlds=[], data_dirs={}, data=self.data_dirs.get(world, ""))

    @property
    def data_dir(self) -> str:
        from rlpf.envs.worlds import file_stem

        return self.data or os.path.join("runs", "data", f"{file_stem(self.world)}-{self.data_n}x{self.frames}-seed{self.data_seed}")


@locks_run_dir
def pretrain(cfg: PretrainConfig, run_dir: str, progress: bool = True) -> dict:
    """Run (or resume) every stage; returns the summary also written to RUN/pretrain_summary.json."""
    from rlpf.data.motion_data import add_artifacts

    configure_threads(cfg.threads)
    claim_run_dir(cfg, run_dir)
    if cfg.worlds:
        return pretrain_worlds(cfg, run_dir, progress)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    clips = load_or_make_data(cfg, progress)
    train, heldout = split(clips, cfg.val_fraction, cfg.seed)
    heldout_path = os.path.join(run_dir, "heldout.npz")
    if not os.path.exists(heldout_path):
        save_clips(heldout_path, heldout, world=cfg.world)
    mixed = add_artifacts(train, cfg.artifacts, tuple(cfg.artifact_kinds) or None, seed=cfg.seed) if cfg.artifacts else train
    timings["data_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tok, tok_report = tokenizer_stage(cfg, run_dir, mixed, heldout, progress,
                                      norm_clips=train if cfg.tokenizer_norm == "clean" else None)
    timings["tokenizer_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    lm_report = lm_stage(cfg, run_dir, tok, mixed, heldout, progress)
    timings["lm_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    evaluator_stage(cfg, run_dir, train, progress)
    timings["evaluator_s"] = time.perf_counter() - t0

    summary = {"world": cfg.world, "n_train": len(train), "n_heldout": len(heldout),
               "n_artifacts": sum("+" in c.source for c in mixed), "tokenizer": tok_report, "lm": lm_report,
               "timings": {k: round(v, 1) for k, v in timings.items()}}
    write_json(os.path.join(run_dir, "pretrain_summary.json"), summary)
    return summary


def pretrain_worlds(cfg: PretrainConfig, run_dir: str, progress: bool = True) -> dict:
    """The multi-world run (``cfg.worlds``; see the module docstring), called by ``pretrain``: per world
    its data, split, artifacts and tokenizer, then one LM over all worlds, then an evaluator per world.
    Stage times per world are in the summary's ``world_timings`` (the lead's scaling figures)."""
    from rlpf.data.motion_data import add_artifacts
    from rlpf.envs.worlds import file_stem

    timings = {"data_s": 0.0, "tokenizer_s": 0.0}
    world_timings: dict[str, dict[str, float]] = {}
    toks, tok_reports, mixed, heldouts, trains = {}, {}, {}, {}, {}
    for world in cfg.worlds:
        wcfg, stem, wt = cfg.for_world(world), file_stem(world), {}
        t0 = time.perf_counter()
        train, heldout = split(load_or_make_data(wcfg, progress), cfg.val_fraction, cfg.seed)
        heldout_path = os.path.join(run_dir, "heldout", f"{stem}.npz")
        if not os.path.exists(heldout_path):
            os.makedirs(os.path.dirname(heldout_path), exist_ok=True)
            save_clips(heldout_path, heldout, world=world)
        mixed[world] = (add_artifacts(train, cfg.artifacts, tuple(cfg.artifact_kinds) or None, seed=cfg.seed)
                        if cfg.artifacts else train)
        trains[world], heldouts[world] = train, heldout
        wt["data_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        toks[world], tok_reports[world] = tokenizer_stage(
            wcfg, run_dir, mixed[world], heldout, progress, norm_clips=train if cfg.tokenizer_norm == "clean" else None,
            out=os.path.join(run_dir, "tokenizers", stem), name=f"tokenizer_{stem}")
        wt["tokenizer_s"] = time.perf_counter() - t0
        timings["data_s"] += wt["data_s"]
        timings["tokenizer_s"] += wt["tokenizer_s"]
        world_timings[world] = wt

    t0 = time.perf_counter()
    lm_report = lm_stage_worlds(cfg, run_dir, toks, mixed, heldouts, progress)
    timings["lm_s"] = time.perf_counter() - t0

    timings["evaluator_s"] = 0.0
    for world in cfg.worlds:
        t0 = time.perf_counter()
        evaluator_stage(cfg.for_world(world), run_dir, trains[world], progress,
                        out=os.path.join(run_dir, "evaluators", file_stem(world)))
        world_timings[world]["evaluator_s"] = time.perf_counter() - t0
        timings["evaluator_s"] += world_timings[world]["evaluator_s"]

    summary = {"worlds": list(cfg.worlds), "n_train": sum(len(t) for t in trains.values()),
               "n_heldout": sum(len(h) for h in heldouts.values()),
               "n_artifacts": sum("+" in c.source for m in mixed.values() for c in m),
               "tokenizer": tok_reports, "lm": lm_report,
               "timings": {k: round(v, 1) for k, v in timings.items()},
               "world_timings": {w: {k: round(v, 1) for k, v in t.items()} for w, t in world_timings.items()}}
    write_json(os.path.join(run_dir, "pretrain_summary.json"), summary)
    return summary


def lm_stage_worlds(cfg: PretrainConfig, run_dir: str, toks: dict, train: dict[str, list[Clip]],
                    heldout: dict[str, list[Clip]], progress: bool) -> dict:
    """One causal LM over every world's sequences (batches drawn uniformly over all clips), saved with
    the worlds' tokenizers as a ``MultiWorldModel`` in RUN/model."""
    from rlpf.envs.worlds import data_source
    from rlpf.worldmodel.multiworld import MultiWorldModel

    out = os.path.join(run_dir, "model")
    if os.path.isdir(out):
        return read_json(os.path.join(run_dir, "lm_report.json"))
    prompts = {w: sorted({c.prompt for c in train[w]}) for w in cfg.worlds}
    task_prompts = {}
    for w in cfg.worlds:   # the prompt that asks for the world's task done (what a control head reads)
        asks = [p for p in getattr(data_source(w), "task_prompts", ()) if p in prompts[w]]
        task_prompts[w] = asks[0] if asks else None
    fps = {c.fps for w in cfg.worlds for c in train[w]}
    if len(fps) != 1:
        raise ConfigError(f"worlds: the worlds' clips have different frame rates {sorted(fps)}; one LM needs one")
    wm = MultiWorldModel.create(toks, prompts, cfg.frames, fps.pop(), cfg.lm, seed=cfg.seed, task_prompts=task_prompts)
    ids, labels = world_sequences(wm, train)
    val_ids, val_labels = world_sequences(wm, heldout)

    metrics = train_lm(cfg, run_dir, wm, (ids, labels), (val_ids, val_labels), progress)
    per_world = {}
    for w in cfg.worlds:
        wi, wl = world_sequences(wm, {w: heldout[w]})
        per_world[w] = round(heldout_loss(wm, wi, wl), 4)
    report = {"train_loss": round(float(metrics.get("loss", float("nan"))), 4),
              "val_loss": round(heldout_loss(wm, val_ids, val_labels), 4), "val_loss_per_world": per_world,
              "parameters": sum(p.numel() for p in wm.lm.parameters()), "vocab": len(wm.text_tokenizer),
              "prompts": [p for w in cfg.worlds for p in prompts[w]], "world_prompts": prompts,
              "task_prompts": task_prompts}
    write_json(os.path.join(run_dir, "lm_report.json"), report)
    wm.save_pretrained(out)
    return report


def world_sequences(wm, clips: dict[str, list[Clip]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded input ids and labels of every world's clips (each encoded by its world's tokenizer; the
    loss is on the motion codes and <eos>, as in ``code_sequences``)."""
    rows, lab = [], []
    for w, cs in clips.items():
        if not cs:
            continue
        codes = wm.motion_tokenizers[w].encode_qpos(np.stack([c.qpos for c in cs]), cs[0].fps)
        for c, code in zip(cs, codes):
            seq = wm.sequence_ids(c.prompt, code, w)
            n_prompt = len(seq) - len(code) - 1
            rows.append(seq)
            lab.append([-100] * n_prompt + seq[n_prompt:])
    width = max(map(len, rows))
    pad = wm.text_tokenizer.pad_token_id
    return (torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
            torch.tensor([r + [-100] * (width - len(r)) for r in lab]))


def load_or_make_data(cfg: PretrainConfig, progress: bool) -> list[Clip]:
    """The prompt-labelled training clips: loaded from cfg.data_dir, simulated into it when empty.

    Always read back from disk, so a first run and a resumed one see the clips in the same order
    (and so hold out the same ones).
    """
    from rlpf.data.motion_data import make_dataset

    directory = cfg.data_dir
    files = list(clip_files([directory])) if os.path.isdir(directory) else []
    if not files:
        from tqdm import tqdm

        with tqdm(total=cfg.data_n, desc=f"simulating {cfg.world} data", unit="clip", disable=not progress,
                  file=sys.stderr) as bar:
            clips = make_dataset(cfg.world, cfg.data_n, seed=cfg.data_seed, frames=cfg.frames, progress=bar.update)
        _save_dataset_whole(clips, directory)
        files = list(clip_files([directory]))
    clips = []
    for path in files:
        for clip in load_clips(path):
            if clip.world not in (None, cfg.world):
                raise ConfigError(f"data {path}: clips of world {clip.world!r}, but this run trains {cfg.world!r}")
            if not clip.prompt:
                raise ConfigError(f"data {clip.source}: clip has no prompt (text-to-motion needs one per clip)")
            if clip.n_frames < cfg.frames:
                raise ConfigError(f"data {clip.source}: {clip.n_frames} frames, fewer than frames={cfg.frames}")
            clip.qpos = clip.qpos[:cfg.frames]
            if clip.actions is not None:
                clip.actions = clip.actions[:cfg.frames]
            clips.append(clip)
    return clips


def _save_dataset_whole(clips: list[Clip], directory: str) -> None:
    """``save_dataset`` all or nothing. Written in place, a run killed or interrupted while it wrote
    left some of the files, and the next run - finding clips - trained on that part of the data: a
    different model than the uninterrupted run's. So the files are written into a sibling directory
    and renamed into place (atomic onto a missing or empty directory; into a directory that holds
    other files, the clip files are moved in and the manifest last)."""
    import shutil

    from rlpf.data.motion_data import save_dataset

    directory = os.path.abspath(directory)
    tmp = f"{directory}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_dataset(clips, tmp)
        if os.path.isdir(directory) and os.listdir(directory):
            for name in sorted(os.listdir(tmp), key=lambda n: n == "manifest.json"):
                os.replace(os.path.join(tmp, name), os.path.join(directory, name))
            os.rmdir(tmp)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def split(clips: list[Clip], val_fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    order = np.random.default_rng(seed).permutation(len(clips))
    n_val = max(1, int(round(val_fraction * len(clips))))
    if len(clips) - n_val < 1:
        raise ConfigError(f"only {len(clips)} clips: too few to hold out {n_val} for validation")
    return [clips[i] for i in order[n_val:]], [clips[i] for i in order[:n_val]]


def tokenizer_stage(cfg: PretrainConfig, run_dir: str, train: list[Clip], heldout: list[Clip], progress: bool,
                    norm_clips: list[Clip] | None = None, out: str | None = None, name: str = "tokenizer"):
    """cfg.world's motion tokenizer in ``out`` (default RUN/tokenizer), trained as stage ``name`` (its
    checkpoint and TensorBoard names) unless it is there already."""
    from rlpf.worldmodel.tokenizer import MotionTokenizer, reconstruction_report, train_tokenizer

    out = out or os.path.join(run_dir, "tokenizer")
    if os.path.isdir(out):
        tok = MotionTokenizer.from_pretrained(out)
        return tok, read_json(os.path.join(out, "report.json"))
    torch.manual_seed(cfg.seed)
    tok = MotionTokenizer(cfg.world, cfg.tokenizer)
    train_tokenizer(tok, train, cfg.tokenizer_steps, cfg.tokenizer_batch, cfg.tokenizer_lr,
                    window=cfg.tokenizer_window or cfg.frames, seed=cfg.seed, run_dir=run_dir, progress=progress,
                    log_every=cfg.log_every, ckpt_every=cfg.ckpt_every, norm_clips=norm_clips, name=name)
    report = reconstruction_report(tok, heldout)
    _log_final(run_dir, name, report, cfg.tokenizer_steps)
    tmp = out + ".tmp"
    tok.save_pretrained(tmp)
    write_json(os.path.join(tmp, "report.json"), report)
    os.replace(tmp, out)
    return tok, report


def lm_stage(cfg: PretrainConfig, run_dir: str, tok, train: list[Clip], heldout: list[Clip], progress: bool) -> dict:
    from rlpf.worldmodel.model import WorldModel

    out = os.path.join(run_dir, "model")
    if os.path.isdir(out):
        return read_json(os.path.join(run_dir, "lm_report.json"))
    prompts = sorted({c.prompt for c in train})
    wm = WorldModel.create(tok, prompts, cfg.frames, train[0].fps, cfg.lm, seed=cfg.seed)
    ids, labels = sequences(wm, train)
    val_ids, val_labels = sequences(wm, heldout)

    metrics = train_lm(cfg, run_dir, wm, (ids, labels), (val_ids, val_labels), progress)
    report = {"train_loss": round(float(metrics.get("loss", float("nan"))), 4),
              "val_loss": round(heldout_loss(wm, val_ids, val_labels), 4),
              "parameters": sum(p.numel() for p in wm.lm.parameters()), "vocab": len(wm.text_tokenizer),
              "prompts": prompts}
    write_json(os.path.join(run_dir, "lm_report.json"), report)
    wm.save_pretrained(out)
    return report


def train_lm(cfg: PretrainConfig, run_dir: str, wm, train: tuple, heldout: tuple, progress: bool) -> dict:
    """The LM stage's training loop, shared by one-world and multi-world models: ``cfg.lm_steps`` of
    uniformly drawn batches of the (ids, labels) ``train`` rows, the held-out loss logged every 4th
    log step; resumable through ``run_stage``'s checkpoints. Returns the last logged metrics."""
    from rlpf.worldmodel.training import StageSpec, run_stage

    ids, labels = train

    def batch_fn(g):
        idx = torch.randint(len(ids), (cfg.lm_batch,), generator=g)
        return ids[idx], labels[idx]

    def loss_fn(batch):
        x, y = batch
        return wm.lm(input_ids=x, attention_mask=(x != wm.text_tokenizer.pad_token_id).long(), labels=y).loss, {}

    def val_loss(step, metrics):
        metrics["val_loss"] = heldout_loss(wm, *heldout)
        wm.lm.train()

    spec = StageSpec("lm", cfg.lm_steps, cfg.lm_lr, warmup=min(100, cfg.lm_steps // 10),
                     weight_decay=0.01, log_every=cfg.log_every, ckpt_every=cfg.ckpt_every, seed=cfg.seed)
    return run_stage(spec, run_dir, wm.lm, batch_fn, loss_fn, progress=progress,
                     on_log=lambda s, m: val_loss(s, m) if s % (cfg.log_every * 4) == 0 or s == cfg.lm_steps else None)


def sequences(wm, clips: list[Clip]) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded input ids and labels of clips (encoded by the world model's motion tokenizer)."""
    codes = wm.motion_tokenizer.encode_qpos(np.stack([c.qpos for c in clips]), clips[0].fps)
    return code_sequences(wm, [c.prompt for c in clips], codes)


def code_sequences(wm, prompts: list[str], codes) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded input ids and labels (-100 on the prompt and padding: the loss is on motion codes)."""
    rows, lab = [], []
    for prompt, c in zip(prompts, codes):
        seq = wm.sequence_ids(prompt, c)
        n_prompt = len(seq) - len(c) - 1
        rows.append(seq)
        lab.append([-100] * n_prompt + seq[n_prompt:])
    width = max(map(len, rows))
    pad = wm.text_tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in lab])
    return ids, labels


@torch.no_grad()
def heldout_loss(wm, ids: torch.Tensor, labels: torch.Tensor) -> float:
    wm.lm.eval()
    out = wm.lm(input_ids=ids, attention_mask=(ids != wm.text_tokenizer.pad_token_id).long(), labels=labels)
    return float(out.loss)


def evaluator_stage(cfg: PretrainConfig, run_dir: str, clean_train: list[Clip], progress: bool,
                    out: str | None = None) -> None:
    from rlpf.worldmodel.evaluator import train_evaluator

    out = out or os.path.join(run_dir, "evaluator")
    if os.path.isdir(out):
        return
    evaluator = train_evaluator(clean_train, cfg.world, cfg.evaluator, progress=progress)
    tmp = out + ".tmp"
    evaluator.save(tmp)
    os.replace(tmp, out)


def _log_final(run_dir: str, stage: str, values: dict, step: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(os.path.join(run_dir, "tb", stage)) as w:
        for k, v in values.items():
            if isinstance(v, (int, float)):
                w.add_scalar(f"{stage}/heldout_{k}", v, step)
