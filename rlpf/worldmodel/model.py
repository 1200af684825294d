"""The world model: a motion tokenizer plus a Hugging Face causal LM over one vocabulary.

A training sequence is ``<bos> walk forward fast <motion> m12 m503 ... m7 <eos>``: prompt words,
a separator, then one motion code per ``downsample`` frames. Motion codes are ordinary vocabulary
words (``m0`` ... ``m{K-1}``), not special tokens, so TRL keeps them in completions (it decodes them
with ``skip_special_tokens=True``). Sampling is restricted to motion codes after ``<motion>``, so
every sample decodes to a clip.

Saved as one directory: the LM (``save_pretrained``), its text tokenizer (``tokenizer.json`` ...),
the motion tokenizer (``motion_tokenizer.*``) and ``world_model.json`` (world, frame rate, length).
"""
from __future__ import annotations

from rlpf.core.errors import RLPFError

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from rlpf.core.clips import Clip
from rlpf.worldmodel.tokenizer import CheckpointError, MotionTokenizer

hf_logging.disable_progress_bar()  # per-shard bars for a 1 MB model are noise

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
SEPARATOR = "<motion>"
META_FILE = "world_model.json"


class UnknownPromptError(RLPFError, ValueError):
    """A prompt word the world model was not trained on."""


@dataclass
class LMConfig:
    """Size of the causal LM (a tiny Llama)."""

    hidden: int = 128
    """Hidden size of the transformer."""
    layers: int = 4
    """Number of decoder layers."""
    heads: int = 4
    """Attention heads (hidden must divide by heads)."""
    intermediate: int = 384
    """MLP width inside each layer."""

    def __post_init__(self):
        from rlpf.core.config import check

        for name in ("hidden", "layers", "heads", "intermediate"):
            check(self, getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        check(self, self.hidden % self.heads == 0, "hidden", self.hidden, f"divisible by heads ({self.heads})")


def build_text_tokenizer(words: list[str], n_codes: int, markers: tuple[str, ...] = ()):
    """A word-level HF tokenizer: specials, the separator, ``markers`` (a multi-world model's world
    tokens; none for one world, whose ids stay as they were), motion codes m0..m{n-1}, then prompt words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    vocab[SEPARATOR] = len(vocab)
    for m in markers:
        vocab[m] = len(vocab)
    for c in range(n_codes):
        vocab[f"m{c}"] = len(vocab)
    for w in sorted(set(words)):
        if w in vocab:
            raise ValueError(f"prompt word {w!r} collides with a reserved token")
        vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # TRL tokenizes prompts with add_special_tokens=True: the post-processor adds <bos> there too
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<bos>", eos_token="<eos>")


def prompt_words(prompt: str) -> list[str]:
    return prompt.lower().split()


class WorldModel:
    """Text (+ optional first frames) -> clips; ``lm`` is a plain ``LlamaForCausalLM``."""

    def __init__(self, lm, text_tokenizer, motion_tokenizer: MotionTokenizer, n_frames: int,
                 fps: float, prompts: list[str]):
        self.lm, self.text_tokenizer, self.motion_tokenizer = lm, text_tokenizer, motion_tokenizer
        self.n_frames, self.fps, self.prompts = int(n_frames), float(fps), list(prompts)
        self.world = motion_tokenizer.features.world
        self._set_vocabulary(motion_tokenizer.codebook_size)
        if n_frames % motion_tokenizer.downsample:
            raise ValueError(f"n_frames {n_frames} is not a multiple of the tokenizer's downsample "
                             f"{motion_tokenizer.downsample}")

    @classmethod
    def create(cls, motion_tokenizer: MotionTokenizer, prompts: list[str], n_frames: int, fps: float,
               cfg: LMConfig | None = None, seed: int = 0) -> "WorldModel":
        lm, text_tok = build_lm(prompts, motion_tokenizer.codebook_size, n_frames // motion_tokenizer.downsample, cfg, seed)
        return cls(lm, text_tok, motion_tokenizer, n_frames, fps, prompts)

    # ---- vocabulary -------------------------------------------------------------------------------
    def _set_vocabulary(self, n_codes: int) -> None:
        vocab = self.text_tokenizer.get_vocab()
        self.code_offset = vocab["m0"]
        self.n_codes = int(n_codes)
        self.separator_id = vocab[SEPARATOR]
        self.words = sorted(w for w in vocab if w not in SPECIALS and w != SEPARATOR and not _is_code(w))

    @property
    def n_tokens(self) -> int:
        """Motion codes per clip."""
        return self.n_frames // self.motion_tokenizer.downsample

    def check_prompt(self, prompt: str) -> None:
        unknown = [w for w in prompt_words(prompt) if w not in self.words]
        if not prompt_words(prompt):
            raise UnknownPromptError("empty prompt")
        if unknown:
            raise UnknownPromptError(
                f"prompt {prompt!r}: unknown word(s) {unknown}; this {self.world} model knows the words "
                f"{self.words} (trained prompts: {self.prompts})")

    def prompt_text(self, prompt: str) -> str:
        """The text the LM is conditioned on (``<bos>`` is added by the tokenizer)."""
        self.check_prompt(prompt)
        return " ".join(prompt_words(prompt)) + " " + SEPARATOR

    def prompt_ids(self, prompt: str) -> list[int]:
        return self.text_tokenizer(self.prompt_text(prompt))["input_ids"]

    def sequence_ids(self, prompt: str, codes: np.ndarray) -> list[int]:
        """Full training sequence for one clip's codes."""
        return self.prompt_ids(prompt) + [self.code_offset + int(c) for c in codes] + [self.text_tokenizer.eos_token_id]

    def codes_from_ids(self, ids) -> np.ndarray:
        """Motion codes of completion token ids; raises ValueError on a non-code token."""
        ids = np.asarray(ids, dtype=np.int64)
        codes = ids - self.code_offset
        if ((codes < 0) | (codes >= self.n_codes)).any():
            bad = ids[(codes < 0) | (codes >= self.n_codes)]
            raise ValueError(f"completion holds non-motion tokens {self.text_tokenizer.convert_ids_to_tokens(bad.tolist())}")
        return codes

    # ---- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_codes(self, prompts: list[str], temperature: float = 1.0, prefix: np.ndarray | None = None,
                     seed: int | None = None, batch_size: int = 256) -> np.ndarray:
        """[len(prompts), n_tokens] motion codes; ``prefix`` [len(prompts), k] codes are kept as given."""
        from transformers import LogitsProcessor, LogitsProcessorList

        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        allowed = torch.zeros(len(self.text_tokenizer), dtype=torch.bool)
        allowed[self.code_offset:self.code_offset + self.n_codes] = True

        class MotionCodesOnly(LogitsProcessor):
            def __call__(self, input_ids, scores):
                return scores.masked_fill(~allowed, float("-inf"))

        k = 0 if prefix is None else prefix.shape[1]
        n_new = self.n_tokens - k
        out = np.empty((len(prompts), self.n_tokens), dtype=np.int64)
        self.lm.eval()
        # same-length prompts share a batch, so no padding is needed
        order = sorted(range(len(prompts)), key=lambda i: len(self.prompt_ids(prompts[i])))
        with torch.random.fork_rng():
            if seed is not None:
                torch.manual_seed(seed)
            start = 0
            while start < len(order):
                length = len(self.prompt_ids(prompts[order[start]]))
                idx = [i for i in order[start:start + batch_size] if len(self.prompt_ids(prompts[i])) == length]
                start += len(idx)
                ids = torch.tensor([self.prompt_ids(prompts[i]) for i in idx])
                if k:
                    ids = torch.cat([ids, torch.as_tensor(prefix[idx], dtype=torch.long) + self.code_offset], 1)
                if n_new == 0:
                    gen = ids
                else:
                    gen = self.lm.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                        temperature=temperature, top_k=None, top_p=None, max_new_tokens=n_new, min_new_tokens=n_new,
                        logits_processor=LogitsProcessorList([MotionCodesOnly()]),
                        pad_token_id=self.text_tokenizer.pad_token_id, eos_token_id=None,
                    )
                out[idx] = gen[:, -self.n_tokens:].numpy() - self.code_offset
        return out

    def generate(self, prompts: list[str] | str, n: int = 1, temperature: float = 1.0,
                 first_frames: np.ndarray | None = None, seed: int | None = 0) -> list[Clip]:
        """``n`` clips per prompt. ``first_frames`` [k, nq] (k >= downsample) continues a given start:
        its first ``k // downsample`` codes are kept and the clip is anchored at its first frame."""
        flat = self.repeated_prompts(prompts, n)
        prefix, start = None, None
        if first_frames is not None:
            ff = np.asarray(first_frames, dtype=np.float64)
            ds = self.motion_tokenizer.downsample
            if ff.ndim != 2 or ff.shape[1] != self.motion_tokenizer.features.nq:
                raise ValueError(f"first_frames must be [k, nq={self.motion_tokenizer.features.nq}], got {ff.shape}")
            k = min(ff.shape[0] // ds, self.n_tokens)
            if k < 1:
                raise ValueError(f"first_frames needs at least {ds} frames (one motion code), got {ff.shape[0]}")
            codes = self.motion_tokenizer.encode_qpos(ff[None, :k * ds], self.fps)
            prefix = np.repeat(codes, len(flat), axis=0)
            start = ff[0]
        codes = self.sample_codes(flat, temperature, prefix, seed)
        qpos = self.motion_tokenizer.decode_codes(codes, self.fps, start=start)
        return [Clip(qpos=q, fps=self.fps, world=self.world, prompt=p, source=f"generated:{self.world}:{seed}:{i}")
                for i, (q, p) in enumerate(zip(qpos, flat))]

    def repeated_prompts(self, prompts: list[str] | str, n: int) -> list[str]:
        """Each (checked) prompt ``n`` times in a row: the samples ``generate`` makes."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        for p in prompts:
            self.check_prompt(p)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return [p for p in prompts for _ in range(n)]

    # ---- persistence ------------------------------------------------------------------------------
    def save_pretrained(self, path: str) -> None:
        """Write the whole model into ``path`` via a temporary directory, so nothing is half-written."""
        from rlpf.core.outputs import write_dir

        def fill(tmp):
            self.lm.save_pretrained(tmp)
            self.text_tokenizer.save_pretrained(tmp)
            self.motion_tokenizer.save_pretrained(tmp)
            meta = {"world": self.world, "fps": self.fps, "n_frames": self.n_frames, "prompts": self.prompts,
                    "format": 1}
            with open(os.path.join(tmp, META_FILE), "w") as f:
                json.dump(meta, f, indent=1)

        write_dir(path, fill)

    @classmethod
    def from_pretrained(cls, path: str, world: str | None = None) -> "WorldModel":
        """Load a saved model; ``world`` (if given) must match the one it was trained for."""
        path = resolve_checkpoint(path)
        meta, n_frames, fps, prompts = read_model_meta(path)
        if meta.get("kind") == "multiworld":
            raise CheckpointError(path, f"a multi-world model (worlds {meta.get('worlds')}): load it with "
                                  "rlpf.worldmodel.multiworld.load_world_model (or MultiWorldModel.from_pretrained)")
        if meta.get("kind") == "video":
            raise CheckpointError(path, "a pixel world model (frame codes): load it with "
                                  "rlpf.worldmodel.multiworld.load_world_model (or rlpf.videowm.model.VideoWorldModel)")
        if world is not None and meta.get("world") != world:
            raise CheckpointError(path, f"this world model was trained for world {meta.get('world')!r}, "
                                  f"not {world!r}")
        motion_tok = MotionTokenizer.from_pretrained(path)
        lm, text_tok = load_lm(path)
        return cls(lm, text_tok, motion_tok, n_frames, fps, prompts)


def build_lm(prompts: list[str], n_codes: int, n_tokens: int, cfg: LMConfig | None = None, seed: int = 0,
             markers: tuple[str, ...] = ()):
    """(a new ``LlamaForCausalLM``, its word-level tokenizer) for ``n_tokens`` codes of ``n_codes``
    after a prompt of ``prompts``' words (and one of ``markers``, a multi-world model's world token):
    the LM of every world model built here."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = cfg or LMConfig()
    words = sorted({w for p in prompts for w in prompt_words(p)})
    text_tok = build_text_tokenizer(words, n_codes, markers=markers)
    max_prompt = (max(len(prompt_words(p)) for p in prompts) if prompts else 8) + (1 if markers else 0)
    config = LlamaConfig(
        vocab_size=len(text_tok), hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=max(64, 2 * (max_prompt + n_tokens + 4)), tie_word_embeddings=True,
        bos_token_id=text_tok.bos_token_id, eos_token_id=text_tok.eos_token_id,
        pad_token_id=text_tok.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        lm = LlamaForCausalLM(config)
    return lm, text_tok


def read_model_meta(path: str) -> tuple[dict, int, float, list[str]]:
    """(meta, n_frames, fps, prompts) of a world model directory's world_model.json."""
    meta_path = os.path.join(path, META_FILE)
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        return meta, int(meta["n_frames"]), float(meta["fps"]), list(meta["prompts"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(meta_path, f"not a readable world model description ({e})") from None


def load_lm(path: str):
    """(the LM, its text tokenizer) saved in a world model directory, checked against each other."""
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    try:
        text_tok = PreTrainedTokenizerFast.from_pretrained(path)
        lm = LlamaForCausalLM.from_pretrained(path)
    except Exception as e:  # transformers raises many types for damaged files
        raise CheckpointError(path, f"cannot load the language model or its tokenizer "
                              f"({type(e).__name__}: {e})") from None
    if len(text_tok) != lm.config.vocab_size:
        raise CheckpointError(path, f"tokenizer has {len(text_tok)} tokens but the LM {lm.config.vocab_size}")
    return lm, text_tok


def _is_code(word: str) -> bool:
    return word[:1] == "m" and word[1:].isdigit()


def resolve_checkpoint(path: str) -> str:
    """A world model directory, given it or a pretraining run directory (which holds ``model/``)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path}: no such file or directory")
    if os.path.isfile(os.path.join(path, META_FILE)):
        return path
    inner = os.path.join(path, "model")
    if os.path.isfile(os.path.join(inner, META_FILE)):
        return inner
    raise FileNotFoundError(f"checkpoint {path}: no {META_FILE} here or in {inner} "
                            "(is the run finished? `rlpf pretrain` writes model/ when it completes)")
