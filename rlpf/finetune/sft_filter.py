"""SFT-Filter: fine-tune the world model on its own samples that a tracker can perform.

The RLPF paper's strongest non-RL baseline (rejection-sampling fine-tuning): sample many clips per
prompt from the base model, keep those the tracker replays successfully, and continue the LM's
next-token training on their motion codes. It uses the same physical feedback as RLPF, but only as a
filter: nothing pushes the model away from what fails, and nothing keeps it near the reference.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from rlpf.core.clips import Clip
from rlpf.core.run_dir import read_json, write_json


@dataclass
class SFTFilterSettings:
    """How SFT-Filter samples, filters and fine-tunes."""

    samples_per_prompt: int = 128
    """Clips sampled from the base model per prompt before filtering."""
    require_alignment: bool = False
    """Also keep only samples whose motion matches their prompt (the paper filters on tracking alone)."""
    steps: int = 400
    """Optimizer steps of next-token training on the kept samples."""
    batch: int = 64
    """Sequences per batch."""
    learning_rate: float = 1e-4
    """Peak learning rate (warmup then cosine decay)."""
    temperature: float = 1.0
    """Sampling temperature for the candidates."""

    def __post_init__(self):
        from rlpf.core.config import check

        for name in ("samples_per_prompt", "steps", "batch"):
            check(self, getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        check(self, self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        check(self, self.temperature > 0, "temperature", self.temperature, "> 0")


def sft_filter(model_dir: str, tracker, settings: SFTFilterSettings, run_dir: str, seed: int = 0,
               workers: int | None = None, progress: bool = True):
    """Sample, filter by ``tracker`` success, fine-tune; returns the model (saved to ``run_dir/model``)
    and a summary. Resumable (rlpf.worldmodel.training.run_stage); a finished run is loaded, not retrained."""
    from rlpf.worldmodel.pretrain import code_sequences
    from rlpf.judge.tracking import track_clips
    from rlpf.worldmodel.training import StageSpec, run_stage
    from rlpf.worldmodel.model import WorldModel

    out = os.path.join(run_dir, "model")
    summary_path = os.path.join(run_dir, "sft_filter_summary.json")
    if os.path.isfile(os.path.join(out, "world_model.json")):
        return WorldModel.from_pretrained(out), read_json(summary_path)
    wm = WorldModel.from_pretrained(model_dir)
    prompts = [p for p in wm.prompts for _ in range(settings.samples_per_prompt)]
    codes = wm.sample_codes(prompts, settings.temperature, seed=seed)
    qpos = wm.motion_tokenizer.decode_codes(codes, wm.fps)
    clips = [Clip(qpos=q, fps=wm.fps, world=wm.world, prompt=p, source=f"sft-candidate:{i}")
             for i, (q, p) in enumerate(zip(qpos, prompts))]
    keep = np.array([r.success for r in track_clips(clips, tracker, workers=workers)])
    if settings.require_alignment:
        from rlpf.data.motion_data import command_matches

        keep &= np.array(command_matches(clips))
    if not keep.any():
        raise RuntimeError(f"SFT-Filter: none of the {len(clips)} samples passed the filter; nothing to fine-tune on")
    idx = np.flatnonzero(keep)
    ids, labels = code_sequences(wm, [prompts[i] for i in idx], codes[idx])
    pad = wm.text_tokenizer.pad_token_id

    def batch_fn(g):
        sel = torch.randint(len(ids), (settings.batch,), generator=g)
        return ids[sel], labels[sel]

    def loss_fn(batch):
        x, y = batch
        return wm.lm(input_ids=x, attention_mask=(x != pad).long(), labels=y).loss, {}

    spec = StageSpec("sft_filter", settings.steps, settings.learning_rate, warmup=min(20, settings.steps // 10),
                     weight_decay=0.01, log_every=10, ckpt_every=100, seed=seed)
    metrics = run_stage(spec, run_dir, wm.lm, batch_fn, loss_fn, progress=progress)
    per_prompt = {p: float(keep[[i for i, q in enumerate(prompts) if q == p]].mean()) for p in wm.prompts}
    summary = {"candidates": len(clips), "kept": int(keep.sum()), "kept_fraction": float(keep.mean()),
               "kept_per_prompt": per_prompt, "final_loss": float(metrics.get("loss", float("nan")))}
    wm.save_pretrained(out)
    write_json(summary_path, summary)
    return wm, summary
