"""Causal FSQ motion tokenizer: motion clips <-> discrete codes that a causal LM reads as tokens.

qpos -> heading-invariant features (rlpf.worldmodel.features) -> per-channel normalization -> causal
strided conv encoder (one latent vector of ``len(levels)`` channels per ``downsample`` frames) ->
finite scalar quantization (FSQ, Mentzer et al. 2023: bound each channel with tanh, round it to its
``levels[c]`` values; the code index is the mixed-radix number of those digits) -> causal conv decoder
-> features -> ``MotionFeatures.decode``, which integrates the root velocities from a start pose.

Both halves are causal, so an LM can stream: code i depends only on feature frames <= (i+1)*ds - 1,
and decoded frame t only on codes <= t // ds. (In qpos terms the encoder sees one frame further:
feature frame t holds the forward-difference root velocity from qpos frame t to t+1.)

    tok = MotionTokenizer("ant", TokenizerConfig())
    train_tokenizer(tok, clips)                          # 3000 Adam steps: ~75 s on one core
    codes = tok.encode_qpos(qpos, fps)                 # [T, nq] -> [T/ds]; [B, T, nq] -> [B, T/ds]
    qpos = tok.decode_codes(codes, fps, start=qpos[0])
    tok.save_pretrained("runs/tok"); tok = MotionTokenizer.from_pretrained("runs/tok")
"""
from __future__ import annotations

from rlpf.core.errors import CheckpointError

import contextlib
import dataclasses
import json
import math
import os
from dataclasses import dataclass

import mujoco
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rlpf.core.clips import Clip
from rlpf.worldmodel.features import MotionFeatures

CONFIG_FILE = "motion_tokenizer.json"
WEIGHTS_FILE = "motion_tokenizer.pt"
FORMAT = "rlpf.worldmodel.tokenizer/1"


@dataclass
class TokenizerConfig:
    """Architecture and loss of a MotionTokenizer (training settings are train_tokenizer's arguments)."""

    hidden: int = 64
    """Channels of every conv layer in the encoder and decoder."""
    depth: int = 2
    """Residual causal conv blocks per stage (one stage per factor 2 of downsample); dilations 1, k, k^2..."""
    kernel: int = 3
    """Temporal kernel size of the residual and output convs (>= 2; past-only padding)."""
    downsample: int = 4
    """Frames per code, a power of 2: 64 frames -> 16 codes at 4."""
    levels: tuple[int, ...] = (8, 5, 5, 5)
    """FSQ levels per latent channel (each >= 2); the codebook size is their product."""
    root_weight: float = 1.0
    """Extra loss weight on the root velocity and yaw-rate channels, whose errors decode integrates into drift."""
    drift_weight: float = 0.05
    """Loss weight on the running sum of those channels' errors (per code span): the drift itself."""
    std_floor: float = 0.01
    """Smallest per-channel std used to normalize features (constant channels would otherwise explode)."""

    def __post_init__(self):
        # also built from checkpoint JSON (TokenizerConfig(**meta["cfg"])), not only from typed configs
        from rlpf.core.config import check

        check(self, not isinstance(self.levels, (int, str)) and hasattr(self.levels, "__iter__"), "levels",
              self.levels, "a list of integers")
        self.levels = tuple(self.levels)
        for name in ("hidden", "depth", "kernel", "downsample"):
            v = getattr(self, name)
            check(self, isinstance(v, int) and not isinstance(v, bool), name, v, "an integer")
        check(self, self.hidden >= 1, "hidden", self.hidden, ">= 1")
        check(self, self.depth >= 0, "depth", self.depth, ">= 0")
        check(self, self.kernel >= 2, "kernel", self.kernel, ">= 2")
        check(self, self.downsample >= 1 and not self.downsample & (self.downsample - 1), "downsample",
              self.downsample, "a power of 2 (1, 2, 4, 8, ...)")
        check(self, bool(self.levels) and all(isinstance(l, int) and not isinstance(l, bool) and l >= 2 for l in self.levels),
              "levels", list(self.levels), "a non-empty list of integers >= 2")
        for name in ("root_weight", "drift_weight"):
            v = getattr(self, name)
            check(self, isinstance(v, (int, float)) and math.isfinite(v) and v >= 0, name, v, "finite and >= 0")
        check(self, isinstance(self.std_floor, (int, float)) and math.isfinite(self.std_floor) and self.std_floor > 0,
              "std_floor", self.std_floor, "finite and > 0")


class CausalConv1d(nn.Conv1d):
    """Conv over [B, C, T] padded on the left only: output j sees inputs <= stride*j + stride - 1."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, dilation=dilation)
        self.left = (kernel - 1) * dilation + 1 - stride

    def forward(self, x):
        return super().forward(F.pad(x, (self.left, 0)))


class ResBlock(nn.Module):
    def __init__(self, ch: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = CausalConv1d(ch, ch, kernel, dilation=dilation)
        self.mix = nn.Conv1d(ch, ch, 1)

    def forward(self, x):
        return x + self.mix(F.gelu(self.conv(F.gelu(x))))


class Repeat2(nn.Module):
    def forward(self, x):
        return x.repeat_interleave(2, dim=-1)


class FSQ(nn.Module):
    """Finite scalar quantization over the last dim; codes are mixed-radix integers of the digits."""

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.float64)
        half_l = (lv - 1) * (1 - 1e-3) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        # persistent=False: these follow from cfg.levels, so the checkpoint does not carry them
        self.register_buffer("levels", lv.float(), persistent=False)
        self.register_buffer("half_l", half_l.float(), persistent=False)
        self.register_buffer("offset", offset.float(), persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half_l).float(), persistent=False)
        self.register_buffer("half_width", (lv // 2).float(), persistent=False)
        basis = torch.cumprod(torch.tensor((1,) + tuple(levels[:-1]), dtype=torch.int64), 0)
        self.register_buffer("basis", basis, persistent=False)
        self.size = int(np.prod(levels))

    def forward(self, z):
        """(quantized in [-1, 1], code index) for latents [..., C]; gradients pass straight through the rounding."""
        bounded = torch.tanh(z + self.shift) * self.half_l - self.offset
        digits = bounded + (torch.round(bounded) - bounded).detach()
        return digits / self.half_width, self.to_index(digits)

    def to_index(self, digits):
        # even levels round to -L/2..L/2-1, odd ones to -(L-1)/2..(L-1)/2: +half_width gives 0..L-1
        d = torch.round(digits.detach() + self.half_width).long()
        return (d * self.basis).sum(-1)

    def from_index(self, idx):
        digits = (idx.unsqueeze(-1) // self.basis) % self.levels.long()
        return (digits.float() - self.half_width) / self.half_width


class MotionTokenizer(nn.Module):
    """Causal conv + FSQ autoencoder over one world's normalized motion features."""

    def __init__(self, world: str, cfg: TokenizerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TokenizerConfig()
        self.world = world
        self.features = MotionFeatures(world)
        fdim, h, k = self.features.dim, cfg.hidden, cfg.kernel
        self.register_buffer("mean", torch.zeros(fdim))
        self.register_buffer("std", torch.ones(fdim))
        stages = int(math.log2(cfg.downsample))

        def blocks():
            return [ResBlock(h, k, k ** i) for i in range(cfg.depth)]

        enc: list[nn.Module] = [CausalConv1d(fdim, h, k)]
        for _ in range(stages):
            enc += [CausalConv1d(h, h, 4, stride=2), *blocks()]
        enc += [nn.GELU(), nn.Conv1d(h, len(cfg.levels), 1)]
        dec: list[nn.Module] = [CausalConv1d(len(cfg.levels), h, k)]
        for _ in range(stages):
            dec += [*blocks(), Repeat2(), CausalConv1d(h, h, k)]
        dec += [*blocks(), nn.GELU(), CausalConv1d(h, fdim, k)]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        self.fsq = FSQ(cfg.levels)
        self.root_channels = list(self.features.integrated)
        if self.features.anchored:   # where decode anchors the scene by default (fit_start); saved with the weights
            self.register_buffer("start", torch.from_numpy(self.features.default_start.copy()))

    @property
    def codebook_size(self) -> int:
        return self.fsq.size

    @property
    def downsample(self) -> int:
        return self.cfg.downsample

    # --- normalized-feature level (torch, differentiable) ---

    def fit_normalizer(self, feats: np.ndarray) -> None:
        """Set the per-channel mean and std (floored at cfg.std_floor) from features [N, T, F] or [T, F]."""
        f = np.asarray(feats, np.float64).reshape(-1, self.features.dim)
        self.mean.copy_(torch.from_numpy(f.mean(0)))
        self.std.copy_(torch.from_numpy(np.maximum(f.std(0), self.cfg.std_floor)))

    def fit_start(self, first_frames: np.ndarray) -> None:
        """Anchor decoding without a start at the median first frame of the training clips [N, nq]
        (worlds with anchored scene coordinates: the scene the data starts in)."""
        if self.features.anchored:
            self.start.copy_(torch.from_numpy(np.median(np.asarray(first_frames, np.float64), axis=0)))
            self.features.default_start = self.start.double().numpy().copy()

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state, strict=strict, assign=assign)
        if self.features.anchored:
            self.features.default_start = self.start.double().numpy().copy()
        return out

    def normalize(self, feats: np.ndarray) -> torch.Tensor:
        return (torch.as_tensor(np.asarray(feats), dtype=torch.float32) - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> np.ndarray:
        return (x * self.std + self.mean).double().numpy()

    def encode(self, x_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(quantized latents [B, T/ds, C], codes [B, T/ds]) from normalized features [B, T, F]."""
        self._check_length(x_norm.shape[-2])
        return self.fsq(self.encoder(x_norm.transpose(1, 2)).transpose(1, 2))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized features [B, L*ds, F] from quantized latents [B, L, C]."""
        return self.decoder(latents.transpose(1, 2)).transpose(1, 2)

    def forward(self, x_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latents, codes = self.encode(x_norm)
        return self.decode(latents), codes

    def loss(self, x_norm: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        recon, codes = self(x_norm)
        err = (recon - x_norm) ** 2
        mse = err.mean()
        root = drift = torch.zeros(())
        if self.root_channels:
            root = err[..., self.root_channels].mean()
            drift = ((recon - x_norm)[..., self.root_channels].cumsum(-2) / self.downsample).pow(2).mean()
        loss = mse + self.cfg.root_weight * root + self.cfg.drift_weight * drift
        used = torch.unique(codes).numel() / self.codebook_size
        metrics = {"loss": loss.item(), "mse": mse.item(), "root_mse": root.item(), "drift": drift.item(), "usage": used}
        return loss, metrics

    # --- qpos level (numpy, no grad) ---

    def encode_qpos(self, qpos, fps: float) -> np.ndarray:
        """int64 codes [B, T/ds] from qpos [B, T, nq], or [T/ds] from one clip [T, nq]; T a multiple of ds.

        Velocities are physical, but the convs count frames: use the frame rate the tokenizer was trained at.
        """
        q = np.asarray(qpos, np.float64)
        if q.ndim not in (2, 3):
            raise ValueError(f"qpos must be [T, nq] or [B, T, nq], got shape {q.shape}")
        self._check_length(q.shape[-2])
        feats = self.features.encode(q if q.ndim == 3 else q[None], fps)
        with self._inference():
            codes = self.encode(self.normalize(feats))[1].numpy()
        return codes if q.ndim == 3 else codes[0]

    def decode_codes(self, codes, fps: float, start=None) -> np.ndarray:
        """qpos [B, L*ds, nq] from codes [B, L] (or [L*ds, nq] from [L]); ``start`` (qpos [nq] or [B, nq])
        anchors x, y and yaw as in MotionFeatures.decode (default: the origin facing +x) and anchored scene
        coordinates (default: the training data's median first frame)."""
        c = np.asarray(codes)
        if c.ndim not in (1, 2) or c.shape[-1] == 0:
            raise ValueError(f"codes must be a non-empty [L] or [B, L] array, got shape {c.shape}")
        if not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"codes must be integers, got dtype {c.dtype}")
        bad = (c < 0) | (c >= self.codebook_size)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"code {int(c[pos])} at {pos} is outside the codebook [0, {self.codebook_size})")
        with self._inference():
            feats = self.decode_features(torch.from_numpy(c.astype(np.int64).reshape(-1, c.shape[-1])))
        qpos = self.features.decode(feats, fps, start)
        return qpos if c.ndim == 2 else qpos[0]

    def decode_features(self, codes: torch.Tensor) -> np.ndarray:
        """Physical features [B, L*ds, F] from codes [B, L]."""
        return self.denormalize(self.decode(self.fsq.from_index(codes)))

    @contextlib.contextmanager
    def _inference(self):
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was)

    def _check_length(self, t: int) -> None:
        ds = self.downsample
        if t == 0 or t % ds:
            raise ValueError(f"clip length {t} frames is not a positive multiple of downsample={ds} "
                             f"(trim to {t // ds * ds} or pad to {-(-t // ds) * ds} frames)")

    # --- files ---

    def save_pretrained(self, path: str) -> str:
        """Write motion_tokenizer.json (world, cfg, feature names) and motion_tokenizer.pt (state_dict) to ``path``."""
        os.makedirs(path, exist_ok=True)
        meta = {"format": FORMAT, "world": self.world, "cfg": dataclasses.asdict(self.cfg),
                "features": self.features.names, "dim": self.features.dim,
                "codebook_size": self.codebook_size, "downsample": self.downsample}
        meta["cfg"]["levels"] = list(self.cfg.levels)
        weights, config = os.path.join(path, WEIGHTS_FILE), os.path.join(path, CONFIG_FILE)
        # temp file + os.replace: a reader never sees a half-written file
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, weights + ".tmp")
        os.replace(weights + ".tmp", weights)
        with open(config + ".tmp", "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(config + ".tmp", config)
        return path

    @classmethod
    def from_pretrained(cls, path: str) -> "MotionTokenizer":
        if not os.path.isdir(path):
            raise FileNotFoundError(f"motion tokenizer directory not found: {path}")
        config, weights = os.path.join(path, CONFIG_FILE), os.path.join(path, WEIGHTS_FILE)
        for p in (config, weights):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"{p}: not found (save the tokenizer with save_pretrained)")
        try:
            with open(config) as f:
                meta = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(config, f"invalid JSON ({e})") from None
        if not isinstance(meta, dict) or not {"world", "cfg", "features"} <= set(meta):
            raise CheckpointError(config, "expected an object with 'world', 'cfg' and 'features'")
        try:
            cfg = TokenizerConfig(**meta["cfg"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(config, f"bad cfg: {e}") from None
        try:
            tok = cls(meta["world"], cfg)
        except ValueError as e:  # unknown world, unloadable MJCF
            raise CheckpointError(config, str(e)) from None
        if tok.features.names != meta["features"]:
            raise CheckpointError(config, f"saved for features {meta['features']} (dim {len(meta['features'])}) but "
                                          f"world {meta['world']!r} has {tok.features.names} (dim {tok.features.dim})")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
            first = (str(e).splitlines() or [""])[0]
            raise CheckpointError(weights, f"unreadable weights file ({type(e).__name__}: {first})") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(weights, "not a state_dict of tensors")
        try:
            tok.load_state_dict(state)
        except RuntimeError as e:
            detail = " ".join(line.strip() for line in str(e).splitlines()[1:4])
            raise CheckpointError(weights, f"weights do not fit the saved config: {detail}") from None
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(weights, f"non-finite values in {bad[:3]}")
        return tok


# --- training and evaluation ---

def clip_features(tok: MotionTokenizer, clips: list[Clip]) -> list[np.ndarray]:
    """Features [T', F] per clip, each trimmed to a multiple of the downsample factor."""
    out = []
    ds = tok.downsample
    for c in clips:
        if c.world is not None and c.world != tok.features.world:
            raise ValueError(f"{c.source}: clip is for world {c.world!r}, tokenizer for {tok.features.world!r}")
        t = c.n_frames // ds * ds
        if t < max(ds, 2):
            raise ValueError(f"{c.source}: {c.n_frames} frames, the tokenizer needs at least {max(ds, 2)}")
        out.append(tok.features.encode(c.qpos[:t], c.fps))
    return out


def train_tokenizer(tok: MotionTokenizer, clips: list[Clip], steps: int = 3000, batch_size: int = 32,
                    lr: float = 2e-3, window: int | None = None, seed: int = 0, run_dir: str | None = None,
                    progress: bool = False, log_every: int = 25, ckpt_every: int = 250,
                    norm_clips: list[Clip] | None = None, name: str = "tokenizer") -> dict[str, float]:
    """Fit the normalizer on ``clips`` and train on random crops (rlpf.worldmodel.training.run_stage: AdamW,
    warmup + cosine lr). With ``run_dir`` the stage logs to TensorBoard and resumes from checkpoints.

    ``window``: frames per crop, a multiple of ds; default 32 (2*ds if larger), or the shortest clip.
    Crops at every offset generalize better than whole clips (experiments/tokenizer_sweep.py).
    ``norm_clips``: the clips the normalizer and the default start are fit on (default ``clips``).
    ``name``: the stage's name (its checkpoint ``RUN/checkpoints/<name>.pt`` and TensorBoard tag; a
    multi-world run trains one tokenizer per world). Returns the last logged metrics.
    """
    from rlpf.worldmodel.training import StageSpec, run_stage

    feats = clip_features(tok, clips)
    window = window or min(max(32, 2 * tok.downsample), min(len(f) for f in feats))
    tok._check_length(window)
    pool = [f for f in feats if len(f) >= window]
    if not pool:
        raise ValueError(f"no clip has the {window} frames the training window needs")
    ref = clips if norm_clips is None else norm_clips
    tok.fit_normalizer(np.concatenate(feats if norm_clips is None else clip_features(tok, norm_clips)))
    tok.fit_start(np.stack([c.qpos[0] for c in ref]))
    data = [tok.normalize(f) for f in pool]

    def batch(g: torch.Generator) -> torch.Tensor:
        picks = torch.randint(len(data), (batch_size,), generator=g).tolist()
        return torch.stack([data[i][s:s + window] for i in picks
                            for s in [int(torch.randint(len(data[i]) - window + 1, (1,), generator=g))]])

    spec = StageSpec(name, steps, lr, warmup=min(100, steps // 10), log_every=log_every,
                     ckpt_every=ckpt_every, seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return run_stage(spec, run_dir, tok, batch, tok.loss, progress=progress)


def _object_qpos(tok: MotionTokenizer) -> list[int]:
    """qpos addresses of the objects' translational coordinates (slide joints, free-joint positions)."""
    cw = tok.features.cw
    m = cw.model
    bodies, out = set(cw.object_bodies.tolist()), []
    for j in range(m.njnt):
        if m.jnt_bodyid[j] in bodies:
            adr, kind = int(m.jnt_qposadr[j]), int(m.jnt_type[j])
            if kind == int(mujoco.mjtJoint.mjJNT_SLIDE):
                out.append(adr)
            elif kind == int(mujoco.mjtJoint.mjJNT_FREE):
                out += [adr, adr + 1, adr + 2]
    return out


def reconstruction_report(tok: MotionTokenizer, clips: list[Clip]) -> dict[str, float]:
    """Encode -> decode every clip (anchored at its own first frame, trimmed to a multiple of ds).

    Physical errors, each a mean over clips:
      root_pos_m, root_pos_final_m    root position error, mean over frames / at the last frame (drift);
                                      floating-base worlds only
      object_pos_m, object_pos_final_m  the same for movable objects' positions; worlds with objects only
                                      (the pusher: its object slides, and its arm is fixed to the base)
      articulation, articulation_final  mean |error| of the articulation joints (m for a slide, rad for a
                                      hinge), over frames / at the last frame; worlds with articulations
      joint_rad                       mean |error| of hinge joint angles
    Code statistics: feature_mse (normalized features), codebook_usage
    (fraction of the codebook used across these clips), perplexity (exp of the entropy of code usage).
    """
    if not clips:
        raise ValueError("reconstruction_report: no clips")
    m = tok.features.cw.model
    hinges = [int(m.jnt_qposadr[j]) for j in range(m.njnt) if m.jnt_type[j] == int(mujoco.mjtJoint.mjJNT_HINGE)]
    objects = _object_qpos(tok)
    rows: dict[str, list[float]] = {}
    all_codes = []
    for c, feats in zip(clips, clip_features(tok, clips)):
        q = c.qpos[:len(feats)]
        with tok._inference():
            x = tok.normalize(feats)[None]
            recon, codes = tok(x)
        rec = tok.features.decode(tok.denormalize(recon[0]), c.fps, start=q[0])
        all_codes.append(codes[0].numpy())
        err = {"feature_mse": float(((recon - x) ** 2).mean())}
        if tok.features.floating:
            d = np.linalg.norm(rec[:, :3] - q[:, :3], axis=-1)
            err.update(root_pos_m=d.mean(), root_pos_final_m=d[-1])
        if objects:
            d = np.linalg.norm(rec[:, objects] - q[:, objects], axis=-1)
            err.update(object_pos_m=d.mean(), object_pos_final_m=d[-1])
        if len(tok.features.cw.articulation_qpos):
            a = tok.features.cw.articulation_qpos
            d = np.abs(rec[:, a] - q[:, a]).mean(-1)
            err.update(articulation=d.mean(), articulation_final=d[-1])
        if hinges:
            err["joint_rad"] = np.abs(rec[:, hinges] - q[:, hinges]).mean()
        for k, v in err.items():
            rows.setdefault(k, []).append(float(v))
    report = {k: float(np.mean(v)) for k, v in rows.items()}
    counts = np.bincount(np.concatenate(all_codes), minlength=tok.codebook_size)
    p = counts[counts > 0] / counts.sum()
    report.update(codebook_usage=float((counts > 0).mean()), perplexity=float(np.exp(-(p * np.log(p)).sum())),
                  n_clips=len(clips), n_codes=int(counts.sum()))
    return report
