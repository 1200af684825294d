"""``rlpf train`` on several processes: ``accelerate launch --num_processes N`` (or ``torchrun``).

TRL's GRPOTrainer scales through accelerate: every process holds a replica of the policy, samples its
share of each step's completions, scores them (its own ``PhysicalFeedback`` and scoring workers),
and DDP averages the gradients, so every replica takes the same optimizer step. What the rest of
``rlpf train`` must add, and does through this module:

* one process owns the run directory: the main process (rank 0) takes the run lock, pretrains the
  base model and trains the learned tracker when they are missing, writes config.yaml, TensorBoard,
  the checkpoint marks, the model, the summary and the report; the others wait for it
  (``barrier``) where they need its files, and write only what transformers makes every process
  write (its ``rng_state_<rank>.pth``) and their own scored-ahead batch;
* decisions every process must take alike (stop on Ctrl-C at a batch boundary) are agreed on
  (``any_process``), or the replicas would leave the collective calls at different steps and hang;
* after training the replicas are compared (``fingerprint``): identical, or the run fails.

The process layout comes from the launcher's environment (``WORLD_SIZE``, ``RANK``): without a
launcher there is one process and every function here is a no-op. The process group is accelerate's
(``PartialState``: gloo on CPUs, NCCL on GPUs), initialised on first use.
"""
from __future__ import annotations

import hashlib
import os


def world_size() -> int:
    """Processes of this launch (``WORLD_SIZE``; 1 without a launcher)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def rank() -> int:
    """This process's global rank (``RANK``; 0 without a launcher)."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    return rank() == 0


def setup() -> None:
    """Before anything builds accelerate's state: on a machine without CUDA, tell accelerate (and
    transformers' TrainingArguments, which rebuilds the state) that the processes are CPU ones.
    Without it a CPU launch (``accelerate launch --multi_gpu`` / ``torchrun`` on a machine with no
    GPU) gets a gloo process group but a trainer that believes it is alone (``world_size`` 1: each
    process would train its own model). With CUDA nothing is set: one GPU per process, NCCL."""
    if world_size() > 1 and "ACCELERATE_USE_CPU" not in os.environ:
        import torch

        if not torch.cuda.is_available():
            os.environ["ACCELERATE_USE_CPU"] = "true"


def _state():
    from accelerate import PartialState

    setup()
    return PartialState(cpu=os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"))


def barrier() -> None:
    """Wait until every process of the launch is here (nothing with one process)."""
    if world_size() > 1:
        _state().wait_for_everyone()


def gather(value) -> list:
    """``value`` of every process, in rank order (``[value]`` with one process); picklable values."""
    if world_size() <= 1:
        return [value]
    from accelerate.utils import gather_object

    _state()
    return list(gather_object([value]))


def any_process(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any of them."""
    return any(gather(bool(flag)))


def fingerprint(model) -> str:
    """SHA-256 of every parameter's bytes, in order: equal exactly when two replicas are equal."""
    import torch

    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
