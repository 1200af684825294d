"""RLPF fine-tuning through TRL's GRPOTrainer: group-relative PPO-clip with KL to the frozen reference.

TRL does the algorithm: for each prompt it samples a group of completions (motion-code sequences),
scores them with our reward functions, normalizes rewards within the group into advantages, takes
clipped policy-gradient steps, and keeps the policy near a frozen copy of the starting model with a
KL penalty (``beta``; the reference is reloaded by TRL from the base model's directory). rlpf adds
the rewards (``rlpf.finetune.feedback``), restricts sampling to motion codes (``suppress_tokens``:
every completion is a clip), times each step's parts, and makes the run safe to stop: checkpoints
every ``save_steps`` (model, optimizer, scheduler, RNG, step, the batch scored ahead), resume from
the last complete one, Ctrl-C saves before it stops, TensorBoard continues where the checkpoint left
off. A resumed run ends bit-identical to an uninterrupted one, wherever it was killed (SIGKILL) or
stopped (SIGINT / SIGTERM): what TRL and transformers do not restore by themselves is restored here
(``_trainer_class``: the prompt order of later epochs; ``last_checkpoint``: a checkpoint a kill cut
short is never resumed from).

``RLPFTrainer(model, codec, feedback, args, prompts)`` is that trainer for any Hugging Face causal LM
(a model object or a path) whose completions a ``rlpf.worldmodel.codec.MotionCodec`` turns into clips; ``args``
is TRL's ``GRPOConfig``, passed through. ``finetune`` is ``rlpf train``'s use of it on the built-in
world model (``WorldModelCodec``), configured by ``GRPOSettings``.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import time
from dataclasses import dataclass

from rlpf.core.errors import RLPFError
from rlpf.worldmodel.training import StopOnSignal


class TrainerConfigError(RLPFError, ValueError):
    """RLPFTrainer arguments that cannot work (not a GRPOConfig, no prompts, weights set twice...)."""

COMPLETE_FILE = "rlpf_checkpoint.json"
"""Written into a checkpoint folder after everything else in it: the folder is whole."""
SUMMARY_FILE = "rlpf_training.json"
"""The fine-tuning summary (steps, seconds, excluded samples), written with the finished model."""
MARKED_FILE = "rlpf_checkpoints.json"
"""Written into the checkpoint directory by a run that marks its checkpoints complete (runs made
before that have none and are resumed as they were: from their newest checkpoint)."""


@dataclass
class GRPOSettings:
    """The group-relative PPO update of ``rlpf train``: its typed YAML config (``grpo.*``), which
    ``finetune`` maps onto a ``trl.GRPOConfig`` for ``RLPFTrainer``. Python users build the
    GRPOConfig themselves and hand it to ``RLPFTrainer``; these fields are the part ``rlpf train``
    exposes, checked when the config is loaded.

    Mapping (GRPOConfig field <- setting): ``max_steps`` <- steps; ``per_device_train_batch_size``
    <- prompts_per_step x num_generations; ``num_generations``, ``steps_per_generation``,
    ``num_iterations``, ``learning_rate``, ``warmup_steps``, ``beta``, ``epsilon``, ``temperature``,
    ``loss_type``, ``scale_rewards``, ``max_grad_norm``, ``logging_steps`` <- the same names;
    ``save_steps`` <- save_steps rounded up to a multiple of ``cycle``; ``seed`` / ``data_seed`` <-
    the experiment's seed. Fixed by rlpf train: ``lr_scheduler_type="constant_with_warmup"``,
    ``top_p=1``, ``top_k=0``, ``save_total_limit=2``, full checkpoints (``save_only_model=False``),
    ``shuffle_dataset=True``, ``report_to="none"`` (rlpf writes TensorBoard itself), ``bf16`` only
    where a GPU supports it (``precision_kwargs``). Filled by ``RLPFTrainer`` from the codec and the
    feedback: ``generation_kwargs["suppress_tokens"]``, ``max_completion_length`` (the world model's
    ``n_tokens``), ``reward_weights``. ``overlap_scoring`` is RLPFTrainer's own (no GRPOConfig field).
    """

    steps: int = 400
    """Optimizer steps (TRL max_steps)."""
    prompts_per_step: int = 9
    """Distinct prompts per step; each is sampled num_generations times."""
    num_generations: int = 8
    """Group size G: completions per prompt, compared with each other for the advantage."""
    steps_per_generation: int = 2
    """Optimizer steps per generated batch: after the first, the policy is off its samples and PPO's
    clip (epsilon) bounds the update."""
    num_iterations: int = 2
    """Passes over each generated batch (TRL num_iterations, GRPO's mu): more updates per simulated sample."""
    learning_rate: float = 1e-4
    """AdamW learning rate (constant after warmup)."""
    warmup_steps: int = 5
    """Linear warmup steps."""
    beta: float = 0.05
    """KL coefficient to the frozen reference model (0: no KL, no reference model)."""
    epsilon: float = 0.2
    """PPO clip range of the importance ratio."""
    temperature: float = 1.0
    """Sampling temperature of the policy."""
    loss_type: str = "grpo"
    """TRL loss aggregation: grpo (per-sequence mean, as in the GRPO paper), dapo, dr_grpo, bnpo."""
    scale_rewards: str = "group"
    """Advantage scaling: group (divide by the group's std, GRPO), batch or none (Dr. GRPO)."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    save_steps: int = 20
    """Steps between checkpoints (a killed run resumes from the last one); rounded up to a multiple of
    steps_per_generation x num_iterations, so a checkpoint never splits a generated batch's updates."""
    logging_steps: int = 1
    """Steps between log lines and TensorBoard points."""
    overlap_scoring: bool = True
    """Sample the next batch before updating on this one and simulate it in the reward workers while
    the update runs (``rlpf.finetune.score_ahead``): updates use samples one generated batch old, with PPO's
    ratio taken against the policy that sampled them. False: sample, score, update, in turn."""

    def __post_init__(self):
        from rlpf.core.config import check

        for name in ("steps", "prompts_per_step", "num_generations", "steps_per_generation", "num_iterations", "save_steps", "logging_steps"):
            check(self, getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        check(self, self.num_generations >= 2, "num_generations", self.num_generations,
              ">= 2 (advantages compare completions within a group)")
        check(self, self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
        check(self, self.beta >= 0, "beta", self.beta, ">= 0")
        check(self, self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        check(self, self.epsilon > 0, "epsilon", self.epsilon, "> 0")
        check(self, self.temperature > 0, "temperature", self.temperature, "> 0")
        check(self, self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "> 0")
        check(self, self.scale_rewards in ("group", "batch", "none"), "scale_rewards", self.scale_rewards,
              "one of group, batch, none")

    @property
    def cycle(self) -> int:
        """Optimizer steps that share one generated batch."""
        return int(self.steps_per_generation) * int(self.num_iterations)


def precision_kwargs() -> dict:
    """GRPOConfig keyword arguments for the precision: {} where a GPU supports bf16 (TRL's default,
    bf16, applies), else ``bf16=False`` (GRPOConfig defaults to bf16, which transformers refuses on a
    CPU unless ``use_cpu``; rlpf leaves the device to accelerate)."""
    from transformers.utils import is_torch_bf16_gpu_available

    return {} if is_torch_bf16_gpu_available() else {"bf16": False, "fp16": False}


def _fill_args(args, codec, weights: list[float]):
    """A copy of the GRPOConfig with what rlpf must set: sampling restricted to the codec's tokens,
    its completion length where the config left TRL's default, the feedback's reward weights."""
    from trl import GRPOConfig

    if not isinstance(args, GRPOConfig):
        raise TrainerConfigError(f"args: a {type(args).__name__}, not a trl.GRPOConfig")
    args = copy.copy(args)  # the caller's config is left as it was given
    gen = args.generation_kwargs
    if isinstance(gen, str):  # GRPOConfig takes a JSON string from the command line
        gen = json.loads(gen)
    gen = dict(gen or {})
    # only the codec's tokens: every completion can be a clip (a user's own suppressions are kept)
    gen["suppress_tokens"] = sorted(set(codec.suppress_tokens()) | {int(t) for t in gen.get("suppress_tokens") or ()})
    args.generation_kwargs = gen
    default_length = GRPOConfig.__dataclass_fields__["max_completion_length"].default
    if codec.max_completion_length is not None and args.max_completion_length in (None, default_length):
        args.max_completion_length = int(codec.max_completion_length)
    if args.reward_weights is not None and [float(w) for w in args.reward_weights] != list(weights):
        raise TrainerConfigError(f"args.reward_weights {list(args.reward_weights)}: the weights are the "
                                 f"PhysicalFeedback's ({list(weights)}, one per term); leave reward_weights unset")
    args.reward_weights = list(weights)
    return args


def _prompt_dataset(codec, prompts, args):
    """The prompt texts TRL samples from: the codec's ``prompt_text`` of each command, repeated until
    one generation batch fits (TRL's sampler takes that many distinct rows per generation batch and
    drops a partial one; balanced when it divides). A ``datasets.Dataset`` is used as it is."""
    from datasets import Dataset

    if isinstance(prompts, Dataset):
        if "prompt" not in prompts.column_names:
            raise TrainerConfigError(f"prompts: the dataset has no 'prompt' column (columns {prompts.column_names})")
        return prompts
    if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise TrainerConfigError(f"prompts: {prompts!r} is not a non-empty list of non-empty command strings")
    prompts = list(prompts)
    per_generation = args.per_device_train_batch_size * args.world_size * args.steps_per_generation // args.num_generations
    reps = -(-max(1, per_generation) // len(prompts))
    return Dataset.from_dict({"prompt": [codec.prompt_text(p) for _ in range(reps) for p in prompts]})


def __getattr__(name: str):
    # rlpf.finetune.grpo.RLPFTrainer subclasses TRL's trainer: built on first use, so importing rlpf.finetune.grpo (for
    # GRPOSettings, by every rlpf command) does not import TRL
    if name == "RLPFTrainer":
        return _trainer_class()
    raise AttributeError(f"module 'rlpf.finetune.grpo' has no attribute {name!r}")


@functools.cache
def _trainer_class():
    import torch
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    from rlpf.finetune.score_ahead import ScoreAhead

    class EpochSampler(RepeatSampler):
        """TRL's RepeatSampler, able to start at any epoch.

        RepeatSampler shuffles the prompts with one generator seeded once, drawing a fresh permutation
        each time an epoch starts. A resumed run builds a new sampler, so it began every later epoch
        with the permutations of epoch 0, 1, ... instead of those of the epoch it resumed in: other
        prompts, other samples, other weights (a 40-step run resumed at step 22 ended 0.0065 away
        from the uninterrupted one; at step 2, still in epoch 0, it was exact). transformers calls
        ``set_epoch(epoch)`` before each epoch (through accelerate's DataLoaderShard, also after it
        skips a resumed epoch's first batches): this puts the generator where an uninterrupted run has
        it at that epoch - seeded, then ``epoch`` permutations drawn - so an uninterrupted run draws
        exactly what it drew before and a resumed one the same.
        """

        def set_epoch(self, epoch: int) -> None:
            if self.shuffle and self.seed is not None:
                self.generator.manual_seed(self.seed)
                for _ in range(int(epoch)):
                    torch.randperm(self.num_samples, generator=self.generator)

    class RLPFTrainer(ScoreAhead, GRPOTrainer):
        """TRL's GRPOTrainer fine-tuning a causal LM on physical feedback.

        ``model``: any Hugging Face causal LM, a model object or a path / hub id (TRL loads it, with
        ``args.model_init_kwargs``). ``codec``: a ``rlpf.MotionCodec`` turning its completions into
        clips (a ``WorldModel`` is taken as its ``WorldModelCodec``); its tokenizer is the
        processing_class. ``feedback``: a ``rlpf.PhysicalFeedback`` giving one reward function per
        term and their weights. ``args``: a ``trl.GRPOConfig``, passed through; rlpf fills only
        ``generation_kwargs["suppress_tokens"]`` (the codec's tokens only), ``max_completion_length``
        (the codec's, where left at TRL's default) and ``reward_weights`` (the feedback's). The
        device is accelerate's choice (a GPU when there is one; on a CPU build the GRPOConfig with
        ``bf16=False``, ``rlpf.finetune.grpo.precision_kwargs()``). ``prompts``: the commands to train on
        (``codec.prompt_text`` of each is what the model sees) or a dataset with a ``prompt`` column.
        ``overlap_scoring``: score the next generated batch during this one's update
        (``rlpf.finetune.score_ahead``); False scores in turn. Other keyword arguments go to GRPOTrainer.

        Beyond GRPOTrainer: a step-time breakdown (generation / physics scoring - the time the step
        waits for rewards - / update), a prompt sampler that resumes in the right epoch, checkpoints
        marked complete, the scored-ahead batch saved with each checkpoint.
        """

        _gen_s = 0.0
        _score_s = 0.0
        sampler_class = EpochSampler

        def __init__(self, model, codec, feedback, args, prompts, *, callbacks=None, overlap_scoring: bool = True,
                     **kwargs):
            from rlpf.worldmodel.codec import as_codec
            from rlpf.finetune.feedback import PhysicalFeedback

            codec = as_codec(codec)
            codec.check()
            if not isinstance(feedback, PhysicalFeedback):
                raise TrainerConfigError(f"feedback: a {type(feedback).__name__}, not a rlpf.PhysicalFeedback")
            funcs, weights = feedback.reward_functions(codec)
            args = _fill_args(args, codec, weights)
            dataset = _prompt_dataset(codec, prompts, args)
            self.codec, self.feedback = codec, feedback
            super().__init__(model=model, reward_funcs=funcs, args=args, train_dataset=dataset,
                             processing_class=codec.tokenizer, callbacks=callbacks, **kwargs)
            self.overlap_scoring = bool(overlap_scoring)

        def prefetch_rewards(self, texts, completion_ids, step=None, trainer_state=None):
            # the trainer's state goes with the batch: plugins see the step and state it was sampled in
            # (those of a resumed pending batch are its own, so a resumed run scores it as an
            # uninterrupted one did)
            self.feedback.prefetch(self.codec, texts, completion_ids, step=step,
                                   trainer_state=self.state if trainer_state is None else trainer_state)

        def _get_train_sampler(self, dataset=None):
            s = super()._get_train_sampler(dataset)
            if type(s) is not RepeatSampler:  # another TRL: its sampler would need its own resume check
                raise RuntimeError(f"TRL's GRPO train sampler is a {type(s).__name__}, not the RepeatSampler "
                                   "rlpf resumes exactly (rlpf.finetune.grpo EpochSampler)")
            return self.sampler_class(s.data_source, mini_repeat_count=s.mini_repeat_count, batch_size=s.batch_size,
                                      repeat_count=s.repeat_count, shuffle=s.shuffle, seed=s.seed)

        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)  # TRL / transformers' files, then the batch scored ahead
            # every process has written its part (rng_state_<rank>.pth, its scored-ahead batch) before
            # the main one marks the folder whole
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

                folder = os.path.join(self._get_output_dir(trial=trial),
                                      f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
                # last: a kill while the folder was written leaves it unmarked (see last_checkpoint)
                _write_json_atomic(os.path.join(folder, COMPLETE_FILE), {"step": int(self.state.global_step)})

        def _generate(self, prompts):
            t0 = time.perf_counter()
            out = super()._generate(prompts)
            self._gen_s += time.perf_counter() - t0
            return out

        def _sample_ahead(self, inputs):
            t0 = time.perf_counter()
            out = super()._sample_ahead(inputs)
            self._gen_s += time.perf_counter() - t0
            return out

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            t0 = time.perf_counter()
            out = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._score_s += time.perf_counter() - t0
            return out

        def training_step(self, model, inputs, num_items_in_batch=None):
            self._gen_s = self._score_s = 0.0
            t0 = time.perf_counter()
            loss = super().training_step(model, inputs, num_items_in_batch)
            total = time.perf_counter() - t0
            m = self._metrics["train"]
            m["time/step_s"].append(total)
            m["time/generation_s"].append(self._gen_s)
            m["time/scoring_s"].append(self._score_s)
            m["time/update_s"].append(total - self._gen_s - self._score_s)
            return loss

    return RLPFTrainer


def _ProgressBar():
    import sys

    from tqdm import tqdm
    from transformers import TrainerCallback

    class ProgressBar(TrainerCallback):
        bar = None
        post: dict = {}

        def on_train_begin(self, args, state, control, **kw):
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="rlpf", unit="step",
                            file=sys.stderr, dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kw):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            show = {"reward": "reward", "track": "rewards/tracking_success/mean", "align": "rewards/alignment/mean",
                    "kl": "kl"}
            self.post.update({k: f"{float(logs[v]):.3g}" for k, v in show.items() if v in logs})
            if self.post:
                self.bar.set_postfix(self.post, refresh=False)

        def on_train_end(self, args, state, control, **kw):
            self.bar.close()

    return ProgressBar()


class _StopOnSignal(StopOnSignal):
    """Ctrl-C (SIGINT) / SIGTERM: save a checkpoint and stop where a generated batch is used up (the
    trainer's StopCallback): a checkpoint inside a batch's updates would have to store TRL's buffer."""

    def __init__(self):
        super().__init__("stopping: a checkpoint is saved once this generated batch is used up "
                         "(Ctrl-C again to abort without saving)")


def _write_json_atomic(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _checkpoints(ckpt_dir: str) -> list[tuple[int, str]]:
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    found = []
    for name in os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else ():
        head, _, tail = name.rpartition("-")
        if head == PREFIX_CHECKPOINT_DIR and tail.isdigit() and os.path.isdir(os.path.join(ckpt_dir, name)):
            found.append((int(tail), os.path.join(ckpt_dir, name)))
    return sorted(found)


def last_checkpoint(ckpt_dir: str, remove_partial: bool = False) -> str | None:
    """The newest checkpoint in ``ckpt_dir`` that was written to its end, or None.

    transformers writes a checkpoint's files one after the other into its final folder (weights,
    optimizer, scheduler, RNG, trainer state; then rlpf adds the batch scored ahead), and silently
    resumes without any file that is missing: a run killed while it wrote one resumed with a fresh
    optimizer or RNG, or without its scored-ahead batch, and ended elsewhere. rlpf marks a folder
    complete last (``COMPLETE_FILE``), so an unmarked folder is one a kill cut short; with
    ``remove_partial`` the unmarked folders newer than the one returned are deleted, so the resumed
    run writes them afresh. A directory of a run made before the marks (no ``MARKED_FILE``) gets its
    newest checkpoint, as then.
    """
    found = _checkpoints(ckpt_dir)
    if not os.path.isfile(os.path.join(ckpt_dir, MARKED_FILE)):
        return found[-1][1] if found else None
    complete = [path for _, path in found if os.path.isfile(os.path.join(path, COMPLETE_FILE))]
    last = complete[-1] if complete else None
    if remove_partial:
        newest = int(last.rsplit("-", 1)[-1]) if last else -1
        for step, path in found:
            if step > newest and path not in complete:
                shutil.rmtree(path)
    return last


def log_history(run_dir: str) -> list[dict]:
    """Every logged step of the GRPO run in ``run_dir`` (from its last checkpoint's trainer state)."""
    ckpt_dir = os.path.join(run_dir, "grpo")
    last = last_checkpoint(ckpt_dir)
    try:
        with open(os.path.join(last, "trainer_state.json")) as f:
            return json.load(f).get("log_history", [])
    except (TypeError, OSError, ValueError):
        return []


def finetune(model_dir: str, feedback, settings: GRPOSettings, run_dir: str, seed: int = 0,
             prompts: list[str] | None = None, progress: bool = True):
    """Fine-tune the world model in ``model_dir`` with GRPO on ``feedback``'s rewards; returns the
    fine-tuned ``WorldModel`` (also saved to ``run_dir/model``) and a summary dict. A multi-world model
    (``MultiWorldModel``) is fine-tuned on every world's prompts at once (``feedback`` scoring its
    worlds) and saved as one.

    Checkpoints go to ``run_dir/grpo/checkpoint-*``; running again resumes from the last one, and a
    finished run (``run_dir/model`` present) is loaded, not retrained.
    """
    from torch.utils.tensorboard import SummaryWriter
    from transformers import TrainerCallback
    from transformers.integrations import TensorBoardCallback
    from trl import GRPOConfig

    from rlpf.worldmodel.codec import as_codec
    from rlpf.core.run_dir import read_json, write_json
    from rlpf.finetune import distributed
    from rlpf.worldmodel.multiworld import MultiWorldModel, load_world_model

    out_model = os.path.join(run_dir, "model")
    summary_path = os.path.join(run_dir, SUMMARY_FILE)
    if os.path.isfile(os.path.join(out_model, "world_model.json")):
        return load_world_model(out_model), {**read_json(summary_path), "resumed": "finished",
                                             "steps": settings.steps}

    wm = load_world_model(model_dir)
    # a multi-world model's prompts carry their world's marker (two worlds may share the words)
    prompts = list(prompts or (wm.training_prompts() if isinstance(wm, MultiWorldModel) else wm.prompts))
    per_step = settings.prompts_per_step * settings.num_generations
    # launched on several processes (rlpf.finetune.distributed): a step is still prompts_per_step x
    # num_generations samples, split over the processes, so the run is the same experiment
    processes, main = distributed.world_size(), distributed.is_main()
    if per_step % processes:
        raise TrainerConfigError(f"grpo.prompts_per_step x grpo.num_generations = {per_step} samples per step do "
                                 f"not split over {processes} processes; make it a multiple of {processes}")

    ckpt_dir = os.path.join(run_dir, "grpo")
    if main:  # the main process owns the run directory; the others read it once it is ready
        if not _checkpoints(ckpt_dir):  # a new run: its checkpoints will be marked complete (last_checkpoint)
            os.makedirs(ckpt_dir, exist_ok=True)
            _write_json_atomic(os.path.join(ckpt_dir, MARKED_FILE), {"complete_file": COMPLETE_FILE})
        last = last_checkpoint(ckpt_dir, remove_partial=True)
    distributed.barrier()
    if not main:
        last = last_checkpoint(ckpt_dir)
    resume_step = int(last.rsplit("-", 1)[-1]) if last else 0
    # GRPOSettings -> GRPOConfig (the mapping is GRPOSettings' docstring); RLPFTrainer adds the codec's
    # suppress_tokens (only motion codes: every completion is a clip), its n_tokens and the weights
    args = GRPOConfig(
        output_dir=ckpt_dir, max_steps=settings.steps, per_device_train_batch_size=per_step // processes,
        num_generations=settings.num_generations, steps_per_generation=settings.steps_per_generation,
        num_iterations=settings.num_iterations,
        temperature=settings.temperature, top_p=1.0, top_k=0,
        learning_rate=settings.learning_rate, lr_scheduler_type="constant_with_warmup",
        warmup_steps=settings.warmup_steps, beta=settings.beta, epsilon=settings.epsilon,
        loss_type=settings.loss_type, scale_rewards=settings.scale_rewards, max_grad_norm=settings.max_grad_norm,
        logging_steps=settings.logging_steps, save_steps=-(-settings.save_steps // settings.cycle) * settings.cycle,
        save_total_limit=2,
        save_only_model=False, report_to="none", seed=seed, data_seed=seed, **precision_kwargs(),
        disable_tqdm=True, dataloader_num_workers=0,
        log_completions=False, shuffle_dataset=True,
    )
    # purge_step: events a killed run logged after its last checkpoint are dropped, so curves continue
    writer = SummaryWriter(os.path.join(run_dir, "tb", "rlpf"), purge_step=resume_step or None) if main else None
    stop = _StopOnSignal()

    class StopCallback(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            # only where a generated batch is used up: a resumed run regenerates, it cannot reuse a buffer;
            # decided alike on every process (a replica leaving early would hang the others' all-reduce)
            if state.global_step % settings.cycle == 0 and (
                    distributed.any_process(stop.requested) if processes > 1 else stop.requested):
                control.should_save = True
                control.should_training_stop = True
            return control

    trainer = _trainer_class()(
        wm.lm, as_codec(wm), feedback, args, prompts,
        callbacks=([TensorBoardCallback(writer)] if main else []) + [StopCallback()],
        overlap_scoring=settings.overlap_scoring,
    )
    # one compact bar instead of a 40-key dict printed per log step (the full logs are in TensorBoard)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress and main:
        trainer.add_callback(_ProgressBar())
    t0 = time.perf_counter()
    with stop:
        trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - t0
    if writer is not None:
        writer.close()
    stopped = distributed.any_process(stop.requested) if processes > 1 else stop.requested
    if stopped and trainer.state.global_step < settings.steps:
        raise KeyboardInterrupt(f"RLPF stopped at step {trainer.state.global_step}; checkpoint in {ckpt_dir}; "
                                "run the same command again to resume")
    # the evaluation samples on the CPU (its cost is the physics; rlpf's samplers build CPU tensors)
    wm.lm = trainer.accelerator.unwrap_model(trainer.model).to("cpu")
    wm.lm.eval()
    summary = {"steps": trainer.state.global_step, "resumed_from_step": resume_step, "seconds": round(seconds, 1),
               "excluded_samples": sum(distributed.gather(feedback.excluded_total)), "processes": processes}
    if processes > 1:  # DDP keeps the replicas equal; a run where they are not has trained nothing coherent
        prints = distributed.gather(distributed.fingerprint(wm.lm))
        if len(set(prints)) != 1:
            raise RuntimeError(f"the {processes} processes ended with different models (parameter SHA-256 "
                               f"{', '.join(p[:12] for p in prints)}): the replicas were not stepped together")
        summary["replicas_identical"] = True
    if not main:
        return wm, summary
    # before the model: a finished model always has its summary, for a rerun that only evaluates
    write_json(summary_path, summary)
    wm.save_pretrained(out_model)
    if stopped:  # asked to stop during the last generated batch: the model is done, nothing more runs
        raise KeyboardInterrupt(f"RLPF finished its {trainer.state.global_step} steps ({out_model}) and stopped "
                                "before the evaluation; run the same command again to evaluate")
    return wm, summary
