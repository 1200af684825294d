"""Your own generator, aligned by rlpf: a tiny GPT-2 with its own vocabulary and motion codec.

Nothing here is rlpf's world model. The generator is a randomly initialised
``transformers.GPT2LMHeadModel``; its vocabulary (a word-level ``PreTrainedTokenizerFast``, built
here, no hub download) holds the ant's prompt words and one token per pose of a fixed pose library;
its codec (``PoseCodec``, a ``rlpf.MotionCodec``) turns a completion - one pose token per
``frames_per_token`` frames - into an ant clip by interpolating between the poses. The poses are
frames of simulated ant clips (``rlpf.data.simulate.simulate("ant", AntGait())``), moved to the origin,
so a clip is the ant changing posture in place.

``rlpf.RLPFTrainer`` fine-tunes it with TRL's GRPO on ``rlpf.PhysicalFeedback`` (PD tracker success,
alignment with the command, tracking error and the physics terms, each its own reward function and
log series), scoring the next batch in worker processes while it trains on this one.

    python experiments/custom_generator.py --steps 8

prints each step's per-term rewards and the weighted total TRL optimizes.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built here: nothing to download

import numpy as np

import rlpf

WEIGHTS = {"tracking_success": 10.0, "alignment": 2.0, "tracking_error_m": -10.0}
"""The paper's reward plus a continuous term: a random model's groups often tie on the binary ones."""

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")


def pose_library(n_poses: int, seed: int = 0, clips: int = 4, frames: int = 64) -> tuple[np.ndarray, float]:
    """``n_poses`` ant poses (qpos rows) from simulated clips, root moved to x = y = 0; and the fps."""
    from rlpf.policies.scripted import AntGait
    from rlpf.data.simulate import simulate

    sims = [simulate("ant", AntGait(), n_frames=frames, seed=seed + i) for i in range(clips)]
    qpos = np.concatenate([c.qpos for c in sims])
    pick = np.linspace(0, len(qpos) - 1, n_poses).round().astype(int)
    poses = qpos[pick].copy()
    poses[:, :2] = 0.0  # in place: a pose has no position, only a posture
    return poses, float(sims[0].fps)


def build_tokenizer(words: list[str], n_poses: int):
    """A word-level tokenizer: specials, pose tokens p0..p{n-1}, then the prompt words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for i in range(n_poses):
        vocab[f"p{i}"] = len(vocab)
    for w in sorted(set(words)):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<bos>", eos_token="<eos>")


class PoseCodec(rlpf.MotionCodec):
    """Completion = ``n_tokens`` pose tokens; the clip interpolates from pose to pose over
    ``frames_per_token`` frames each (the root quaternion renormalised)."""

    def __init__(self, tokenizer, poses: np.ndarray, fps: float, n_tokens: int, frames_per_token: int):
        vocab = tokenizer.get_vocab()
        self.tokenizer, self.poses, self.fps = tokenizer, np.asarray(poses, dtype=np.float64), float(fps)
        self.world = "ant"
        self.max_completion_length = int(n_tokens)
        self.frames_per_token = int(frames_per_token)
        self.pose_of = {vocab[f"p{i}"]: i for i in range(len(poses))}
        self.allowed_token_ids = sorted(self.pose_of)

    def decode(self, completion_ids, prompt):
        idx = [self.pose_of.get(int(t)) for t in completion_ids]
        if len(idx) != self.max_completion_length or None in idx:
            return None  # not a clip: excluded from its group
        keys = self.poses[idx]
        t = np.arange(len(idx) * self.frames_per_token) / self.frames_per_token
        qpos = np.stack([np.interp(t, np.arange(len(idx)), keys[:, j]) for j in range(keys.shape[1])], axis=1)
        qpos[:, 3:7] /= np.linalg.norm(qpos[:, 3:7], axis=1, keepdims=True)
        return rlpf.Clip(qpos=qpos, fps=self.fps, world="ant", prompt=prompt)


def build(n_poses: int = 32, n_tokens: int = 8, frames_per_token: int = 4, seed: int = 0):
    """The tiny GPT-2 (random init), its tokenizer and codec, and the prompts (the ant's commands)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlpf.data.motion_data import PROMPTS

    prompts = list(PROMPTS["ant"])
    poses, fps = pose_library(n_poses, seed)
    tokenizer = build_tokenizer([w for p in prompts for w in p.split()], n_poses)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    return model, PoseCodec(tokenizer, poses, fps, n_tokens, frames_per_token), prompts


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Prints each logged step's per-term rewards and the weighted total.")
    ap.add_argument("--steps", type=int, default=8, help="GRPO optimizer steps (default 8)")
    ap.add_argument("--out", default="runs/custom-generator", help="TRL output directory")
    ap.add_argument("--prompts-per-step", type=int, default=3, help="distinct prompts per step")
    ap.add_argument("--generations", type=int, default=4, help="completions per prompt (GRPO group size, >= 2)")
    ap.add_argument("--poses", type=int, default=32, help="pose tokens in the vocabulary")
    ap.add_argument("--tokens", type=int, default=8, help="pose tokens per completion")
    ap.add_argument("--workers", type=int, default=2, help="scoring worker processes (0: in this process)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name in ("steps", "prompts_per_step", "poses", "tokens"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.generations < 2:
        ap.error(f"--generations must be >= 2 (advantages compare completions of a prompt), got {args.generations}")
    if args.workers < 0:
        ap.error(f"--workers must be >= 0, got {args.workers}")

    from trl import GRPOConfig

    from rlpf.finetune.grpo import precision_kwargs

    model, codec, prompts = build(args.poses, args.tokens, seed=args.seed)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    config = GRPOConfig(
        output_dir=args.out, max_steps=args.steps, learning_rate=1e-3,
        per_device_train_batch_size=args.prompts_per_step * args.generations, num_generations=args.generations,
        steps_per_generation=1, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        seed=args.seed, **precision_kwargs(),  # bf16 where a GPU has it, else fp32 on the CPU
    )
    with rlpf.PhysicalFeedback("ant", WEIGHTS, tracker="pd", workers=args.workers) as feedback:
        trainer = rlpf.RLPFTrainer(model, codec, feedback, config, prompts)
        trainer.train()
        excluded = feedback.excluded_total
    history = [h for h in trainer.state.log_history if "reward" in h]
    terms = feedback.terms
    print(f"{'step':>4} {'total':>8} " + " ".join(f"{t[:18]:>18}" for t in terms))
    keys = [f"rewards/{t.replace(':', '.')}/mean" for t in terms]  # TRL logs each function by its __name__
    for h in history:
        print(f"{h['step']:>4} {h['reward']:>8.3f} " + " ".join(f"{h.get(k, float('nan')):>18.4f}" for k in keys))
    print(f"weights {WEIGHTS} (other terms logged, weight 0); excluded samples {excluded}; device {trainer.args.device}")
    return {"trainer": trainer, "initial": initial, "history": history, "terms": terms,
            "weights": dict(zip(terms, trainer.args.reward_weights)), "excluded": excluded}


if __name__ == "__main__":
    main()
    sys.exit(0)
