"""Physical feedback for generated completions: motion codes -> clips -> every reward term, in parallel.

This is the reward side of RLPF. A batch of completions (motion-code token ids) is decoded to clips
once, then every term - the physics plugins, ``tracking_success`` / ``tracking_error_m`` from a
tracker replaying the clip in MuJoCo, and ``alignment`` (does the motion do what the prompt says) -
is computed once per clip in worker processes (``evaluate_rewards`` with the registry's per-clip
isolation). Completions are decoded by a ``rlpf.worldmodel.codec.MotionCodec`` (the generator's: the built-in
world model's is ``WorldModelCodec``). TRL sees one reward function per term (``reward_functions(codec)``) with the weights from the
config, so every term is its own TensorBoard series and the weighted sum TRL optimizes is exactly
``sum(weight * term)``.

A clip on which any term fails (a plugin raises or returns NaN) gets NaN from every function: TRL
then treats it as unscorable - out of its group's baseline, zero advantage - so a partial reward
never masquerades as a whole one. Each exclusion is warned about and counted (``excluded``).
"""
from __future__ import annotations

from rlpf.core.errors import RLPFError

import logging
import math
import time
from typing import Sequence

import numpy as np

from rlpf.core.clips import Clip

log = logging.getLogger("rlpf.feedback")

DEFAULT_WEIGHTS = {"tracking_success": 10.0, "alignment": 2.0}
"""The RLPF paper's reward: 10 x tracking success + 2 x alignment."""


class FeedbackError(RLPFError, ValueError):
    """A reward configuration that cannot work (unknown term or tracker) - raised before any training."""


"""Terms about movable objects: computed only in worlds that have objects."""


def logged_terms(weights: dict[str, float], world: str) -> list[str]:
    """Every term computed and logged: the weighted ones, then tracking, alignment and the physics
    terms that apply to ``world`` (``rlpf.rewards.registry.applies``: no object terms for the ant)."""
    from rlpf.envs.worlds import compile_world
    from rlpf.rewards.registry import applies, physics_terms

    cw = compile_world(world)
    names = list(weights)
    extras = ["tracking_success", "tracking_error_m", "alignment",
              *(name for name, info in physics_terms().items() if applies(info, cw))]
    if len(cw.object_bodies):
        extras.append("object_divergence_m")
    for extra in extras:
        if extra not in names:
            names.append(extra)
    return names


class PhysicalFeedback:
    """Scores clips (or completions, decoded by a ``MotionCodec``) on every term, in ``workers`` processes.

    ``world``: a world name, MJCF path or ``rlpf.World`` (a world registered in this process with
    ``rlpf.register_world`` works too: the workers get its declaration, ``portable_world``), or a list
    of them (a multi-world model's worlds: each clip is scored in its own, with the tracker of it).
    ``weights``: term -> weight (registered name, ``pkg.mod:obj`` path or entry point). ``tracker``:
    the tracker whose success is rewarded (a registered name such as ``pd`` or ``learned``, or a run
    directory). ``workers`` 0 scores in this process. ``backend``: where the workers run, ``local``
    processes or ``ray`` actors on the cluster at ``address`` (``rlpf.core.backend``; each worker
    keeps its compiled world and tracker across chunks); a dead worker's chunk is excluded and
    counted either way. Use as a context manager (or call ``close``) to stop the workers.

    With TRL: ``funcs, weights = feedback.reward_functions(codec)``, then
    ``GRPOTrainer(reward_funcs=funcs, args=GRPOConfig(reward_weights=weights, ...))`` - or
    ``rlpf.RLPFTrainer``, which does that and scores the next batch while it trains on this one.
    """

    def __init__(self, world, weights: dict[str, float] | None = None, tracker: str = "pd",
                 workers: int = 2, chunk: int = 8, backend: str = "local", address: str | None = None):
        from rlpf.envs.worlds import get_world, portable_world
        from rlpf.rewards.registry import RewardError, get_reward
        from rlpf.judge.tracking import TrackerError, check_tracker_spec, portable_tracker

        from rlpf.core.backend import BackendError, check_backend

        self.world, self.tracker, self.workers, self.chunk = world, tracker, int(workers), max(1, int(chunk))
        try:
            self.backend, self.address = check_backend(backend), address
        except BackendError as e:
            raise FeedbackError(str(e)) from None
        if address is not None and backend != "ray":
            raise FeedbackError(f"address {address!r} is for the ray backend; the local backend runs on this machine")
        self.weights = {k: float(v) for k, v in (DEFAULT_WEIGHTS if weights is None else weights).items()}
        for name, w in self.weights.items():
            if not math.isfinite(w):
                raise FeedbackError(f"reward weight for {name!r} is {w}: weights must be finite numbers")
        # several worlds (a multi-world model's): each clip is scored in its own world with that world's
        # tracker; the terms are every world's, and a term that does not apply to a clip's world is None
        # for it (TRL leaves it out of that clip's weighted sum), as in one world
        several = isinstance(world, (list, tuple))
        if several and not world:
            raise FeedbackError("world: an empty list of worlds")
        given = list(world) if several else [world]
        names = [get_world(w).name for w in given]
        if len(set(names)) != len(names):
            raise FeedbackError(f"world: {names} names a world twice")
        self.worlds = names
        self.world_name = None if several else names[0]
        """The one world every clip is scored in (None with several: each clip's own, ``Clip.world``)."""
        self.terms = list(dict.fromkeys(t for w in given for t in logged_terms(self.weights, w)))
        # the jobs carry the world as a worker can rebuild it: a built-in's name, else its declaration
        self._job_worlds = {n: portable_world(w) for n, w in zip(names, given)}
        for name in self.terms:
            try:
                get_reward(name)
            except RewardError as e:
                raise FeedbackError(f"reward term {name!r}: {e}") from None
        try:
            check_tracker_spec(tracker)
            # the jobs carry the tracker as a worker can rebuild it (one registered in a script too)
            self._job_trackers = {n: portable_tracker(tracker, w) for n, w in zip(names, given)}
        except TrackerError as e:
            raise FeedbackError(str(e)) from None
        self._pool = None
        self._batches: dict = {}  # batch key -> submitted (in flight) or scored batch
        self.excluded_total = 0
        self.work_seconds = 0.0
        """Seconds the workers spent scoring, summed over workers and batches."""

    # ---- scoring ---------------------------------------------------------------------------------
    def score(self, clips: Sequence[Clip]) -> dict:
        """``{"terms": {name: [float | nan]}, "errors": {i: message}}`` for the clips, in order (scored
        in the feedback's world; with several worlds each in its own ``Clip.world``, one of them)."""
        if self.world_name is None:
            bad = [(i, c.world) for i, c in enumerate(clips) if c.world not in self.worlds]
            if bad:
                raise FeedbackError(f"clip {bad[0][0]} is of world {bad[0][1]!r}, not one of this feedback's "
                                    f"worlds {self.worlds}")
        return self._collect(self._submit(clips))

    def _world_of(self, clip: Clip) -> str:
        return self.world_name or clip.world

    def _submit(self, clips: Sequence[Clip], context: dict | None = None) -> list:
        """Start scoring ``clips`` in the workers: ``[(job, future)]``; with no workers the future is
        None and the job runs here when collected. ``context``: extra keyword arguments for every
        plugin (the training step, see ``reward_functions``). A chunk holds clips of one world (runs of
        consecutive clips: a GRPO batch keeps each prompt's group together), in order."""
        runs: list[list[Clip]] = []
        for c in clips:
            if runs and len(runs[-1]) < self.chunk and self._world_of(runs[-1][0]) == self._world_of(c):
                runs[-1].append(c)
            else:
                runs.append([c])
        jobs = [(self._job_worlds[self._world_of(r[0])], self._job_trackers[self._world_of(r[0])], self.terms,
                 [(c.qpos, c.fps, c.prompt, c.source) for c in r], context or {}) for r in runs]
        if self.workers > 0 and jobs:
            pool = self._get_pool()
            return [(job, pool.submit(_score_chunk, job)) for job in jobs]
        return [(job, None) for job in jobs]

    def _collect(self, handle: list) -> dict:
        parts = [self._chunk_result(job, future) for job, future in handle]
        terms = {name: [] for name in self.terms}
        errors: dict[int, str] = {}
        offset = 0
        for part in parts:
            for name in self.terms:
                terms[name].extend(part["terms"][name])
            errors.update({offset + i: e for i, e in part["errors"].items()})
            offset += part["n"]
        self.work_seconds += sum(part.get("seconds", 0.0) for part in parts)
        return {"terms": terms, "errors": errors}

    def prefetch(self, codec, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]],
                 trainer_state=None, step: int | None = None) -> None:
        """Start scoring completions in the workers and return at once; ``score_completions`` with the
        same arguments later waits for the result. This is how the trainer overlaps the physics of
        the next generated batch with the update on the current one. ``trainer_state`` / ``step``:
        the training state when the batch was sampled (passed to the plugins, see ``reward_functions``)."""
        key = _batch_key(prompts, completion_ids)
        if key not in self._batches:
            self._batches[key] = self._decode_and_submit(codec, prompts, completion_ids,
                                                         _training_context(trainer_state, step))

    def score_completions(self, codec, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]],
                          trainer_state=None) -> dict:
        """Decode completions with ``codec`` (a ``MotionCodec``; a ``WorldModel`` is taken as its
        ``WorldModelCodec``) for the given prompt texts and score them (cached per batch).

        A completion the codec does not decode to a clip (for the world model: not exactly
        ``n_tokens`` motion codes) gets NaN on every term and is counted as excluded.
        ``trainer_state``: TRL's, passed to the plugins when the batch is scored now (not when it
        was prefetched).
        """
        key = _batch_key(prompts, completion_ids)
        batch = self._batches.pop(key, None) or self._decode_and_submit(codec, prompts, completion_ids,
                                                                        _training_context(trainer_state))
        if "result" not in batch:
            batch["result"] = self._assemble(batch)
        # the reward functions of one batch ask in turn; older batches are done with
        self._batches = {key: batch, **{k: b for k, b in self._batches.items() if "result" not in b}}
        return batch["result"]

    def _decode_and_submit(self, codec, prompts, completion_ids, context: dict | None = None) -> dict:
        from rlpf.worldmodel.codec import CodecError, as_codec

        codec = as_codec(codec)
        n = len(completion_ids)
        commands = [codec.command(p) for p in prompts]
        decoded = codec.decode_batch(completion_ids, commands)
        if len(decoded) != n:
            raise CodecError(f"{type(codec).__name__}.decode_batch returned {len(decoded)} entries for {n} completions")
        clips, index, errors = [], [], {}
        for i, d in enumerate(decoded):
            if not isinstance(d, Clip):
                errors[i] = str(d)
                continue
            world = self.world_name
            if world is None:  # several worlds: the clip must be in the world its prompt asks for
                asked = codec.world_of(prompts[i])
                if d.world != asked:
                    errors[i] = f"completion is a clip of world {d.world!r}, its prompt asks for {asked!r}"
                    continue
                if d.world not in self.worlds:
                    errors[i] = f"completion is a clip of world {d.world!r}, not one of the feedback's {self.worlds}"
                    continue
                world = d.world
            clips.append(Clip(qpos=np.asarray(d.qpos), fps=d.fps, world=world,
                              prompt=commands[i] if d.prompt is None else d.prompt, source=f"completion:{i}"))
            index.append(i)
        return {"n": n, "clips": clips, "index": index, "errors": errors, "handle": self._submit(clips, context)}

    def _assemble(self, batch: dict) -> dict:
        n, index, errors = batch["n"], batch["index"], dict(batch["errors"])
        scored = self._collect(batch["handle"])
        terms = {name: [math.nan] * n for name in self.terms}
        for j, i in enumerate(index):
            if j in scored["errors"]:
                errors[i] = scored["errors"][j]
                continue
            for name in self.terms:
                terms[name][i] = scored["terms"][name][j]
        for i in errors:  # excluded: a partial reward must not look like a whole one
            for name in self.terms:
                terms[name][i] = math.nan
        if errors:
            self.excluded_total += len(errors)
            first = next(iter(errors.items()))
            log.warning("%d of %d samples excluded from this step's rewards (first: sample %d: %s)",
                        len(errors), n, first[0], first[1])
        return {"terms": terms, "errors": errors, "clips": batch["clips"], "index": index}

    # ---- TRL -------------------------------------------------------------------------------------
    def reward_functions(self, codec) -> tuple[list, list[float]]:
        """One TRL reward function per term (its ``__name__`` is the term) and their weights, for
        completions that ``codec`` (a ``MotionCodec``; a ``WorldModel`` is wrapped) turns into clips.

        Unweighted terms get weight 0: logged by TRL as ``rewards/<term>/mean``, not optimized.
        TRL calls them with its ``trainer_state``; every plugin then gets ``step`` (the trainer's
        ``global_step`` when the batch was sampled: scored ahead, one generated batch before the
        updates that use it) and ``trainer_state`` (a copy taken then) as keyword arguments, in the
        worker processes as in this one.
        """
        from rlpf.worldmodel.codec import as_codec
        from rlpf.envs.worlds import get_world

        codec = as_codec(codec)
        made = [get_world(w).name for w in (codec.worlds or ([codec.world] if codec.world is not None else []))]
        if self.world_name is not None and made and made != [self.world_name]:
            what = f"world {codec.world!r}" if not codec.worlds else f"worlds {made}"
            raise FeedbackError(f"codec {type(codec).__name__} makes clips of {what}, but this "
                                f"feedback scores world {self.world_name!r}")
        missing = [w for w in made if w not in self.worlds]
        if self.world_name is None and missing:
            raise FeedbackError(f"codec {type(codec).__name__} makes clips of world(s) {missing}, which this "
                                f"feedback does not score (its worlds: {self.worlds})")
        funcs = []
        for name in self.terms:
            def fn(prompts, completions, completion_ids, _name=name, **kwargs):
                result = self.score_completions(codec, prompts, completion_ids, trainer_state=kwargs.get("trainer_state"))
                if _name == self.terms[0] and "log_metric" in kwargs:
                    kwargs["log_metric"]("rewards/excluded_samples", float(len(result["errors"])))
                return [None if math.isnan(v) else v for v in result["terms"][_name]]
            fn.__name__ = name.replace(":", ".")
            funcs.append(fn)
        return funcs, [self.weights.get(name, 0.0) for name in self.terms]

    # ---- workers ---------------------------------------------------------------------------------
    def _get_pool(self):
        if self._pool is None:
            from rlpf.core.backend import make_backend

            self._pool = make_backend(self.backend, self.workers, address=self.address, label="rlpf-scoring")
        return self._pool

    def _chunk_result(self, job, future) -> dict:
        """A chunk's scores. A chunk that failed as a whole - its worker died under it (killed, or a
        crash in native code, which no plugin isolation can catch), or it raised outside the per-clip
        isolation - fails only its own clips: excluded, not fatal. The backend replaces a dead worker,
        and the other workers' chunks are not affected (rlpf.core.pool, rlpf.core.ray_backend)."""
        if future is None:
            return _score_chunk(job)
        outcome = future.result()
        if outcome.ok:
            return outcome.value
        n, terms = len(job[3]), job[2]
        why = f"scoring chunk failed: {outcome.error}" if not outcome.died else \
            outcome.error.replace("a worker process died", "a scoring worker process died", 1)
        return {"n": n, "terms": {name: [math.nan] * n for name in terms}, "errors": dict.fromkeys(range(n), why)}

    def close(self) -> None:
        if self._pool is not None:
            # the workers may be mid-batch (scored ahead): close() stops them rather than wait for it
            self._pool.close()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def command_of(prompt_text: str) -> str:
    """The command in a prompt text as the world model sees it (``walk forward <motion>`` -> ``walk forward``)."""
    from rlpf.worldmodel.codec import WorldModelCodec

    return WorldModelCodec.command(None, prompt_text)


def _training_context(trainer_state=None, step: int | None = None) -> dict:
    """``{"step", "trainer_state"}`` for the plugins, taken now: a batch scored later (in a worker, or
    ahead of its updates) still sees the state it was sampled in. {} outside training."""
    if trainer_state is None and step is None:
        return {}
    import copy

    step = int(trainer_state.global_step if step is None else step)
    return {"step": step, "trainer_state": copy.deepcopy(trainer_state)}


def _batch_key(prompts, completion_ids) -> tuple:
    return tuple(prompts), tuple(tuple(int(t) for t in c) for c in completion_ids)


_TRACKERS: dict = {}


def _adopt_world(world) -> None:
    """Register a shipped World declaration (``portable_world``: a world registered in the parent)
    under its name in this worker too: terms that look a world up by the clip's world name (the
    alignment labeller, ``PROMPTS``) then see what the parent sees."""
    from rlpf.envs.worlds import UnknownWorldError, get_world, register_world

    try:
        if get_world(world.name) == world:
            return
    except UnknownWorldError:
        pass
    register_world(world.name, world, replace=True)


def _score_chunk(job) -> dict:
    """Score one chunk of clips in this process: every term, plugin failures isolated per clip."""
    from rlpf.envs.worlds import compile_world
    from rlpf.rewards.registry import evaluate_rewards
    from rlpf.judge.tracking import PortableTracker, load_tracker

    t0 = time.perf_counter()
    world, tracker_spec, terms, items = job[:4]
    context = job[4] if len(job) > 4 else {}  # the training step (see PhysicalFeedback.reward_functions)
    if not isinstance(world, str):
        _adopt_world(world)
    cw = compile_world(world)
    key = (world, tracker_spec.key() if isinstance(tracker_spec, PortableTracker) else tracker_spec)
    if key not in _TRACKERS:
        _TRACKERS[key] = load_tracker(tracker_spec, world)
    name = world if isinstance(world, str) else world.name  # a World declaration, shipped (portable_world)
    clips = [Clip(qpos=q, fps=f, world=name, prompt=p, source=s) for q, f, p, s in items]
    n = len(clips)
    out_terms = {name: [math.nan] * n for name in terms}
    errors: dict[int, str] = {}
    try:
        table = evaluate_rewards(clips, {name: 0.0 for name in terms}, world=cw,
                                 prompts=[c.prompt for c in clips], tracker=_TRACKERS[key],
                                 tracker_workers=1, **context)
    except Exception as e:  # noqa: BLE001 - one bad chunk must not stop training
        return {"n": n, "terms": out_terms, "errors": {i: f"{type(e).__name__}: {e}" for i in range(n)},
                "seconds": time.perf_counter() - t0}
    for name in terms:
        out_terms[name] = [math.nan if v is None else float(v) for v in table.terms[name]]
    errors.update(table.errors)
    return {"n": n, "terms": out_terms, "errors": errors, "seconds": time.perf_counter() - t0}
