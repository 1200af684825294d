"""``rlpf pixel``: a pixel-video world model of one world, aligned with RLPF through pose lifting.

    pose lifter (rlpf train-pose; trained into ``pose_run`` when missing)
      -> data: simulated, prompt-labelled clips (half with physical artifacts: float, sink, skate) rendered
               under the video contract and box-resized to the frame tokenizer's size      RUN/data.npz
      -> frame tokenizer (FSQ autoencoder over the videos)                                 RUN/frame_tokenizer/
      -> base model: a causal LM over the videos' frame codes                              RUN/base/
      -> RLPF: TRL GRPO on the lifted clips' tracking success and prompt alignment         RUN/model/, RUN/grpo/
      -> report: base and RLPF model measured alike (rlpf.videowm.report)                  RUN/report.{json,md}, RUN/videos/

Every stage is cached in RUN and resumes where it stopped (the training stages from checkpoints);
the config is written once (config.yaml) and a different one for the same RUN is refused.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from rlpf.core.config import check, check_weights
from rlpf.core.run_dir import claim_run_dir, read_json, run_lock, write_json
from rlpf.finetune.grpo import GRPOSettings
from rlpf.videowm.frame_tokenizer import FrameTokenizerConfig
from rlpf.worldmodel.model import LMConfig


def _pixel_grpo() -> GRPOSettings:
    # each sample costs a decode, a lift (3 s for a generated 64-frame video on this CPU) and a tracked
    # replay: groups of 4, 36 samples per generated batch, 6 batches
    return GRPOSettings(steps=24, prompts_per_step=9, num_generations=4, learning_rate=3e-4, beta=0.02, save_steps=4)


def _pixel_weights() -> dict[str, float]:
    # tracking success and alignment weighted alike: with the RLPF paper's 10 : 2 the group-relative
    # advantage of a lifted video was almost all tracking and command accuracy fell (0.28 -> 0.22)
    return {"tracking_success": 10.0, "alignment": 10.0}


@dataclass
class PixelConfig:
    """One pixel world model experiment (``rlpf pixel``): data, frame tokenizer, LM, RLPF, report."""

    world: str = "ant"
    """World (it needs a data generator, a video contract and a pose run)."""
    pose_run: str = "runs/pose-ant"
    """Pose lifting run (rlpf train-pose) that turns the model's videos into clips; trained with its
    default config when it holds no finished run."""
    data_n: int = 600
    """Simulated clips rendered for training (a tenth held out: clean renders the video FID compares with)."""
    frames: int = 64
    """Frames per video (a multiple of tokenizer.downsample)."""
    data_seed: int = 0
    """Seed of the simulated clips."""
    artifacts: float = 0.5
    """Fraction of the training clips given a physical artifact before rendering (the base model's errors)."""
    artifact_kinds: list[str] = field(default_factory=lambda: ["float", "sink", "skate"])
    """Artifact kinds (rlpf.data.motion_data.add_artifacts)."""
    tokenizer: FrameTokenizerConfig = field(default_factory=FrameTokenizerConfig)
    """Frame tokenizer shape."""
    tokenizer_steps: int = 1500
    """Frame tokenizer optimizer steps."""
    tokenizer_batch: int = 4
    """Video windows per tokenizer step."""
    tokenizer_window: int = 16
    """Frames per tokenizer training window (a multiple of tokenizer.downsample)."""
    tokenizer_lr: float = 2e-3
    """Frame tokenizer peak learning rate (cosine decay)."""
    lm: LMConfig = field(default_factory=LMConfig)
    """Size of the causal LM."""
    lm_steps: int = 1500
    """LM optimizer steps."""
    lm_batch: int = 32
    """Sequences per LM step."""
    lm_lr: float = 1e-3
    """LM peak learning rate."""
    grpo: GRPOSettings = field(default_factory=_pixel_grpo)
    """The RLPF update (as ``rlpf train``'s grpo.*)."""
    tracker: str = "pd"
    """Tracker whose success on the lifted clips is rewarded and reported."""
    weights: dict[str, float] = field(default_factory=_pixel_weights)
    """Reward term -> weight (as ``rlpf train``'s weights; weights.NAME=W sets one entry)."""
    eval_per_prompt: int = 10
    """Generated videos per prompt in the report."""
    eval_seed: int = 1234
    """Sampling seed of the report (the same for the base and the RLPF model)."""
    videos: int = 3
    """Prompts whose first generated video is written for each model (0: none)."""
    workers: int = 2
    """Processes that score and track (0: in this process)."""
    threads: int = 2
    """Torch CPU threads."""
    seed: int = 0
    """Seed of the split, artifacts, initializations, batches and RLPF."""
    log_every: int = 25
    """Steps between log lines / TensorBoard points of the pretraining stages."""
    ckpt_every: int = 200
    """Steps between pretraining checkpoints."""

    def __post_init__(self):
        ds = self.tokenizer.downsample
        for name in ("data_n", "tokenizer_steps", "tokenizer_batch", "lm_steps", "lm_batch", "eval_per_prompt",
                     "threads", "log_every", "ckpt_every"):
            check(self, getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        check(self, self.data_n >= 20, "data_n", self.data_n, ">= 20 (a tenth is held out, and the video FID needs two)")
        check(self, self.frames >= ds and self.frames % ds == 0, "frames", self.frames, f"a positive multiple of {ds}")
        check(self, self.tokenizer_window % ds == 0 and ds <= self.tokenizer_window <= self.frames, "tokenizer_window",
              self.tokenizer_window, f"a multiple of {ds}, at most frames ({self.frames})")
        check(self, 0 <= self.artifacts <= 1, "artifacts", self.artifacts, "a fraction in [0, 1]")
        check(self, self.tokenizer_lr > 0, "tokenizer_lr", self.tokenizer_lr, "> 0")
        check(self, self.lm_lr > 0, "lm_lr", self.lm_lr, "> 0")
        check(self, self.videos >= 0, "videos", self.videos, ">= 0")
        check(self, self.workers >= 0, "workers", self.workers, ">= 0")
        check_weights(self, self.weights)
        from rlpf.rewards.registry import RewardError, get_reward

        for name in self.weights:   # now, not after the pretraining stages (tens of minutes) have run
            try:
                get_reward(name)
            except RewardError as e:
                check(self, False, f"weights.{name}", name, f"a reward term ({e})")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_pixel(cfg: PixelConfig, run_dir: str, progress: bool = True) -> dict:
    """Run (or resume) the experiment in ``run_dir``; returns the report."""
    with run_lock(run_dir):
        claim_run_dir(cfg, run_dir)
        return _run(cfg, run_dir, progress)


def _run(cfg: PixelConfig, run_dir: str, progress: bool) -> dict:
    import torch

    from rlpf.finetune.feedback import PhysicalFeedback
    from rlpf.finetune.grpo import finetune
    from rlpf.judge.tracking import load_tracker
    from rlpf.videowm.report import measure_videos, write_pixel_report, write_videos
    from rlpf.worldmodel.multiworld import load_world_model

    torch.set_num_threads(cfg.threads)
    timings = read_json(os.path.join(run_dir, "timings.json"))

    def timed(name, fn):
        t0 = time.time()
        out = fn()
        if name not in timings:
            timings[name] = round(time.time() - t0, 1)
            write_json(os.path.join(run_dir, "timings.json"), timings)
        return out

    lifter = timed("pose_s", lambda: ensure_pose(cfg, progress))
    data = timed("data_s", lambda: ensure_data(cfg, run_dir, progress))
    tok = timed("frame_tokenizer_s", lambda: ensure_frame_tokenizer(cfg, run_dir, data, progress))
    base_dir = os.path.join(run_dir, "base")
    timed("lm_s", lambda: ensure_base(cfg, run_dir, data, tok, lifter, progress))
    heldout = data["videos"][data["heldout"]]
    prompts = sorted(set(data["prompts"].tolist()))
    trackers = {cfg.tracker: load_tracker(cfg.tracker, cfg.world)}

    def evaluate(name, wm):
        path = os.path.join(run_dir, "eval", f"{name}.json")
        if os.path.exists(path):
            return read_json(path)
        _say(f"measuring the {name} model ({cfg.eval_per_prompt} videos per prompt)")
        metrics, videos, clips = measure_videos(wm, prompts, cfg.eval_per_prompt, cfg.eval_seed, trackers, heldout,
                                                cfg.workers)
        metrics["videos"] = write_videos(run_dir, name, wm, videos, clips, cfg.videos)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, metrics)
        return metrics

    before = timed("eval_base_s", lambda: evaluate("base", load_world_model(base_dir)))
    with PhysicalFeedback(cfg.world, cfg.weights, tracker=cfg.tracker, workers=cfg.workers) as feedback:
        wm, summary = timed("rlpf_s", lambda: finetune(base_dir, feedback, cfg.grpo, run_dir, seed=cfg.seed,
                                                       prompts=prompts, progress=progress))
    after = timed("eval_rlpf_s", lambda: evaluate("rlpf", wm))
    report = {"world": cfg.world, "weights": cfg.weights, "before": before, "after": after,
              "delta": {k: round(after[k] - before[k], 4) for k in before
                        if isinstance(before[k], (int, float)) and isinstance(after.get(k), (int, float))},
              "training": summary, "timings": timings,
              "pretraining": read_json(os.path.join(run_dir, "pretraining.json"))}
    write_pixel_report(run_dir, report)
    return report


def ensure_pose(cfg: PixelConfig, progress: bool):
    from rlpf.lifting.inference import PoseLifter
    from rlpf.lifting.training import TrainPoseConfig, train_pose

    if not os.path.isfile(os.path.join(cfg.pose_run, "pose.safetensors")):
        _say(f"training the pose lifter into {cfg.pose_run} (rlpf train-pose --world {cfg.world})")
        train_pose(TrainPoseConfig(world=cfg.world), cfg.pose_run, progress=progress)
    lifter = PoseLifter.load(cfg.pose_run)
    if lifter.world != cfg.world:
        from rlpf.core.config import ConfigError

        raise ConfigError(f"pose_run {cfg.pose_run} lifts world {lifter.world!r}, not {cfg.world!r}")
    return lifter


def ensure_data(cfg: PixelConfig, run_dir: str, progress: bool) -> dict:
    """RUN/data.npz: videos uint8 [N, T, S, S, 3], prompts [N], sources [N], heldout (indices of
    clean held-out clips) and train (indices of the training clips, artifacts included)."""
    from tqdm import tqdm

    from rlpf.data.motion_data import add_artifacts, make_dataset
    from rlpf.lifting.frames import resize
    from rlpf.viz.contract import contract_for
    from rlpf.worldmodel.pretrain import split

    path = os.path.join(run_dir, "data.npz")
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    with tqdm(total=cfg.data_n, desc=f"simulating {cfg.world} clips", unit="clip", disable=not progress,
              file=sys.stderr) as bar:
        clips = make_dataset(cfg.world, cfg.data_n, seed=cfg.data_seed, frames=cfg.frames, progress=bar.update)
    for c in clips:
        c.qpos = c.qpos[:cfg.frames]
    train, held = split(clips, 0.1, cfg.seed)
    mixed = add_artifacts(train, cfg.artifacts, tuple(cfg.artifact_kinds) or None, seed=cfg.seed) if cfg.artifacts else train
    every = mixed + held
    S = cfg.tokenizer.size
    videos = np.zeros((len(every), cfg.frames, S, S, 3), np.uint8)
    with contract_for(cfg.world).renderer() as r, tqdm(total=len(every), desc="rendering", unit="clip",
                                                        disable=not progress, file=sys.stderr) as bar:
        for i, c in enumerate(every):
            videos[i] = resize(r.frames(np.asarray(c.qpos)), S)
            bar.update(1)
    data = {"videos": videos, "prompts": np.array([c.prompt for c in every]),
            "sources": np.array([c.source or "" for c in every]), "fps": np.float64(clips[0].fps),
            "train": np.arange(len(mixed)), "heldout": np.arange(len(mixed), len(every))}
    tmp = path + ".tmp.npz"
    np.savez(tmp, **data)
    os.replace(tmp, path)
    return data


def ensure_frame_tokenizer(cfg: PixelConfig, run_dir: str, data: dict, progress: bool):
    """RUN/frame_tokenizer/: trained on windows of the training videos (resumable: run_stage)."""
    import torch

    from rlpf.videowm.frame_tokenizer import FrameTokenizer, _to_tensor
    from rlpf.worldmodel.training import StageSpec, run_stage

    out = os.path.join(run_dir, "frame_tokenizer")
    if os.path.isdir(out):
        return FrameTokenizer.from_pretrained(out)
    torch.manual_seed(cfg.seed)
    tok = FrameTokenizer(cfg.world, cfg.tokenizer)
    videos, train = data["videos"], data["train"]
    W, T = cfg.tokenizer_window, videos.shape[1]

    def batch_fn(g):
        rows = train[torch.randint(len(train), (cfg.tokenizer_batch,), generator=g).numpy()]
        starts = (torch.randint(T // cfg.tokenizer.downsample - W // cfg.tokenizer.downsample + 1,
                                (cfg.tokenizer_batch,), generator=g) * cfg.tokenizer.downsample).numpy()
        return _to_tensor(np.stack([videos[r, s:s + W] for r, s in zip(rows, starts)]))

    spec = StageSpec("frame_tokenizer", cfg.tokenizer_steps, cfg.tokenizer_lr, warmup=min(100, cfg.tokenizer_steps // 10),
                     log_every=cfg.log_every, ckpt_every=cfg.ckpt_every, seed=cfg.seed)
    metrics = run_stage(spec, run_dir, tok, batch_fn, tok.loss, progress=progress)
    held = data["heldout"]
    with torch.no_grad():
        x = _to_tensor(videos[held[:16]])
        _, m = tok.loss(x)
    report = read_json(os.path.join(run_dir, "pretraining.json"))
    report["frame_tokenizer"] = {"train_l1": round(float(metrics.get("l1", float("nan"))), 4),
                                 "heldout_l1": round(m["l1"], 4), "heldout_body_l1": round(m["body_l1"], 4),
                                 "codebook": tok.codebook_size, "tokens_per_video": tok.n_tokens(cfg.frames),
                                 "parameters": sum(p.numel() for p in tok.parameters())}
    write_json(os.path.join(run_dir, "pretraining.json"), report)
    tmp = out + ".tmp"
    tok.save_pretrained(tmp)
    os.replace(tmp, out)
    return tok


def ensure_base(cfg: PixelConfig, run_dir: str, data: dict, tok, lifter, progress: bool) -> None:
    """RUN/base/: the LM trained on the training videos' frame codes (resumable: run_stage)."""
    from rlpf.videowm.model import VideoWorldModel
    from rlpf.worldmodel.pretrain import code_sequences, heldout_loss, train_lm

    out = os.path.join(run_dir, "base")
    if os.path.isdir(out):
        return
    codes = tok.encode_frames(data["videos"])
    prompts = data["prompts"].tolist()
    train, held = data["train"], data["heldout"]
    wm = VideoWorldModel.create(tok, lifter, sorted(set(prompts)), cfg.frames, float(data["fps"]), cfg.lm, seed=cfg.seed)
    ids, labels = code_sequences(wm, [prompts[i] for i in train], codes[train])
    val = code_sequences(wm, [prompts[i] for i in held], codes[held])
    metrics = train_lm(cfg, run_dir, wm, (ids, labels), val, progress)
    report = read_json(os.path.join(run_dir, "pretraining.json"))
    report["lm"] = {"train_loss": round(float(metrics.get("loss", float("nan"))), 4),
                    "val_loss": round(heldout_loss(wm, *val), 4), "parameters": sum(p.numel() for p in wm.lm.parameters()),
                    "vocab": len(wm.text_tokenizer), "tokens_per_video": wm.n_tokens}
    write_json(os.path.join(run_dir, "pretraining.json"), report)
    wm.save_pretrained(out)
