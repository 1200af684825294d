"""Exact resume: a run interrupted (SIGINT / SIGTERM, a KeyboardInterrupt anywhere, SIGKILL) and run
again ends with bit-identical weights to an uninterrupted run - `rlpf pretrain` (rlpf.worldmodel.training.run_stage)
and `rlpf train` (TRL's GRPOTrainer through rlpf.finetune.grpo), at several points of a run.

Tolerance: none. Every comparison is ``torch.equal``: on one machine and one thread count torch's CPU
kernels are deterministic, so anything a resume fails to restore shows up as a difference (before
these fixes: up to 0.018 after pretraining, 0.0065 after a 40-step `rlpf train`). The CLI runs here
pin one torch thread (RLPF_THREADS=1): a different thread count may change float reductions, which
is a different run, not a resume problem.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rlpf.worldmodel.training import StageSpec, load_checkpoint, run_stage

from test_pretrain import TINY
from test_rlpf_train import GRPO_TINY, base  # noqa: F401 - base: the tiny pretrained model fixture

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/


# ---- run_stage, in this process: every way a KeyboardInterrupt can arrive ----------------------------------------
def _problem(dropout: float = 0.0):
    """A small regression; with dropout the steps also draw from torch's global RNG."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Dropout(dropout),
                                torch.nn.Linear(16, 1))
    x = torch.randn(64, 4)
    y = x.sum(1, keepdim=True) ** 2

    def batch_fn(g):
        idx = torch.randint(64, (8,), generator=g)
        return x[idx], y[idx]

    def loss_fn(batch):
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1]), {"mean_y": float(batch[1].mean())}

    return model, batch_fn, loss_fn


SPEC = StageSpec("toy", steps=20, lr=1e-2, warmup=3, log_every=4, ckpt_every=5)


def _reference(tmp_path, dropout=0.0):
    model, batch_fn, loss_fn = _problem(dropout)
    metrics = run_stage(SPEC, str(tmp_path / "ref"), model, batch_fn, loss_fn, progress=False)
    return model, metrics


def _resume_and_compare(tmp_path, ref, dropout=0.0):
    torch.manual_seed(12345)  # a new process: torch's global RNG is wherever it happens to be
    model, batch_fn, loss_fn = _problem(dropout)
    run_stage(SPEC, str(tmp_path / "run"), model, batch_fn, loss_fn, progress=False)
    for (name, a), b in zip(ref.named_parameters(), model.parameters()):
        assert torch.equal(a, b), f"{name}: max |diff| {(a - b).abs().max().item():.3g} after resume"


def _saved_step(tmp_path):
    return load_checkpoint(str(tmp_path / "run" / "checkpoints" / "toy.pt"))["step"]


def _on_call(fn, call, action):
    """``fn`` wrapped to run ``action()`` at its ``call``-th call (counted from 1), before ``fn``."""
    calls = {"n": 0}

    def wrapped(*a):
        calls["n"] += 1
        if calls["n"] == call:
            action()
        return fn(*a)

    return wrapped


def _raise():
    raise KeyboardInterrupt


def test_keyboard_interrupt_after_the_batch_is_drawn_saves_the_step_as_it_began(tmp_path):
    """The generator has drawn step 12's batch, the model is not updated yet: the checkpoint holds the
    generator as it was before the draw (saved as it was, the resumed run skipped a batch)."""
    ref, _ = _reference(tmp_path)
    model, batch_fn, loss_fn = _problem()
    with pytest.raises(KeyboardInterrupt):
        run_stage(SPEC, str(tmp_path / "run"), model, batch_fn, _on_call(loss_fn, 13, _raise), progress=False)
    assert _saved_step(tmp_path) == 12
    _resume_and_compare(tmp_path, ref)


def test_keyboard_interrupt_inside_the_optimizer_update_keeps_the_last_whole_checkpoint(tmp_path, capsys):
    """Half an update (the optimizer stepped, the scheduler and the counter not) cannot be saved as a
    whole step: the last periodic checkpoint (step 10) stands."""
    ref, _ = _reference(tmp_path)
    calls = {"n": 0}

    def hook(optimizer, args, kwargs):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt

    from torch.optim.optimizer import register_optimizer_step_post_hook  # every optimizer: run_stage makes its own

    handle = register_optimizer_step_post_hook(hook)
    try:
        model, batch_fn, loss_fn = _problem()
        with pytest.raises(KeyboardInterrupt):
            run_stage(SPEC, str(tmp_path / "run"), model, batch_fn, loss_fn, progress=False)
    finally:
        handle.remove()
    assert _saved_step(tmp_path) == 10
    assert "inside an optimizer update" in capsys.readouterr().err
    _resume_and_compare(tmp_path, ref)


def test_sigint_mid_step_finishes_the_step_then_saves_and_stops(tmp_path):
    """A real Ctrl-C (SIGINT to this process) while step 13 computes its loss: the step completes, the
    checkpoint is step 13, KeyboardInterrupt says how to resume, and Ctrl-C handling is restored."""
    ref, _ = _reference(tmp_path)
    before = signal.getsignal(signal.SIGINT)
    model, batch_fn, loss_fn = _problem()
    with pytest.raises(KeyboardInterrupt, match=r"toy stopped at step 13 .*run the same command again"):
        run_stage(SPEC, str(tmp_path / "run"), model, batch_fn,
                  _on_call(loss_fn, 13, lambda: os.kill(os.getpid(), signal.SIGINT)), progress=False)
    assert signal.getsignal(signal.SIGINT) is before
    assert _saved_step(tmp_path) == 13
    _resume_and_compare(tmp_path, ref)


def test_sigterm_and_a_second_sigint_stop_at_once_at_the_last_whole_step(tmp_path):
    """SIGTERM is a stop request like Ctrl-C; a second one stops at once, inside the step: the step as
    it began is saved. The resumed run still ends exactly where the uninterrupted one does."""
    ref, _ = _reference(tmp_path)
    model, batch_fn, loss_fn = _problem()

    def twice():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run_stage(SPEC, str(tmp_path / "run"), model, batch_fn, _on_call(loss_fn, 8, twice), progress=False)
    assert _saved_step(tmp_path) == 7
    _resume_and_compare(tmp_path, ref)


def test_dropout_draws_from_the_restored_global_rng(tmp_path):
    """Dropout draws from torch's global RNG, which a new process does not have where the interrupted
    one left it: the checkpoint carries it."""
    ref, _ = _reference(tmp_path, dropout=0.3)
    model, batch_fn, loss_fn = _problem(dropout=0.3)
    with pytest.raises(KeyboardInterrupt):
        run_stage(SPEC, str(tmp_path / "run"), model, _on_call(batch_fn, 12, _raise), loss_fn, progress=False)
    assert _saved_step(tmp_path) == 11
    _resume_and_compare(tmp_path, ref, dropout=0.3)


def test_checkpoint_is_plain_data_and_a_finished_stage_returns_its_metrics(tmp_path):
    ref, metrics = _reference(tmp_path)
    state = torch.load(str(tmp_path / "ref" / "checkpoints" / "toy.pt"), weights_only=True)
    assert state["step"] == 20 and state["metrics"] == metrics
    model, batch_fn, loss_fn = _problem()  # resumed after the last step (outputs not yet written)
    again = run_stage(SPEC, str(tmp_path / "ref"), model, batch_fn, loss_fn, progress=False)
    assert again == metrics and {"loss", "lr", "grad_norm", "mean_y"} <= set(again)
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), model.parameters()))


def test_dataset_written_all_or_nothing(tmp_path, monkeypatch, valid_clips):
    """A run interrupted while it wrote its simulated data leaves no clips behind (the next run would
    have trained on the part written); the next run simulates and writes all of it."""
    import rlpf.core.clips
    import rlpf.data.motion_data
    from rlpf.core.config import load_config
    from rlpf.worldmodel.pretrain import PretrainConfig, load_or_make_data

    prompts = ["walk forward", "turn left", "stand still"]
    clips = [rlpf.core.clips.Clip(qpos=c.qpos[:16], fps=c.fps, world="ant", prompt=prompts[i % 3], source=f"sim:{i}")
             for i, c in enumerate(valid_clips["ant"] * 3)]
    # the simulation itself is not what is tested: its clips are given, their writing is
    monkeypatch.setattr(rlpf.data.motion_data, "make_dataset", lambda *a, **k: list(clips))
    written = {"n": 0}
    save_clips = rlpf.core.clips.save_clips

    def dies_after_one(path, *a, **k):
        if written["n"] == 1:
            raise KeyboardInterrupt
        written["n"] += 1
        return save_clips(path, *a, **k)

    monkeypatch.setattr(rlpf.core.clips, "save_clips", dies_after_one)
    data = tmp_path / "data"
    cfg = load_config(PretrainConfig, None, TINY + [f"data={data}"])
    with pytest.raises(KeyboardInterrupt):
        load_or_make_data(cfg, progress=False)
    assert written["n"] == 1
    assert not data.exists() and not list(tmp_path.iterdir())  # nothing half-written, no leftovers
    monkeypatch.setattr(rlpf.core.clips, "save_clips", save_clips)
    data.mkdir()  # an empty directory given as data= is filled the same way
    loaded = load_or_make_data(cfg, progress=False)
    assert sorted((c.prompt, c.qpos.tobytes()) for c in loaded) == sorted((c.prompt, c.qpos.tobytes()) for c in clips)
    assert (data / "manifest.json").is_file() and not list(tmp_path.glob("*.partial-*"))


# ---- rlpf.finetune.grpo: the pieces TRL / transformers do not restore --------------------------------------------------------
def test_prompt_sampler_starts_any_epoch_where_an_uninterrupted_run_is():
    from trl.trainer.utils import RepeatSampler

    from rlpf.finetune.grpo import _trainer_class

    sampler_class = _trainer_class().sampler_class
    data, kw = list(range(9)), dict(mini_repeat_count=2, batch_size=3, repeat_count=2, shuffle=True, seed=0)
    trl = RepeatSampler(data, **kw)
    trl_epochs = [list(trl) for _ in range(4)]
    ours = sampler_class(data, **kw)
    epochs = []
    for e in range(4):  # transformers calls set_epoch before every epoch
        ours.set_epoch(e)
        epochs.append(list(ours))
    assert epochs == trl_epochs  # an uninterrupted run samples exactly what it sampled before
    assert len({tuple(e) for e in epochs}) == 4
    resumed = sampler_class(data, **kw)  # a new process resuming in epoch 3
    resumed.set_epoch(3)
    assert list(resumed) == epochs[3]
    assert list(RepeatSampler(data, **kw)) != epochs[3]  # TRL's own sampler starts epoch 3 with epoch 0's order


def test_a_checkpoint_cut_short_is_not_resumed_from(tmp_path):
    from rlpf.finetune.grpo import COMPLETE_FILE, MARKED_FILE, last_checkpoint

    d = tmp_path / "grpo"
    for step in (8, 10, 12):
        (d / f"checkpoint-{step}").mkdir(parents=True)
        (d / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (d / "checkpoint-14").mkdir()  # killed while writing its first file
    assert last_checkpoint(str(d)).endswith("checkpoint-14")  # a run from before the marks: its newest, as then
    (d / MARKED_FILE).write_text("{}")
    assert last_checkpoint(str(d)) is None  # none complete: start over
    for step in (8, 10):
        (d / f"checkpoint-{step}" / COMPLETE_FILE).write_text(json.dumps({"step": step}))
    assert last_checkpoint(str(d)).endswith("checkpoint-10")
    assert (d / "checkpoint-12").is_dir()
    assert last_checkpoint(str(d), remove_partial=True).endswith("checkpoint-10")
    assert sorted(p.name for p in d.iterdir() if p.is_dir()) == ["checkpoint-10", "checkpoint-8"]


# ---- the CLI in a subprocess, interrupted at several points ---------------------------------------------------------
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RLPF_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)}


def _cli(*args):
    return [sys.executable, "-m", "rlpf.cli", *args]


def _run(cmd, timeout=300):
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _interrupt(cmd, ready, sig, group=False, timeout=300):
    """Start ``cmd``; once ``ready()`` (polled every 10 ms), send ``sig`` to it (``group``: to its whole
    process group, as a terminal's Ctrl-C does, scoring workers included); return its exit code."""
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    t0 = time.monotonic()
    try:
        while not ready():
            if p.poll() is not None:
                pytest.fail(f"finished (exit {p.returncode}) before the interruption point: {p.stderr.read()[-3000:]}")
            if time.monotonic() - t0 > timeout:
                pytest.fail("the interruption point never came")
            time.sleep(0.01)
        if group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
        _, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    want = 130 if sig in (signal.SIGINT, signal.SIGTERM) else -sig
    assert p.returncode == want, f"exit {p.returncode}, expected {want}: {err[-3000:]}"
    return err


def _tensors(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, weights_only=True)


def _flat(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{prefix}/{key}").items()}
    return {}


def _assert_same_weights(ref_dir, run_dir, files):
    for name in files:
        a, b = _flat(_tensors(os.path.join(ref_dir, name))), _flat(_tensors(os.path.join(run_dir, name)))
        assert a.keys() == b.keys(), name
        diff = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if not torch.equal(a[k], b[k])}
        assert not diff, f"{name}: resumed weights differ (max |diff| {max(diff.values()):.3g} in {len(diff)} tensors)"


def _ckpt_step(path):
    try:
        return load_checkpoint(path)["step"]
    except Exception:  # not there yet
        return -1


PRETRAIN = [o for o in TINY if not o.startswith(("tokenizer_steps=", "lm_steps=", "ckpt_every="))] + [
    "tokenizer_steps=200", "lm_steps=400", "ckpt_every=10", "threads=1"]


@pytest.mark.slow  # end-to-end `rlpf pretrain` runs (about a minute together)
@pytest.mark.parametrize("points", [
    # (stage, checkpoint step to wait for, signal): applied one after the other to one run directory
    [("tokenizer", 20, signal.SIGINT), ("tokenizer", 60, signal.SIGKILL), ("lm", 10, signal.SIGINT)],
    [("lm", 150, signal.SIGKILL), ("lm", 250, signal.SIGTERM)],
], ids=["tokenizer-int-kill-lm-int", "lm-kill-term"])
def test_pretrain_interrupted_at_several_points_ends_bit_identical(tmp_path_factory, points):
    root = tmp_path_factory.getbasetemp() / "resume-pretrain"
    args = PRETRAIN + [f"data={root / 'data'}"]
    straight = root / "straight"
    if not (straight / "model").is_dir():  # shared by both cases
        _run(_cli("pretrain", "--quiet", "--out", str(straight), *args))
    out = tmp_path_factory.mktemp("interrupted")
    for stage, step, sig in points:
        ckpt = str(out / "checkpoints" / f"{stage}.pt")
        _interrupt(_cli("pretrain", "--quiet", "--out", str(out), *args), lambda: _ckpt_step(ckpt) >= step, sig)
        assert not (out / "model").exists()
        assert step <= _ckpt_step(ckpt) < {"tokenizer": 200, "lm": 400}[stage]
    _run(_cli("pretrain", "--quiet", "--out", str(out), *args))
    _assert_same_weights(str(straight), str(out), ["model/model.safetensors", "model/motion_tokenizer.pt",
                                                    "tokenizer/motion_tokenizer.pt", "evaluator/motion_evaluator.pt"])
    for report in ("lm_report.json", "tokenizer/report.json"):
        assert json.loads((out / report).read_text()) == json.loads((straight / report).read_text()), report


def _train_args(base, extra=()):
    # rlpf_plugins:state_step logs the trainer state each batch is scored with (weight 0: not optimized)
    return ["train", "--quiet", f"base_run={base / 'base'}", f"pretrain_config={base / 'pretrain.yaml'}", *GRPO_TINY,
            "weights={tracking_success: 10, alignment: 2, tracking_error_m: -10, 'rlpf_plugins:state_step': 0}",
            "grpo.steps=40", "videos=0", "eval_per_prompt=1", "workers=0", *extra]


def _logged(run_dir):
    """Per step: the rewards of every term, the loss, KL and gradient norm TRL logged."""
    from rlpf.finetune.grpo import log_history

    keep = ("reward", "loss", "kl", "grad_norm", "learning_rate")
    return [{k: v for k, v in h.items() if k.startswith("rewards/") or k in keep or k == "step"}
            for h in log_history(str(run_dir)) if "loss" in h]


def _complete_checkpoint_at_least(run_dir, step):
    from rlpf.finetune.grpo import COMPLETE_FILE

    d = run_dir / "grpo"
    return any(p.name.startswith("checkpoint-") and int(p.name.rsplit("-", 1)[1]) >= step
               and (p / COMPLETE_FILE).is_file() for p in (d.iterdir() if d.is_dir() else ()))


@pytest.mark.slow  # end-to-end `rlpf train` runs (about a minute and a half together)
@pytest.mark.parametrize("overlap, points", [
    # 40 steps, 6 steps per epoch (9 prompt rows, 3 per generated batch, 2 updates each), a checkpoint every 2:
    # mid-epoch (10, 26), on an epoch boundary (18), late (30); SIGKILL lands anywhere, even mid-checkpoint
    (True, [(10, signal.SIGKILL, False), (18, signal.SIGINT, False), (30, signal.SIGKILL, False)]),
    (False, [(10, signal.SIGINT, False), (26, signal.SIGKILL, False)]),
    (True, [(14, signal.SIGINT, True)]),  # a terminal's Ctrl-C: the scoring worker gets it too (workers=1)
], ids=["ahead-kill-int-kill", "in-turn-int-kill", "ahead-workers-ctrl-c"])
def test_train_interrupted_at_several_points_ends_bit_identical(base, tmp_path_factory, overlap, points):
    group = any(g for _, _, g in points)
    extra = [f"grpo.overlap_scoring={str(overlap).lower()}"]
    straight = tmp_path_factory.getbasetemp() / f"resume-train-{overlap}"
    if not (straight / "model").is_dir():  # shared by the cases of one mode
        _run(_cli(*_train_args(base, extra), "--out", str(straight)))
    out = tmp_path_factory.mktemp("interrupted")
    run_extra = extra + (["workers=1"] if group else [])
    for step, sig, to_group in points:
        _interrupt(_cli(*_train_args(base, run_extra), "--out", str(out)),
                   lambda: _complete_checkpoint_at_least(out, step), sig, group=to_group)
        assert not (out / "model").exists()
    _run(_cli(*_train_args(base, run_extra), "--out", str(out)))
    _assert_same_weights(str(straight), str(out), ["model/model.safetensors"])
    # every step's rewards, losses and the trainer state its batch was scored in, as uninterrupted
    logged, want = _logged(out), _logged(straight)
    assert len(want) == 40 and any("rewards/rlpf_plugins.state_step/mean" in h for h in want)
    assert logged == want
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["steps"] == 40 and report["training"]["resumed_from_step"] >= points[-1][0]


@pytest.mark.slow  # two short `rlpf train` runs
def test_ctrl_c_in_the_last_batch_keeps_the_finished_model_and_stops_before_the_evaluation(base, tmp_path):
    """Ctrl-C while the last generated batch trains: that batch finishes, the model and its training
    summary are saved, the command exits 130 without evaluating; run again, it only evaluates."""
    out = tmp_path / "run"
    args = ["train", "--quiet", "--out", str(out), f"base_run={base / 'base'}", f"pretrain_config={base / 'pretrain.yaml'}",
            *GRPO_TINY, "weights={tracking_success: 10, tracking_error_m: -10, 'rlpf_plugins:kill_switch': 0}",
            "videos=0", "eval_per_prompt=1", "workers=0"]
    # the kill_switch plugin sends SIGINT to its process while the 2nd (last) batch of the 4 steps is scored
    env = {**ENV, "RLPF_TEST_KILL_AT": "2", "RLPF_TEST_SIGNAL": "INT"}
    stopped = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "stopped before the evaluation" in stopped.stderr
    assert (out / "model" / "world_model.json").is_file() and not (out / "report.json").exists()
    _run(_cli(*args))
    training = json.loads((out / "report.json").read_text())["training"]
    assert training["steps"] == 4 and training["resumed"] == "finished"
    assert {"seconds", "excluded_samples", "step_s"} <= set(training)
