"""``rlpf train-pose``: render the training set, train the pose network, save it (resumable).

RUN/ holds config.yaml (written once; a rerun with the same config resumes, another is refused),
dataset.npz (the rendered frames and targets, made once), checkpoint.pt (model, optimizer, step,
random state: a state dict loaded with ``weights_only=True``), and when done pose.safetensors (the
weights), pose.json (what inference needs: world, contract, input size, target normalization,
network shape) and metrics.json (held-out errors). ``max_seconds`` stops at a checkpoint so a long
training runs in chunks; the next call continues where it stopped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from rlpf.core.errors import RLPFError
from rlpf.core.run_dir import claim_run_dir, read_json, run_lock, write_json


class PoseRunError(RLPFError):
    """A pose run directory that is missing, unfinished or unreadable."""


@dataclass
class TrainPoseConfig:
    """What ``rlpf train-pose`` trains."""

    world: str = "ant"
    """World whose clips are rendered (it needs a data generator and a floating root)."""
    clips: int = 960
    """Simulated clips rendered for training (make_dataset), a tenth of them held out for metrics."""
    frames: int = 64
    """Frames per clip (a multiple of 4)."""
    corrupt_fraction: float = 0.5
    """Fraction of the clips corrupted (float, sink, levitate, skate, teleport at random amounts)."""
    reset_fraction: float = 0.5
    """Fraction of the clips simulated from the reset by scripted controllers (AntGait, SmoothRandom,
    JointServo across the joint ranges and holding the rest pose), each under its own contact model,
    friction and masses, instead of the labelled gaits (rlpf.lifting.dataset.reset_clips)."""
    seed: int = 0
    """Seeds the clips (make_dataset's seed), the randomization, the initialization and the batches."""
    input_size: int = 64
    """Network input in pixels (videos are box-resized to it)."""
    channels: tuple[int, ...] = (24, 48, 64, 96)
    """Encoder channels per stride-2 stage."""
    embed: int = 192
    """Per-frame embedding width."""
    temporal_layers: int = 3
    """Residual dilated 1-D convolutions over time (kernel 5, dilation 1, 2, 4, ...)."""
    steps: int = 3000
    """Optimizer steps (the one field a resumed run may change: train it further or finish it sooner;
    the cosine schedule then follows the new total)."""
    batch: int = 8
    """Windows per step."""
    window: int = 32
    """Frames per training window (at most frames)."""
    lr: float = 2e-3
    """Peak AdamW learning rate (cosine decay to 5 % after a 5 % warm-up)."""
    threads: int = 2
    """Torch CPU threads."""
    checkpoint_every: int = 100
    """Steps between checkpoints."""

    def __post_init__(self):
        from rlpf.core.config import check

        check(self, self.clips >= 2, "clips", self.clips, ">= 2")
        check(self, self.frames >= 4 and self.frames % 4 == 0, "frames", self.frames, "a positive multiple of 4")
        check(self, 0 <= self.corrupt_fraction <= 1, "corrupt_fraction", self.corrupt_fraction, "in [0, 1]")
        check(self, 0 <= self.reset_fraction <= 1, "reset_fraction", self.reset_fraction, "in [0, 1]")
        check(self, 16 <= self.input_size <= 256, "input_size", self.input_size, "16-256")
        self.channels = tuple(int(c) for c in self.channels)
        check(self, len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "channels", self.channels,
              "one or more positive widths")
        check(self, self.embed >= 1, "embed", self.embed, ">= 1")
        check(self, self.temporal_layers >= 0, "temporal_layers", self.temporal_layers, ">= 0")
        check(self, self.steps >= 1, "steps", self.steps, ">= 1")
        check(self, self.batch >= 1, "batch", self.batch, ">= 1")
        check(self, 2 <= self.window <= self.frames, "window", self.window, f"2-{self.frames} (frames)")
        check(self, self.lr > 0, "lr", self.lr, "> 0")
        check(self, self.threads >= 1, "threads", self.threads, ">= 1")
        check(self, self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, ">= 1")


def _net(cfg: TrainPoseConfig, n_targets: int):
    from rlpf.lifting.model import PoseNet

    return PoseNet(cfg.input_size, n_targets, cfg.channels, cfg.embed, cfg.temporal_layers)


def _dataset(cfg: TrainPoseConfig, run_dir: str, progress: bool) -> dict:
    from rlpf.envs.worlds import compile_world
    from tqdm import tqdm

    from rlpf.lifting.dataset import render_dataset, training_clips
    from rlpf.viz.contract import contract_for

    path = os.path.join(run_dir, "dataset.npz")
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    cw = compile_world(cfg.world)
    if not cw.floating:
        raise PoseRunError(f"world {cw.name!r} has no floating root: pose lifting covers floating-base worlds")
    t0 = time.time()
    with tqdm(total=cfg.clips, desc="simulating", unit="clip", disable=not progress, file=sys.stderr) as bar:
        clips = training_clips(cw.name, cfg.clips, cfg.seed, cfg.frames, cfg.corrupt_fraction, progress=bar.update,
                               reset_fraction=cfg.reset_fraction)
    t1 = time.time()
    with tqdm(total=len(clips), desc="rendering", unit="clip", disable=not progress, file=sys.stderr) as bar:
        data = render_dataset(clips, contract_for(cw), cfg.input_size, cfg.seed, progress=bar.update)
    data["timings"] = np.array([t1 - t0, time.time() - t1])
    tmp = path + ".tmp.npz"
    np.savez(tmp, **data)
    os.replace(tmp, path)
    return data


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng([seed, 5]).permutation(n)
    k = max(1, n // 10) if n >= 4 else 0
    return idx[k:], idx[:k]


def train_pose(cfg: TrainPoseConfig, run_dir: str, progress: bool = True, max_seconds: float | None = None) -> dict:
    """Train (or resume) the pose run in ``run_dir``; returns {"done", "step", "metrics", "timings"}."""
    with run_lock(run_dir):
        claim_run_dir(cfg, run_dir, may_change=("steps",))   # train a run further, or stop it sooner
        return _train(cfg, run_dir, progress, max_seconds)


def _train(cfg, run_dir, progress, max_seconds):
    import torch
    from rlpf.envs.worlds import compile_world
    from tqdm import tqdm

    from rlpf.viz.contract import contract_for

    t_start = time.time()
    torch.set_num_threads(cfg.threads)
    data = _dataset(cfg, run_dir, progress)
    frames, targets = data["frames"], data["targets"]
    train_idx, val_idx = _split(len(frames), cfg.seed)
    mean = targets[train_idx].reshape(-1, targets.shape[-1]).mean(0)
    std = targets[train_idx].reshape(-1, targets.shape[-1]).std(0) + 1e-4
    torch.manual_seed(cfg.seed)
    net = _net(cfg, targets.shape[-1])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    step = 0
    rng = np.random.default_rng([cfg.seed, 11])
    if os.path.exists(ckpt_path):
        try:
            ck = torch.load(ckpt_path, weights_only=True)
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optim"])
            step = int(ck["step"])
            rng.bit_generator.state = json.loads(ck["rng"])
        except Exception as e:  # noqa: BLE001 - a damaged checkpoint is named, not a traceback
            raise PoseRunError(f"{ckpt_path}: unreadable checkpoint ({type(e).__name__}: {e}); remove it to restart") from None
    X = torch.from_numpy(frames)                       # uint8 [N, T, S, S, 3]
    Y = torch.from_numpy((targets - mean) / std).float()
    warm = max(1, cfg.steps // 20)

    def lr_at(s):
        if s < warm:
            return cfg.lr * (s + 1) / warm
        u = (s - warm) / max(1, cfg.steps - warm)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * u)))

    def save(s):
        state = {"model": net.state_dict(), "optim": opt.state_dict(), "step": s,
                 "rng": json.dumps(rng.bit_generator.state)}
        torch.save(state, ckpt_path + ".tmp")
        os.replace(ckpt_path + ".tmp", ckpt_path)

    t_train = time.time()
    stopped = False
    net.train()
    with tqdm(total=cfg.steps, initial=step, desc="training pose", unit="step", disable=not progress,
              file=sys.stderr) as bar:
        while step < cfg.steps:
            if max_seconds is not None and time.time() - t_start > max_seconds:
                stopped = True
                break
            clips = rng.choice(train_idx, cfg.batch)
            starts = rng.integers(0, X.shape[1] - cfg.window + 1, cfg.batch)
            xb = torch.stack([X[c, s:s + cfg.window] for c, s in zip(clips, starts)])
            yb = torch.stack([Y[c, s:s + cfg.window] for c, s in zip(clips, starts)])
            xb = xb.permute(0, 1, 4, 2, 3).float() / 255.0
            for g in opt.param_groups:
                g["lr"] = float(lr_at(step))  # a numpy float would not load with weights_only=True
            out = net(xb)
            loss = 0.0
            for m, lv in (("mean", "logvar"), ("frame_mean", "frame_logvar")):
                err = out[m] - yb
                loss = loss + (err ** 2).mean() \
                    + 0.05 * (0.5 * (out[lv] + err.detach() ** 2 * torch.exp(-out[lv]))).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save(step)
    if stopped:
        save(step)
    timings = read_json(os.path.join(run_dir, "timings.json"))
    timings["train_s"] = timings.get("train_s", 0.0) + (time.time() - t_train)
    if "timings" in data:
        timings["simulate_s"], timings["render_s"] = (float(x) for x in data["timings"])
    write_json(os.path.join(run_dir, "timings.json"), timings)
    if stopped:
        return {"done": False, "step": step, "metrics": None, "timings": timings}
    # the finished run: weights, what inference needs, held-out errors
    from safetensors.torch import save_file

    net.eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, os.path.join(run_dir, "pose.safetensors"))
    cw = compile_world(cfg.world)
    contract = contract_for(cw)
    meta = {"world": cw.name, "nq": int(cw.model.nq), "input_size": cfg.input_size, "n_targets": int(targets.shape[-1]),
            "channels": list(cfg.channels), "embed": cfg.embed, "temporal_layers": cfg.temporal_layers,
            "mean": mean.tolist(), "std": std.tolist(), "contract": dataclasses.asdict(contract),
            "steps": cfg.steps}
    write_json(os.path.join(run_dir, "pose.json"), meta)
    metrics = _held_out(net, X, targets, val_idx, mean, std, int(cw.model.nq))
    write_json(os.path.join(run_dir, "metrics.json"), metrics)
    return {"done": True, "step": step, "metrics": metrics, "timings": timings}


def _held_out(net, X, targets, val_idx, mean, std, nq) -> dict:
    """Per-frame errors of the temporal head on the held-out rendered clips (no odometry)."""
    import torch

    from rlpf.lifting.targets import layout

    if not len(val_idx):
        return {"n_clips": 0}
    with torch.no_grad():
        pred = net(X[val_idx].permute(0, 1, 4, 2, 3).float() / 255.0)["mean"].numpy() * std + mean
    true = targets[val_idx]
    L = layout(nq)
    return {"n_clips": len(val_idx),
            "root_height_cm": float(np.abs(pred[..., L["z"]] - true[..., L["z"]]).mean() * 100),
            "joint_deg": float(np.degrees(np.abs(pred[..., L["joints"]] - true[..., L["joints"]]).mean())),
            "velocity_cm_per_frame": float(np.linalg.norm(pred[..., L["vel"]] - true[..., L["vel"]], axis=-1).mean() * 100)}
