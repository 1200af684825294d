"""One resumable optimisation stage: batches -> loss -> Adam step, with checkpoints and TensorBoard.

Everything that decides the next step lives in the checkpoint — model, optimizer, scheduler, the
batch-sampling generator, torch's global RNG (dropout and any other unseeded draw) and the step
counter — so a resumed stage takes exactly the steps an uninterrupted one would, bit for bit (tested
with SIGINT and SIGKILL at several points). Every checkpoint is a step boundary: Ctrl-C (or SIGTERM)
asks the stage to stop, and it saves and stops once the step in progress is complete.
"""
from __future__ import annotations

import math
import os
import signal
import sys
from dataclasses import dataclass
from typing import Callable

import torch

from rlpf.core.threads import adapt_threads


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


class StopOnSignal:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a request (``requested``) that the training loop honours
    where its state is whole: a signal that interrupted the middle of a step would leave a checkpoint
    whose generator has drawn the step's batch while the model has not been updated by it (or half of
    an optimizer update done), and the resumed run would then skip or repeat part of a step.

    A second signal raises KeyboardInterrupt at once, wherever the loop is (what it saves then is up
    to the loop: run_stage saves the last whole state it has). Outside the main thread signal handlers cannot be set; the handlers are
    then left alone and a Ctrl-C raises KeyboardInterrupt where it lands, as usual.
    """

    def __init__(self, message: str = "stopping: a checkpoint is saved at the end of this step "
                                      "(Ctrl-C again to stop at once)"):
        self.message = message
        self.requested = False
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        print("\n" + self.message, file=sys.stderr, flush=True)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


def run_stage(spec: StageSpec, run_dir: str | None, model: torch.nn.Module,
              batch_fn: Callable[[torch.Generator], object],
              loss_fn: Callable[[object], tuple[torch.Tensor, dict]],
              progress: bool = True, on_log: Callable[[int, dict], None] | None = None) -> dict:
    """Train ``model`` for ``spec.steps`` steps, resuming from ``run_dir/checkpoints/<name>.pt``
    (``run_dir`` None: no checkpoints, no TensorBoard — for tests and sweeps).

    ``batch_fn(generator)`` draws a batch (all randomness from the generator); ``loss_fn(batch)``
    returns the loss and float metrics, logged as ``<name>/<metric>``; it must leave the model's state
    as it found it (no running statistics updated in the forward pass), since an interrupted step is
    saved as it was before it. Returns the last logged metrics (also those of a stage that was already
    finished when resumed). Ctrl-C / SIGTERM: the step in progress completes, a checkpoint is saved,
    then KeyboardInterrupt is raised.
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    ckpt_path = os.path.join(run_dir, "checkpoints", f"{spec.name}.pt") if run_dir else None
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(spec.warmup, spec.steps))
    gen = torch.Generator().manual_seed(spec.seed)
    step = 0
    logged: dict = {}  # the last logged metrics: what the stage returns
    if ckpt_path and os.path.exists(ckpt_path):
        state = load_checkpoint(ckpt_path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        step = int(state["step"])
        # checkpoints written before these keys existed resume as they did then
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        logged = dict(state.get("metrics", {}))

    def save():
        if not ckpt_path:
            return
        os.makedirs(os.path.dirname(ckpt_path), exist_ok=True)
        tmp = ckpt_path + ".tmp"
        # tensors, ints, floats and strings only: read back with torch.load(weights_only=True)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "step": step,
                    "metrics": {k: float(v) for k, v in logged.items()}}, tmp)
        os.replace(tmp, ckpt_path)  # a kill mid-write leaves the previous checkpoint whole

    # purge_step drops events logged after the checkpoint by a run that was killed, so curves continue
    writer = SummaryWriter(os.path.join(run_dir, "tb", spec.name), purge_step=step or None) if run_dir else None
    metrics: dict = dict(logged)
    bar = tqdm(total=spec.steps, initial=step, desc=spec.name, unit="step", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    stop = StopOnSignal(f"stopping: the {spec.name} stage saves a checkpoint at the end of this step "
                        "(Ctrl-C again to stop at once, at the last whole step)")
    # Where the loop is when a KeyboardInterrupt arrives anyway (a second Ctrl-C, a Ctrl-C outside the
    # main thread, one raised by a callback): "batch" - the step's batch is drawn and its gradient
    # computed, but model, optimizer and scheduler are as at the step's start, so the generator and
    # the global RNG are put back to the step's start and that state is saved; "update" - inside the
    # optimizer / scheduler update, which cannot be undone, so nothing is saved and the last
    # checkpoint (a whole step boundary) stands; "boundary" - a step is complete, saved as it is.
    phase = "boundary"
    start_rng = None
    saved = False
    model.train()
    try:
        with stop:
            while step < spec.steps and not stop.requested:
                adapt_threads()  # fewer torch threads while other processes take cores (rlpf/core/threads.py)
                start_rng = (gen.get_state(), torch.get_rng_state())
                phase = "batch"
                batch = batch_fn(gen)
                loss, metrics = loss_fn(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
                phase = "update"
                opt.step()
                sched.step()
                step += 1
                phase = "boundary"
                bar.update(1)
                if step % spec.log_every == 0 or step == spec.steps:
                    metrics = {"loss": loss.item(), **metrics, "grad_norm": grad_norm.item(),
                               "lr": sched.get_last_lr()[0]}
                    for k, v in metrics.items() if writer else ():
                        writer.add_scalar(f"{spec.name}/{k}", v, step)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                    if on_log:
                        on_log(step, metrics)
                    logged = dict(metrics)
                if step % spec.ckpt_every == 0 or step == spec.steps:
                    save()
            if stop.requested:  # also when this was the last step: the caller must not go on to its next stage
                save()
                saved = True
                bar.close()
                if writer:
                    writer.close()
                where = f"checkpoint {ckpt_path}" if ckpt_path else "no run directory: nothing saved"
                raise KeyboardInterrupt(f"{spec.name} stopped at step {step} ({where}); "
                                        "run the same command again to resume")
    except KeyboardInterrupt:
        if saved and stop.requested:  # stopped as asked, at a step boundary: the message says it all
            raise
        if not saved and phase == "batch":
            gen.set_state(start_rng[0])
            torch.set_rng_state(start_rng[1])
        if not saved and phase != "update":
            save()
            saved = True
        bar.close()
        if writer:
            writer.close()
        if not ckpt_path:
            print(f"\ninterrupted: {spec.name} stopped at step {step} (no run directory: nothing saved)",
                  file=sys.stderr)
        elif saved:
            print(f"\ninterrupted: {spec.name} checkpoint saved at step {step} ({ckpt_path}); "
                  "run the same command again to resume", file=sys.stderr)
        else:
            print(f"\ninterrupted inside an optimizer update of {spec.name}: that moment is not saved; "
                  f"run the same command again to resume from the last checkpoint ({ckpt_path})", file=sys.stderr)
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
    from rlpf.core.errors import CheckpointError
    from rlpf.core.safe_load import UnsafeFileError, load_tensors

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
