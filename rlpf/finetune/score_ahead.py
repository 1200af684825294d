"""Score the next generated batch while the policy trains on this one (GRPO one batch off-policy).

An RLPF step's cost on a CPU is mostly physics: every generated clip is replayed in MuJoCo by the
tracker before its reward exists, while the policy update itself is small. Done in turn, the update
waits for the simulator and the simulator waits for the update. With ``ScoreAhead`` each
generated-batch boundary does:

1. sample the *next* batch from the current policy, record its per-token log-probabilities (the
   behaviour policy) and hand it to the reward workers, which simulate it in the background;
2. train on the batch sampled at the previous boundary, waiting for its rewards only if the
   workers have not finished them yet.

So the samples an update uses are one generated batch older than the policy. PPO's ratio is taken
against the policy that sampled them (TRL's ``old_per_token_logps`` is replaced by the behaviour
log-probabilities), so the clip bounds the update exactly as it does for the on-policy samples GRPO
already reuses over ``num_iterations`` - this is the one-step-off-policy scheme of asynchronous RL
trainers. The first boundary samples two batches from its prompts (nothing older exists); the last
samples none. The batch in flight is saved with every checkpoint, so a resumed run trains on exactly
the samples an uninterrupted run would have.
"""
from __future__ import annotations

import dataclasses
import json
import os

import torch

PENDING_FILE = "pending_batch.pt"
"""The batch in flight, in a checkpoint folder; process r > 0 of a multi-process launch (each samples
its own share of a batch) writes ``pending_batch_<r>.pt`` beside it (``pending_file``)."""


def pending_file(process_index: int) -> str:
    return PENDING_FILE if process_index == 0 else f"pending_batch_{int(process_index)}.pt"


class ScoreAhead:
    """Mixin for TRL's ``GRPOTrainer`` (put it before the trainer in the bases).

    ``overlap_scoring``: False runs the plain synchronous GRPO step. ``prefetch_rewards(prompts,
    completion_ids, step=, trainer_state=)``: starts scoring a batch (sampled at ``step``, in
    ``trainer_state``, None for a batch an older rlpf saved) in the background; the reward functions
    must return its result when TRL later calls them with the same arguments (``PhysicalFeedback.prefetch``).
    """

    overlap_scoring = True
    prefetch_rewards = None
    _pending: dict | None = None
    _replay: dict | None = None

    # ---- the boundary -----------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        if not (self.overlap_scoring and self.model.training):
            return super()._generate_and_score_completions(inputs)
        if self._pending is None:  # start of training: nothing was sampled ahead
            self._pending = self._sample_ahead(inputs)
        batch, self._pending = self._pending, None
        cycle = self.args.steps_per_generation * self.num_iterations
        if self.state.global_step + cycle < self.args.max_steps:
            self._pending = self._sample_ahead(inputs)
        self._replay = batch
        try:
            out = super()._generate_and_score_completions(batch["inputs"])
        finally:
            self._replay = None
        trl_old = out.get("old_per_token_logps")
        if batch["step"] == self.state.global_step and trl_old is not None:
            # sampled by this very policy: TRL's own old log-probs must be the behaviour ones
            mask = out["completion_mask"].bool()
            if not torch.allclose(trl_old[mask], batch["logps"][mask], atol=1e-4):
                raise RuntimeError("behaviour log-probabilities disagree with TRL's for the same policy: "
                                   "the installed TRL builds its batch differently than rlpf.finetune.score_ahead expects")
        out["old_per_token_logps"] = batch["logps"]
        return out

    def _generate(self, prompts):
        if self._replay is not None:  # TRL rebuilds the batch sampled ahead; hand it the stored sample
            return self._replay["generated"]
        return super()._generate(prompts)

    def _sample_ahead(self, inputs) -> dict:
        prompts = [x["prompt"] for x in inputs]
        generated = super()._generate(prompts)
        prompt_ids, completion_ids = generated[0], generated[1]
        # the trainer state the batch was sampled in, as the JSON transformers checkpoints it: a resumed
        # run hands the plugins that state (not the later one it resumed at), as the uninterrupted run did
        state = json.dumps(dataclasses.asdict(self.state), sort_keys=True)
        batch = {"inputs": inputs, "generated": generated, "step": self.state.global_step, "trainer_state": state,
                 "logps": self._behaviour_logps(prompt_ids, completion_ids)}
        self._prefetch(batch)
        return batch

    def _prefetch(self, batch: dict) -> None:
        if self.prefetch_rewards is not None:
            from transformers import TrainerState

            state = batch.get("trainer_state")  # absent from batches saved by an older rlpf
            state = TrainerState(**json.loads(state)) if state is not None else None
            self.prefetch_rewards([x["prompt"] for x in batch["inputs"]], batch["generated"][1], step=batch["step"],
                                  trainer_state=state)

    def _behaviour_logps(self, prompt_ids: list, completion_ids: list) -> torch.Tensor:
        """Per-token log-probabilities of the completions under the current policy, on the same padded
        layout TRL builds for the batch (prompts left-padded, completions right-padded)."""
        from trl.trainer.utils import pad

        device, pad_id = self.accelerator.device, self._tokenizer.pad_token_id
        p = pad([torch.tensor(ids) for ids in prompt_ids], padding_value=pad_id, padding_side="left")
        pm = pad([torch.ones(len(ids), dtype=torch.long) for ids in prompt_ids], padding_value=0, padding_side="left")
        c = pad([torch.tensor(ids) for ids in completion_ids], padding_value=pad_id, padding_side="right")
        cm = pad([torch.ones(len(ids), dtype=torch.long) for ids in completion_ids], padding_value=0,
                 padding_side="right")
        with torch.no_grad():
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model, torch.cat([p, c], 1).to(device), torch.cat([pm, cm], 1).to(device), c.size(1),
                batch_size=self.args.per_device_train_batch_size)
        return logps

    # ---- checkpoints --------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self._pending is not None:  # every process its own share (pending_file)
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)  # another process may not have created it yet
            # token ids, texts, ints, None and one tensor: torch.load(weights_only=True) reads it back
            path = os.path.join(folder, pending_file(self.args.process_index))
            torch.save(self._pending, path + ".tmp")
            os.replace(path + ".tmp", path)  # never a half-written batch under the real name

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, pending_file(self.args.process_index)) if checkpoint else None
        if self.overlap_scoring and path and os.path.isfile(path):
            # our own file, written by _save_checkpoint: token ids, texts and a tensor
            from rlpf.core.safe_load import load_tensors  # tensors and plain data only: a shared run must not run code

            self._pending = load_tensors(path, what="scored-ahead batch")
            self._prefetch(self._pending)
