"""The pixel world model: a causal LM that generates frame codes, decoded to video and lifted to motion.

    prompt -> LM (the same tiny Llama and word-level vocabulary as the motion world model) -> frame codes
           -> FrameTokenizer.decode_codes -> video [T, 64, 64, 3] -> PoseLifter.lift_frames -> Clip

The model never sees qpos: it is trained on the codes of rendered videos, and what it generates is
pixels. Its clips are what a pose lifter reads off its videos, so RLPF (``rlpf.finetune.grpo``) trains
it unchanged through ``VideoWorldModelCodec``: completion ids -> video -> lifted clip -> trackers and
physics terms. Saved as one directory: the LM, its tokenizer, ``frame_tokenizer/``, ``pose/`` (the
pose run's network and facts, copied: the model carries the lifter its rewards were computed with)
and ``world_model.json`` (``kind: video``).
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np

from rlpf.core.clips import Clip
from rlpf.core.errors import CheckpointError
from rlpf.worldmodel.codec import WorldModelCodec
from rlpf.worldmodel.model import META_FILE, LMConfig, WorldModel, build_lm, load_lm, read_model_meta, resolve_checkpoint
from rlpf.videowm.frame_tokenizer import FrameTokenizer

KIND = "video"
POSE_FILES = ("pose.json", "pose.safetensors")


class VideoWorldModel(WorldModel):
    """Text -> videos (and the clips lifted from them); ``lm`` is a plain ``LlamaForCausalLM``."""

    def __init__(self, lm, text_tokenizer, frame_tokenizer: FrameTokenizer, lifter, n_frames: int, fps: float,
                 prompts: list[str]):
        self.lm, self.text_tokenizer = lm, text_tokenizer
        self.frame_tokenizer, self.lifter = frame_tokenizer, lifter
        self.motion_tokenizer = None   # no motion codes: its codes are frames'
        self.n_frames, self.fps, self.prompts = int(n_frames), float(fps), list(prompts)
        self.world = frame_tokenizer.world
        if lifter.world != self.world:
            raise ValueError(f"the pose lifter is for world {lifter.world!r}, the frame tokenizer for {self.world!r}")
        if int(lifter.meta["input_size"]) != frame_tokenizer.cfg.size:
            raise ValueError(f"the pose lifter reads {lifter.meta['input_size']} px frames, the frame tokenizer "
                             f"makes {frame_tokenizer.cfg.size} px ones")
        if n_frames % frame_tokenizer.cfg.downsample:
            raise ValueError(f"n_frames {n_frames} is not a multiple of the frame tokenizer's downsample "
                             f"{frame_tokenizer.cfg.downsample}")
        self._set_vocabulary(frame_tokenizer.codebook_size)

    @classmethod
    def create(cls, frame_tokenizer: FrameTokenizer, lifter, prompts: list[str], n_frames: int, fps: float,
               cfg: LMConfig | None = None, seed: int = 0) -> VideoWorldModel:
        lm, text_tok = build_lm(prompts, frame_tokenizer.codebook_size, frame_tokenizer.n_tokens(n_frames), cfg, seed)
        return cls(lm, text_tok, frame_tokenizer, lifter, n_frames, fps, prompts)

    @property
    def n_tokens(self) -> int:
        """Frame codes per video."""
        return self.frame_tokenizer.n_tokens(self.n_frames)

    def motion_codec(self) -> VideoWorldModelCodec:
        """How RLPF turns this model's completions into clips (``rlpf.worldmodel.codec.as_codec``)."""
        return VideoWorldModelCodec(self)

    # ---- videos and clips -------------------------------------------------------------------------
    def decode_videos(self, codes) -> np.ndarray:
        """uint8 videos [B, n_frames, S, S, 3] of frame codes [B, n_tokens]."""
        return self.frame_tokenizer.decode_codes(np.asarray(codes))

    def lift(self, videos, prompts, sources=None, confidence: list | None = None) -> list[Clip]:
        """The clip the pose lifter reads off each video (its mean per-frame confidence appended to
        ``confidence`` when given)."""
        out = []
        for i, (v, p) in enumerate(zip(videos, prompts)):
            src = sources[i] if sources else f"video:{i}"
            clip, info = self.lifter.lift_frames(v, self.fps, source=src)
            clip.prompt = p
            out.append(clip)
            if confidence is not None:
                confidence.append(float(np.mean(info["confidence"])))
        return out

    def generate_videos(self, prompts: list[str] | str, n: int = 1, temperature: float = 1.0,
                        seed: int | None = 0, confidence: list | None = None) -> tuple[np.ndarray, list[Clip]]:
        """(videos uint8 [len(prompts) * n, T, S, S, 3], their lifted clips), ``n`` per prompt."""
        flat = self.repeated_prompts(prompts, n)
        videos = self.decode_videos(self.sample_codes(flat, temperature, None, seed))
        clips = self.lift(videos, flat, [f"generated:{self.world}:{seed}:{i}" for i in range(len(flat))], confidence)
        return videos, clips

    def generate(self, prompts, n: int = 1, temperature: float = 1.0, first_frames=None, seed: int | None = 0):
        """The lifted clips of ``generate_videos`` (what every clip-level metric measures)."""
        if first_frames is not None:
            raise ValueError("the pixel world model does not continue given first frames")
        return self.generate_videos(prompts, n, temperature, seed)[1]

    # ---- persistence ------------------------------------------------------------------------------
    def save_pretrained(self, path: str) -> None:
        from rlpf.core.outputs import write_dir

        def fill(tmp):
            self.lm.save_pretrained(tmp)
            self.text_tokenizer.save_pretrained(tmp)
            self.frame_tokenizer.save_pretrained(os.path.join(tmp, "frame_tokenizer"))
            os.makedirs(os.path.join(tmp, "pose"))
            for name in POSE_FILES:
                shutil.copyfile(os.path.join(self.lifter.run_dir, name), os.path.join(tmp, "pose", name))
            meta = {"kind": KIND, "world": self.world, "fps": self.fps, "n_frames": self.n_frames,
                    "prompts": self.prompts, "format": 1}
            with open(os.path.join(tmp, META_FILE), "w") as f:
                json.dump(meta, f, indent=1)

        write_dir(path, fill)

    @classmethod
    def from_pretrained(cls, path: str, world: str | None = None) -> VideoWorldModel:
        from rlpf.lifting.inference import PoseLifter
        from rlpf.lifting.training import PoseRunError

        path = resolve_checkpoint(path)
        meta, n_frames, fps, prompts = read_model_meta(path)
        if meta.get("kind") != KIND:
            raise CheckpointError(path, f"not a pixel world model (kind {meta.get('kind')!r}); load it with "
                                  "rlpf.worldmodel.multiworld.load_world_model")
        if world is not None and meta.get("world") != world:
            raise CheckpointError(path, f"this world model was trained for world {meta.get('world')!r}, not {world!r}")
        frame_tok = FrameTokenizer.from_pretrained(os.path.join(path, "frame_tokenizer"))
        try:
            lifter = PoseLifter.load(os.path.join(path, "pose"))
        except PoseRunError as e:
            raise CheckpointError(path, f"its pose lifter: {e}") from None
        lm, text_tok = load_lm(path)
        return cls(lm, text_tok, frame_tok, lifter, n_frames, fps, prompts)


class VideoWorldModelCodec(WorldModelCodec):
    """The pixel world model as a codec: exactly ``n_tokens`` frame codes -> video -> lifted clip."""

    def decode(self, completion_ids, prompt):
        out = self.decode_batch([completion_ids], [prompt])[0]
        return out if isinstance(out, Clip) else None

    def decode_batch(self, completion_ids, prompts):
        wm = self.wm
        codes, ok, out = self._collect_codes(completion_ids)
        rows = np.flatnonzero(ok)
        if len(rows):   # one batched decode; each video lifted on its own
            videos = wm.decode_videos(codes[rows])
            for clip, i in zip(wm.lift(videos, [prompts[i] for i in rows], [f"completion:{i}" for i in rows]), rows):
                out[i] = clip
        return out
