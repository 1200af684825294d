"""One resumable optimisation stage: batches -> loss -> Adam step, with checkpoints and TensorBoard.

Everything that decides the next step lives in the checkpoint — model, optimizer, scheduler, the
batch-sampling generator and the step counter — so a resumed stage takes exactly the steps an
uninterrupted one would (tested). Ctrl-C saves a checkpoint before it stops.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class StageSpec:
    name: str
    steps: int
    lr: float
    warmup: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 25
    ckpt_every: int = 200
    seed: int = 0


def cosine_with_warmup(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def run_stage(spec: StageSpec, run_dir: str | None, model: torch.nn.Module,
              batch_fn: Callable[[torch.Generator], object],
              loss_fn: Callable[[object], tuple[torch.Tensor, dict]],
              progress: bool = True, on_log: Callable[[int, dict], None] | None = None) -> dict:
    """Train ``model`` for ``spec.steps`` steps, resuming from ``run_dir/checkpoints/<name>.pt``
    (``run_dir`` None: no checkpoints, no TensorBoard — for tests and sweeps).

    ``batch_fn(generator)`` draws a batch (all randomness from the generator); ``loss_fn(batch)``
    returns the loss and float metrics, logged as ``<name>/<metric>``. Returns the last metrics.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    ckpt_path = os.path.join(run_dir, "checkpoints", f"{spec.name}.pt") if run_dir else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(spec.warmup, spec.steps))
    gen = torch.Generator().manual_seed(spec.seed)
    step = 0
    if ckpt_path and os.path.exists(ckpt_path):
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        step = int(state["step"])

    def save():
        if not ckpt_path:
            return
        os.makedirs(os.path.dirname(ckpt_path), exist_ok=True)
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "generator": gen.get_state(), "step": step}, tmp)
        os.replace(tmp, ckpt_path)

    # purge_step drops events logged after the checkpoint by a run that was killed, so curves continue
    writer = SummaryWriter(os.path.join(run_dir, "tb", spec.name), purge_step=step or None) if run_dir else None
    metrics: dict = {}
    bar = tqdm(total=spec.steps, initial=step, desc=spec.name, unit="step", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    model.train()
    try:
        while step < spec.steps:
            batch = batch_fn(gen)
            loss, metrics = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            if step % spec.log_every == 0 or step == spec.steps:
                metrics = {"loss": loss.item(), **metrics, "grad_norm": grad_norm.item(),
                           "lr": sched.get_last_lr()[0]}
                for k, v in metrics.items() if writer else ():
                    writer.add_scalar(f"{spec.name}/{k}", v, step)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                if on_log:
                    on_log(step, metrics)
            if step % spec.ckpt_every == 0 or step == spec.steps:
                save()
    except KeyboardInterrupt:
        save()
        bar.close()
        if writer:
            writer.close()
        print(f"\ninterrupted: {spec.name} checkpoint saved at step {step} ({ckpt_path}); "
              "run the same command again to resume", file=sys.stderr)
        raise
    bar.close()
    if writer:
        writer.close()
    model.eval()
    return metrics


def load_checkpoint(path: str) -> dict:
    """A stage checkpoint, read as tensors and plain data only (``weights_only=True``): model, optimizer
    and scheduler state dicts, the generator's state tensor and the step hold nothing else, and a
    checkpoint in a shared run directory must not run code on resume. Raises CheckpointError."""
    from rlpf.motion_tokenizer import CheckpointError
    from rlpf.safe_load import UnsafeFileError, load_tensors

    try:
        state = load_tensors(path, what="training checkpoint")
    except UnsafeFileError as e:
        raise CheckpointError(path, f"{e.problem}; delete it to restart this stage") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        raise CheckpointError(path, f"unreadable training checkpoint ({type(e).__name__}: {e}); "
                              "delete it to restart this stage") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, f"not a training checkpoint (a {type(state).__name__}); "
                              "delete it to restart this stage")
    missing = {"model", "optimizer", "scheduler", "generator", "step"} - set(state)
    if missing:
        raise CheckpointError(path, f"training checkpoint lacks {sorted(missing)}")
    return state
