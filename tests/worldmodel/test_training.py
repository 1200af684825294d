"""rlpf.worldmodel.training: a resumed stage takes exactly the steps an uninterrupted one would."""
import os

import pytest
import torch

from rlpf.worldmodel.tokenizer import CheckpointError
from rlpf.worldmodel.training import StageSpec, load_checkpoint, run_stage

from test_resume import _problem  # the one toy regression of the stage tests


def _spec(**kw):
    return StageSpec("toy", steps=20, lr=1e-2, warmup=3, log_every=4, ckpt_every=5, **kw)


def _interrupt_at(batch_fn, step, exc):
    calls = {"n": 0}

    def wrapped(g):
        if calls["n"] == step:
            raise exc
        calls["n"] += 1
        return batch_fn(g)

    return wrapped


def test_uninterrupted_run_trains_and_logs(tmp_path):
    model, batch_fn, loss_fn = _problem()
    before = [p.detach().clone() for p in model.parameters()]
    metrics = run_stage(_spec(), str(tmp_path), model, batch_fn, loss_fn, progress=False)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert {"loss", "lr", "grad_norm"} <= set(metrics)
    assert load_checkpoint(str(tmp_path / "checkpoints" / "toy.pt"))["step"] == 20
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "tb" / "toy"))


@pytest.mark.parametrize("exc, saved_step", [(KeyboardInterrupt(), 12), (RuntimeError("killed"), 10)])
def test_resume_is_exact(tmp_path, exc, saved_step):
    ref, batch_fn, loss_fn = _problem()
    run_stage(_spec(), str(tmp_path / "ref"), ref, batch_fn, loss_fn, progress=False)

    model, batch_fn, loss_fn = _problem()
    with pytest.raises(type(exc)):  # Ctrl-C saves where it stopped; a crash keeps the last periodic checkpoint
        run_stage(_spec(), str(tmp_path / "run"), model, _interrupt_at(batch_fn, 12, exc), loss_fn, progress=False)
    assert load_checkpoint(str(tmp_path / "run" / "checkpoints" / "toy.pt"))["step"] == saved_step

    model, batch_fn, loss_fn = _problem()  # a fresh process: new objects, same command
    run_stage(_spec(), str(tmp_path / "run"), model, batch_fn, loss_fn, progress=False)
    for a, b in zip(ref.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoints" / "toy.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    model, batch_fn, loss_fn = _problem()
    with pytest.raises(CheckpointError, match="toy.pt.*unreadable"):
        run_stage(_spec(), str(tmp_path), model, batch_fn, loss_fn, progress=False)
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(str(path))


def test_a_payload_checkpoint_never_runs(tmp_path):
    """checkpoints/<stage>.pt with a pickled object that would run code: resume refuses it by name."""
    from payloads import torch_file

    model, batch_fn, loss_fn = _problem()
    run_stage(_spec(), str(tmp_path / "ref"), model, batch_fn, loss_fn, progress=False)
    real = torch.load(tmp_path / "ref" / "checkpoints" / "toy.pt", weights_only=True)
    marker = tmp_path / "payload-ran"
    path = tmp_path / "run" / "checkpoints" / "toy.pt"
    path.parent.mkdir(parents=True)
    torch_file(path, marker, around=lambda p: {**real, "step": p})
    model, batch_fn, loss_fn = _problem()
    with pytest.raises(CheckpointError, match=r"run/checkpoints/toy\.pt: refused: .*names [\w.]*open\).*never unpickles"
                                              r".*delete it to restart"):
        run_stage(_spec(), str(tmp_path / "run"), model, batch_fn, loss_fn, progress=False)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the file is a live payload: the old way of opening it runs it
    assert marker.exists()
