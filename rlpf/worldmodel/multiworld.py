"""A multi-world world model: one causal LM over several worlds, each with its own motion tokenizer.

Worlds differ in what a frame holds (Meta-World's push / pick-place / peg scenes have a free object,
qpos of 16; drawer / door / button / window an articulation, qpos of 10), so each world keeps its own
motion tokenizer (``rlpf.worldmodel.tokenizer``). The LM reads them all through one vocabulary:

    <pad> <unk> <bos> <eos> <motion> | <world:metaworld/push-v3> ... | m0 ... m{N-1} | prompt words
                                       one marker per world          world k's codes are m{base_k}..

A training sequence is ``<bos> <world:W> push the puck to a new spot <motion> m12 m503 ... <eos>``:
the world's marker right after ``<bos>``, the prompt words, the separator, then world W's codes in
W's own id range. So a sequence carries its world twice - the marker conditions the LM (two worlds
may share a prompt: window-open's and window-close's "move the arm without moving the window"), and
the id range of the codes says which tokenizer decodes them. Sampling is restricted to the prompt's
world's range, so every sample decodes to a clip of that world, and every clip carries its world.

A prompt names its world by being one of that world's training prompts; a prompt trained in no world
(or in several) needs its world named (``world=``, ``rlpf generate --world``), else UnknownPromptError
says which worlds there are. Words are shared across worlds (one embedding for "the"), as a VLA's are.

Saved as one directory: the LM and its text tokenizer (as ``WorldModel``'s), ``motion_tokenizers/
<world file stem>/`` per world and ``world_model.json`` with ``kind: multiworld``, the worlds in
vocabulary order, their prompts and task prompts. ``load_world_model`` reads either kind.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from rlpf.core.clips import Clip
from rlpf.core.errors import CheckpointError
from rlpf.worldmodel.model import (META_FILE, SEPARATOR, SPECIALS, LMConfig, UnknownPromptError, WorldModel,
                                   build_lm, load_lm, prompt_words, resolve_checkpoint)
from rlpf.worldmodel.tokenizer import MotionTokenizer

KIND = "multiworld"
TOKENIZERS_DIR = "motion_tokenizers"


def world_marker(world: str) -> str:
    """The vocabulary token that names ``world`` in a sequence (right after ``<bos>``)."""
    return f"<world:{world}>"


def _stem(world: str) -> str:
    from rlpf.envs.worlds import file_stem

    return file_stem(world)


class MultiWorldModel:
    """Text -> clips of several worlds; ``lm`` is a plain ``LlamaForCausalLM``.

    ``prompts[world]``: the world's training prompts; ``task_prompts[world]``: the one of them that asks
    for the world's task done (its DataSource's ``task_prompts``; what a control head reads), or None."""

    def __init__(self, lm, text_tokenizer, motion_tokenizers: dict[str, MotionTokenizer], n_frames: int,
                 fps: float, prompts: dict[str, list[str]], task_prompts: dict[str, str | None] | None = None):
        self.lm, self.text_tokenizer = lm, text_tokenizer
        self.motion_tokenizers = dict(motion_tokenizers)
        self.worlds = list(self.motion_tokenizers)
        self.n_frames, self.fps = int(n_frames), float(fps)
        self.prompts = {w: list(prompts.get(w, [])) for w in self.worlds}
        self.task_prompts = {w: (task_prompts or {}).get(w) for w in self.worlds}
        for w, tok in self.motion_tokenizers.items():
            if tok.features.world != w:
                raise ValueError(f"motion tokenizer for {w!r} is one of world {tok.features.world!r}")
        ds = {tok.downsample for tok in self.motion_tokenizers.values()}
        if len(ds) != 1:
            raise ValueError(f"the worlds' tokenizers downsample differently ({sorted(ds)}): one LM needs one rate")
        self.downsample = ds.pop()
        if n_frames % self.downsample:
            raise ValueError(f"n_frames {n_frames} is not a multiple of the tokenizers' downsample {self.downsample}")
        vocab = text_tokenizer.get_vocab()
        self.separator_id = vocab[SEPARATOR]
        self.marker_ids = {w: vocab[world_marker(w)] for w in self.worlds}
        self.n_codes = {w: tok.codebook_size for w, tok in self.motion_tokenizers.items()}
        base, self.code_offsets = 0, {}
        for w in self.worlds:   # the worlds' ranges follow each other in the worlds' order
            self.code_offsets[w] = vocab[f"m{base}"]
            base += self.n_codes[w]
        self.words = sorted(set(vocab) - set(SPECIALS) - {SEPARATOR} - {world_marker(w) for w in self.worlds}
                            - {f"m{i}" for i in range(base)})
        self.world = None   # several: a clip's world is its prompt's

    @classmethod
    def create(cls, motion_tokenizers: dict[str, MotionTokenizer], prompts: dict[str, list[str]], n_frames: int,
               fps: float, cfg: LMConfig | None = None, seed: int = 0,
               task_prompts: dict[str, str | None] | None = None) -> "MultiWorldModel":
        worlds = list(motion_tokenizers)
        if not worlds:
            raise ValueError("a multi-world model needs at least one world")
        n_codes = sum(t.codebook_size for t in motion_tokenizers.values())
        n_tokens = n_frames // next(iter(motion_tokenizers.values())).downsample
        lm, text_tok = build_lm([p for ps in prompts.values() for p in ps], n_codes, n_tokens, cfg, seed,
                                markers=tuple(world_marker(w) for w in worlds))
        return cls(lm, text_tok, motion_tokenizers, n_frames, fps, prompts, task_prompts)

    # ---- worlds and prompts -----------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        """Motion codes per clip (every world's)."""
        return self.n_frames // self.downsample

    def motion_tokenizer(self, world: str) -> MotionTokenizer:
        self._check_world(world)
        return self.motion_tokenizers[world]

    def _check_world(self, world: str) -> None:
        if world not in self.motion_tokenizers:
            raise UnknownPromptError(f"world {world!r} is not one of this model's worlds {self.worlds}")

    def worlds_of(self, prompt: str) -> list[str]:
        """The worlds whose training prompts include ``prompt`` (word for word, case-insensitive)."""
        key = " ".join(prompt_words(prompt))
        return [w for w in self.worlds if key in {" ".join(prompt_words(p)) for p in self.prompts[w]}]

    def resolve_world(self, prompt: str, world: str | None = None) -> str:
        """The world a prompt generates in: ``world`` when given (any prompt of known words), else the one
        world that was trained on the prompt. UnknownPromptError for a prompt of no world or of several."""
        self.check_words(prompt)
        if world is not None:
            self._check_world(world)
            return world
        found = self.worlds_of(prompt)
        if len(found) == 1:
            return found[0]
        trained = {w: self.prompts[w] for w in self.worlds}
        if not found:
            raise UnknownPromptError(
                f"prompt {prompt!r} is a prompt of no world of this model: name its world (one of {self.worlds}) "
                f"or use a trained prompt ({trained})")
        raise UnknownPromptError(f"prompt {prompt!r} was trained in several worlds {found}: name one of them")

    def check_words(self, prompt: str) -> None:
        if not prompt_words(prompt):
            raise UnknownPromptError("empty prompt")
        unknown = [w for w in prompt_words(prompt) if w not in self.words]
        if unknown:
            raise UnknownPromptError(f"prompt {prompt!r}: unknown word(s) {unknown}; this multi-world model knows "
                                     f"the words {self.words}")

    def prompt_text(self, prompt: str, world: str | None = None) -> str:
        """The text the LM is conditioned on (``<bos>`` is added by the tokenizer)."""
        world = self.resolve_world(prompt, world)
        return f"{world_marker(world)} " + " ".join(prompt_words(prompt)) + " " + SEPARATOR

    def prompt_ids(self, prompt: str, world: str | None = None) -> list[int]:
        return self.text_tokenizer(self.prompt_text(prompt, world))["input_ids"]

    def sequence_ids(self, prompt: str, codes: np.ndarray, world: str) -> list[int]:
        """Full training sequence of one clip's codes in ``world``."""
        off = self.code_offsets[world]
        return self.prompt_ids(prompt, world) + [off + int(c) for c in codes] + [self.text_tokenizer.eos_token_id]

    def world_of_ids(self, ids) -> str:
        """The world whose code range holds every id of a completion; ValueError otherwise."""
        ids = np.asarray(ids, dtype=np.int64)
        for w in self.worlds:
            off = self.code_offsets[w]
            if len(ids) and ((ids >= off) & (ids < off + self.n_codes[w])).all():
                return w
        raise ValueError(f"completion is not the codes of one world: "
                         f"{self.text_tokenizer.convert_ids_to_tokens(ids[:8].tolist())}...")

    def codes_from_ids(self, ids, world: str | None = None) -> np.ndarray:
        """World-local motion codes of completion token ids (``world`` None: the range they lie in)."""
        world = world or self.world_of_ids(ids)
        codes = np.asarray(ids, dtype=np.int64) - self.code_offsets[world]
        bad = (codes < 0) | (codes >= self.n_codes[world])
        if bad.any():
            raise ValueError(f"completion holds tokens outside {world}'s codes: "
                             f"{self.text_tokenizer.convert_ids_to_tokens(np.asarray(ids)[bad].tolist())}")
        return codes

    # ---- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_codes(self, prompts: list[str], worlds: list[str], temperature: float = 1.0,
                     prefix: np.ndarray | None = None, seed: int | None = None, batch_size: int = 256) -> np.ndarray:
        """[len(prompts), n_tokens] world-local codes, prompt i sampled in ``worlds[i]`` (only its codes
        allowed); ``prefix`` [len(prompts), k] world-local codes are kept as given."""
        from transformers import LogitsProcessor, LogitsProcessorList

        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        k = 0 if prefix is None else prefix.shape[1]
        n_new = self.n_tokens - k
        out = np.empty((len(prompts), self.n_tokens), dtype=np.int64)
        ids_of = [self.prompt_ids(p, w) for p, w in zip(prompts, worlds)]
        self.lm.eval()
        # one world and one prompt length per batch: one logits mask, no padding
        groups: dict[tuple[str, int], list[int]] = {}
        for i, (w, ids) in enumerate(zip(worlds, ids_of)):
            groups.setdefault((w, len(ids)), []).append(i)
        with torch.random.fork_rng():
            if seed is not None:
                torch.manual_seed(seed)
            for (w, _), members in sorted(groups.items()):
                off = self.code_offsets[w]
                allowed = torch.zeros(len(self.text_tokenizer), dtype=torch.bool)
                allowed[off:off + self.n_codes[w]] = True

                class WorldCodesOnly(LogitsProcessor):
                    def __init__(self, allowed):
                        self.allowed = allowed

                    def __call__(self, input_ids, scores):
                        return scores.masked_fill(~self.allowed, float("-inf"))

                for s in range(0, len(members), batch_size):
                    idx = members[s:s + batch_size]
                    ids = torch.tensor([ids_of[i] for i in idx])
                    if k:
                        ids = torch.cat([ids, torch.as_tensor(prefix[idx], dtype=torch.long) + off], 1)
                    gen = ids if n_new == 0 else self.lm.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                        temperature=temperature, top_k=None, top_p=None, max_new_tokens=n_new,
                        min_new_tokens=n_new, logits_processor=LogitsProcessorList([WorldCodesOnly(allowed)]),
                        pad_token_id=self.text_tokenizer.pad_token_id, eos_token_id=None)
                    out[idx] = gen[:, -self.n_tokens:].numpy() - off
        return out

    def generate(self, prompts: list[str] | str, n: int = 1, temperature: float = 1.0,
                 first_frames: np.ndarray | None = None, seed: int | None = 0, world: str | None = None) -> list[Clip]:
        """``n`` clips per prompt, each in its prompt's world (``world``: for every prompt). ``first_frames``
        [k, nq] continues a given start as ``WorldModel.generate`` does; its nq must be the world's."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        worlds = [self.resolve_world(p, world) for p in prompts]
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        flat = [p for p in prompts for _ in range(n)]
        flat_worlds = [w for w in worlds for _ in range(n)]
        prefix, start = None, None
        if first_frames is not None:
            ff = np.asarray(first_frames, dtype=np.float64)
            ds = self.downsample
            k = min(ff.shape[0] // ds, self.n_tokens) if ff.ndim == 2 else 0
            if k < 1:
                raise ValueError(f"first_frames must be [k >= {ds}, nq], got {ff.shape}")
            prefix = np.empty((len(flat), k), np.int64)
            for w in set(flat_worlds):
                tok = self.motion_tokenizers[w]
                if ff.shape[1] != tok.features.nq:
                    raise ValueError(f"first_frames have {ff.shape[1]} columns; world {w} has nq={tok.features.nq}")
                rows = [i for i, fw in enumerate(flat_worlds) if fw == w]
                prefix[rows] = tok.encode_qpos(ff[None, :k * ds], self.fps)
            start = ff[0]
        codes = self.sample_codes(flat, flat_worlds, temperature, prefix, seed)
        clips: list[Clip | None] = [None] * len(flat)
        for w in set(flat_worlds):
            rows = [i for i, fw in enumerate(flat_worlds) if fw == w]
            qpos = self.motion_tokenizers[w].decode_codes(codes[rows], self.fps, start=start)
            for j, i in enumerate(rows):
                clips[i] = Clip(qpos=qpos[j], fps=self.fps, world=w, prompt=flat[i],
                                source=f"generated:{w}:{seed}:{i}")
        return clips

    def view(self, world: str) -> "WorldView":
        """The model seen as one world's generator (``prompts``, ``generate``): what per-world
        evaluation (``rlpf.finetune.report.measure``) reads."""
        self._check_world(world)
        return WorldView(self, world)

    def training_prompts(self) -> list[str]:
        """Every world's training prompts as marked prompt texts (``<world:W> words <motion>``), in the
        worlds' order: what RLPF samples from (a prompt of two worlds is two prompts)."""
        return [self.prompt_text(p, w) for w in self.worlds for p in self.prompts[w]]

    # ---- persistence ------------------------------------------------------------------------------
    def save_pretrained(self, path: str) -> None:
        """Write the whole model into ``path`` via a temporary directory, so nothing is half-written."""
        from rlpf.core.outputs import write_dir

        def fill(tmp):
            self.lm.save_pretrained(tmp)
            self.text_tokenizer.save_pretrained(tmp)
            for w, tok in self.motion_tokenizers.items():
                tok.save_pretrained(os.path.join(tmp, TOKENIZERS_DIR, _stem(w)))
            meta = {"kind": KIND, "worlds": self.worlds, "fps": self.fps, "n_frames": self.n_frames,
                    "prompts": self.prompts, "task_prompts": self.task_prompts, "format": 2}
            with open(os.path.join(tmp, META_FILE), "w") as f:
                json.dump(meta, f, indent=1)

        write_dir(path, fill)

    @classmethod
    def from_pretrained(cls, path: str, worlds=None) -> "MultiWorldModel":
        """Load a saved multi-world model; ``worlds`` (if given) must all be among its worlds."""
        path = resolve_checkpoint(path)
        meta = read_meta(path)
        if meta.get("kind") != KIND:
            raise CheckpointError(path, f"a one-world model (world {meta.get('world')!r}), not a multi-world one: "
                                  "load it with WorldModel.from_pretrained (or load_world_model)")
        try:
            names, n_frames, fps = list(meta["worlds"]), int(meta["n_frames"]), float(meta["fps"])
            prompts, task_prompts = dict(meta["prompts"]), dict(meta.get("task_prompts") or {})
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(os.path.join(path, META_FILE), f"not a multi-world model description ({e})") from None
        missing = [w for w in (worlds or ()) if w not in names]
        if missing:
            raise CheckpointError(path, f"this multi-world model has no world {missing} (its worlds: {names})")
        toks = {}
        for w in names:
            sub = os.path.join(path, TOKENIZERS_DIR, _stem(w))
            try:
                toks[w] = MotionTokenizer.from_pretrained(sub)
            except FileNotFoundError as e:
                raise CheckpointError(sub, f"world {w}'s motion tokenizer is missing ({e})") from None
        lm, text_tok = load_lm(path)
        return cls(lm, text_tok, toks, n_frames, fps, prompts, task_prompts)


class WorldView:
    """One world of a ``MultiWorldModel``: its prompts, and ``generate`` in that world."""

    def __init__(self, model: MultiWorldModel, world: str):
        self.model, self.world = model, world
        self.prompts = list(model.prompts[world])
        self.fps, self.n_frames = model.fps, model.n_frames

    def generate(self, prompts, n: int = 1, temperature: float = 1.0, first_frames=None, seed: int | None = 0):
        return self.model.generate(prompts, n=n, temperature=temperature, first_frames=first_frames, seed=seed,
                                   world=self.world)


def read_meta(path: str) -> dict:
    """``world_model.json`` of a model directory or pretraining run (no weights are read)."""
    meta_path = os.path.join(resolve_checkpoint(path), META_FILE)
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(meta_path, f"not a readable world model description ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(meta_path, "not a world model description (not a JSON object)")
    return meta


def load_world_model(path: str) -> WorldModel | MultiWorldModel:
    """A saved world model of either kind (one world: ``WorldModel``; several: ``MultiWorldModel``)."""
    kind = read_meta(path).get("kind")
    if kind == KIND:
        return MultiWorldModel.from_pretrained(path)
    if kind == "video":   # the pixel world model (rlpf.videowm): frame codes, decoded to videos and lifted
        from rlpf.videowm.model import VideoWorldModel

        return VideoWorldModel.from_pretrained(path)
    return WorldModel.from_pretrained(path)
