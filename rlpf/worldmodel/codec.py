"""Motion codecs: how a causal LM's completions become clips.

RLPF fine-tunes any Hugging Face causal LM whose completions (token ids) can be turned into motion.
A ``MotionCodec`` is that bridge, and everything rlpf needs to know about the generator besides the
model itself:

- ``tokenizer``: the ``processing_class`` TRL tokenizes prompts with (and decodes completions with);
- ``allowed_token_ids``: the tokens that may be sampled (rlpf suppresses every other token through
  ``generation_kwargs["suppress_tokens"]``, so every completion can be a clip);
- ``max_completion_length``: completion length in tokens (None: leave the GRPOConfig's own);
- ``world``: the world the clips move in (checked against ``PhysicalFeedback``'s); a codec of several
  worlds sets ``worlds`` instead and says each prompt's world (``world_of``);
- ``prompt_text(prompt)``: the text the model is conditioned on for a command (a prompt template;
  the command itself by default) and ``command(text)``, its inverse (what the alignment term checks);
- ``decode(completion_ids, prompt) -> Clip | None``: the clip, or None when the completion is not one
  (it is then excluded from its group, as a clip whose reward fails is). ``decode_batch`` decodes a
  whole batch at once; override it where batching is faster (or is what the model was trained with).

The built-in FSQ world model is one such codec (``WorldModelCodec``) plus its LM, not a special case;
the multi-world one (several worlds, one LM) is ``MultiWorldModelCodec``.
This module imports no torch, so ``import rlpf`` stays light.
"""
from __future__ import annotations

from typing import Sequence

from rlpf.core.clips import Clip
from rlpf.core.errors import RLPFError


class CodecError(RLPFError, ValueError):
    """A codec that cannot be used for training (no tokenizer, no allowed tokens, another world...)."""


class MotionCodec:
    """Completion token ids -> clips, for one generator. Subclass it and set the attributes below.

    Only ``decode``, ``tokenizer``, ``allowed_token_ids`` and ``world`` are required; a codec whose
    prompts need a template overrides ``prompt_text`` and ``command``.
    """

    tokenizer = None
    """The generator's tokenizer (``transformers.PreTrainedTokenizerBase``): TRL's processing_class."""
    allowed_token_ids: Sequence[int] = ()
    """Token ids that may be sampled in a completion; all others are suppressed."""
    max_completion_length: int | None = None
    """Tokens per completion (None: the GRPOConfig's own ``max_completion_length``)."""
    world: str | None = None
    """The world (name) the decoded clips move in."""
    worlds: Sequence[str] | None = None
    """A codec of several worlds (a multi-world model): the worlds its clips may move in, each clip in
    its prompt's (``world_of``); None: the one ``world``."""

    def world_of(self, prompt_text: str) -> str | None:
        """The world a prompt text asks for (its completion must decode to a clip of it); one world's
        codec: ``world``."""
        return self.world

    def prompt_text(self, prompt: str) -> str:
        """The text the model is conditioned on for the command ``prompt`` (default: the command)."""
        return prompt

    def command(self, prompt_text: str) -> str:
        """The command in a prompt text as the model saw it (the inverse of ``prompt_text``)."""
        return prompt_text

    def decode(self, completion_ids: Sequence[int], prompt: str) -> Clip | None:
        """The clip of one completion for the command ``prompt``; None (or ValueError, whose message
        is kept) when the completion is not a clip."""
        raise NotImplementedError(f"{type(self).__name__}.decode(completion_ids, prompt) -> Clip | None")

    def decode_batch(self, completion_ids: Sequence[Sequence[int]], prompts: Sequence[str]) -> list:
        """One entry per completion: a Clip, or a string saying why it is not one."""
        out = []
        for ids, prompt in zip(completion_ids, prompts):
            try:
                clip = self.decode(ids, prompt)
            except ValueError as e:
                out.append(f"completion is not a clip: {e}")
                continue
            if clip is None:
                out.append(f"completion is not a clip ({type(self).__name__}.decode returned None)")
            elif not isinstance(clip, Clip):
                raise CodecError(f"{type(self).__name__}.decode returned a {type(clip).__name__}, "
                                 "not a rlpf.Clip or None")
            else:
                out.append(clip)
        return out

    def vocab_size(self) -> int:
        """Tokens the tokenizer knows (the range ``suppress_tokens`` covers)."""
        return len(self.tokenizer)

    def suppress_tokens(self) -> list[int]:
        """Every token id of the vocabulary that is not allowed: TRL's ``generation_kwargs['suppress_tokens']``."""
        allowed = set(int(i) for i in self.allowed_token_ids)
        return [i for i in range(self.vocab_size()) if i not in allowed]

    def check(self) -> None:
        """Raise CodecError for a codec that cannot be trained with (before any work)."""
        name = type(self).__name__
        if self.tokenizer is None:
            raise CodecError(f"codec {name}: no tokenizer (set .tokenizer to the model's tokenizer)")
        allowed = [int(i) for i in self.allowed_token_ids]
        if not allowed:
            raise CodecError(f"codec {name}: allowed_token_ids is empty: nothing could be sampled")
        bad = [i for i in allowed if not 0 <= i < self.vocab_size()]
        if bad:
            raise CodecError(f"codec {name}: allowed_token_ids {bad[:5]} are outside the tokenizer's "
                             f"{self.vocab_size()} tokens")
        if self.max_completion_length is not None and int(self.max_completion_length) < 1:
            raise CodecError(f"codec {name}: max_completion_length is {self.max_completion_length}, must be >= 1")
        if self.world is None and not self.worlds:
            raise CodecError(f"codec {name}: no world (set .world to the world its clips move in, or .worlds)")


class WorldModelCodec(MotionCodec):
    """The built-in world model (``rlpf.worldmodel.model.WorldModel``) as a codec: completions are exactly
    ``n_tokens`` motion codes, decoded by its FSQ motion tokenizer (a batch at once); prompts are
    ``<words> <motion>``. The model to train is ``wm.lm``."""

    def __init__(self, wm):
        self.wm = wm
        self.tokenizer = wm.text_tokenizer
        self.allowed_token_ids = range(wm.code_offset, wm.code_offset + wm.n_codes)
        self.max_completion_length = wm.n_tokens
        self.world = wm.world

    def prompt_text(self, prompt: str) -> str:
        return self.wm.prompt_text(prompt)

    def command(self, prompt_text: str) -> str:
        from rlpf.worldmodel.model import SEPARATOR

        return prompt_text.replace(SEPARATOR, " ").replace("<bos>", " ").strip()

    def _codes(self, ids):
        c = self.wm.codes_from_ids(ids)
        if len(c) != self.wm.n_tokens:
            raise ValueError(f"{len(c)} motion codes, expected {self.wm.n_tokens}")
        return c

    def decode(self, completion_ids, prompt):
        try:
            codes = self._codes(completion_ids)
        except ValueError:
            return None
        qpos = self.wm.motion_tokenizer.decode_codes(codes[None], self.wm.fps)[0]
        return Clip(qpos=qpos, fps=self.wm.fps, world=self.wm.world, prompt=prompt)

    def _collect_codes(self, completion_ids):
        """(codes [n, n_tokens], ok [n] bool, out [n]: the reason where a completion is not a clip)."""
        import numpy as np

        n = len(completion_ids)
        codes, ok, out = np.zeros((n, self.wm.n_tokens), dtype=np.int64), np.zeros(n, bool), [None] * n
        for i, ids in enumerate(completion_ids):
            try:
                codes[i], ok[i] = self._codes(ids), True
            except ValueError as e:
                out[i] = f"completion is not a clip: {e}"
        return codes, ok, out

    def decode_batch(self, completion_ids, prompts):
        import numpy as np

        wm = self.wm
        codes, ok, out = self._collect_codes(completion_ids)
        if ok.any():  # one batched decode, as the tokenizer was trained
            qpos = wm.motion_tokenizer.decode_codes(codes[ok], wm.fps)
            for j, i in enumerate(np.flatnonzero(ok)):
                out[i] = Clip(qpos=qpos[j], fps=wm.fps, world=wm.world, prompt=prompts[i])
        return out


class MultiWorldModelCodec(MotionCodec):
    """The built-in multi-world model (``rlpf.worldmodel.multiworld.MultiWorldModel``) as a codec.

    A prompt text is ``<world:W> words <motion>``: the world's marker says which world the completion
    must be a clip of (two worlds may share a prompt's words, so a training prompt is always a marked
    text). Every world's codes may be sampled (TRL's ``suppress_tokens`` is one set for the batch); a
    completion is a clip when all its ``n_tokens`` codes lie in one world's range, and it is decoded
    by that world's tokenizer. One whose codes mix worlds is not a clip; one in another world than its
    prompt's is refused by ``PhysicalFeedback`` (``world_of``): both are excluded from their group."""

    def __init__(self, wm):
        self.wm = wm
        self.tokenizer = wm.text_tokenizer
        self.allowed_token_ids = [i for w in wm.worlds for i in range(wm.code_offsets[w], wm.code_offsets[w] + wm.n_codes[w])]
        self.max_completion_length = wm.n_tokens
        self.world, self.worlds = None, list(wm.worlds)

    def prompt_text(self, prompt: str) -> str:
        """A marked text is kept as it is; a bare command is marked with its one world (UnknownPromptError
        for a command of several worlds or none: mark it, ``wm.prompt_text(prompt, world)``)."""
        if self.world_of(prompt) is not None:
            return prompt
        return self.wm.prompt_text(prompt)

    def world_of(self, prompt_text: str) -> str | None:
        import re

        found = re.search(r"<world:([^>]+)>", prompt_text)
        return found.group(1) if found else None

    def command(self, prompt_text: str) -> str:
        import re

        from rlpf.worldmodel.model import SEPARATOR

        text = re.sub(r"<world:[^>]+>", " ", prompt_text)
        return " ".join(text.replace(SEPARATOR, " ").replace("<bos>", " ").split())

    def decode(self, completion_ids, prompt):
        out = self.decode_batch([completion_ids], [prompt])[0]
        return out if isinstance(out, Clip) else None

    def decode_batch(self, completion_ids, prompts):
        import numpy as np

        wm, out, by_world = self.wm, [None] * len(completion_ids), {}
        for i, ids in enumerate(completion_ids):
            if len(ids) != wm.n_tokens:
                out[i] = f"completion is not a clip: {len(ids)} motion codes, expected {wm.n_tokens}"
                continue
            try:
                world = wm.world_of_ids(ids)
            except ValueError as e:
                out[i] = f"completion is not a clip: {e}"
                continue
            by_world.setdefault(world, []).append(i)
        for world, rows in by_world.items():  # one batched decode per world, as its tokenizer was trained
            codes = np.stack([wm.codes_from_ids(completion_ids[i], world) for i in rows])
            qpos = wm.motion_tokenizers[world].decode_codes(codes, wm.fps)
            for j, i in enumerate(rows):
                out[i] = Clip(qpos=qpos[j], fps=wm.fps, world=world, prompt=prompts[i])
        return out


def as_codec(codec) -> MotionCodec:
    """``codec`` as a MotionCodec: a built-in ``WorldModel`` is wrapped in ``WorldModelCodec``, a
    ``MultiWorldModel`` in ``MultiWorldModelCodec``."""
    if isinstance(codec, MotionCodec):
        return codec
    if callable(getattr(codec, "motion_codec", None)):   # a model that names its own codec (the pixel world model)
        return codec.motion_codec()
    if hasattr(codec, "motion_tokenizers") and hasattr(codec, "code_offsets"):  # a MultiWorldModel
        return MultiWorldModelCodec(codec)
    if hasattr(codec, "motion_tokenizer") and hasattr(codec, "codes_from_ids"):  # a WorldModel
        return WorldModelCodec(codec)
    raise CodecError(f"codec: a {type(codec).__name__} is not a rlpf.MotionCodec (subclass it: decode, "
                     "tokenizer, allowed_token_ids, world) or a rlpf WorldModel")
